"""Training throughput on the CPU: netspec vs the hand-written Flax model vs PyTorch eager, one process.

    python tools/bench_train_cpu.py                 # all cases, about 6 minutes on 2 cores
    python tools/bench_train_cpu.py --quick         # fewer rounds
    python tools/bench_train_cpu.py --cases lenet64,mixed --json out.json
    python tools/bench_train_cpu.py --end-to-end    # also `netspec train specs/lenet.yaml`, xla vs auto
    python tools/bench_train_cpu.py --resident-scratch  # netspec train's glibc setting, whole process

Cases: Caffe LeNet at batch 64 and 256, CIFAR ResNet-18 at batch 128, and a net with strided, dilated and
grouped convolutions (tests/fixtures/lowering/mixed_conv.yaml) at batch 64. Each case times one jitted
SGD-momentum step (forward, backward, update) of:

- `netspec`: netspec.compile with the default conv_impl="auto" (oneDNN's convolution kernels where the
  library is installed, netspec's own convolution and pooling gradients where they pay, netspec.kernels);
- `ns-planned` (where `netspec` runs oneDNN): conv_impl="planned", netspec's own formulations without the
  library (`--conv-impl planned`);
- `ns-ynn` (with --library-convs): the `netspec` step compiled with XLA:CPU's defaults instead of
  Model.compiler_options, i.e. with YNNPACK's convolutions (docs/performance.md item 6);
- `ns-nhwc` (with --channels-last, for nets where `netspec` trains batch-minor): the `netspec` step with
  its spatial blobs channels-last instead (netspec.compile(spatial_layout="nhwc"), docs/performance.md
  item 9);
- `ns-xla`: conv_impl="xla", the plain XLA ops JAX differentiates (what `--conv-impl xla` trains with);
- `flax`: the hand-written Flax model of the same net with the same weights (tests/test_lowering_nets.py
  proves identical logits);
- `torch` / `torch-cl`: PyTorch eager, NCHW and channels_last, when torch is installed
  (`pip install -e ".[torch]"`).

The JAX variants run round-robin (one step of each per round, in a shuffled order) so that drifting load
hits them alike.
PyTorch is not interleaved step by step: its OpenMP workers spin for a while after each op and would
steal the two cores from the JAX step that follows (flax LeNet measured 22 -> 32 ms that way). Instead
the rounds are split into blocks that alternate (JAX round-robin, PyTorch, a pause for its workers to
sleep, JAX, ...), so that a change of the VM's speed during a case lands on both sides of the
netspec/PyTorch ratio rather than on PyTorch alone.
Reported: the median step with its interquartile range, images/s, the inference forward, the speed-up
over the Flax model and over PyTorch NCHW (>1: netspec is faster), and the achieved FLOP/s of the step
(6 x the forward multiply-adds `netspec check` counts) as a share of the measured float32 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import jax

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_lowering import FIXTURES, flax_steps, matmul_peak, netspec_steps, time_rounds, torch_steps  # noqa: E402
from test_lowering_nets import (FlaxLeNet, FlaxMixedConv, FlaxResNet18, lenet_flax_variables,  # noqa: E402
                                mixed_conv_flax_variables, resnet18_flax_variables)

# name -> (net, spec, flax module, weight converter, batch, input C,H,W, rounds, quick rounds)
CASES: dict[str, tuple[str, Path, Any, Callable[..., Any], int, tuple[int, int, int], int, int]] = {
    "lenet64": ("lenet", FIXTURES / "lenet.yaml", FlaxLeNet(), lenet_flax_variables, 64, (1, 28, 28), 60, 20),
    "lenet256": ("lenet", FIXTURES / "lenet.yaml", FlaxLeNet(), lenet_flax_variables, 256, (1, 28, 28), 20, 8),
    "resnet18": ("resnet18", FIXTURES / "resnet18_cifar.yaml", FlaxResNet18(), resnet18_flax_variables, 128,
                 (3, 32, 32), 5, 3),
    "mixed": ("mixed", FIXTURES / "mixed_conv.yaml", FlaxMixedConv(), mixed_conv_flax_variables, 64,
              (3, 32, 32), 20, 8),
}


def _stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median": statistics.median(times), "q1": q[0], "q3": q[2], "n": len(times)}


def alternating(jax_fns: dict[str, Callable[[], Any]], torch_fns: dict[str, Callable[[], Any]], rounds: int,
                blocks: int = 4, warmup: int = 2, pause_s: float = 0.5) -> dict[str, dict[str, float]]:
    """Median and quartiles of each function's seconds per call. The JAX functions run round-robin (one
    call of each per round, in a shuffled order); the rounds are split into `blocks`, and after each block
    every PyTorch function runs that block's rounds on its own, then a pause lets its OpenMP workers go to
    sleep."""
    for fn in [*jax_fns.values(), *torch_fns.values()]:
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {k: [] for k in [*jax_fns, *torch_fns]}
    per = [rounds // blocks + (b < rounds % blocks) for b in range(blocks)]
    order = random.Random(0)
    for n in per:
        if not n:
            continue
        time_rounds(jax_fns, n, times, order)
        for name, fn in torch_fns.items():
            time_rounds({name: fn}, n, times)
        time.sleep(pause_s)
    return {k: _stats(v) for k, v in times.items()}


def run_case(key: str, quick: bool, with_torch: bool, library_convs: bool = False,
             channels_last: bool = False) -> dict[str, Any]:
    net, spec, module, convert, batch, shape, rounds, quick_rounds = CASES[key]
    rounds = quick_rounds if quick else rounds
    ns = netspec_steps(spec, batch, 10, shape)
    jax_impls = {"netspec": ns}
    if ns["conv_library"]:
        jax_impls["ns-planned"] = netspec_steps(spec, batch, 10, shape, "planned")
    if library_convs:
        jax_impls["ns-ynn"] = netspec_steps(spec, batch, 10, shape, library_convs=True)
    if channels_last and ns["spatial_layout"] != "nhwc":
        jax_impls["ns-nhwc"] = netspec_steps(spec, batch, 10, shape, spatial_layout="nhwc")
    jax_impls.update({"ns-xla": netspec_steps(spec, batch, 10, shape, "xla"),
                      "flax": flax_steps(module, convert(ns["blobs"]), batch, 10, shape)})
    compile_s = {k: f["compile_s"] for k, f in jax_impls.items()}
    torch_impls = {}
    if with_torch:
        for name, cl in (("torch", False), ("torch-cl", True)):
            t = torch_steps(net, batch, 10, shape, channels_last=cl)
            if t is not None:
                torch_impls[name] = t
    blocks = min(4, rounds)
    train = alternating({k: f["train"] for k, f in jax_impls.items()},
                        {k: f["train"] for k, f in torch_impls.items()}, rounds, blocks)
    infer = alternating({k: f["infer"] for k, f in jax_impls.items()},
                        {k: f["infer"] for k, f in torch_impls.items()}, rounds, blocks)
    return {"case": key, "net": net, "batch": batch, "flops_train": 6 * ns["macs"], "train": train,
            "infer": infer, "compile_s": compile_s, "spatial_layout": ns["spatial_layout"],
            "conv_library": ns["conv_library"]}


def print_case(row: dict[str, Any], peak: float) -> None:
    flax = row["train"]["flax"]["median"]
    torch = row["train"].get("torch", {}).get("median")
    for impl, t in row["train"].items():
        med, inf = t["median"], row["infer"][impl]["median"]
        vs_torch = f"{torch / med:8.2f}" if torch else f"{'-':>8}"
        comp = row["compile_s"].get(impl)
        print(f"{row['case']:9} {impl:9} {1e3 * med:9.1f} [{1e3 * t['q1']:7.1f}–{1e3 * t['q3']:7.1f}] "
              f"{row['batch'] / med:7.0f} {1e3 * inf:8.1f} {flax / med:8.2f} {vs_torch} "
              f"{100 * row['flops_train'] / med / peak:6.1f} {comp if comp is None else round(comp, 1)!s:>8}")


def end_to_end(quick: bool) -> dict[str, float]:
    """Wall seconds of `netspec train specs/lenet.yaml --seed 1` with --conv-impl xla, planned and auto, warm
    cache."""
    out = {}
    iters = ["--max-iter", "500"] if quick else []
    with tempfile.TemporaryDirectory() as tmp:
        # Twice each: the first fills the cache.
        for k, impl in enumerate(("xla", "planned", "auto", "xla", "planned", "auto")):
            cmd = [sys.executable, "-m", "netspec.cli", "train", str(ROOT / "specs" / "lenet.yaml"), "--seed",
                   "1", "--progress", "none", "--conv-impl", impl, "-o", str(Path(tmp) / f"{impl}-{k}"), *iters]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            out[impl] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--end-to-end", action="store_true", help="also time `netspec train specs/lenet.yaml`")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--library-convs", action="store_true",
                    help="also `ns-ynn`: netspec compiled with XLA:CPU's default YNNPACK convolutions instead of "
                    "Model.compiler_options")
    ap.add_argument("--channels-last", action="store_true",
                    help="also `ns-nhwc` where netspec trains batch-minor: the same step with channels-last blobs")
    ap.add_argument("--resident-scratch", action="store_true",
                    help="apply netspec train's glibc setting for large scratch buffers (netspec.train.host_memory) "
                         "to the whole process, every implementation alike")
    args = ap.parse_args()
    if args.resident_scratch:
        from netspec.train.host_memory import keep_scratch_resident

        print(f"host malloc: {keep_scratch_resident()}")
    load = os.getloadavg()[0]
    from netspec.kernels import onednn

    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}, load {load:.1f}, "
          f"oneDNN {onednn.version() or 'not available: ' + str(onednn.unavailable_reason())}")
    peak = matmul_peak()
    print(f"float32 matmul peak (2048³, jit): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'case':9} {'impl':9} {'train ms':>9} {'[q1–q3]':>17} {'img/s':>7} {'infer ms':>8} "
          f"{'vs flax':>8} {'vs torch':>8} {'%peak':>6} {'compile':>8}")
    results: dict[str, Any] = {"jax": jax.__version__, "cases": [], "load_start": load,
                               "resident_scratch": args.resident_scratch}
    for key in args.cases.split(","):
        row = run_case(key, args.quick, not args.no_torch, args.library_convs, args.channels_last)
        peak = max(peak, matmul_peak())  # re-measured: on a shared machine the first one may be low
        print_case(row, peak)
        results["cases"].append(row)
    results["peak_flops"] = peak
    results["load_end"] = os.getloadavg()[0]
    print(f"float32 matmul peak, best over the run: {peak / 1e9:.1f} GFLOP/s; load {results['load_end']:.1f}")
    print("vs flax / vs torch: the other's step time over this row's (>1: this row trains faster)")
    if args.end_to_end:
        wall = end_to_end(args.quick)
        results["end_to_end_s"] = wall
        print(f"netspec train specs/lenet.yaml (warm compilation cache): --conv-impl xla {wall['xla']:.1f} s, "
              f"planned {wall['planned']:.1f} s, auto {wall['auto']:.1f} s ({wall['xla'] / wall['auto']:.2f}x and "
              f"{wall['planned'] / wall['auto']:.2f}x faster)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
