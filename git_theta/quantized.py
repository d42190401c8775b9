"""Tensors whose bytes are not real values: packed sub-byte dtypes, complex, integer-quantized weights.

Their bytes are kept, hashed, deduplicated and delta-encoded exactly like any
other tensor's; only arithmetic on them is meaningless. A GPTQ/AWQ `qweight`
is an I32 tensor holding eight 4-bit codes per element, a bitsandbytes 4-bit
weight is U8 codes next to a quant state, an 8-bit one I8 codes next to its
`SCB` scales: a norm or an average of those integers is not one of the
weights. `opaque_reason` names why, for the numeric diff (which shows such a
group by hash and size only) and for merges that must refuse value arithmetic.
"""

from __future__ import annotations

from collections.abc import Collection

from git_theta import dtypes

# Name endings of GPTQ / AWQ packed integer tensors (auto-gptq, autoawq, optimum, transformers' quantizers).
GPTQ_SUFFIXES = (".qweight", ".qzeros")
# Siblings "<module>.<state>" that mark "<module>.weight" as bitsandbytes-quantized (as transformers saves it):
# 8-bit keeps SCB, 4-bit weight.absmax, weight.quant_map, ..., weight.quant_state.bitsandbytes__nf4 / __fp4.
BITSANDBYTES_STATES = ("SCB", "weight.absmax", "weight.quant_map", "weight.nested_absmax", "weight.nested_quant_map")
BITSANDBYTES_STATE_PREFIX = "weight.quant_state."
INTEGER_DTYPES = frozenset({"I8", "U8", "I16", "U16", "I32", "U32", "I64", "U64"})


def opaque_reason(name: str, dtype: str, names: Collection[str] = ()) -> str | None:
    """Why group `name` of `dtype` holds no comparable values (given the other group `names` of its file), or None."""
    if dtype in dtypes.PACKED:
        return f"packed {dtype}"
    if dtype == "C64":
        return "complex C64"  # the numbers are computed in real float64
    if dtype not in INTEGER_DTYPES:
        return None
    if name.endswith(GPTQ_SUFFIXES):
        return f"GPTQ/AWQ-packed {dtype}"
    if dtype in ("U8", "I8") and _has_bitsandbytes_state(name, names):
        return f"bitsandbytes-quantized {dtype}"
    return None


def _has_bitsandbytes_state(name: str, names: Collection[str]) -> bool:
    """True if weight `name` ("<module>.weight") has a bitsandbytes state sibling in `names`."""
    if not name.endswith(".weight"):
        return False
    module = name.removesuffix("weight")
    for other in names:
        state = other[len(module) :] if other.startswith(module) else ""
        if state in BITSANDBYTES_STATES or state.startswith(BITSANDBYTES_STATE_PREFIX):
            return True
    return False
