"""The interface an update type plugin implements.

A parameter group is stored as a chain of links (see git_theta.metadata):
the first link needs no base (e.g. `dense`), each later link is an update
applied to the value the links before it produce. A link's object is a
Bundle: named buffers plus small JSON fields. An update that builds on a
base records the base tensor's hash in its fields, so the chain is tied to
content, never to a commit or a path.

Register an update type in your package's setup.py:

    entry_points={"git_theta.updates": ["myupdate = mypkg.module:MyUpdate"]}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from git_theta.objects import Bundle
from git_theta.tensor import Tensor


class UpdateType(ABC):
    """How one stored link turns into (or onto) a tensor."""

    name: ClassVar[str]
    # False: the link stands alone (starts a chain); True: it applies to a base.
    needs_base: ClassVar[bool] = True

    @abstractmethod
    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        """The tensor this link produces, given the value of the chain before it."""

    def encode(self, new: Tensor, base: Tensor | None) -> Bundle | None:
        """An exact representation of `new` (on top of `base`), or None if this type cannot express it.

        Used by automatic update selection; types that only come from
        side-loaded data (e.g. LoRA factors) keep the default None.
        """
        return None
