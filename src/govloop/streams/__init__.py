"""The stream worker: thin adapters from the input topics to judging, stats and gates.

* app        the faust app: one group member feeding raw batches to the hot path
* hot_path   :class:`~govloop.streams.hot_path.InputBatches`, the batch steps below
* decode     raw records -> events or dead letters
* ingest     predictions and feedback -> Redis window and drift state
* judge      snapshots and drift alerts -> recorded gate decisions
* close      due windows -> metric snapshots and drift rounds
* observes   concept-drift observes, chained in release order
* monitor    data drift per window (profiles, the reference, the windowed explanation)
* detectors  data drift as it happens (a calibrated detector per feature, alerts)
* concept    concept drift (calibrated detectors on the join outcomes)
* calibration  the fleet's false-alarm budget and the detectors' calibrations
* reference  reference profiles from a time range of the predictions topic
* worker     run one worker process
"""
