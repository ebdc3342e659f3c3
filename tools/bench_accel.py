"""netspec-compiled training on JAX's default backend (a GPU or TPU where one is present) in float32 and
bfloat16, beside the hand-written Flax model in the same precision and, where torch sees a CUDA device,
PyTorch eager on it, in one process.

    python tools/bench_accel.py [--quick] [--json out.json] [--nets lenet,resnet18]

For each case (Caffe's LeNet at batch 256 and 1024, CIFAR ResNet-18 at batch 128 and 512) and each
precision, the jitted SGD-momentum train step and the jitted inference forward of netspec
(`conv_impl="auto"`) and of the Flax model with the same weights are timed round-robin (medians), with
the compile time of the train step plus the forward. bfloat16 is netspec's `--dtype bfloat16`
(float32 parameters, optimizer state and BatchNorm statistics; bfloat16 activations and matmul
operands) and Flax's `dtype=jnp.bfloat16` modules, the same mixed precision; PyTorch's is autocast.
Printed per row: step and forward milliseconds, images per second, achieved FLOP/s of the train step
(6 × the forward multiply-adds `netspec check` counts), and the speed-ups of netspec over Flax in the
same precision and of bfloat16 over float32. float32 matmuls and convolutions run at JAX's default
precision on the backend (the matrix units' TF32 on recent NVIDIA GPUs), as a Flax user gets them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from bench_lowering import (FIXTURES, FlaxLeNet, FlaxResNet18, flax_steps, interleaved,  # noqa: E402
                            lenet_flax_variables, matmul_peak, netspec_steps, resnet18_flax_variables,
                            torch_steps)

DTYPES = {"f32": ("float32", jnp.float32), "bf16": ("bfloat16", jnp.bfloat16)}


def _torch_cuda() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and the small batches only")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--nets", default="lenet,resnet18", help="comma-separated subset of lenet,resnet18")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    dev = jax.devices()[0]
    print(f"jax {jax.__version__} on {jax.default_backend()} ({dev.device_kind}), {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    n = 8192 if jax.default_backend() != "cpu" else 1024
    peaks = {k: matmul_peak(n, 10, d) for k, (_, d) in DTYPES.items()}
    print(f"matmul peak ({n}³, jit, default precision): " +
          ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in peaks.items()))
    torch = None if args.no_torch else _torch_cuda()
    if torch is not None:
        print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    results: dict[str, Any] = {"jax": jax.__version__, "backend": jax.default_backend(),
                               "device": dev.device_kind, "peaks": peaks, "cases": []}
    cases = [("lenet", FIXTURES / "lenet.yaml", FlaxLeNet, lenet_flax_variables, 256, (1, 28, 28)),
             ("resnet18", FIXTURES / "resnet18_cifar.yaml", FlaxResNet18, resnet18_flax_variables, 128, (3, 32, 32))]
    if not args.quick:
        cases += [("lenet", FIXTURES / "lenet.yaml", FlaxLeNet, lenet_flax_variables, 1024, (1, 28, 28)),
                  ("resnet18", FIXTURES / "resnet18_cifar.yaml", FlaxResNet18, resnet18_flax_variables, 512,
                   (3, 32, 32))]
    cases = [c for c in cases if c[0] in args.nets.split(",")]
    rounds, budget = (10, 5.0) if args.quick else (30, 15.0)
    print(f"{'net':9} {'batch':>5} {'impl':12} {'train ms':>9} {'img/s':>8} {'infer ms':>9} {'compile s':>9} "
          f"{'TFLOP/s':>8} {'x flax':>7} {'x f32':>6}")
    for name, path, module, convert, batch, shape in cases:
        impls: dict[str, dict[str, Any]] = {}
        for key, (dname, dt) in DTYPES.items():
            ns = netspec_steps(path, batch, 10, shape, dtype=dname)
            impls[f"netspec-{key}"] = ns
            impls[f"flax-{key}"] = flax_steps(module(dtype=dt), convert(ns["blobs"]), batch, 10, shape)
            if torch is not None:
                impls[f"torch-{key}"] = torch_steps(name, batch, 10, shape, device="cuda",
                                                    autocast=torch.bfloat16 if key == "bf16" else None)
        macs = impls["netspec-f32"]["macs"]
        _, train = interleaved({k: f["train"] for k, f in impls.items()}, rounds, budget)
        _, infer = interleaved({k: f["infer"] for k, f in impls.items()}, rounds, budget)
        row: dict[str, Any] = {"net": name, "batch": batch, "flops_train": 6 * macs}
        for impl, f in impls.items():
            row[impl] = {"train_s": train[impl], "infer_s": infer[impl], "compile_s": f.get("compile_s")}
            kind, key = impl.rsplit("-", 1)
            vs_flax = f"{train[f'flax-{key}'] / train[impl]:7.2f}" if kind == "netspec" else f"{'':7}"
            vs_f32 = f"{train[f'{kind}-f32'] / train[impl]:6.2f}" if key == "bf16" else f"{'':6}"
            comp = f"{f['compile_s']:9.2f}" if f.get("compile_s") is not None else f"{'-':>9}"
            print(f"{name:9} {batch:5d} {impl:12} {1e3 * train[impl]:9.2f} {batch / train[impl]:8.0f} "
                  f"{1e3 * infer[impl]:9.2f} {comp} {6 * macs / train[impl] / 1e12:8.2f} {vs_flax} {vs_f32}")
        results["cases"].append(row)
    print("x flax: the Flax model's train step over netspec's in the same precision (>1: netspec faster); "
          "x f32: the float32 step over the bfloat16 one of the same implementation")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
