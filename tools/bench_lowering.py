"""netspec-compiled nets vs hand-written Flax (and PyTorch CPU when importable), in one process.

    python tools/bench_lowering.py [--quick] [--json out.json]

For Caffe's LeNet at batch 64 and 256 and CIFAR ResNet-18 at batch 128, side by side in one process:
the jitted SGD-momentum train step and the jitted inference forward (medians, measured round-robin so
that load drifting on a shared machine hits every implementation alike), and compile time (trace, lower
and compile of the train step plus the forward, from cleared caches, median of 3 round-robin rounds).
Implementations: netspec (conv_impl "auto", netspec's own convolution and pooling gradients where they
pay), ns-xla (conv_impl "xla": the same lax ops as the Flax model, which isolates the lowering's own
overhead), the hand-written Flax model with the same weights, and PyTorch eager NCHW when importable.
Printed per row: achieved FLOP/s of the train step (6 × the forward multiply-adds `netspec check`
counts) and its share of the measured float32 matmul peak, and the speed-up over the Flax model for
training, inference and compile time, and over PyTorch for training (>1: this row is faster). Also
one measurement behind the layout decision: a ResNet-18 stage's conv train step in NHWC vs NCHW.
The hand-written Flax models are the ones tests/test_lowering_nets.py checks for identical logits.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import netspec  # noqa: E402
from test_lowering_nets import (FlaxLeNet, FlaxResNet18, lenet_flax_variables,  # noqa: E402
                               resnet18_flax_variables)

FIXTURES = ROOT / "tests" / "fixtures" / "lowering"


def timeit(fn: Callable[[], Any], iters: int) -> tuple[float, float]:
    """(first-call seconds, median seconds of `iters` later calls)."""
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def time_rounds(fns: dict[str, Callable[[], Any]], rounds: int, times: dict[str, list[float]],
                order: random.Random | None = None) -> None:
    """`rounds` round-robin calls of each of `fns`, appending seconds per call to `times` (waiting for JAX's
    asynchronous results; PyTorch's CPU calls return finished ones, which block_until_ready passes through).

    Each round calls them in a fresh random order (`order`, seeded for repeatable runs): in a fixed order each
    function always follows the same one, and that alone made two identical programs differ by 2% (train
    steps) to 26% (TEST forwards that followed a train step) in A/A runs (docs/performance.md item 12)."""
    order = order or random.Random(0)
    for _ in range(rounds):
        names = list(fns)
        order.shuffle(names)
        for name in names:
            t = time.perf_counter()
            jax.block_until_ready(fns[name]())
            times[name].append(time.perf_counter() - t)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, budget_s: float) -> tuple[dict[str, float],
                                                                                         dict[str, float]]:
    """First-call seconds and median steady-state seconds per implementation, measured round-robin
    (one call of each per round) so that load drifting on a shared machine hits all of them alike.
    Stops after `rounds`, or earlier (after at least two rounds) once `budget_s` is spent."""
    first: dict[str, float] = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    order = random.Random(0)
    for r in range(rounds):
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
        time_rounds(fns, 1, times, order)
    return first, {name: statistics.median(ts) for name, ts in times.items()}


def matmul_peak(n: int = 2048, iters: int = 7, dtype: Any = jnp.float32) -> float:
    """FLOP/s of the best of `iters` jitted n×n matmuls on random data (best, not median: the peak is
    what the machine can do when it is not shared)."""
    a = jnp.asarray(np.random.RandomState(0).randn(n, n), dtype)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = float("inf")
    for _ in range(iters):
        t = time.perf_counter()
        jax.block_until_ready(f(a))
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def _timed_build(build: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = build()
    return out, time.perf_counter() - t


def _recompile(build: Callable[[], Any]) -> Callable[[], float]:
    """Seconds to trace, lower and compile the train step and the forward again from scratch (JAX's
    in-memory caches cleared, so nothing is reused; the persistent cache is off in this process)."""
    def again() -> float:
        jax.clear_caches()
        return _timed_build(build)[1]
    return again


def compile_medians(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median compile seconds per implementation, compiled round-robin like `interleaved`."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(fn())
    return {name: statistics.median(ts) for name, ts in times.items()}


# --- netspec ---------------------------------------------------------------------------------------

def netspec_steps(path: Path, batch: int, classes: int, shape: tuple[int, ...],
                  conv_impl: str = "auto", library_convs: bool = False, dtype: str = "float32",
                  spatial_layout: str | None = None) -> dict[str, Any]:
    """`library_convs`: compile with XLA:CPU's defaults instead of Model.compiler_options (an A/B of them).
    `spatial_layout`: force the train net's spatial layout (netspec.compile) instead of the Model's choice."""
    model = netspec.compile(path, "TRAIN", batch=batch, conv_impl=conv_impl, dtype=dtype,
                            spatial_layout=spatial_layout)
    test = netspec.compile(path, "TEST", batch=batch, conv_impl=conv_impl, dtype=dtype)
    train_options, test_options = ({}, {}) if library_convs else (model.compiler_options, test.compiler_options)
    v = model.init(0)
    # Unit BatchNorm statistics (f = 1, var = 1): a fresh Caffe BN (f = 0) divides by √eps, which
    # overflows a deep TEST forward to inf and would time inf arithmetic.
    layers = [i.layer for i in model.param_info.values() if i.collection == "batch_stats" and i.index == 0]
    bn = {layer: [np.zeros(model.param_info[f"{layer}/0"].caffe_shape, np.float32),
                  np.ones(model.param_info[f"{layer}/1"].caffe_shape, np.float32), np.ones(1, np.float32)]
          for layer in layers}
    v = netspec.set_caffe_blobs(model, v, bn)
    tx = optax.sgd(0.01, momentum=0.9)
    opt = tx.init(v["params"])
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(batch, *shape), jnp.float32)
    y = jnp.asarray(rs.randint(0, classes, batch))

    @functools.partial(jax.jit, compiler_options=train_options)  # what `netspec train` compiles with
    def step(params: Any, stats: Any, opt: Any, x: Any, y: Any) -> Any:
        def loss(p: Any) -> Any:
            out, new = model.apply_train({"params": p, "batch_stats": stats}, {"data": x, "label": y})
            return model.loss(out), new

        (l, new), g = jax.value_and_grad(loss, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), new, opt, l

    logits = "ip2" if "ip2" in test._latest else "fc10"
    fwd = jax.jit(lambda v, x: test.apply(v, {"data": x, "label": y}, blobs=(logits,))[logits],
                  compiler_options=test_options)
    state = {"p": v["params"], "s": v["batch_stats"], "o": opt}

    def build() -> tuple[Any, Any]:
        return step.lower(state["p"], state["s"], state["o"], x, y).compile(), fwd.lower(v, x).compile()

    (step_c, fwd_c), compile_s = _timed_build(build)

    def train() -> Any:
        state["p"], state["s"], state["o"], l = step_c(state["p"], state["s"], state["o"], x, y)
        return l

    return {"train": train, "infer": lambda: fwd_c(v, x), "macs": model.report.macs * batch,
            "blobs": netspec.caffe_blobs(model, v), "compile_s": compile_s, "recompile": _recompile(build),
            "step_compiled": step_c, "spatial_layout": model.spatial_layout, "conv_library": model.conv_library}


# --- hand-written Flax ------------------------------------------------------------------------------

def flax_steps(module: Any, variables: dict[str, Any], batch: int, classes: int, shape: tuple[int, ...]
               ) -> dict[str, Any]:
    """The hand-written model with the netspec model's weights copied in (identical logits)."""
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(batch, *shape).transpose(0, 2, 3, 1), jnp.float32)
    y = jnp.asarray(rs.randint(0, classes, batch))
    v = variables
    tx = optax.sgd(0.01, momentum=0.9)
    opt = tx.init(v["params"])
    has_bn = "batch_stats" in v

    @jax.jit
    def step(params: Any, stats: Any, opt: Any, x: Any, y: Any) -> Any:
        def loss(p: Any) -> Any:
            if has_bn:
                logits, new = module.apply({"params": p, "batch_stats": stats}, x, train=True,
                                           mutable=["batch_stats"])
                new = new["batch_stats"]
            else:
                logits, new = module.apply({"params": p}, x), stats
            return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean(), new

        (l, new), g = jax.value_and_grad(loss, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), new, opt, l

    fwd = jax.jit(lambda v, x: module.apply(v, x))
    state = {"p": v["params"], "s": v.get("batch_stats", {}), "o": opt}

    def build() -> tuple[Any, Any]:
        return step.lower(state["p"], state["s"], state["o"], x, y).compile(), fwd.lower(v, x).compile()

    (step_c, fwd_c), compile_s = _timed_build(build)

    def train() -> Any:
        state["p"], state["s"], state["o"], l = step_c(state["p"], state["s"], state["o"], x, y)
        return l

    return {"train": train, "infer": lambda: fwd_c(v, x), "compile_s": compile_s, "recompile": _recompile(build)}


