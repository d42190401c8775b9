"""Merging checkpoints: plan on metadata, choose strategies by policy or prompt, compute one parameter at a time.

- strategies/: the merge strategy plugins (base.py is the plugin interface; one module per built-in strategy).
- plan.py: which parameters are settled by metadata alone and which conflict.
- choose.py: the one place that decides each conflicting parameter's strategy (command line, git config,
  policy file, prompt, in that order).
- policy.py: the `.thetamerge.toml` parser and the git config and command-line choices it is weighed against.
- prompt.py: the interactive prompt on the terminal.
- unresolved.py: the error, and the message saying how to resolve, when no choice covers a parameter.
- engine.py: loads, merges and stores conflicting parameters; builds the merged metadata.
- local_changes.py: uncommitted edits a merge would lose: finding them, refusing, keeping a backup.
- driver.py: git's merge driver (`git theta merge-driver`): the three-way merge of one conflicted file.
- revisions.py: `git theta merge`: N revisions of a checkpoint, or the redo of a conflicted one, written and staged.
- reference.py: the strategy reference in docs/merging.md, generated from the declared arguments.
"""
