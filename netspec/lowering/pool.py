"""Pooling with Caffe's geometry on channels-last (N, H, W, C) or batch-minor (C, H, W, N) blobs.

Both layouts keep H and W on axes 1 and 2, which is all the code here touches. The output size is
netspec.layers.pool's rule (ceil + clip). The input is padded by p on the top/left and by whatever
the last window needs on the bottom/right. MAX pads with −∞ so padding
never wins. AVE sums zero-padded windows and divides by a precomputed divisor map: each window
clipped to the padded extent [−p, H+p) (so padding counts, the ceil overhang does not).
STOCHASTIC is Caffe's GPU behaviour: TEST Σx²/Σx, TRAIN one element sampled ∝ its value.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from netspec.kernels.pool import max_pool2d
from netspec.layers.pool import Geometry, pooled_size
from netspec.lowering.base import Ctx, Lowering, caffe_shape


def _extent(size: int, k: int, s: int, p: int, ceil: bool) -> tuple[int, int, int]:
    """(out, pad_lo, pad_hi) for one axis; pad_hi may be negative (the tail is never read)."""
    out = pooled_size(size, k, s, p, ceil)
    return out, p, (out - 1) * s + k - size - p


def divisor(size: int, k: int, s: int, p: int, out: int) -> np.ndarray:
    """Caffe's AVE pool_size per output position along one axis."""
    start = np.arange(out) * s - p
    return (np.minimum(start + k, size + p) - start).astype(np.float64)


def _setup(ctx: Ctx, x: Any) -> tuple[Geometry, list[tuple[int, int, int]]]:
    g = Geometry(ctx.layer, caffe_shape(x, ctx.layout))
    ceil = g.p.round_mode == "CEIL"
    return g, [_extent(n, k, s, p, ceil) for n, k, s, p in zip(g.size, g.kernel, g.stride, g.pad)]


def _pad(x: Any, ext: list[tuple[int, int, int]], value: float) -> Any:
    """Pad (or crop, for a negative tail) H and W so the windows tile exactly."""
    cfg = [(0, 0, 0)] + [(lo, hi, 0) for _, lo, hi in ext] + [(0, 0, 0)]
    return lax.pad(x, jnp.asarray(value, x.dtype), cfg)


def _reduce(x: Any, g: Geometry, init: float, op: Any) -> Any:
    return lax.reduce_window(x, init, op, (1, *g.kernel, 1), (1, *g.stride, 1), "VALID")


def _empty_windows(g: Geometry, ext: list[tuple[int, int, int]]) -> bool:
    """Whether a ceil-mode window starts past the input (possible only with pad 0): Caffe then
    outputs its −FLT_MAX initial value for MAX and 0/0 for AVE."""
    return any((out - 1) * s - p >= n for (out, _, _), s, p, n in zip(ext, g.stride, g.pad, g.size))


def _max(ctx: Ctx, x: Any, g: Geometry, ext: list[tuple[int, int, int]]) -> Any:
    xp = _pad(x, ext, -jnp.inf)
    # conv_impl "xla" is the plain-XLA lowering throughout (reduce_window, differentiated by JAX);
    # otherwise, on the CPU, the strided-slice kernel whose gradient is 8-25x faster on XLA:CPU
    # (netspec.kernels.pool). Other backends keep reduce_window, as choose_plan keeps their convolutions:
    # the kernel was measured on XLA:CPU only, and on a GPU the nets that use it trained 8-23% slower
    # than hand-written Flax (docs/performance.md). Windows of more than 49 taps (global pooling of big
    # planes) would unroll into too many slices.
    plain = (ctx.conv_impl == "xla" or g.kernel[0] * g.kernel[1] > 49
             or jax.default_backend() != "cpu")  # read at trace time, like kernels.conv.conv2d
    y = _reduce(xp, g, -jnp.inf, lax.max) if plain else max_pool2d(xp, tuple(g.kernel), tuple(g.stride))
    if _empty_windows(g, ext):
        y = jnp.maximum(y, jnp.asarray(-jnp.finfo(jnp.float32).max, y.dtype))
    return y


def _ave(ctx: Ctx, x: Any, g: Geometry, ext: list[tuple[int, int, int]]) -> Any:
    total = _reduce(_pad(x, ext, 0.0), g, 0.0, lax.add)
    (oh, _, _), (ow, _, _) = ext
    dh = divisor(g.size[0], g.kernel[0], g.stride[0], g.pad[0], oh)
    dw = divisor(g.size[1], g.kernel[1], g.stride[1], g.pad[1], ow)
    with np.errstate(divide="ignore"):  # empty windows (see _empty_windows) divide by 0, as in Caffe
        inv = (1.0 / np.outer(dh, dw))[None, :, :, None]
    return total * jnp.asarray(inv, x.dtype)


def _patches(x: Any, g: Geometry, ext: list[tuple[int, int, int]]) -> Any:
    """(N, Ho, Wo, C, kh*kw) windows of the (zero-padded) input ((C, Ho, Wo, N, kh*kw) batch-minor)."""
    xp = _pad(x, ext, 0.0)
    (oh, _, _), (ow, _, _) = ext
    rows = []
    for i in range(g.kernel[0]):
        for j in range(g.kernel[1]):
            rows.append(xp[:, i:i + (oh - 1) * g.stride[0] + 1:g.stride[0],
                           j:j + (ow - 1) * g.stride[1] + 1:g.stride[1], :])
    return jnp.stack(rows, axis=-1)


def _stochastic(ctx: Ctx, x: Any, g: Geometry, ext: list[tuple[int, int, int]]) -> Any:
    win = _patches(x, g, ext)
    total = win.sum(-1)
    if not ctx.train:
        return jnp.where(total > 0, (win * win).sum(-1) / jnp.where(total > 0, total, 1), 0)
    # Sample index ∝ value (inputs are ≥ 0, e.g. after ReLU); an all-zero window outputs 0.
    logits = jnp.log(jnp.maximum(win, 0).astype(jnp.float32))
    pick = jax.random.categorical(ctx.key(), logits, axis=-1)
    chosen = jnp.take_along_axis(win, pick[..., None], axis=-1)[..., 0]
    return jnp.where(total > 0, chosen, 0)


_METHODS = {"MAX": _max, "AVE": _ave, "STOCHASTIC": _stochastic}


def _mask(x: Any, g: Geometry, ext: list[tuple[int, int, int]]) -> Any:
    """Caffe's MAX argmax top: flat h·W + w index in the input plane, the first maximum winning."""
    _, h, w, _ = x.shape
    idx = jnp.broadcast_to(jnp.arange(h * w, dtype=jnp.float32).reshape(1, h, w, 1), x.shape)
    valid = _patches(jnp.ones_like(x), g, ext) > 0  # padding must never win
    first = jnp.argmax(jnp.where(valid, _patches(x, g, ext), -jnp.inf), axis=-1)
    chosen = jnp.take_along_axis(_patches(idx, g, ext), first[..., None], axis=-1)[..., 0]
    return jnp.where(valid.any(-1), chosen, -1.0)  # Caffe leaves -1 for an empty window


def pooling(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    g, ext = _setup(ctx, x)
    y = _METHODS[g.p.pool](ctx, x, g, ext)
    if len(ctx.layer.top) > 1:
        return (y, _mask(x, g, ext))  # float32 indices: exact up to 2^24, unlike bfloat16
    return (y,)


LOWERINGS = (Lowering("Pooling", pooling, wants="spatial"),)
