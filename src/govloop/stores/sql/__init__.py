"""The system of record in SQL: SQLite by default, PostgreSQL in production.

* tables     every table, in one module
* engine     the engine factory, schema creation, the idempotent insert
* snapshots  metric snapshots
* gates      gate policies, results and online gate state
* drift      drift alerts, drift status, reference profiles
* calibration  the accuracy estimate's calibration map per model version
* baselines  named, versioned baselines

Nothing here writes the audit ledger: a row that must enter it is recorded
with its entry by :mod:`govloop.audit.records`.
"""

from govloop.stores.sql.baselines import (
    baseline_metrics,
    baseline_versions,
    get_baseline,
    latest_baseline_version,
    list_baselines,
    parse_ref,
    resolve_baseline,
)
from govloop.stores.sql.calibration import (
    Calibration,
    ReferenceWindow,
    calibrate_windows,
    fitted_calibration,
    latest_calibration,
)
from govloop.stores.sql.drift import (
    active_drift,
    drift_status,
    latest_reference,
    references,
    save_drift_alert,
    save_reference,
)
from govloop.stores.sql.engine import create_engine_for, init_db, insert_once
from govloop.stores.sql.gates import advance_gate, gate_result_row, gate_results, policy_row
from govloop.stores.sql.snapshots import (
    latest_snapshot,
    save_snapshot,
    version_windows,
    window_metrics,
)
from govloop.stores.sql.tables import (
    BaselineRow,
    CalibrationRow,
    DriftAlertRow,
    DriftStatusRow,
    GatePolicyRow,
    GateResultRow,
    GateStateRow,
    LedgerEntry,
    LedgerHead,
    ManifestRow,
    MetricSnapshotRow,
    ReferenceProfileRow,
)

__all__ = [
    "BaselineRow",
    "Calibration",
    "CalibrationRow",
    "DriftAlertRow",
    "DriftStatusRow",
    "GatePolicyRow",
    "GateResultRow",
    "GateStateRow",
    "LedgerEntry",
    "LedgerHead",
    "ManifestRow",
    "MetricSnapshotRow",
    "ReferenceProfileRow",
    "ReferenceWindow",
    "active_drift",
    "advance_gate",
    "baseline_metrics",
    "baseline_versions",
    "calibrate_windows",
    "create_engine_for",
    "drift_status",
    "fitted_calibration",
    "gate_result_row",
    "gate_results",
    "get_baseline",
    "init_db",
    "insert_once",
    "latest_baseline_version",
    "latest_calibration",
    "latest_reference",
    "latest_snapshot",
    "list_baselines",
    "parse_ref",
    "policy_row",
    "references",
    "resolve_baseline",
    "save_drift_alert",
    "save_reference",
    "save_snapshot",
    "version_windows",
    "window_metrics",
]