# --- PyTorch (optional) ------------------------------------------------------------------------------

def torch_steps(name: str, batch: int, classes: int, shape: tuple[int, ...],
                channels_last: bool = False, device: str = "cpu", autocast: Any = None) -> dict[str, Any] | None:
    """PyTorch eager training and inference of the same net (NCHW, or channels_last memory format), on the
    CPU or `device`; `autocast`: a torch dtype to autocast the forward to (mixed precision)."""
    try:
        import torch
        from torch import nn as tnn
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    if name == "lenet":
        net: Any = tnn.Sequential(tnn.Conv2d(1, 20, 5), tnn.MaxPool2d(2, 2), tnn.Conv2d(20, 50, 5),
                                  tnn.MaxPool2d(2, 2), tnn.Flatten(), tnn.Linear(800, 500), tnn.ReLU(),
                                  tnn.Linear(500, 10))
    elif name == "mixed":
        net = tnn.Sequential(tnn.Conv2d(3, 32, 3, 1, 1), tnn.ReLU(), tnn.Conv2d(32, 64, 3, 2, 1), tnn.ReLU(),
                             tnn.Conv2d(64, 64, 3, 1, 2, dilation=2), tnn.ReLU(),
                             tnn.Conv2d(64, 128, 3, 2, 1, groups=4), tnn.ReLU(), tnn.AdaptiveAvgPool2d(1),
                             tnn.Flatten(), tnn.Linear(128, 10))
    else:
        def block(cin: int, c: int, s: int) -> Any:
            class B(tnn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.a = tnn.Sequential(tnn.Conv2d(cin, c, 3, s, 1, bias=False), tnn.BatchNorm2d(c), tnn.ReLU(),
                                            tnn.Conv2d(c, c, 3, 1, 1, bias=False), tnn.BatchNorm2d(c))
                    self.p = (tnn.Sequential(tnn.Conv2d(cin, c, 1, s, bias=False), tnn.BatchNorm2d(c))
                              if s != 1 or cin != c else tnn.Identity())

                def forward(self, x: Any) -> Any:
                    return torch.relu(self.a(x) + self.p(x))
            return B()
        layers: list[Any] = [tnn.Conv2d(3, 64, 3, 1, 1, bias=False), tnn.BatchNorm2d(64), tnn.ReLU()]
        cin = 64
        for stage, c in enumerate((64, 128, 256, 512)):
            for b in range(2):
                layers.append(block(cin, c, 2 if stage and not b else 1))
                cin = c
        layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(512, 10)]
        net = tnn.Sequential(*layers)
    x = torch.randn(batch, *shape).to(device)
    y = torch.randint(0, classes, (batch,)).to(device)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    lossf = tnn.CrossEntropyLoss()
    amp = (lambda: torch.autocast(device, dtype=autocast)) if autocast is not None else contextlib.nullcontext

    def train() -> Any:
        net.train()
        opt.zero_grad()
        with amp():
            loss = lossf(net(x).float(), y)
        loss.backward()
        opt.step()
        return float(loss.detach())  # float() waits for the device

    def infer() -> Any:
        net.eval()
        with torch.no_grad(), amp():
            out = net(x)
        if device != "cpu":
            torch.cuda.synchronize()
        return out

    return {"train": train, "infer": infer, "version": torch.__version__}


