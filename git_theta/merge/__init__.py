"""Merging checkpoints: plan on metadata, choose strategies by policy or prompt, compute one parameter at a time.

- plan.py: which parameters are settled by metadata alone and which conflict.
- policy.py: `.thetamerge.toml`, git config and command-line choices of strategy.
- resolve.py: a choice per conflicting parameter, or the message saying how to resolve.
- prompt.py: the interactive prompt on the terminal.
- chooser.py: puts command line, git config, policy file and prompt together.
- engine.py: loads, merges and stores conflicting parameters; builds the merged metadata.
- reference.py: the strategy reference in docs/merging.md, generated from the declared arguments.
"""
