"""Pure statistics: sketches, drift tests, change detectors, online metrics.

Plain data in, plain data out, deterministic with a seed, no I/O: importing
this package loads numpy, scipy, scikit-learn and datasketches, and no faust,
redis or sqlmodel.  The stream worker and the CLI are thin adapters around it.

* sketches       bounded-memory summaries of numeric and categorical values
* drift_tests    two-sample tests between sketches (KS, PSI, Wasserstein, JS, chi-square)
* multivariate   domain-classifier and MMD tests over windows of rows or embeddings
* fleet          one false-alarm budget for many tests (Holm, Benjamini-Hochberg)
* profile        a sketch per feature, and drift between two profiles
* adwin, page_hinkley, cusum   sequential change detectors with River's contract
* calibrated     a CUSUM bank calibrated by simulation to a stated false-alarm rate
* metrics, cbpe  online metrics, and accuracy estimated before labels arrive
* binning        histogram-binning calibration of that estimate, from per-bin counters
* quantiles, windows           latency sketch and window counters of the stream worker
* significance  one-sided tests of a regression against a baseline (counts or standard errors)
"""

from govloop.stats.adwin import ADWIN
from govloop.stats.binning import CONFIDENCE_EDGES, BinnedCalibration
from govloop.stats.calibrated import CalibratedDetector, Calibration, calibrate, calibrated
from govloop.stats.cbpe import (
    AccuracyEstimate,
    Calibrator,
    ConfidenceBasedAccuracy,
    EstimateCheck,
    top_class,
)
from govloop.stats.cusum import CUSUM
from govloop.stats.detector import DriftDetector
from govloop.stats.drift_tests import (
    DriftTestResult,
    categorical_drift,
    chi_square,
    jensen_shannon,
    ks,
    numeric_drift,
    psi,
    wasserstein,
)
from govloop.stats.fleet import FleetBudget, benjamini_hochberg, holm
from govloop.stats.metrics import (
    ECE,
    F1,
    MAE,
    RMSE,
    Accuracy,
    Brier,
    ErrorRate,
    LatencyQuantiles,
    MacroF1,
    MeanRating,
    Metric,
    PositiveRate,
)
from govloop.stats.multivariate import MultivariateDriftResult, domain_classifier_test, mmd_test
from govloop.stats.page_hinkley import PageHinkley
from govloop.stats.profile import FeatureDrift, Profile, compare, drifted_features
from govloop.stats.quantiles import bucket_of, bucket_value, quantile_from_buckets
from govloop.stats.significance import DropTest, mean_estimate, proportion_drop, stderr_drop
from govloop.stats.sketches import CategoricalCounts, NumericSketch
from govloop.stats.windows import (
    CONFIDENCE_SCALE,
    COUNTERS,
    sliding_counters,
    summarize_window,
    window_start,
)

__all__ = [
    "ADWIN",
    "CONFIDENCE_EDGES",
    "CONFIDENCE_SCALE",
    "COUNTERS",
    "CUSUM",
    "ECE",
    "F1",
    "MAE",
    "RMSE",
    "Accuracy",
    "AccuracyEstimate",
    "BinnedCalibration",
    "Brier",
    "CalibratedDetector",
    "Calibration",
    "Calibrator",
    "CategoricalCounts",
    "ConfidenceBasedAccuracy",
    "DriftDetector",
    "DriftTestResult",
    "DropTest",
    "ErrorRate",
    "EstimateCheck",
    "FeatureDrift",
    "FleetBudget",
    "LatencyQuantiles",
    "MacroF1",
    "MeanRating",
    "Metric",
    "MultivariateDriftResult",
    "NumericSketch",
    "PageHinkley",
    "PositiveRate",
    "Profile",
    "benjamini_hochberg",
    "bucket_of",
    "bucket_value",
    "calibrate",
    "calibrated",
    "categorical_drift",
    "chi_square",
    "compare",
    "domain_classifier_test",
    "drifted_features",
    "holm",
    "jensen_shannon",
    "ks",
    "mean_estimate",
    "mmd_test",
    "numeric_drift",
    "proportion_drop",
    "psi",
    "quantile_from_buckets",
    "sliding_counters",
    "stderr_drop",
    "summarize_window",
    "top_class",
    "wasserstein",
    "window_start",
]