# --- layout ------------------------------------------------------------------------------------------

def layout_probe(iters: int) -> dict[str, float]:
    """One ResNet-18 stage-2 conv (128 ch, 16×16, batch 128, 3×3): XLA fwd+bwd in NHWC vs NCHW."""
    rs = np.random.RandomState(0)
    out = {}
    for dn, xs, ws in (("NHWC", (128, 16, 16, 128), (3, 3, 128, 128)), ("NCHW", (128, 128, 16, 16), (128, 128, 3, 3))):
        x = jnp.asarray(rs.randn(*xs), jnp.float32)
        w = jnp.asarray(rs.randn(*ws), jnp.float32)
        nums = ("NHWC", "HWIO", "NHWC") if dn == "NHWC" else ("NCHW", "OIHW", "NCHW")

        def loss(x: Any, w: Any) -> Any:
            return jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=nums) ** 2)

        g = jax.jit(jax.grad(loss, argnums=(0, 1)))
        out[dn] = timeit(lambda: g(x, w), iters)[1]
    return out


def _row(name: str, batch: int, impl: str, row: dict[str, Any], peak: float) -> str:
    r, flax, torch = row[impl], row["flax"], row.get("torch")
    flops = row["flops_train"] / r["train_s"]
    comp = f"{r['compile_s']:9.2f}" if r["compile_s"] is not None else f"{'-':>9}"
    comp_x = f"{flax['compile_s'] / r['compile_s']:9.2f}" if r["compile_s"] is not None else f"{'-':>9}"
    torch_x = f"{torch['train_s'] / r['train_s']:8.2f}" if torch else f"{'-':>8}"
    return (f"{name:9} {batch:5d} {impl:8} {1e3 * r['train_s']:9.1f} {batch / r['train_s']:7.0f} "
            f"{1e3 * r['infer_s']:9.1f} {comp} {flops / 1e9:8.1f} {100 * flops / peak:6.1f} "
            f"{flax['train_s'] / r['train_s']:8.2f} {flax['infer_s'] / r['infer_s']:8.2f} {comp_x} {torch_x}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--nets", default="lenet,resnet18", help="comma-separated subset of lenet,resnet18")
    args = ap.parse_args()
    small, big = (3, 2) if args.quick else (10, 4)
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, python {platform.python_version()}")
    peak = matmul_peak()
    print(f"float32 matmul peak (2048³, jit): {peak / 1e9:.1f} GFLOP/s")
    results: dict[str, Any] = {"peak_flops": peak, "jax": jax.__version__, "cases": []}
    cases = [("lenet", FIXTURES / "lenet.yaml", (FlaxLeNet(), lenet_flax_variables), 64, (1, 28, 28), small),
             ("lenet", FIXTURES / "lenet.yaml", (FlaxLeNet(), lenet_flax_variables), 256, (1, 28, 28), small),
             ("resnet18", FIXTURES / "resnet18_cifar.yaml", (FlaxResNet18(), resnet18_flax_variables), 128,
              (3, 32, 32), big)]
    cases = [c for c in cases if c[0] in args.nets.split(",")]
    budget = 20.0 if args.quick else 60.0
    compile_rounds = 1 if args.quick else 3
    head = (f"{'net':9} {'batch':>5} {'impl':8} {'train ms':>9} {'img/s':>7} {'infer ms':>9} {'compile s':>9} "
            f"{'GFLOP/s':>8} {'%peak':>6} {'x flax':>8} {'x flax':>8} {'x flax':>9} {'x torch':>8}")
    print("speed-ups (x) are over the hand-written Flax model (train, infer: >1 faster; compile: the "
          "Flax model's compile time over this one's, >1 faster) and, last column, over PyTorch eager NCHW")
    print(head)
    print(f"{'':>79} {'(train)':>8} {'(infer)':>8} {'(compile)':>9} {'(train)':>8}")
    for name, path, (module, convert), batch, shape, iters in cases:
        ns = netspec_steps(path, batch, 10, shape)
        impls = {"netspec": ns, "ns-xla": netspec_steps(path, batch, 10, shape, "xla"),
                 "flax": flax_steps(module, convert(ns["blobs"]), batch, 10, shape)}
        if not args.no_torch:
            t = torch_steps(name, batch, 10, shape)
            if t is not None:
                impls["torch"] = t
            results["torch"] = t["version"] if t else None
        row: dict[str, Any] = {"net": name, "batch": batch, "flops_train": 6 * ns["macs"]}
        _, train = interleaved({k: f["train"] for k, f in impls.items()}, iters, budget)
        _, infer = interleaved({k: f["infer"] for k, f in impls.items()}, iters, budget)
        comp = compile_medians({k: f["recompile"] for k, f in impls.items() if "recompile" in f}, compile_rounds)
        for impl in impls:
            row[impl] = {"train_s": train[impl], "infer_s": infer[impl], "compile_s": comp.get(impl)}
        peak = max(peak, matmul_peak())  # re-measured: on a shared machine the first one may be low
        results["peak_flops"] = peak
        for impl in impls:
            print(_row(name, batch, impl, row, peak))
        results["cases"].append(row)
    print(f"float32 matmul peak, best over the run: {peak / 1e9:.1f} GFLOP/s")
    lay = layout_probe(small)
    results["layout"] = lay
    print(f"layout probe (3×3 conv 128→128 @16×16, batch 128, fwd+bwd, XLA): NHWC {1e3 * lay['NHWC']:.1f} ms, "
          f"NCHW {1e3 * lay['NCHW']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
