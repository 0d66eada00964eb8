"""Judging: the pure path from events and policies to decisions.

* :mod:`govloop.judging.gates`  (policy, evidence, baseline) -> (gate result, manifest), for a
  metric snapshot online and for a results file offline: one path for both
* :mod:`govloop.judging.drift`  one round of drift decisions at window close, and each
  feature's hysteresis
* :mod:`govloop.judging.features`  which numbers and categories a prediction contributes:
  one table of derived features that every path reads
"""
