"""Everything that renders checkpoints as text, from metadata alone wherever it can.

- view.py: the one-line-per-group text view git line-diffs (`git theta textconv`, the diff driver).
- changes.py: what changed between two versions (added, removed, modified groups), shared by every view.
- tables.py: plain-text tables and terminal colour for `git theta diff`, `log` and `show`.
- invoker.py: which git command started the filter, so a display-only one gets metadata, not a rebuilt model.
- identify.py: which committed metadata a rebuilt checkpoint came from (textconv mostly receives those).

No imports here: the textconv console script starts once per file version git shows.
"""
