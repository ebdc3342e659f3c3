"""Benchmark netspec.kernels.conv2d: forward, input-grad and weight-grad time of impl="xla" vs impl="auto".

    python tools/bench_conv.py                 # xla vs auto side by side, plus the matmul peak
    python tools/bench_conv.py --formulations  # every formulation of every pass (the basis of choose_plan)
    python tools/bench_conv.py --library       # XLA's convolution with and without YNNPACK (compiler_options)
    python tools/bench_conv.py --only lenet    # shapes whose name contains "lenet"
    python tools/bench_conv.py --torch         # netspec's planned passes vs PyTorch's (the torch extra)
    python tools/bench_conv.py --clock cpu     # CPU time / cores: steady when the machine is shared

Times are medians (or --stat min) of --repeats runs after a compile and a warm-up call, each ended by
block_until_ready; the candidates' runs alternate so that background load hits them alike. The gradients
are timed as jax.vjp under jit, so each number is one pass (jit drops the unused primal).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from netspec.kernels import conv as kconv


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    geom: kconv.ConvGeometry
    # The layer's net has a wide layer elsewhere, so netspec compiles the layer's program on XLA's own
    # convolutions (kernels.conv.compiler_options) and plans it for them, whatever the layer's own width.
    in_wide_net: bool = False

    def program(self, impl: str) -> tuple[dict[str, object], bool]:
        """The XLA options netspec compiles this layer's program with, and the plan's ``xla_convs``."""
        others = [_WIDE_LAYER] if self.in_wide_net else []
        options = kconv.compiler_options(jax.default_backend(), impl, [self.geom, *others])
        return options, bool(options)


# Any convolution of 32+ input channels a group turns a program's YNNPACK convolutions off.
_WIDE_LAYER = kconv.ConvGeometry(1, 8, 8, 64, 64, (3, 3))


def _sym(p: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((p, p), (p, p))


G = kconv.ConvGeometry
CASES: tuple[Case, ...] = (
    Case("lenet conv1 1->20 5x5 28x28 b64", G(64, 28, 28, 1, 20, (5, 5))),
    Case("lenet conv2 20->50 5x5 12x12 b64", G(64, 12, 12, 20, 50, (5, 5))),
    Case("lenet conv2 20->50 5x5 12x12 b256", G(256, 12, 12, 20, 50, (5, 5))),
    Case("resnet18 3x3 3->64 32x32 b128 (stem)", G(128, 32, 32, 3, 64, (3, 3), padding=_sym(1)), True),
    Case("resnet18 3x3 64->64 32x32 b128", G(128, 32, 32, 64, 64, (3, 3), padding=_sym(1))),
    Case("resnet18 3x3 128->128 16x16 b128", G(128, 16, 16, 128, 128, (3, 3), padding=_sym(1))),
    Case("resnet18 3x3 128->128 16x16 s2 b128", G(128, 16, 16, 128, 128, (3, 3), (2, 2), _sym(1))),
    Case("resnet18 3x3 256->256 8x8 b128", G(128, 8, 8, 256, 256, (3, 3), padding=_sym(1))),
    Case("resnet18 1x1 64->128 32x32 s2 b128", G(128, 32, 32, 64, 128, (1, 1), (2, 2))),
    Case("resnet 7x7 s2 3->64 224x224 b16", G(16, 224, 224, 3, 64, (7, 7), (2, 2), _sym(3)), True),
    Case("alexnet conv2 5x5 g2 96->256 27x27 b16", G(16, 27, 27, 96, 256, (5, 5), padding=_sym(2), groups=2)),
    Case("dilated 3x3 d2 64->64 32x32 b32", G(32, 32, 32, 64, 64, (3, 3), padding=_sym(2), dilation=(2, 2))),
    Case("depthwise 3x3 128 16x16 b128", G(128, 16, 16, 128, 128, (3, 3), padding=_sym(1), groups=128)),
    Case("tiny 3x3 8->8 8x8 b4", G(4, 8, 8, 8, 8, (3, 3), padding=_sym(1))),
    # specs/cifar10_quick.yaml (Caffe's CIFAR-10 example): 5x5 convs of 32-64 channels, a program on XLA's convolutions
    Case("cifar10_quick conv2 5x5 32->32 16x16 b100", G(100, 16, 16, 32, 32, (5, 5), padding=_sym(2))),
    Case("cifar10_quick conv3 5x5 32->64 8x8 b100", G(100, 8, 8, 32, 64, (5, 5), padding=_sym(2))),
    # tests/fixtures/lowering/mixed_conv.yaml (tools/bench_train_cpu.py's strided/dilated/grouped net)
    Case("mixed conv1 3x3 3->32 32x32 b64", G(64, 32, 32, 3, 32, (3, 3), padding=_sym(1)), True),
    Case("mixed conv2 3x3 s2 32->64 32x32 b64", G(64, 32, 32, 32, 64, (3, 3), (2, 2), _sym(1))),
    Case("mixed conv3 3x3 d2 64->64 16x16 b64", G(64, 16, 16, 64, 64, (3, 3), padding=_sym(2), dilation=(2, 2))),
    Case("mixed conv4 3x3 s2 g4 64->128 16x16 b64", G(64, 16, 16, 64, 128, (3, 3), (2, 2), _sym(1), groups=4), True),
)

PASSES = ("forward", "input_grad", "weight_grad")


STATS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wall_seconds() -> float:
    return time.perf_counter()


# "cpu" divides the process's CPU time by the core count: the wall time the call would take on idle cores
# if it kept them all busy. It is steady when other processes load the machine (wall time is not), but
# flatters a formulation that leaves cores idle.
CLOCKS: dict[str, Callable[[], float]] = {"wall": _wall_seconds, "cpu": _cpu_seconds}


def _interleaved(fns: dict[str, Callable[..., jax.Array]], args: tuple[jax.Array, ...], repeats: int,
                 stat: str = "median", clock: str = "wall") -> dict[str, float]:
    """Seconds per call of each function (median or min of ``repeats``); the runs alternate so that load
    from other processes hits all candidates alike."""
    now = CLOCKS[clock]
    scale = 1.0 / (os.cpu_count() or 1) if clock == "cpu" else 1.0
    for fn in fns.values():
        jax.block_until_ready(fn(*args))  # compile
        jax.block_until_ready(fn(*args))  # warm caches and thread pools
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = now()
            jax.block_until_ready(fn(*args))
            times[k].append((now() - t0) * scale)
    return {k: STATS[stat](v) for k, v in times.items()}


def _operands(geom: kconv.ConvGeometry, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    kh, kw = geom.kernel
    ho, wo = geom.out_size
    x = jnp.asarray(rng.standard_normal((geom.batch, geom.height, geom.width, geom.in_channels)), dtype)
    w = jnp.asarray(rng.standard_normal((kh, kw, geom.in_channels // geom.groups, geom.out_channels)), dtype)
    dy = jnp.asarray(rng.standard_normal((geom.batch, ho, wo, geom.out_channels)), dtype)
    return x, w, dy


def _conv_kwargs(geom: kconv.ConvGeometry) -> dict[str, object]:
    return dict(stride=geom.stride, padding=geom.padding, dilation=geom.dilation, groups=geom.groups)


def _passes(conv: Callable[..., jax.Array], options: dict[str, object]) -> dict[str, Callable[..., jax.Array]]:
    """Each pass jitted with the XLA options netspec compiles that impl's programs with."""
    return {
        "forward": jax.jit(lambda x, w, dy: conv(x, w), compiler_options=options),
        "input_grad": jax.jit(lambda x, w, dy: jax.vjp(conv, x, w)[1](dy)[0], compiler_options=options),
        "weight_grad": jax.jit(lambda x, w, dy: jax.vjp(conv, x, w)[1](dy)[1], compiler_options=options),
    }


