"""Which way is better for a metric, when neither the policy nor the results file says.

A regression rule needs to know whether a rise or a fall is the regression.
In order, the first that answers decides:

1. the rule's own ``higher_is_better`` (the policy author's word);
2. the metric's ``higher_is_better`` as its source states it (lm-evaluation-harness
   0.4's ``higher_is_better`` map, Lighteval's task configuration), on the current
   value or else on the baseline's;
3. the table below, for metrics whose direction is known by their name;
4. higher is better.

The table holds only metrics that are lower-is-better by definition, read on
the metric's own name (the part after the last ``/`` and before an
lm-evaluation-harness ``,filter``):

==================== ===============================================
metric               what it is
==================== ===============================================
error_rate           1 - accuracy (predictions files, online windows)
latency_p50_ms       median latency of an online window
latency_p95_ms       95th percentile latency of an online window
perplexity, ppl      perplexity (lm-evaluation-harness 0.3 ``ppl``)
word_perplexity      perplexity per word
byte_perplexity      perplexity per byte
bits_per_byte        cross-entropy in bits per byte
ter                  translation edit rate
==================== ===============================================
"""

from __future__ import annotations

from typing import Literal

from govloop.gates.evidence import MetricValue

__all__ = ["LOWER_IS_BETTER", "Direction", "direction", "known_direction", "unit_scores"]

#: Metrics that are better when lower, by their own name (see the module docstring).
LOWER_IS_BETTER = frozenset(
    {
        "error_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "perplexity",
        "ppl",
        "word_perplexity",
        "byte_perplexity",
        "bits_per_byte",
        "ter",
    }
)

#: Metrics of the table that are not means of per-sample scores in [0, 1], whatever
#: their value: a bits-per-byte of 0.97 is a ratio of sums, not a proportion.
NOT_UNIT_SCORES = LOWER_IS_BETTER - {"error_rate"}

#: Where a direction came from, as a regression check's evidence records it.
Direction = Literal["policy", "results", "baseline", "known metric", "default"]


def known_direction(metric: str) -> bool | None:
    """``False`` for a metric of the table, ``None`` for any other.

    >>> known_direction("wikitext/word_perplexity,none"), known_direction("all/acc")
    (False, None)
    """
    own = metric.rsplit("/", 1)[-1].split(",", 1)[0]
    return False if own in LOWER_IS_BETTER else None


def unit_scores(metric: str) -> bool:
    """Whether a value of ``metric`` in [0, 1] may be read as a mean of [0, 1] scores
    (the bounded test on standard errors assumes it): every metric but the table's
    perplexities, bits per byte, edit rate and latencies.

    >>> unit_scores("arc/acc,none"), unit_scores("wikitext/bits_per_byte,none")
    (True, False)
    """
    return metric.rsplit("/", 1)[-1].split(",", 1)[0] not in NOT_UNIT_SCORES


def direction(
    rule_says: bool | None, metric: str, current: MetricValue, baseline: MetricValue
) -> tuple[bool, Direction]:
    """Whether higher is better for ``metric``, and which source said so (module docstring).

    >>> direction(None, "lat", MetricValue(value=1.0, higher_is_better=False),
    ...           MetricValue(value=1.0))
    (False, 'results')
    >>> direction(True, "error_rate", MetricValue(value=0.1), MetricValue(value=0.1))
    (True, 'policy')
    >>> direction(None, "error_rate", MetricValue(value=0.1), MetricValue(value=0.1))
    (False, 'known metric')
    """
    if rule_says is not None:
        return rule_says, "policy"
    if current.higher_is_better is not None:
        return current.higher_is_better, "results"
    if baseline.higher_is_better is not None:
        return baseline.higher_is_better, "baseline"
    known = known_direction(metric)
    if known is not None:
        return known, "known metric"
    return True, "default"
