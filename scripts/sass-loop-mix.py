#!/usr/bin/env python3
"""scripts/sass-loop-mix.py — the SASS instruction mix of each tensor-core GEMM kernel's main loop
(for bench/RESULTS-gpu-static.md): `cuobjdump -sass` of a CUBIN, and per function the opcodes of
the loop that holds the IMMA (or, for the sm_90a wgmma kernels, IGMMA) instructions (from the
branch target before the first to the backward branch after the last one), with totals for the
whole function.

    source scripts/ci-cuda-env.sh
    python3 scripts/sass-loop-mix.py target/release/build/int8rt-*/out/kernels/gemm_mma.sm_90.cubin
"""
import collections
import os
import re
import subprocess
import sys

LINE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(?:(@!?U?P\w+)\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def parse(body):
    out = []
    for line in body.splitlines():
        m = LINE.match(line)
        if m:
            out.append((int(m.group(1), 16), m.group(3), m.group(4)))
    return out


def main():
    cuobjdump = os.environ.get("INT8RT_CUOBJDUMP", "cuobjdump")
    text = subprocess.run([cuobjdump, "-sass", sys.argv[1]], capture_output=True, text=True, check=True).stdout
    for chunk in re.split(r"\n\s*Function : ", text)[1:]:
        name = chunk.split("\n", 1)[0].strip()
        ins = parse(chunk)
        imma = [i for i, (_, op, _) in enumerate(ins) if op.startswith(("IMMA", "IGMMA"))]
        if not imma:
            continue
        first, last = imma[0], imma[-1]
        # The backward branch closing the loop: the first BRA after the last IMMA (or IGMMA) whose
        # target lies before the first.
        start = end = None
        for i in range(last, len(ins)):
            addr, op, args = ins[i]
            if op.startswith("BRA"):
                t = re.search(r"0x([0-9a-f]+)", args)
                if t and int(t.group(1), 16) <= ins[first][0]:
                    end, target = i, int(t.group(1), 16)
                    start = next(j for j, x in enumerate(ins) if x[0] >= target)
                    break
        loop = ins[start : end + 1] if start is not None else ins[first : last + 1]
        mix = collections.Counter(op.split(".")[0] for _, op, _ in loop)
        full = collections.Counter(op.split(".")[0] for _, op, _ in ins)
        top = ", ".join(f"{o} {c}" for o, c in mix.most_common())
        print(f"{name}: main loop {len(loop)} instructions ({top}); function {sum(full.values())}")


if __name__ == "__main__":
    main()
