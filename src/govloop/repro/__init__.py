"""Reproducing decisions: every gate result recomputed from its manifest's exact inputs.

* replay  load a gate result, its manifest and policy; judge again; name every difference
* inputs  re-read a manifest's inputs (the Kafka record, or the SQL store's copy) and hold
          each to its recorded SHA-256
"""

from govloop.repro.inputs import ReplayError, read_record
from govloop.repro.replay import Replay, compare_results, replay

__all__ = ["Replay", "ReplayError", "compare_results", "read_record", "replay"]
