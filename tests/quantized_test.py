"""Which groups hold bytes that are not values: packed dtypes, GPTQ/AWQ and bitsandbytes quantized weights."""

from __future__ import annotations

from git_theta.quantized import opaque_reason

# A bitsandbytes 4-bit layer, an 8-bit one and a GPTQ one, as transformers saves them, plus plain tensors.
NAMES = [
    "l4.weight", "l4.weight.absmax", "l4.weight.quant_map", "l4.weight.quant_state.bitsandbytes__nf4", "l4.bias",
    "l8.weight", "l8.SCB", "l8.weight_format",
    "q.qweight", "q.qzeros", "q.scales", "q.g_idx",
    "plain.weight", "outer.weight", "outer.inner.weight.absmax",
]  # fmt: skip


def test_packed_gptq_and_bitsandbytes_groups_are_named_and_their_states_and_plain_tensors_are_not() -> None:
    assert opaque_reason("x", "F4") == "packed F4"
    assert opaque_reason("x", "F6_E3M2") == "packed F6_E3M2"
    assert opaque_reason("x", "C64") == "complex C64"
    assert opaque_reason("q.qweight", "I32", NAMES) == "GPTQ/AWQ-packed I32"
    assert opaque_reason("q.qzeros", "I32", NAMES) == "GPTQ/AWQ-packed I32"
    assert opaque_reason("l4.weight", "U8", NAMES) == "bitsandbytes-quantized U8"
    assert opaque_reason("l8.weight", "I8", NAMES) == "bitsandbytes-quantized I8"
    for name, dtype in [("l4.weight.absmax", "F32"), ("l8.SCB", "F32"), ("q.scales", "F16"), ("q.g_idx", "I32"),
                        ("plain.weight", "U8"), ("l4.bias", "I32"), ("q.qweight", "F32")]:  # fmt: skip
        assert opaque_reason(name, dtype, NAMES) is None, name
    # a state of a nested module marks that module's weight, not its parent's
    assert opaque_reason("outer.weight", "U8", NAMES) is None
    assert opaque_reason("outer.inner.weight", "U8", [*NAMES, "outer.inner.weight"]) == "bitsandbytes-quantized U8"
