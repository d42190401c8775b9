"""docs/security.md states the limits: each number it gives is the code's."""

from __future__ import annotations

from pathlib import Path

import pytest

from git_theta import files, gc, metadata, objects, sharded
from git_theta.checkpoints import base, flax_msgpack, gguf, npz, onnx, safetensors, tensor_bundle, zip_layout
from git_theta.checkpoints.pytorch import tree as torch_tree
from git_theta.checkpoints.pytorch import zip_reader as torch_zip
from git_theta.merge import mergekit, policy, settings
from git_theta.sideload import peft
from git_theta.transfer import lfs_http
from git_theta.update_engine import pending

DOC = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()

MiB = 1 << 20

# (the constant, the value the doc gives, the words of the doc's table row that say it)
STATED = [
    (metadata.MAX_BYTES, 256 * MiB, "| metadata file | 256 MiB |"),
    (metadata.MAX_DEPTH, 64, "| metadata nesting depth | 64 |"),
    (metadata.MAX_LINKS, 256, "| links in one parameter's chain | 256 |"),
    (metadata.MAX_NDIM, 64, "| dimensions of a shape / elements | 64 / 2^62 |"),
    (metadata.MAX_ELEMENTS, 1 << 62, "| dimensions of a shape / elements | 64 / 2^62 |"),
    (objects.MAX_HEADER_BYTES, 16 * MiB, "| object header | 16 MiB, depth 64 |"),
    (objects.MAX_HEADER_DEPTH, 64, "| object header | 16 MiB, depth 64 |"),
    (objects.link_limit(1000), 16 * 1000 + 64 * 1024, "| 16 x N + 64 KiB |"),
    (objects.MAX_BLOB_BYTES, 256 * MiB, "| file-level blob (header, skeleton) | 256 MiB |"),
    (safetensors.MAX_HEADER_BYTES, 100 * MiB, "| 2 B to 100 MiB, 1,000,000 tensors |"),
    (safetensors.MAX_TENSORS, 1_000_000, "| 2 B to 100 MiB, 1,000,000 tensors |"),
    (sharded.MAX_INDEX_BYTES, 64 * MiB, "| sharded model index (`*.index.json`) | 64 MiB, 1,000,000 tensors |"),
    (sharded.MAX_INDEX_TENSORS, 1_000_000, "| 64 MiB, 1,000,000 tensors | `sharded."),
    (base.MAX_RANK, 64, "| a tensor's rank / bytes | 64 / 2^63 - 1 |"),
    (base.MAX_TENSOR_BYTES, (1 << 63) - 1, "| a tensor's rank / bytes | 64 / 2^63 - 1 |"),
    (torch_zip.MAX_PICKLE_BYTES, 256 * MiB, "| 256 MiB; depth 32; 4,000,000 nodes; 100,000 nodes copied"),
    (torch_tree.MAX_DEPTH, 32, "depth 32; 4,000,000 nodes"),
    (torch_tree.MAX_NODES, 4_000_000, "4,000,000 nodes; 100,000 nodes copied"),
    (torch_tree.MAX_COPIED_NODES, 100_000, "100,000 nodes copied"),
    (zip_layout.MAX_MEMBERS, 1_000_000, "| 1,000,000; declared size <= 1032 x compressed |"),
    (zip_layout.MAX_DEFLATE_RATIO, 1032, "declared size <= 1032 x compressed"),
    (npz.MAX_NPY_HEADER, MiB, "| .npy header | 1 MiB |"),
    (gguf.MAX_HEADER_BYTES, 64 * MiB, "| GGUF header / skeleton | 64 MiB / 128 MiB;"),
    (gguf.MAX_SKELETON_BYTES, 128 * MiB, "| GGUF header / skeleton | 64 MiB / 128 MiB;"),
    (gguf.MAX_TENSORS, 1_000_000, "1,000,000 tensors, 1,000,000 keys"),
    (gguf.MAX_KV, 1_000_000, "1,000,000 tensors, 1,000,000 keys"),
    (gguf.MAX_ARRAY_DEPTH, 8, "arrays 8 deep"),
    (gguf.MAX_ALIGNMENT, MiB, "alignment <= 1 MiB |"),
    (onnx.MAX_MODEL_BYTES, 2048 * MiB - 1, "| ONNX model | 2^31 - 1 bytes; varints 10 bytes;"),
    (onnx.MAX_VARINT_BYTES, 10, "varints 10 bytes"),
    (onnx.MAX_GRAPH_DEPTH, 32, "subgraphs 32 deep"),
    (onnx.MAX_TENSORS, 1_000_000, "subgraphs 32 deep; 1,000,000 tensors"),
    (flax_msgpack.MAX_MSGPACK_DEPTH, 256, "| Flax msgpack | depth 256;"),
    (flax_msgpack.MAX_MSGPACK_ITEMS, 10_000_000, "depth 256; 10,000,000 values;"),
    (flax_msgpack.MAX_FLAX_ARRAYS, 1_000_000, "10,000,000 values; 1,000,000 arrays;"),
    (flax_msgpack.MAX_FLAX_NAME_BYTES, 4096, "1,000,000 arrays; 4,096-byte names |"),
    (tensor_bundle.MAX_INDEX_BYTES, 256 * MiB, "| TensorFlow `.index` | 256 MiB; 1,000,000 variables"),
    (tensor_bundle.MAX_ENTRIES, 1_000_000, "256 MiB; 1,000,000 variables; 4 KiB keys"),
    (tensor_bundle.MAX_KEY_BYTES, 4 * 1024, "1,000,000 variables; 4 KiB keys, 128 MiB of keys"),
    (tensor_bundle.MAX_KEY_TOTAL_BYTES, 128 * MiB, "4 KiB keys, 128 MiB of keys; 100,000 shards |"),
    (tensor_bundle.MAX_SHARDS, 100_000, "128 MiB of keys; 100,000 shards |"),
    (policy.MAX_POLICY_BYTES, MiB, "| 1 MiB, 256 rules, 1024-character strings, 64-value lists"),
    (policy.MAX_RULES, 256, "256 rules"),
    (policy.MAX_TEXT_CHARS, 1024, "1024-character strings"),
    (policy.MAX_LIST_ITEMS, 64, "64-value lists"),
    (settings.MAX_VALUES, 64, "| 64 values or versions; layer numbers 0 to 1,000,000 |"),
    (settings.MAX_LAYER, 1_000_000, "layer numbers 0 to 1,000,000 |"),
    (mergekit.MAX_CONFIG_BYTES, MiB, "| 1 MiB, nesting depth 16, no YAML aliases, 64 models |"),
    (mergekit.MAX_DEPTH, 16, "nesting depth 16"),
    (mergekit.MAX_MODELS, 64, "64 models |"),
    (peft.MAX_ADAPTER_CONFIG_BYTES, MiB, "| `adapter_config.json` | 1 MiB"),
    (pending.MAX_RECORD_BYTES, 64 * MiB, "| pending side-load record | 64 MiB |"),
    (lfs_http.MAX_JSON_BYTES, 16 * MiB, "| 16 MiB / 64 KiB |"),
    (lfs_http.MAX_ERROR_BODY_BYTES, 64 * 1024, "| 16 MiB / 64 KiB |"),
    (lfs_http.MAX_REDIRECTS, 3, "| redirects | 3, http(s) only |"),
    (lfs_http.Settings.timeout, 60.0, "`lfs.activitytimeout` (60 s)"),
    (lfs_http.Settings.dial_timeout, 30.0, "`lfs.dialtimeout` (30 s)"),
    (lfs_http.WAIT_NOTICE_SECONDS, 5.0, 'a "waiting for" line after 5 s'),
    (files.STALE_SECONDS, 300, "else after 300 s"),
    (gc.DEFAULT_GRACE_SECONDS, 3600, "| gc grace | 1 hour |"),
]


@pytest.mark.parametrize("constant, stated, words", STATED, ids=[words for _, _, words in STATED])
def test_each_limit_the_doc_states_is_the_code_s(constant: float, stated: float, words: str) -> None:
    assert words in DOC, f"docs/security.md no longer says {words!r}"
    assert constant == stated, f"docs/security.md says {words!r}, the code has {constant}"
