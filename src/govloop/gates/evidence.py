"""What a gate judges: plain evidence, the same online (a snapshot) and offline (a file).

* :class:`MetricValue`  a value, with its standard error and counts when known
* :class:`DriftSignal`  one active drift alert
* :class:`Sample`       one output, for safety validators
* :class:`Evidence`     metrics, the baseline's metrics, drift alerts, samples

``None`` means "not supplied" and makes the rules that need it inconclusive;
an empty list means "supplied, and there is nothing": no drift alerts pass a
drift rule, while unknown drift status does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from govloop.schemas.results import DriftAlert, MetricSnapshot

__all__ = [
    "DriftSignal",
    "Evidence",
    "MetricValue",
    "Sample",
    "metrics_from_snapshots",
    "pool_baselines",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class MetricValue(BaseModel):
    """One metric: its value, and what a significance test needs when known.

    ``successes`` out of ``n`` makes the value a proportion that can be tested
    from counts; ``stderr`` is its standard error (Lighteval's ``_stderr``).
    ``higher_is_better`` is the metric's direction when its source states it
    (an lm-evaluation-harness ``higher_is_better`` map, Lighteval's task
    configuration); ``None`` leaves it to the rule and the table of known
    metrics (:mod:`govloop.gates.directions`).  ``note`` says why ``value`` is
    missing.
    """

    model_config = _FROZEN

    value: float | None
    stderr: float | None = Field(default=None, ge=0)
    n: int | None = Field(default=None, ge=0)
    successes: int | None = Field(default=None, ge=0)
    higher_is_better: bool | None = None
    note: str = ""

    @property
    def standard_error(self) -> float | None:
        """``stderr``, else the binomial ``sqrt(p (1 - p) / n)`` from counts, else None.

        >>> MetricValue(value=0.9, n=100, successes=90).standard_error
        0.03
        """
        if self.stderr is not None:
            return self.stderr
        if self.has_counts and self.n:
            p = self.successes / self.n  # type: ignore[operator]
            return round(math.sqrt(p * (1 - p) / self.n), 15)
        return None

    @property
    def has_counts(self) -> bool:
        return self.n is not None and self.successes is not None and self.n > 0


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


class DriftSignal(BaseModel):
    """An active drift alert, reduced to what a drift rule looks at."""

    model_config = _FROZEN

    feature: str
    test: str = ""
    severity: Literal["info", "warning", "critical"] = "warning"
    statistic: float | None = None
    model: str | None = None

    @classmethod
    def from_alert(cls, alert: DriftAlert) -> DriftSignal:
        return cls(
            feature=alert.feature,
            test=alert.test,
            severity=alert.severity,
            statistic=alert.statistic,
            model=alert.model,
        )


class Sample(BaseModel):
    """One output of the model: its text and flags set by the producer (``refusal``...)."""

    model_config = _FROZEN

    output: str = ""
    flags: dict[str, bool | int | float | str | None] = Field(default_factory=dict)
    id: str | None = None


class Evidence(BaseModel):
    """Everything a policy may look at; see the module docstring for ``None``.

    ``cumulative`` is the evidence accumulated online: the model version's
    metrics summed over all its windows so far (counts summed, each window's
    latest revision), and ``looks`` how many windows that is.  With it,
    regression rules test the accumulated counts under continuous monitoring
    (:mod:`govloop.gates.sequential`); without it (offline, one look) they
    use the fixed-sample test.
    """

    model_config = _FROZEN

    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    baseline: dict[str, MetricValue] | None = None
    baseline_ref: str | None = None
    drift_alerts: list[DriftSignal] | None = None
    samples: list[Sample] | None = None
    cumulative: dict[str, MetricValue] | None = None
    looks: int | None = Field(default=None, ge=1)

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, object], **fields: object) -> Evidence:
        """Evidence from plain ``name -> number`` (non-numbers are kept as missing, with a note).

        >>> e = Evidence.from_metrics({"accuracy": 0.9, "model": "clf", "p95": None})
        >>> e.metrics["accuracy"].value, e.metrics["model"].note, e.metrics["p95"].value
        (0.9, "not a number: 'clf'", None)
        """
        values: dict[str, MetricValue] = {}
        for name, raw in metrics.items():
            if isinstance(raw, MetricValue):
                values[name] = raw
                continue
            number = _number(raw)
            note = "" if number is not None or raw is None else f"not a number: {raw!r}"
            values[name] = MetricValue(value=number, note=note)
        return cls.model_validate({"metrics": values, **fields})

    def with_baseline(
        self, baseline: Mapping[str, MetricValue] | None, ref: str | None = None
    ) -> Evidence:
        return self.model_copy(
            update={"baseline": None if baseline is None else dict(baseline), "baseline_ref": ref}
        )


#: Rates of a snapshot and the counts behind them: rate -> (successes, n).
_RATES = {
    "accuracy": ("correct_count", "labelled_count"),
    "positive_rate": ("positive_count", "judged_count"),
    "feedback_rate": ("feedback_count", "count"),
}
_COUNTS = (
    "count",
    "feedback_count",
    "labelled_count",
    "correct_count",
    "positive_count",
    "judged_count",
)


def metrics_from_snapshots(snapshots: Sequence[MetricSnapshot]) -> dict[str, MetricValue]:
    """Metrics over one or more snapshots, with counts summed (never rates averaged).

    Rates are recomputed from the summed counts and carry them, so a regression
    rule can test them.  Latency quantiles cannot be merged from snapshots: they
    are kept only for a single snapshot.
    """
    if not snapshots:
        return {}
    totals = {c: sum(getattr(s, c) for s in snapshots) for c in _COUNTS}
    if len(snapshots) == 1:  # the snapshot's own values, with the counts behind its rates
        out = dict(Evidence.from_metrics(snapshots[0].model_dump()).metrics)
        for rate, (num, den) in _RATES.items():
            if out[rate].value is not None and totals[den]:
                out[rate] = out[rate].model_copy(
                    update={"n": totals[den], "successes": totals[num]}
                )
    else:
        out = {name: MetricValue(value=float(total)) for name, total in totals.items()}
        for rate, (num, den) in _RATES.items():
            n, k = totals[den], totals[num]
            none = f"has no {den.removesuffix('_count')} events"
            out[rate] = (
                MetricValue(value=k / n, n=n, successes=k)
                if n
                else MetricValue(value=None, note=none)
            )
    if "accuracy" in out and out["accuracy"].value is not None:
        acc = out["accuracy"]
        out["error_rate"] = MetricValue(
            value=1 - acc.value,  # type: ignore[operator]
            n=acc.n,
            successes=acc.n - acc.successes,  # type: ignore[operator]
        )
    return out


def pool_baselines(versions: Iterable[Mapping[str, MetricValue]]) -> dict[str, MetricValue]:
    """The "last N" baseline: each metric pooled over the versions that have it.

    With counts in every version (windows of the stream: disjoint data),
    successes and n are summed: the pooled proportion.  Otherwise the value is
    the plain mean and the standard error is the root mean square of the
    versions' standard errors, *not* divided by sqrt(N): results files are
    usually runs on the same eval set, which are not independent, and pooling
    them must not make a baseline look more precise than one run.

    >>> a = {"acc": MetricValue(value=0.8, n=100, successes=80)}
    >>> b = {"acc": MetricValue(value=0.9, n=300, successes=270)}
    >>> pool_baselines([a, b])["acc"].value
    0.875
    >>> c = {"acc": MetricValue(value=0.7, stderr=0.03)}
    >>> d = {"acc": MetricValue(value=0.8, stderr=0.04)}
    >>> pooled = pool_baselines([c, d])["acc"]
    >>> round(pooled.value, 6), round(pooled.stderr, 6)
    (0.75, 0.035355)
    """
    by_metric: dict[str, list[MetricValue]] = {}
    for version in versions:
        for name, mv in version.items():
            if mv.value is not None:
                by_metric.setdefault(name, []).append(mv)
    out: dict[str, MetricValue] = {}
    for name, values in by_metric.items():
        direction = next(
            (v.higher_is_better for v in values if v.higher_is_better is not None), None
        )
        if all(v.has_counts for v in values):
            n = sum(v.n for v in values)  # type: ignore[misc]
            k = sum(v.successes for v in values)  # type: ignore[misc]
            out[name] = MetricValue(value=k / n, n=n, successes=k, higher_is_better=direction)
            continue
        mean = math.fsum(v.value for v in values) / len(values)  # type: ignore[misc]
        ses = [v.standard_error for v in values]
        se = (
            None
            if any(s is None for s in ses)
            else math.sqrt(math.fsum(s * s for s in ses if s is not None) / len(ses))
        )
        out[name] = MetricValue(value=mean, stderr=se, higher_is_better=direction)
    return out
