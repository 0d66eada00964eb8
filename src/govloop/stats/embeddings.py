"""Embedding drift: a bounded, mergeable sample of vectors and a kernel two-sample test.

Embeddings (LLM inputs or outputs, a model's penultimate layer) have hundreds
of dimensions; no per-dimension sketch says whether their distribution moved.
A window keeps a uniform sample of its vectors instead, chosen so that samples
of the same window kept by different workers merge exactly:

* **bottom-k sampling** keeps the ``k`` vectors whose event ids hash lowest.
  The hash does not depend on arrival order or on which worker saw the event,
  so the union of partial samples, cut back to the ``k`` lowest, is the sample
  of the whole window;
* each vector is first **projected** to ``dims`` dimensions by a fixed random
  Gaussian matrix (Johnson-Lindenstrauss: pairwise distances are kept up to a
  small factor), which bounds memory at ``k * dims`` floats per window whatever
  the embedding size.  A projection cannot create a difference that is not
  there, so the test stays valid; it can only lose some power.

:func:`embedding_drift` compares two samples with
:func:`~govloop.stats.multivariate.mmd_test` (RBF kernel, permutation p-value;
with ``n_permutations`` the smallest p-value is ``1 / (n_permutations + 1)``).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from govloop.stats.drift_tests import DriftTestResult
from govloop.stats.multivariate import mmd_test

__all__ = ["EmbeddingSample", "embedding_drift"]


def _key(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


class EmbeddingSample:
    """The ``k`` lowest-hashing vectors seen, projected to ``dims`` dimensions.

    >>> rng = np.random.default_rng(0)
    >>> a, b, whole = EmbeddingSample(k=50), EmbeddingSample(k=50), EmbeddingSample(k=50)
    >>> for i in range(400):
    ...     v = rng.normal(size=384)
    ...     (a if i % 2 else b).add(f"e{i}", v)
    ...     whole.add(f"e{i}", v)
    >>> a.merge(b)
    >>> a.n, a.matrix().shape, bool(np.allclose(a.matrix(), whole.matrix()))
    (400, (50, 32), True)
    """

    def __init__(self, k: int = 64, dims: int = 32, seed: int = 0) -> None:
        if k < 2 or dims < 1:
            raise ValueError(f"need k >= 2 and dims >= 1, got k={k}, dims={dims}")
        self.k, self.dims, self.seed = k, dims, seed
        self.n = 0  # vectors seen
        self.dim_in: int | None = None
        self._heap: list[tuple[int, tuple[float, ...]]] = []  # (-key, vector): max-heap on key
        self._projection: np.ndarray | None = None

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        if self.dim_in is None:
            self.dim_in = vectors.shape[1]
        if vectors.shape[1] != self.dim_in:
            raise ValueError(
                f"embedding has {vectors.shape[1]} dimensions, this sample holds {self.dim_in}"
            )
        if self.dim_in <= self.dims:
            return vectors
        if self._projection is None:
            rng = np.random.default_rng(self.seed)
            self._projection = rng.normal(size=(self.dim_in, self.dims)) / np.sqrt(self.dims)
        return vectors @ self._projection

    def add(self, event_id: str, vector: Sequence[float]) -> None:
        """Offer one event's vector."""
        self.add_many([event_id], [vector])

    def add_many(self, event_ids: Sequence[str], vectors: Iterable[Sequence[float]]) -> None:
        """Offer many events' vectors at once (one projection for the batch)."""
        matrix = np.asarray(list(vectors), dtype=np.float64)
        if not len(event_ids):
            return
        if matrix.ndim != 2 or len(matrix) != len(event_ids):
            raise ValueError("need one vector per event id")
        projected = self._project(matrix)
        self.n += len(event_ids)
        for event_id, row in zip(event_ids, projected, strict=True):
            self._offer(_key(event_id), tuple(float(x) for x in row))

    def _offer(self, key: int, vector: tuple[float, ...]) -> None:
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (-key, vector))
        elif key < -self._heap[0][0]:
            heapq.heapreplace(self._heap, (-key, vector))

    def merge(self, other: EmbeddingSample) -> None:
        """Add another sample of the same kind (same k, dims, seed and input size)."""
        if (other.k, other.dims, other.seed) != (self.k, self.dims, self.seed):
            raise ValueError("cannot merge samples with different k, dims or seed")
        if other.dim_in is not None:
            if self.dim_in is not None and other.dim_in != self.dim_in:
                raise ValueError(
                    f"cannot merge {other.dim_in}- and {self.dim_in}-dimensional embeddings"
                )
            self.dim_in = other.dim_in
        self.n += other.n
        for neg, vector in other._heap:
            if all(neg != mine for mine, _ in self._heap):
                self._offer(-neg, vector)

    def matrix(self) -> np.ndarray:
        """The sampled vectors (projected), lowest hash first."""
        rows = [v for _, v in sorted(self._heap, reverse=True)]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)

    def __len__(self) -> int:
        return len(self._heap)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): parameters, count and the sampled (key, vector) pairs."""
        return {
            "k": self.k,
            "dims": self.dims,
            "seed": self.seed,
            "n": self.n,
            "dim_in": self.dim_in,
            "sample": [[str(-neg), list(v)] for neg, v in sorted(self._heap, reverse=True)],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmbeddingSample:
        """Rebuild a sample from :meth:`to_dict`."""
        out = cls(k=int(d["k"]), dims=int(d["dims"]), seed=int(d["seed"]))
        out.n, out.dim_in = int(d["n"]), d["dim_in"]
        out._heap = [(-int(key), tuple(float(x) for x in v)) for key, v in d["sample"]]
        heapq.heapify(out._heap)
        return out


def embedding_drift(
    reference: EmbeddingSample,
    current: EmbeddingSample,
    *,
    alpha: float = 0.05,
    n_permutations: int = 1999,
    seed: int = 0,
) -> DriftTestResult:
    """MMD test of a window's embedding sample against the reference's.

    >>> rng = np.random.default_rng(1)
    >>> ref, same, moved = EmbeddingSample(), EmbeddingSample(), EmbeddingSample()
    >>> for i in range(300):
    ...     ref.add(f"r{i}", rng.normal(size=64))
    ...     same.add(f"s{i}", rng.normal(size=64))
    ...     moved.add(f"m{i}", rng.normal(0.5, 1.0, size=64))
    >>> embedding_drift(ref, same).drifted, embedding_drift(ref, moved).drifted
    (False, True)
    """
    if len(reference) < 2 or len(current) < 2:
        raise ValueError("each sample needs at least 2 vectors")
    return mmd_test(
        reference.matrix(), current.matrix(), n_permutations=n_permutations, seed=seed, alpha=alpha
    )
