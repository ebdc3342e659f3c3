"""The matrix products a convolution's weight gradient is made of, in XLA vs the BLAS libraries beside it.

    python tools/bench_gemm.py            # XLA (jit dot_general) vs NumPy's BLAS vs PyTorch's, GFLOP/s
    python tools/bench_gemm.py --rounds 5 --repeats 9

A weight gradient contracts over every output pixel of the batch (K = N*Ho*Wo rows) into a small
(Ci, Co) or (kh*kw*Ci, Co) result, with both operands contracted on their major axis as they come out of
the forward pass. That shape, and not the convolution around it, is where XLA:CPU's dot (Eigen) falls
furthest behind the MKL/oneDNN kernels PyTorch runs (docs/performance.md items 11 and 12). Rows:
ResNet-18 CIFAR b128's products (`taps`: one per kernel offset; `im2col`: one for the whole kernel), the
mixed net's conv3, and a square 2048^3 product for the machine's peak. Columns: XLA as a weight gradient
gets its operands, XLA with the left one pre-transposed (its preferred layout), NumPy (whichever BLAS it
was built with; OpenBLAS in the PyPI wheels), PyTorch (the torch extra) where installed. The candidates'
blocks of calls alternate, so background load hits them alike; medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lowering import timeit  # noqa: E402

# (name, K, M, N): products (K, M)^T @ (K, N)
SHAPES = [
    ("resnet18 64->64 32x32 taps", 128 * 32 * 32, 64, 64),
    ("resnet18 64->64 32x32 taps, padded rows", 128 * 34 * 34, 64, 64),
    ("resnet18 64->64 32x32 im2col", 128 * 32 * 32, 576, 64),
    ("resnet18 128->128 16x16 im2col", 128 * 16 * 16, 1152, 128),
    ("resnet18 256->256 8x8 im2col", 128 * 8 * 8, 2304, 256),
    ("mixed conv3 64->64 16x16 taps", 64 * 16 * 16, 64, 64),
    ("square", 2048, 2048, 2048),
]


def candidates(a: np.ndarray, b: np.ndarray) -> dict[str, Callable[[], object]]:
    """One zero-argument call per implementation, each computing a.T @ b on operands already in place."""
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jat = jnp.asarray(np.ascontiguousarray(a.T))
    as_wgrad = jax.jit(lambda x, y: jax.lax.dot_general(x, y, (((0,), (0,)), ((), ()))))
    pre_t = jax.jit(lambda xt, y: xt @ y)
    fns: dict[str, Callable[[], object]] = {
        "xla": lambda: as_wgrad(ja, jb).block_until_ready(),
        "xla lhs^T": lambda: pre_t(jat, jb).block_until_ready(),
        "numpy": lambda: a.T @ b,
    }
    try:
        import torch
    except ImportError:
        return fns
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    fns["torch"] = lambda: ta.T @ tb
    return fns


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="calls in a block")
    ap.add_argument("--rounds", type=int, default=3, help="blocks of each implementation, in turn")
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)  # as many threads as XLA's pool and NumPy's BLAS
        torch_note = f", torch {torch.__version__} (MKL: {torch.backends.mkl.is_available()})"
    except ImportError:
        torch_note = ", torch not installed"
    blas = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {}).get("name", "?")
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs; numpy {np.__version__} "
          f"({blas}){torch_note}; GFLOP/s, median of {args.rounds} rounds of {args.repeats}-call blocks")
    rng = np.random.default_rng(0)
    header = None
    for name, k, m, n in SHAPES:
        a = rng.standard_normal((k, m), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        fns = candidates(a, b)
        if header is None:
            header = f"{'product (K x M)^T (K x N)':<62}" + "".join(f"{c:>11}" for c in fns) + "   best/xla"
            print(header)
        for fn in fns.values():  # compile and warm up
            fn()
        # Blocks of consecutive calls, the blocks in turn: BLAS threads spin for a while after a call,
        # so a call right after another library's steals cores from it.
        times: dict[str, list[float]] = {c: [] for c in fns}
        for _ in range(args.rounds):
            for c, fn in fns.items():
                times[c].append(timeit(fn, args.repeats)[1])  # a first call, then the block's median
        gflops = {c: 2 * k * m * n / 1e9 / float(np.median(t)) for c, t in times.items()}
        label = f"{name} ({k}x{m})^T ({k}x{n})"
        print(f"{label:<62}" + "".join(f"{g:>11.1f}" for g in gflops.values())
              + f"   {max(gflops.values()) / gflops['xla']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
