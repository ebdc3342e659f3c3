"""Would a BLAS call inside the program close the weight-gradient gap? A probe, not a netspec feature.

    python tools/probe_blas_wgrad.py                          # ResNet-18 b128, NumPy's OpenBLAS, 2 threads
    python tools/probe_blas_wgrad.py --library mkl --threads 1  # PyTorch's MKL (needs torch), one thread
    python tools/probe_blas_wgrad.py --layers all --rounds 10   # every stride-1 layer, not only taps ones

Issue #6's remaining gap to PyTorch was put down to XLA:CPU's matrix products on weight-gradient shapes
(docs/performance.md items 11-12). This probe replaces a stride-1, ungrouped float32 layer's weight gradient
by an XLA custom call into a BLAS library: one GEMM per kernel tap, read straight out of the padded input
flattened to rows (a tap's window is then a contiguous row range, so nothing is copied; the output gradient
is padded to the same grid with zeros). The handler is a ctypes callback registered as a legacy
(`custom_call_api_version=3`) target: no native build, and, unlike `jax.pure_callback`, a program that calls
it can be written to JAX's persistent compilation cache.

It prints (1) each eligible ResNet-18 layer's weight gradient alone: the planned formulation vs the BLAS
call; (2) whole train steps, one process, rounds in a shuffled order: the planned step, the same plan built
again (A/A: the noise floor), the step with the BLAS weight gradients, and the step with those weight
gradients replaced by zeros (what removing them entirely could save at most). Ratios are paired medians
against the planned step; above 1 is faster.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import glob
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_lowering import FIXTURES, netspec_steps, time_rounds, timeit  # noqa: E402
from netspec.kernels import conv as K  # noqa: E402

TARGET = "netspec_probe_blas_dw"
_I64 = ctypes.c_int64
# Legacy CPU custom call, API version 3: (out, inputs, opaque, opaque length, status).
_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                            ctypes.c_size_t, ctypes.c_void_p)


def _openblas(threads: int) -> Callable[..., None]:
    """C (ci x co) = A^T B for row-major A (rows x ci), B (rows x co), through NumPy's bundled OpenBLAS."""
    libs = glob.glob(str(Path(np.__file__).parent.parent / "numpy.libs" / "libscipy_openblas64_*.so"))
    if not libs:
        sys.exit("NumPy's bundled OpenBLAS (numpy.libs/libscipy_openblas64_*.so) not found")
    lib = ctypes.CDLL(libs[0])
    lib.scipy_openblas_set_num_threads64_(ctypes.c_int(threads))
    gemm = lib.scipy_cblas_sgemm64_
    gemm.restype = None
    gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _I64, _I64, _I64, ctypes.c_float,
                     ctypes.c_void_p, _I64, ctypes.c_void_p, _I64, ctypes.c_float, ctypes.c_void_p, _I64]

    def atb(rows: int, ci: int, co: int, a: int, b: int, c: int) -> None:
        gemm(101, 112, 111, ci, co, rows, 1.0, a, ci, b, co, 0.0, c, co)  # row-major, A transposed
    return atb


def _mkl(threads: int) -> Callable[..., None]:
    """The same product through the MKL that PyTorch's CPU wheel links (its Fortran SGEMM_64 entry)."""
    try:
        import torch
    except ImportError:
        sys.exit("--library mkl needs torch (pip install -e '.[torch]')")
    torch.set_num_threads(threads)
    gemm = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")).SGEMM_64
    gemm.restype = None
    ref = ctypes.byref
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def atb(rows: int, ci: int, co: int, a: int, b: int, c: int) -> None:
        # Column-major view: C^T (co x ci) = B^T (co x rows) . A (rows x ci).
        gemm(b"N", b"T", ref(_I64(co)), ref(_I64(ci)), ref(_I64(rows)), ref(one), ctypes.c_void_p(b),
             ref(_I64(co)), ctypes.c_void_p(a), ref(_I64(ci)), ref(zero), ctypes.c_void_p(c), ref(_I64(co)))
    return atb


