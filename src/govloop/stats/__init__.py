"""Pure statistics: sketches, window metrics, drift tests, sequential tests.

Plain data in, plain data out, deterministic with a seed, no I/O: importing
this package loads no faust, redis or sqlmodel.
"""

from govloop.stats.quantiles import bucket_of, bucket_value, quantile_from_buckets
from govloop.stats.windows import COUNTERS, summarize_window, window_start

__all__ = [
    "COUNTERS",
    "bucket_of",
    "bucket_value",
    "quantile_from_buckets",
    "summarize_window",
    "window_start",
]
