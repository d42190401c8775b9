"""`git theta add PATH --update-type T --update-data FILE`: side-loading an update file made elsewhere (e.g. PEFT).

- apply.py: applies the update to the checkpoint, stores its objects and stages the result through clean.
- peft.py: reads update files (safetensors or torch) and matches their entries to parameters.

Above git_theta.clean: sideload uses the clean filter, the clean filter never imports sideload.
"""