def register(library: str, threads: int) -> Any:
    """Register the custom-call target; the returned handler must stay referenced while programs run."""
    atb = (_mkl if library == "mkl" else _openblas)(threads)

    def handler(out: int, ins: Any, opaque: bytes, size: int, _status: int) -> None:
        rows, ci, co, *offsets = map(int, opaque[:size].split(b","))
        for tap, offset in enumerate(offsets):
            atb(rows, ci, co, ins[0] + 4 * offset * ci, ins[1], out + 4 * tap * ci * co)

    callback = _HANDLER(handler)
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(callback), platform="cpu", api_version=0)
    return callback


def eligible(spec: Any, x: jax.Array, w_shape: Any) -> bool:
    return (spec.stride == (1, 1) and spec.groups == 1 and w_shape.shape[2] > 1
            and x.dtype == w_shape.dtype == jnp.float32)


def blas_weight_grad(spec: Any, x: jax.Array, w_shape: Any, dy: jax.Array) -> jax.Array:
    kh, kw, ci, co = w_shape.shape
    (top, bottom), (left, right) = spec.padding
    zero = jnp.zeros((), jnp.float32)
    xp = lax.pad(x, zero, ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    n, hp, wp, _ = xp.shape
    ho, wo = dy.shape[1:3]
    # Output-gradient rows on the padded grid; the rows past (ho, wo) are zero, so each tap's product may
    # run over whole padded rows, and the last max(offset) rows (all zero there) are left out.
    dyp = lax.pad(dy.astype(jnp.float32), zero, ((0, 0, 0), (0, hp - ho, 0), (0, wp - wo, 0), (0, 0, 0)))
    offsets = [i * spec.dilation[0] * wp + j * spec.dilation[1] for i in range(kh) for j in range(kw)]
    config = ",".join(map(str, [n * hp * wp - max(offsets), ci, co, *offsets]))
    dw = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((kh * kw, ci, co), jnp.float32),
                          custom_call_api_version=3, legacy_backend_config=config)(xp, dyp)
    return dw.reshape(kh, kw, ci, co)


def zero_weight_grad(spec: Any, x: jax.Array, w_shape: Any, dy: jax.Array) -> jax.Array:
    return jnp.zeros(w_shape.shape, w_shape.dtype)


@dataclasses.dataclass
class Patch:
    """Swap the weight gradient of eligible layers while a program is traced (netspec_steps compiles)."""

    weight_grad: Callable[..., jax.Array]
    all_layers: bool
    swapped: set[tuple[Any, ...]] = dataclasses.field(default_factory=set)

    def __enter__(self) -> Patch:
        self._plan, self._taps = K.choose_plan, K._WEIGHT_GRAD["taps"]

        def plan(backend: str, geom: K.ConvGeometry, xla_convs: bool = False) -> K.Plan:
            p = self._plan(backend, geom, xla_convs)
            if self.all_layers and p.weight_grad != "taps" and geom.stride == (1, 1) and geom.groups == 1:
                # Route XLA-planned layers through the custom VJP so that their weight gradient is swapped.
                return dataclasses.replace(p, forward="xla" if p.forward == "cols" else p.forward,
                                           input_grad="xla" if p.input_grad == "cols" else p.input_grad,
                                           weight_grad="taps")
            return p

        def weight_grad(spec: Any, x: jax.Array, w_shape: Any, dy: jax.Array) -> jax.Array:
            if eligible(spec, x, w_shape):
                self.swapped.add((x.shape, w_shape.shape))
                return self.weight_grad(spec, x, w_shape, dy)
            return self._taps(spec, x, w_shape, dy)

        K.choose_plan, K._WEIGHT_GRAD["taps"] = plan, weight_grad
        return self

    def __exit__(self, *exc: Any) -> None:
        K.choose_plan, K._WEIGHT_GRAD["taps"] = self._plan, self._taps