def impl_fns(case: Case, geom: kconv.ConvGeometry, impl: str) -> dict[str, Callable[..., jax.Array]]:
    """The three passes as users see them: conv2d and jax.vjp (jit drops the unused primal), compiled and
    planned as in the case's net."""
    kw = _conv_kwargs(geom)
    options, xla_convs = case.program(impl)

    def conv(x: jax.Array, w: jax.Array) -> jax.Array:
        return kconv.conv2d(x, w, impl=impl, xla_convs=xla_convs, **kw)  # type: ignore[arg-type]

    return _passes(conv, options)


def formulation_fns(case: Case, geom: kconv.ConvGeometry, form: str, chunk: int
                    ) -> dict[str, Callable[..., jax.Array]]:
    """The three passes with every pass in one formulation (conv2d_planned under jax.vjp, like impl_fns),
    compiled as netspec compiles impl="auto" (so "xla" here is XLA's convolution under those options)."""
    plan = kconv.Plan.uniform(form, chunk)  # type: ignore[arg-type]
    kw = _conv_kwargs(geom)

    def conv(x: jax.Array, w: jax.Array) -> jax.Array:
        return kconv.conv2d_planned(x, w, plan, **kw)  # type: ignore[arg-type]

    return _passes(conv, case.program("auto")[0])


