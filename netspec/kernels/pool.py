"""Max pooling over NHWC windows with a hand-written VJP.

``max_pool2d(xp, kernel, stride)`` pools an already padded input with VALID windows, exactly like
``lax.reduce_window(xp, -inf, lax.max, (1, kh, kw, 1), (1, sh, sw, 1), "VALID")``. Its gradient sends
each output's gradient to the first maximum of its window in raster order (row by row, left to
right), which is Caffe's rule (`PoolingLayer` keeps the first element strictly greater than the
running maximum) and also what XLA's ``select_and_scatter_add`` picks; overlapping windows add up.

Why: JAX differentiates ``reduce_window`` max through ``select_and_gather_add`` /
``select_and_scatter_add``, which XLA:CPU runs as scalar loops. For LeNet's pool1 (2x2/2 over
64x24x24x20) forward + gradient took 4.2 ms that way and 0.5 ms here; at batch 256 44 ms vs 1.7 ms
(tools/bench_lowering.py measures the whole train step). Here every pass is ``kh * kw`` strided
slices combined elementwise, which XLA fuses into a few loops (the forward stays reduce_window).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from netspec.kernels.conv import scatter_window, window

Pair = tuple[int, int]


def _forward(xp: jax.Array, kernel: Pair, stride: Pair) -> jax.Array:
    # XLA's own reduce_window: its forward is fine (and fuses better in an inference net than kh*kw
    # slices: LeNet TEST forward at b256 13 vs 31 ms); only its derivative is slow.
    return lax.reduce_window(xp, -jnp.inf, lax.max, (1, *kernel, 1), (1, *stride, 1), "VALID")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool2d(xp: jax.Array, kernel: Pair, stride: Pair) -> jax.Array:
    """VALID max pooling of the padded NHWC input ``xp`` (pad with -inf before calling)."""
    return _forward(xp, kernel, stride)


def _fwd(xp: jax.Array, kernel: Pair, stride: Pair) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    y = _forward(xp, kernel, stride)
    return y, (xp, y)


def _bwd(kernel: Pair, stride: Pair, res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    xp, y = res
    padded, out = xp.shape[1:3], y.shape[1:3]
    if tuple(stride) == tuple(kernel) and padded == (out[0] * kernel[0], out[1] * kernel[1]):
        return (_bwd_tiled(kernel, xp, y, g),)
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(y.shape, bool)  # windows whose maximum an earlier tap already claimed
    dx = jnp.zeros(xp.shape, g.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            # window(): the input element at kernel offset (i, j) of every window; scatter_window() puts
            # the hits' gradients back at those strided positions in a zero image.
            hit = (window(xp, i, j, out, stride) == y) & ~taken
            taken = taken | hit
            dx = dx + scatter_window(jnp.where(hit, g, zero), i, j, padded, stride)
    return (dx,)


max_pool2d.defvjp(_fwd, _bwd)


def _bwd_tiled(kernel: Pair, xp: jax.Array, y: jax.Array, g: jax.Array) -> jax.Array:
    """``_bwd`` for windows that tile the input exactly (stride == kernel, no overhang: LeNet's 2x2/2 pools).

    The input viewed as (A, Ho, kh, Wo, kw, B) puts each window's taps on their own axes, so the gradient is
    one elementwise pass over the input, with no padded scatter per tap: LeNet b64 train step 15.8 vs 17.3 ms
    (docs/performance.md item 9). Either spatial layout works: only axes 1 and 2 are split."""
    kh, kw = kernel
    a, h, w, b = xp.shape
    ho, wo = y.shape[1:3]
    x6 = xp.reshape(a, ho, kh, wo, kw, b)
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(y.shape, bool)
    rows = []
    for i in range(kh):
        row = []
        for j in range(kw):
            hit = (x6[:, :, i, :, j, :] == y) & ~taken
            taken = taken | hit
            row.append(jnp.where(hit, g, zero))
        rows.append(jnp.stack(row, axis=3))  # (A, Ho, Wo, kw, B)
    return jnp.stack(rows, axis=2).reshape(a, h, w, b)
