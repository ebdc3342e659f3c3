"""Where a netspec train step's time goes: its XLA scratch buffer and a per-thunk profile.

    python tools/profile_step.py mixed                       # tests/fixtures/lowering/mixed_conv.yaml, b64
    python tools/profile_step.py lenet --batch 256 --top 20
    python tools/profile_step.py mixed --resident-scratch    # with netspec train's glibc setting
    python tools/profile_step.py lenet --spatial-layout nhwc # LeNet's step with channels-last blobs

Compiles the same SGD-momentum step tools/bench_train_cpu.py times (`netspec`, conv_impl="auto"), prints
its median step time and `memory_analysis()` sizes (the scratch buffer is what netspec.train.host_memory
is about), then traces `--steps` steps with jax.profiler and prints the thunks that took longest per step,
each with its output shape and the JAX operation it came from. The CPU runtime runs independent thunks on
several cores at once, so the per-thunk times overlap; convolutions that XLA runs through its own
(Eigen) library are not traced as thunks and show only in the gap to the step time. A thunk's time is not
what removing it saves: on ResNet-18 the trace put 760 ms a step on reduce-window reductions and 431 ms
on one transposing fusion, and steps compiled without them were no faster (A/Bs in the closing note of
issue #6, 2026-11-26). Confirm a lead with a whole-step A/B before acting on it.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
import tempfile
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from bench_lowering import FIXTURES, netspec_steps, timeit  # noqa: E402

NETS = {"lenet": ("lenet.yaml", (1, 28, 28), 64), "mixed": ("mixed_conv.yaml", (3, 32, 32), 64),
        "resnet18": ("resnet18_cifar.yaml", (3, 32, 32), 128)}
_HLO_LINE = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) [\w\-]+\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def hlo_ops(text: str) -> dict[str, tuple[str, str]]:
    """Instruction name -> (output shape, the tail of the JAX operation name) of optimized HLO text."""
    ops = {}
    for line in text.splitlines():
        m = _HLO_LINE.match(line)
        if m:
            on = _OP_NAME.search(line)
            ops[m.group(1)] = (m.group(2), on.group(1)[-60:] if on else "")
    return ops


def thunk_times(trace_dir: Path, names: dict[str, tuple[str, str]]) -> tuple[collections.Counter, collections.Counter]:
    """Total microseconds and call counts of the traced events that are HLO instructions of the step."""
    path = next(trace_dir.rglob("*.trace.json.gz"))
    total: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for e in json.load(gzip.open(path))["traceEvents"]:
        if e.get("ph") == "X" and "dur" in e and e["name"] in names:
            total[e["name"]] += e["dur"]
            calls[e["name"]] += 1
    return total, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("net", choices=sorted(NETS))
    ap.add_argument("--batch", type=int)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--spatial-layout", choices=("nhwc", "chwn"),
                    help="force the train net's spatial layout instead of the Model's choice (netspec.compile)")
    ap.add_argument("--resident-scratch", action="store_true",
                    help="apply netspec train's glibc setting (netspec.train.host_memory) first")
    args = ap.parse_args()
    if args.resident_scratch:
        from netspec.train.host_memory import keep_scratch_resident

        print(f"host malloc: {keep_scratch_resident()}")
    spec, shape, batch = NETS[args.net]
    batch = args.batch or batch
    s = netspec_steps(FIXTURES / spec, batch, 10, shape, spatial_layout=args.spatial_layout)
    mem = s["step_compiled"].memory_analysis()
    print(f"{args.net} b{batch}, {s['spatial_layout']} blobs: scratch {mem.temp_size_in_bytes / 2**20:.1f} MiB ({mem.temp_size_in_bytes} B), "
          f"arguments {mem.argument_size_in_bytes / 2**20:.1f} MiB, outputs {mem.output_size_in_bytes / 2**20:.1f} MiB")
    for _ in range(2):
        jax.block_until_ready(s["train"]())
    _, median = timeit(s["train"], max(args.steps, 5))  # after its own untimed first call
    print(f"step median {1e3 * median:.1f} ms")
    names = hlo_ops(s["step_compiled"].as_text())
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(args.steps):
                jax.block_until_ready(s["train"]())
        total, calls = thunk_times(Path(d), names)
    print(f"traced thunks: {sum(total.values()) / args.steps / 1e3:.1f} ms a step (overlapping)")
    print(f"{'ms/step':>8} {'calls':>5}  {'thunk':34} {'shape':30} JAX operation")
    for name, us in total.most_common(args.top):
        shape_, op = names[name]
        print(f"{us / args.steps / 1e3:8.2f} {calls[name] // args.steps:5d}  {name:34} {shape_:30} {op}")


if __name__ == "__main__":
    main()
