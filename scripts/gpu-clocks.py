#!/usr/bin/env python3
"""scripts/gpu-clocks.py (copied into the bundle) — what the card's clocks, power and temperature
did during each step of scripts/gpu-run.sh.

run.sh samples `nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,
utilization.gpu[,clocks_event_reasons.active] --format=csv,noheader,nounits -lms 200` through the
whole call into clocks.csv, and writes each step's name, start and end (seconds since the epoch)
into steps.tsv. This prints one markdown row per step: the samples taken while the GPU was busy
(utilization > 0), their SM and memory clocks (median, lowest), the highest power draw and
temperature, and every clock-event reason seen (NVML's bits: power cap, thermal and hardware
slowdowns). It is there to tell a swing in a peer's time (cuBLAS f16 at 128 and 256 rows doubled
between two H200 calls of 2026-11-28) caused by the card's clocks from one caused by the code.

    python3 gpu-clocks.py clocks.csv steps.tsv
"""
import statistics
import sys
from datetime import datetime

# NVML's clock event reasons (nvmlClocksEventReason*), the bits of clocks_event_reasons.active.
REASONS = [
    (0x1, "idle"),
    (0x2, "app-clocks"),
    (0x4, "sw-power-cap"),
    (0x8, "hw-slowdown"),
    (0x10, "sync-boost"),
    (0x20, "sw-thermal"),
    (0x40, "hw-thermal"),
    (0x80, "hw-power-brake"),
    (0x100, "display-clocks"),
]


def reasons(mask):
    names = [n for bit, n in REASONS if mask & bit]
    rest = mask & ~sum(bit for bit, _ in REASONS)
    if rest:
        names.append(hex(rest))
    return names


def number(s):
    try:
        return float(s)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def read_samples(path):
    """(epoch seconds, sm MHz, mem MHz, watts, °C, utilization %, reason mask or None) per line;
    lines that do not parse (nvidia-smi's own messages) are skipped."""
    out = []
    with open(path) as f:
        for line in f:
            cols = [c.strip() for c in line.split(",")]
            if len(cols) < 6:
                continue
            try:
                t = datetime.strptime(cols[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            except ValueError:
                continue
            sm, mem, watts, temp, util = (number(c) for c in cols[1:6])
            mask = None
            if len(cols) > 6:
                try:
                    mask = int(cols[6], 16)
                except ValueError:
                    mask = None
            out.append((t, sm, mem, watts, temp, util, mask))
    return out


def read_steps(path):
    steps = []
    with open(path) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) == 3:
                try:
                    steps.append((cols[0], float(cols[1]), float(cols[2])))
                except ValueError:
                    continue
    return steps


def row(name, samples):
    busy = [s for s in samples if s[5] is not None and s[5] > 0]
    if not busy:
        return f"| {name} | {len(samples)} (0 busy) | | | | | |"

    def col(i):
        return [s[i] for s in busy if s[i] is not None]

    def mhz(i):
        v = col(i)
        return f"{statistics.median(v):.0f} ({min(v):.0f})" if v else "n/a"

    def peak(i, fmt):
        v = col(i)
        return fmt.format(max(v)) if v else "n/a"

    seen = set()
    for s in busy:
        if s[6] is not None:
            seen.update(reasons(s[6]))
    seen.discard("idle")
    why = ", ".join(sorted(seen)) if seen else "none"
    return (f"| {name} | {len(samples)} ({len(busy)} busy) | {mhz(1)} | {mhz(2)} | "
            f"{peak(3, '{:.0f}')} | {peak(4, '{:.0f}')} | {why} |")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    samples = read_samples(argv[1])
    steps = read_steps(argv[2])
    print("| step | samples | SM MHz median (lowest), busy | memory MHz | power W, highest | "
          "°C, highest | clock-event reasons while busy |")
    print("|---|---|---|---|---|---|---|")
    for name, t0, t1 in steps:
        print(row(name, [s for s in samples if t0 <= s[0] <= t1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
