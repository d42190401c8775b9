"""The PyTorch checkpoint format (`torch.save` files), one package with its helpers.

- format.py: PytorchFormat, the plugin (entry point "pytorch"): torch.load(weights_only=True) and torch.save.
- zip_reader.py: the torch-free fast path for zip-layout files, read and rebuilt byte for byte.
- unpickler.py: the restricted unpickler of that fast path (stand-ins, imports nothing).
- tree.py: the JSON structure tree of what a file holds around its tensors.

The zip skeleton (checkpoints/zip_layout.py) stays beside the formats: .npz uses it too.
"""

from git_theta.checkpoints.pytorch.format import PytorchFormat, to_torch

__all__ = ["PytorchFormat", "to_torch"]
