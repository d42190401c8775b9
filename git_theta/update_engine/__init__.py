"""The clean side of updates: which update a changed parameter is stored as, and side-loaded ones waiting for it.

- auto.py: automatic deltas, the cheapest exact link on a parameter's prior version (clean, merge, compact).
- pending.py: records `git theta add --update-type` leaves for the clean filter of its own `git add`.

Below git_theta.clean (which imports both) and above the update plugins: nothing here imports clean or sideload.
"""
