"""The public API, pinned: a change to these lists is a deliberate, reviewed decision."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "govloop": ["GovloopError", "Settings", "__version__"],
    "govloop.client": ["MAX_ATTEMPTS", "PRODUCER_DEFAULTS", "Govloop", "SdkStats", "pick_variant"],
    "govloop.schemas": [
        "TOPICS",
        "Assignment",
        "DatasetEvent",
        "DeadLetter",
        "DriftAlert",
        "Event",
        "ExperimentEvent",
        "Feedback",
        "GateResult",
        "Label",
        "MetricSnapshot",
        "Outcome",
        "Prediction",
        "RuleResult",
        "SampleSelected",
        "Scalar",
        "Topic",
        "decode",
        "describe_validation_error",
        "export_json_schemas",
        "json_schema",
        "new_event_id",
        "topic_of",
        "utcnow",
    ],
    "govloop.gates": [
        "DriftRule",
        "DriftSignal",
        "Evidence",
        "FairnessFinding",
        "FairnessRule",
        "MetricValue",
        "Policy",
        "RegressionRule",
        "ResultsFile",
        "Rule",
        "RuleReport",
        "SafetyRule",
        "Sample",
        "Verdict",
        "check",
        "combine",
        "evaluate",
        "evaluate_rule",
        "fairness_evaluators",
        "judge",
        "judge_snapshot",
        "load_policies",
        "load_policy",
        "load_results",
        "metrics_from_snapshots",
        "parse_policy",
        "parse_results",
        "policy_json_schema",
        "pool_baselines",
        "register_fairness_evaluator",
        "unregister_fairness_evaluator",
    ],
    "govloop.stats": [
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
    ],
}


@pytest.mark.parametrize("module", PUBLIC)
def test_all_is_pinned(module: str) -> None:
    assert importlib.import_module(module).__all__ == PUBLIC[module]


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in PUBLIC.items() for n in names])
def test_each_name_is_importable(module: str, name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module} import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module", PUBLIC)
def test_all_has_no_duplicates(module: str) -> None:
    names = importlib.import_module(module).__all__
    assert len(set(names)) == len(names)


def test_version_matches_the_distribution() -> None:
    import govloop

    assert govloop.__version__ == importlib.metadata.version("govloop")
