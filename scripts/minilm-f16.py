#!/usr/bin/env python3
"""scripts/minilm-f16.py — rewrite a safetensors file with every F32 tensor stored as F16 (numpy
only). Used to carry all-MiniLM-L6-v2 (90 MB in f32) to a GPU machine under the device tool's
64 MiB limit; the example then runs the f16-rounded weights, upcast, as its "f32" model.

    python3 scripts/minilm-f16.py models/all-MiniLM-L6-v2/model.safetensors OUT.safetensors
"""
import json
import struct
import sys

import numpy as np


def main() -> int:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out_header, chunks, off = {}, [], 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        raw = data[a:b]
        dtype = t["dtype"]
        if dtype == "F32":
            raw = np.frombuffer(raw, dtype="<f4").astype("<f2").tobytes()
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if meta is not None:
        out_header["__metadata__"] = meta
    hb = json.dumps(out_header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for c in chunks:
            f.write(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
