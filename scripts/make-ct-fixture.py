#!/usr/bin/env python3
"""scripts/make-ct-fixture.py — write tests/data/ct-llmcompressor/: a tiny int8 checkpoint in the
compressed-tensors layout with llm-compressor's conventions, produced independently of int8rt
(numpy + the reference `safetensors` writer), plus the outputs an independent float64 numpy
computation gives for it. tests/io_compressed.rs checks that int8rt reads it with the stored scales
and computes the same outputs.

Conventions reproduced (compressed-tensors / llm-compressor):
  * weights: symmetric int8 per output channel, scale = absmax / 127.5 computed in the model dtype
    (f16 here), q = clamp(round_half_even(w / scale), -128, 127); `weight_scale` shape (out, 1)
  * group "W8A8": inputs int8 per token, dynamic: nothing stored
  * group "static": inputs int8 per tensor, static: `input_scale` (1,), symmetric
  * `ignore`: ["lm_head"], whose weight stays float

Run:  python3 -m pip install numpy safetensors && python3 scripts/make-ct-fixture.py
"""
import json
import os

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "ct-llmcompressor")
rng = np.random.default_rng(20240611)


def quantize_channel(w16):
    """llm-compressor per-channel int8: scale in the weight dtype, [-128, 127], ties to even."""
    absmax = np.abs(w16.astype(np.float32)).max(axis=1, keepdims=True)
    scale16 = (absmax / np.float32(127.5)).astype(np.float16)
    q = np.clip(np.rint(w16.astype(np.float32) / scale16.astype(np.float32)), -128, 127)
    return q.astype(np.int8), scale16


tensors = {}
layers = {
    "model.layers.0.mlp.up_proj": (24, 16),
    "model.layers.0.mlp.down_proj": (16, 24),
    "model.layers.0.self_attn.o_proj": (16, 16),
}
for name, (out_f, in_f) in layers.items():
    w = (rng.standard_normal((out_f, in_f)) * 0.05).astype(np.float16)
    w[0, 3] = np.float16(0.4)  # an outlier so one channel's scale differs a lot
    q, s = quantize_channel(w)
    tensors[name + ".weight"] = q
    tensors[name + ".weight_scale"] = s
    tensors[name + ".bias"] = (rng.standard_normal(out_f) * 0.1).astype(np.float16)
# The static layer: an input scale as llm-compressor's min-max observer stores it (absmax/127.5).
x_static_absmax = np.float32(3.0)
tensors["model.layers.0.self_attn.o_proj.input_scale"] = np.array(
    [x_static_absmax / np.float32(127.5)], dtype=np.float16
)
tensors["lm_head.weight"] = (rng.standard_normal((8, 16)) * 0.05).astype(np.float16)
tensors["model.norm.weight"] = np.ones(16, dtype=np.float16)

config = {
    "architectures": ["TinyForTest"],
    "torch_dtype": "float16",
    "quantization_config": {
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "quantization_status": "compressed",
        "global_compression_ratio": None,
        "kv_cache_scheme": None,
        "config_groups": {
            "W8A8": {
                "targets": ["re:.*mlp.*"],
                "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel",
                            "dynamic": False, "group_size": None, "observer": "minmax",
                            "observer_kwargs": {}, "block_structure": None, "actorder": None},
                "input_activations": {"num_bits": 8, "type": "int", "symmetric": True,
                                      "strategy": "token", "dynamic": True, "group_size": None,
                                      "observer": None, "observer_kwargs": {},
                                      "block_structure": None, "actorder": None},
                "output_activations": None,
                "format": "int-quantized",
            },
            "static": {
                "targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel",
                            "dynamic": False, "observer": "minmax"},
                "input_activations": {"num_bits": 8, "type": "int", "symmetric": True,
                                      "strategy": "tensor", "dynamic": False, "observer": "minmax"},
                "output_activations": None,
            },
        },
        "ignore": ["lm_head"],
    },
}

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
with open(os.path.join(OUT, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")


# Expected outputs, computed in float64 from the stored integers and scales.
def fq_rows(x, divisor, lo):
    """Dynamic per-token symmetric int8 of the inputs, vLLM's kernel: absmax/127 over [-127, 127]."""
    amax = np.abs(x).max(axis=1, keepdims=True).astype(np.float32)
    s = np.where(amax == 0, np.float32(1), amax / np.float32(divisor)).astype(np.float32)
    q = np.clip(np.rint(x / s), lo, 127)
    return q, s


expected = {}
m = 5
for name, (out_f, in_f) in layers.items():
    x = (rng.standard_normal((m, in_f)) * 1.5).astype(np.float32)
    q = tensors[name + ".weight"].astype(np.float64)
    s_w = tensors[name + ".weight_scale"].astype(np.float64).reshape(1, out_f)
    b = tensors[name + ".bias"].astype(np.float64)
    if name.endswith("o_proj"):
        s_x = np.float64(tensors[name + ".input_scale"].astype(np.float32)[0])
        qx = np.clip(np.rint(x / np.float32(s_x)), -128, 127).astype(np.float64)
        y = (qx @ q.T) * s_w * s_x + b
    else:
        qx, s_x = fq_rows(x, 127, -127)
        y = (qx.astype(np.float64) @ q.T) * s_w * s_x.astype(np.float64) + b
    expected[name + ".x"] = x
    expected[name + ".y"] = y.astype(np.float32)
save_file(expected, os.path.join(OUT, "expected.safetensors"))
print("wrote", os.path.abspath(OUT))
