"""The fast path's unpickler resolves only its stand-ins: a weights-only pickle loads, anything else is Unsupported."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch

from git_theta.checkpoints.pytorch.unpickler import FakeTensor, Unpickler, Unsupported


def data_pkl(obj: object) -> bytes:
    """The data.pkl member torch.save writes for `obj`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    return archive.read(next(name for name in archive.namelist() if name.endswith("/data.pkl")))


def test_a_state_dict_loads_as_stand_ins_with_its_storages() -> None:
    unpickler = Unpickler(data_pkl(OrderedDict(w=torch.zeros(2, 3, dtype=torch.bfloat16), n=torch.arange(4))))
    loaded = unpickler.load()
    assert isinstance(loaded, OrderedDict) and list(loaded) == ["w", "n"]
    assert isinstance(loaded["w"], FakeTensor) and loaded["w"].shape == (2, 3) and loaded["w"].dtype == "bfloat16"
    assert sorted((s.dtype, s.numel) for s in unpickler.storages.values()) == [("bfloat16", 6), ("int64", 4)]


def test_any_other_global_is_unsupported_and_nothing_is_imported() -> None:
    hostile = pickle.dumps(io.StringIO)  # a global the stand-ins do not know
    with pytest.raises(Unsupported, match="global _io.StringIO"):
        Unpickler(hostile).load()
