#!/usr/bin/env python3
"""fuzz/make-seeds.py — write the seed corpus of the load_checkpoint target: the checkpoints of
tests/data/ (and small variants) as [u16 LE config length][config.json][model.safetensors]."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "data", "ct-llmcompressor")
OUT = os.path.join(HERE, "seeds", "load_checkpoint")
os.makedirs(OUT, exist_ok=True)

model = open(os.path.join(FIX, "model.safetensors"), "rb").read()
config = json.load(open(os.path.join(FIX, "config.json")))


def seed(name, cfg, tensors):
    c = json.dumps(cfg, separators=(",", ":")).encode()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(struct.pack("<H", len(c)) + c + tensors)


seed("llmcompressor", config, model)
q = config["quantization_config"]
seed("no-groups", {"quantization_config": dict(q, config_groups={})}, model)
seed("tensors-only", {}, model)
# The smallest valid file: one F32 scalar.
hdr = b'{"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}'
seed("scalar", {}, struct.pack("<Q", len(hdr)) + hdr + b"\0\0\x80\x3f")
print("wrote seeds to", OUT)