def matmul_peak(repeats: int, dtype: jnp.dtype, clock: str) -> tuple[int, float]:
    n = 2048
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), dtype)
    b = jnp.asarray(rng.standard_normal((n, n)), dtype)
    t = _interleaved({"mm": jax.jit(jnp.matmul)}, (a, b), repeats, "min", clock)["mm"]
    return n, 2 * n**3 / t / 1e9


def _row(name: str, cells: list[str]) -> str:
    return f"{name:<42}" + "".join(f"{c:>16}" for c in cells)


def _plan_label(plan: kconv.Plan, pass_: str) -> str:
    """A pass's formulation and, when it loops, its batch chunk: "taps/4", "xla"."""
    chunk = getattr(plan, f"{pass_}_chunk")
    return getattr(plan, pass_) + (f"/{chunk}" if chunk else "")


def compare(cases: tuple[Case, ...], repeats: int, dtype: jnp.dtype, stat: str, clock: str) -> None:
    backend = jax.default_backend()
    print(_row("shape / pass  (ms, GFLOP/s)", ["xla", "auto", "xla/auto", "auto plan"]))
    for case in cases:
        geom = dataclasses.replace(case.geom, dtype=jnp.dtype(dtype).name)
        plan = kconv.choose_plan(backend, geom, case.program("auto")[1])
        print(f"{case.name}   [{geom.flops / 1e9:.3f} GFLOP per pass]")
        ops = _operands(geom, dtype)
        fns = {impl: impl_fns(case, geom, impl) for impl in ("xla", "auto")}
        for p in PASSES:
            t = _interleaved({impl: fns[impl][p] for impl in fns}, ops, repeats, stat, clock)
            cells = [f"{t[i] * 1e3:8.2f} {geom.flops / t[i] / 1e9:6.1f}" for i in fns]
            print(_row(f"  {p}", [*cells, f"{t['xla'] / t['auto']:.2f}x", _plan_label(plan, p)]), flush=True)


def formulations(cases: tuple[Case, ...], repeats: int, dtype: jnp.dtype, chunks: list[int], stat: str,
                 clock: str) -> None:
    """Every formulation of every pass side by side; chunk -1 means the one batch_chunk picks."""
    names = ["xla"] + [f"{f}/{c}" for f in kconv.FORMULATIONS if f != "xla" for c in chunks]
    print(_row("shape / pass  (ms)", names))
    for case in cases:
        geom = dataclasses.replace(case.geom, dtype=jnp.dtype(dtype).name)
        planned = kconv.batch_chunk(geom)
        print(f"{case.name}   [{geom.flops / 1e9:.3f} GFLOP per pass, planned chunk {planned}]")
        ops = _operands(geom, dtype)
        fns = {}
        for name in names:
            form, _, c = name.partition("/")
            fns[name] = formulation_fns(case, geom, form, planned if c == "-1" else int(c or 0))
        for p in PASSES:
            t = _interleaved({k: v[p] for k, v in fns.items()}, ops, repeats, stat, clock)
            best = min(t, key=t.__getitem__)
            cells = [f"{t[k] * 1e3:8.2f}{'*' if k == best else ' '}" for k in fns]
            print(_row(f"  {p}", cells), flush=True)


def library(cases: tuple[Case, ...], repeats: int, dtype: jnp.dtype, stat: str, clock: str) -> None:
    """XLA's own convolution passes compiled with XLA:CPU's defaults (YNNPACK fusions) and with the options
    kernels.conv.compiler_options picks for wide layers (YNNPACK fusions off)."""
    print(_row("shape / pass  (ms)", ["ynnpack", "ynn off", "ynnpack/off"]))
    for case in cases:
        geom = dataclasses.replace(case.geom, dtype=jnp.dtype(dtype).name)
        print(f"{case.name}   [{geom.flops / 1e9:.3f} GFLOP per pass]")
        ops = _operands(geom, dtype)
        kw = _conv_kwargs(geom)

        def conv(x: jax.Array, w: jax.Array) -> jax.Array:
            return kconv.conv2d(x, w, impl="xla", **kw)  # type: ignore[arg-type]

        fns = {"ynnpack": _passes(conv, {}), "off": _passes(conv, dict(kconv._CPU_OPTIONS))}
        for p in PASSES:
            t = _interleaved({k: v[p] for k, v in fns.items()}, ops, repeats, stat, clock)
            print(_row(f"  {p}", [f"{t['ynnpack'] * 1e3:8.2f}", f"{t['off'] * 1e3:8.2f}",
                                  f"{t['ynnpack'] / t['off']:.2f}x"]), flush=True)


