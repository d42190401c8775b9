"""Update types: how a parameter group's new value is stored (whole, sparse, low-rank, ...).

Only the plugins live here (base.py is the plugin interface; one module per built-in). The code that picks
and records updates is in git_theta.update_engine (the clean side) and git_theta.sideload (`git theta add
--update-type`), so this package imports neither.
"""
