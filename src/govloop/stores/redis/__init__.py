"""Fast, disposable state in Redis: window counters, joins, drift and concept-drift state.

* keys     every key family, and the builders of the keys Python writes
* lua/     the scripts that apply a batch (apply.lua) and claim due windows (close.lua),
           both on the shared watermark (order.lua), as package files
* records  the record layout those scripts read, and snapshots from closed windows
* windows  :class:`WindowStore`: one script call per batch, two-step window close
* drift    :class:`DriftStore`: drift profiles per window partial, drift state, references

What is here can be rebuilt: the SQL store is the system of record.
"""
