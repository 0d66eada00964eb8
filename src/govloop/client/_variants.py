"""A/B assignment without shared state: a subject's variant is a hash of who and where."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

__all__ = ["pick_variant"]


def pick_variant(
    experiment: str,
    subject_id: str,
    variants: Sequence[str],
    weights: Sequence[float] | None = None,
) -> str:
    """The variant of ``subject_id`` in ``experiment``: deterministic, sticky, weighted.

    The first 8 bytes of ``sha256(experiment + "\\0" + subject_id)`` give a
    number ``u`` uniform in [0, 1); the subject gets the first variant whose
    cumulative normalized weight exceeds ``u``.  The same inputs give the same
    variant in every process and on every machine, without shared state;
    adding a variant or changing weights re-buckets only the subjects whose
    ``u`` crosses a moved boundary.

    >>> pick_variant("exp", "user-1", ["a", "b"]) == pick_variant("exp", "user-1", ["a", "b"])
    True
    >>> pick_variant("exp", "user-1", ["a", "b"], weights=[0, 1])
    'b'
    """
    if not variants:
        raise ValueError("variants: give at least one variant")
    if weights is None:
        weights = [1.0] * len(variants)
    elif len(weights) != len(variants):
        raise ValueError(f"weights: {len(weights)} weights for {len(variants)} variants")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights: must be finite, non-negative and not all zero")
    digest = hashlib.sha256(f"{experiment}\0{subject_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    total, cumulative = float(sum(weights)), 0.0
    for variant, weight in zip(variants, weights, strict=True):
        cumulative += weight / total
        if u < cumulative and weight > 0:
            return variant
    return next(v for v, w in zip(reversed(variants), reversed(weights), strict=True) if w > 0)
