"""The label-free accuracy estimate: bias and interval coverage, in distribution and under
covariate shift.

Each seed shuffles a task into three parts: one trains the model, one is the
labelled calibration period, one the unlabelled stream.  The calibration
period and the stream go through the window counters as the hot path builds
them (predictions, labelled and correct per confidence bin), the map is fitted
from the period's per-bin labels as the worker does, and the stream window's
estimate is :func:`govloop.stats.summarize_window` of its counters.  Its error
is against the stream's realised accuracy.

* digits, GaussianNB (overconfident): in distribution
* make_classification, logistic regression: in distribution
* a misspecified logistic model (true log-odds ``3 sin(2 x1) + x2``) whose stream's
  ``x1`` moves by 1.5 sd: covariate shift, the stated limit
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from _rows import Row, rate_at_least
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from govloop.stats import CONFIDENCE_EDGES, CONFIDENCE_SCALE, BinnedCalibration, summarize_window
from govloop.stats.binning import confidence_bins

AREA = "estimate"
BINS = len(CONFIDENCE_EDGES) + 1
Split = tuple[tuple[np.ndarray, np.ndarray], ...]


def counters(confidence: np.ndarray, correct: np.ndarray | None) -> dict[str, int]:
    """A window's counters as the hot path counts them (labels for every prediction if
    ``correct`` is given)."""
    bins = confidence_bins(confidence)
    out = {
        "count": confidence.size,
        "conf_n": confidence.size,
        "conf_sum": int(np.round(confidence * CONFIDENCE_SCALE).sum()),
    }
    out |= {f"cb:{b}": int(n) for b, n in enumerate(np.bincount(bins, minlength=BINS)) if n}
    if correct is not None:
        out["labelled"], out["correct"] = confidence.size, int(correct.sum())
        labelled = np.bincount(bins, minlength=BINS)
        right = np.bincount(bins, weights=correct, minlength=BINS)
        out |= {f"cl:{b}": int(n) for b, n in enumerate(labelled) if n}
        out |= {f"cc:{b}": int(n) for b, n in enumerate(right) if n}
    return out


def calibration_of(window: dict[str, int]) -> BinnedCalibration:
    """The map the worker fits from a calibration period's counters."""
    labelled = tuple(window.get(f"cl:{b}", 0) for b in range(BINS))
    correct = tuple(window.get(f"cc:{b}", 0) for b in range(BINS))
    return BinnedCalibration(labelled, correct)


def trial(model: object, split: Split) -> tuple[float, float, bool]:
    """(calibrated error, raw error, interval covers) of one seed."""
    (xf, yf), (xr, yr), (xs, ys) = split
    model.fit(xf, yf)  # type: ignore[attr-defined]

    def outcomes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = model.predict_proba(x)  # type: ignore[attr-defined]
        return p.max(axis=1), model.classes_[p.argmax(axis=1)] == y  # type: ignore[attr-defined]

    cal = calibration_of(counters(*outcomes(xr, yr)))
    conf, right = outcomes(xs, ys)
    m = summarize_window(counters(conf, None), cal)
    truth = float(right.mean())
    z = 1.959963984540054
    covered = abs(m["estimated_accuracy"] - truth) <= z * m["estimated_accuracy_se"]
    return m["estimated_accuracy"] - truth, m["estimated_accuracy_raw"] - truth, covered


def digits(seed: int) -> Split:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    parts = order[:600], order[600:1200], order[1200:]
    return tuple((x[p], y[p]) for p in parts)


def synthetic(seed: int) -> Split:
    x, y = make_classification(
        n_samples=2300,
        n_features=20,
        n_informative=5,
        n_redundant=2,
        flip_y=0.05,
        class_sep=0.8,
        random_state=seed,
    )
    return (x[:300], y[:300]), (x[300:1300], y[300:1300]), (x[1300:], y[1300:])


def shifted(seed: int) -> Split:
    rng = np.random.default_rng(seed)

    def draw(n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 2))
        x[:, 0] += shift
        p = 1.0 / (1.0 + np.exp(-(3.0 * np.sin(2.0 * x[:, 0]) + x[:, 1])))
        return x, (rng.random(n) < p).astype(int)

    return draw(1000, 0.0), draw(1000, 0.0), draw(1000, 1.5)


def measure(
    make_model: Callable[[], object], split: Callable[[int], Split], seeds: int
) -> tuple[np.ndarray, np.ndarray, int]:
    errors, raw, covered = [], [], 0
    for seed in range(seeds):
        e, r, c = trial(make_model(), split(seed))
        errors.append(e)
        raw.append(r)
        covered += c
    return np.array(errors), np.array(raw), covered


def mean_interval(x: np.ndarray) -> tuple[float, float, float]:
    m, h = float(x.mean()), 1.959963984540054 * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - h, m + h


def bias_row(claim: str, errors: np.ndarray, within: bool) -> Row:
    """Mean error: within 1 point (the interval inside +-0.01), or, for a stated limit, beyond
    it (the interval outside)."""
    m, lo, hi = mean_interval(errors)
    share = float(np.mean(np.abs(errors) <= 0.01))
    holds = (lo >= -0.01 and hi <= 0.01) if within else (lo > 0.01 or hi < -0.01)
    return Row(
        AREA,
        claim,
        "within +-0.01" if within else "beyond +-0.01 (not valid)",
        f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]",
        holds,
        f"{errors.size} seeds; {share:.0%} of seeds within 1 point",
    )


def rows(quick: bool) -> list[Row]:
    seeds = 40 if quick else 500
    out: list[Row] = []
    cases = (
        ("digits, GaussianNB", GaussianNB, digits),
        ("make_classification, logistic", lambda: LogisticRegression(max_iter=1000), synthetic),
    )
    for name, make_model, split in cases:
        errors, raw, covered = measure(make_model, split, seeds)
        out.append(bias_row(f"{name}, in distribution: mean error", errors, True))
        out.append(bias_row(f"{name}: the raw mean confidence's mean error", raw, False))
        out.append(
            rate_at_least(
                AREA,
                f"{name}: the 95 % interval covers the realised accuracy",
                0.95,
                covered,
                seeds,
                f"{seeds} seeds",
            )
        )
    errors, _, _ = measure(lambda: LogisticRegression(max_iter=1000), shifted, seeds)
    out.append(bias_row("misspecified logistic, covariate shift 1.5 sd: mean error", errors, False))
    return out


if __name__ == "__main__":
    import sys

    for row in rows("--quick" in sys.argv):
        print(row)