def versus_torch(cases: tuple[Case, ...], repeats: int, stat: str, clock: str) -> None:
    """netspec's planned passes (impl="auto", as a net with only this layer compiles them) against the ATen
    ops a PyTorch eager train step runs for them: ``convolution`` and ``convolution_backward``, NCHW float32.
    Per pass, PyTorch runs after netspec rather than interleaved: its OpenMP workers keep spinning after an
    op and would slow the JAX call that follows (tools/bench_train_cpu.py does the same)."""
    import torch

    n = 2048
    m = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n), np.float32))
    best = min(_interleaved({"mm": lambda *_: m @ m}, (), repeats, "min", clock).values())
    print(f"torch {torch.__version__} matmul peak: {n}x{n}x{n} float32 = {2 * n**3 / best / 1e9:.1f} GFLOP/s (best run), "
          f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    print(_row("shape / pass  (ms)", ["netspec", "torch", "torch/netspec", "auto plan"]))
    for case in cases:
        geom = case.geom
        (t, b), (lft, r) = geom.padding
        if t != b or lft != r:
            continue  # PyTorch pads symmetrically
        plan = kconv.choose_plan(jax.default_backend(), geom, case.program("auto")[1])
        print(f"{case.name}   [{geom.flops / 1e9:.3f} GFLOP per pass]")
        ops = _operands(geom, jnp.dtype(jnp.float32))
        x, w, dy = (torch.from_numpy(np.array(a)) for a in ops)  # writable copies
        x, dy = (a.permute(0, 3, 1, 2).contiguous() for a in (x, dy))  # NHWC -> NCHW
        w = w.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
        conv_args = (list(geom.stride), [t, lft], list(geom.dilation), False, [0, 0], geom.groups)
        aten = torch.ops.aten
        theirs = {
            "forward": lambda *_: aten.convolution(x, w, None, *conv_args),
            "input_grad": lambda *_: aten.convolution_backward(dy, x, w, None, *conv_args, [True, False, False])[0],
            "weight_grad": lambda *_: aten.convolution_backward(dy, x, w, None, *conv_args, [False, False, True])[2],
        }
        ours = impl_fns(case, geom, "auto")
        for p in PASSES:
            mine = _interleaved({"netspec": ours[p]}, ops, repeats, stat, clock)["netspec"]
            other = _interleaved({"torch": theirs[p]}, ops, repeats, stat, clock)["torch"]
            print(_row(f"  {p}", [f"{mine * 1e3:8.2f}", f"{other * 1e3:8.2f}", f"{other / mine:.2f}x",
                                  _plan_label(plan, p)]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formulations", action="store_true", help="time every formulation of every pass")
    ap.add_argument("--library", action="store_true",
                    help="XLA's convolution with XLA:CPU's YNNPACK fusions vs without (kernels.conv.compiler_options)")
    ap.add_argument("--torch", action="store_true",
                    help="netspec's planned passes vs PyTorch eager's (float32; needs the torch extra)")
    ap.add_argument("--only", default="", help="run only the shapes whose name contains this text")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunks", default="-1",
                    help="with --formulations: comma-separated images per loop step for the matmul "
                    "formulations (0 = whole batch, -1 = what batch_chunk picks)")
    ap.add_argument("--stat", default="median", choices=sorted(STATS),
                    help="min is steadier than median when other processes share the cores")
    ap.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                    help="cpu: process CPU time / cores, steady under load from other processes")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    dtype = jnp.dtype(args.dtype)
    cases = tuple(c for c in CASES if args.only in c.name)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0].device_kind}, "
          f"{os.cpu_count()} cpus, dtype {dtype.name}, {args.stat} of {args.repeats} interleaved runs, "
          f"{args.clock} clock, load average {os.getloadavg()[0]:.1f}")
    n, peak = matmul_peak(args.repeats, dtype, args.clock)
    print(f"matmul peak: {n}x{n}x{n} {dtype.name} = {peak:.1f} GFLOP/s (best run)")
    if args.torch:
        versus_torch(cases, args.repeats, args.stat, args.clock)
    elif args.library:
        library(cases, args.repeats, dtype, args.stat, args.clock)
    elif args.formulations:
        formulations(cases, args.repeats, dtype, [int(c) for c in args.chunks.split(",")], args.stat,
                     args.clock)
    else:
        compare(cases, args.repeats, dtype, args.stat, args.clock)


if __name__ == "__main__":
    main()