def per_layer(batch: int, repeats: int, xla_convs: bool) -> None:
    print(f"weight gradient alone, ResNet-18 (CIFAR) 3x3 stride-1 layers, batch {batch}, "
          f"ms (median of {repeats})")
    for size, channels in ((32, 64), (16, 128), (8, 256), (4, 512)):
        geom = K.ConvGeometry(batch, size, size, channels, channels, (3, 3), (1, 1), ((1, 1), (1, 1)))
        plan = K.choose_plan("cpu", geom, xla_convs)
        spec = K._Spec((1, 1), ((1, 1), (1, 1)), (1, 1), 1, None, plan)
        rs = np.random.RandomState(0)
        x = jnp.asarray(rs.randn(batch, size, size, channels), jnp.float32)
        dy = jnp.asarray(rs.randn(batch, size, size, channels), jnp.float32)
        w_shape = jax.ShapeDtypeStruct((3, 3, channels, channels), jnp.float32)
        options = K.compiler_options("cpu", "auto", [geom], train=True) if xla_convs else {}
        planned = jax.jit(lambda x, dy: K._WEIGHT_GRAD[plan.weight_grad](spec, x, w_shape, dy),
                          compiler_options=options)
        blas = jax.jit(lambda x, dy: blas_weight_grad(spec, x, w_shape, dy), compiler_options=options)
        ref = planned(x, dy)
        err = float(jnp.max(jnp.abs(blas(x, dy) - ref)) / jnp.max(jnp.abs(ref)))
        t_plan = timeit(lambda: planned(x, dy), repeats)[1]
        t_blas = timeit(lambda: blas(x, dy), repeats)[1]
        name = f"{plan.weight_grad}/{plan.weight_grad_chunk}" if plan.weight_grad_chunk else plan.weight_grad
        print(f"  {channels:3d}->{channels:<3d} {size:2d}x{size:<2d}  planned ({name:7s}) "
              f"{1e3 * t_plan:7.1f}   blas {1e3 * t_blas:7.1f}   {t_plan / t_blas:5.2f}x   "
              f"rel. error {err:.1e}")


def whole_step(batch: int, rounds: int, all_layers: bool) -> None:
    spec = FIXTURES / "resnet18_cifar.yaml"
    steps = {"planned": netspec_steps(spec, batch, 10, (3, 32, 32)),
             "planned again": netspec_steps(spec, batch, 10, (3, 32, 32))}
    with Patch(blas_weight_grad, all_layers) as patch:
        steps["blas weight grads"] = netspec_steps(spec, batch, 10, (3, 32, 32))
    with Patch(zero_weight_grad, all_layers):
        steps["no weight grads"] = netspec_steps(spec, batch, 10, (3, 32, 32))
    print(f"whole ResNet-18 (CIFAR) train step, batch {batch}: {len(patch.swapped)} weight-gradient shapes "
          f"swapped: {sorted(s[1] for s in patch.swapped)}")
    fns = {name: s["train"] for name, s in steps.items()}
    for fn in fns.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    time_rounds(fns, rounds, times)
    base = np.array(times["planned"])
    for name, t in times.items():
        paired = float(np.median(base / np.array(t)))
        print(f"  {name:18s} median {1e3 * statistics.median(t):8.1f} ms   "
              f"[{1e3 * np.percentile(t, 25):.1f}-{1e3 * np.percentile(t, 75):.1f}]   {paired:5.3f}x planned")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", choices=("openblas", "mkl"), default="openblas")
    ap.add_argument("--threads", type=int, default=2, help="the library's threads (XLA keeps its own pool)")
    ap.add_argument("--layers", choices=("taps", "all"), default="taps",
                    help="swap only layers planned as taps, or every stride-1 ungrouped layer")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-layers", action="store_true", help="only the whole-step rounds")
    args = ap.parse_args()
    keep = register(args.library, args.threads)
    print(f"library {args.library}, {args.threads} thread(s); jax {jax.__version__}, {os.cpu_count()} cores")
    if not args.skip_layers:
        # ResNet-18's program runs on XLA's convolutions (Model.compiler_options), so plan for that.
        per_layer(args.batch, args.repeats, xla_convs=True)
    whole_step(args.batch, args.rounds, args.layers == "all")
    del keep


if __name__ == "__main__":
    main()
