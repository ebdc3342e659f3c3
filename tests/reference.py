"""A deliberately plain NumPy float64 transcription of Caffe's forward passes (CPU code paths).

Each function follows the loops of the named Caffe source file, on N,C,H,W arrays, with no
vectorisation tricks shared with netspec.lowering: the point is an independent oracle. The entry
point is `forward(layer, bottoms, blobs, train=False)`, where `layer` is a netspec LayerSpec (only its
parameter messages are read, so defaults are Caffe's) and `blobs` are Caffe-layout arrays.
BatchNorm in train mode returns the updated blobs as well (`forward_bn`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import numpy as np

FLT_MIN = float(np.finfo(np.float32).tiny)
A = np.ndarray


def _axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def _spatial(p: Any, field: str, default: int | None) -> tuple[int, int]:
    """kernel_size/stride/pad/dilation for a 2-D layer: _h/_w, one value, two values, or the default."""
    stem = "kernel" if field == "kernel_size" else field
    h, w = getattr(p, f"{stem}_h", None), getattr(p, f"{stem}_w", None)
    if h is not None:
        return (h, w)
    v = getattr(p, field, None)
    if v is None or v == ():
        return (default, default)  # type: ignore[return-value]
    if isinstance(v, int):
        return (v, v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


# --- conv_layer.cpp / deconv_layer.cpp ------------------------------------------------------------

def convolution(p: Any, x: A, w: A, b: A | None) -> A:
    kh, kw = _spatial(p, "kernel_size", None)
    sh, sw = _spatial(p, "stride", 1)
    ph, pw = _spatial(p, "pad", 0)
    dh, dw = _spatial(p, "dilation", 1)
    n, c, h, wd = x.shape
    g = p.group
    co = p.num_output
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    cig, cog = c // g, co // g
    y = np.zeros((n, co, oh, ow))
    for o in range(co):
        grp = o // cog
        for i in range(kh):
            for j in range(kw):
                for ci in range(cig):
                    cin = grp * cig + ci
                    for yy in range(oh):
                        hh = yy * sh - ph + i * dh
                        if not 0 <= hh < h:
                            continue
                        for xx in range(ow):
                            ww = xx * sw - pw + j * dw
                            if 0 <= ww < wd:
                                y[:, o, yy, xx] += x[:, cin, hh, ww] * w[o, ci, i, j]
    if b is not None:
        y += b.reshape(1, co, 1, 1)
    return y


def deconvolution(p: Any, x: A, w: A, b: A | None) -> A:
    """Scatter form (col2im of Caffe's backward-data): every input pixel paints a weighted kernel."""
    kh, kw = _spatial(p, "kernel_size", None)
    sh, sw = _spatial(p, "stride", 1)
    ph, pw = _spatial(p, "pad", 0)
    dh, dw = _spatial(p, "dilation", 1)
    n, c, h, wd = x.shape
    g = p.group
    co = p.num_output
    oh = sh * (h - 1) + dh * (kh - 1) + 1 - 2 * ph
    ow = sw * (wd - 1) + dw * (kw - 1) + 1 - 2 * pw
    cig, cog = c // g, co // g
    y = np.zeros((n, co, oh, ow))
    for cin in range(c):
        grp = cin // cig
        for oc in range(cog):
            o = grp * cog + oc
            for i in range(kh):
                for j in range(kw):
                    for yy in range(h):
                        hh = yy * sh - ph + i * dh
                        if not 0 <= hh < oh:
                            continue
                        for xx in range(wd):
                            ww = xx * sw - pw + j * dw
                            if 0 <= ww < ow:
                                y[:, o, hh, ww] += x[:, cin, yy, xx] * w[cin, oc, i, j]
    if b is not None:
        y += b.reshape(1, co, 1, 1)
    return y


def _spatial_nd(p: Any, field: str, n: int, default: int | None) -> tuple[int, ...]:
    """kernel_size/stride/pad/dilation for n spatial axes: _h/_w (2-D only), one value, n values, default."""
    stem = "kernel" if field == "kernel_size" else field
    h, w = getattr(p, f"{stem}_h", None), getattr(p, f"{stem}_w", None)
    if h is not None:
        return (h, w)
    v = tuple(getattr(p, field, None) or ())
    if not v:
        return (default,) * n  # type: ignore[return-value]
    return v * n if len(v) == 1 else v


def _nd_setup(p: Any, x: A) -> tuple[tuple[int, ...], A, tuple[tuple[int, ...], ...]]:
    """Caffe's base_conv_layer view of a bottom: the axes before `axis` are one batch axis (num_),
    `axis` is the channels, the rest are spatial. Returns (leading shape, (B, C, spatial...), geometry)."""
    axis = _axis(p.axis, x.ndim)
    n = x.ndim - axis - 1
    geometry = (_spatial_nd(p, "kernel_size", n, None), _spatial_nd(p, "stride", n, 1),
                _spatial_nd(p, "pad", n, 0), _spatial_nd(p, "dilation", n, 1))
    return x.shape[:axis], x.reshape(-1, *x.shape[axis:]), geometry


def _unfold(y: A, lead: tuple[int, ...], b: A | None) -> A:
    if b is not None:
        y = y + b.reshape(1, -1, *([1] * (y.ndim - 2)))
    return y.reshape(*lead, *y.shape[1:])


def _landings(grid: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], pad: tuple[int, ...],
              d: tuple[int, ...], bound: tuple[int, ...]) -> Any:
    """(position, tap, landing) for every position of the strided `grid` and every kernel tap whose
    landing index position·s − pad + tap·d falls inside `bound` (the padding reads or writes nothing)."""
    for pos in itertools.product(*(range(m) for m in grid)):
        for t in itertools.product(*(range(m) for m in k)):
            at = tuple(pos[i] * s[i] - pad[i] + t[i] * d[i] for i in range(len(grid)))
            if all(0 <= at[i] < bound[i] for i in range(len(grid))):
                yield pos, t, at


def convolution_nd(p: Any, x: A, w: A, b: A | None) -> A:
    """conv_layer.cpp with any number of spatial axes and any channel `axis` (im2col_nd's loops: every
    output position gathers every kernel tap that lands inside the input)."""
    lead, xb, (k, s, pad, d) = _nd_setup(p, x)
    c, size = xb.shape[1], xb.shape[2:]
    g, co = p.group, p.num_output
    cig, cog = c // g, co // g
    out = tuple((size[i] + 2 * pad[i] - (d[i] * (k[i] - 1) + 1)) // s[i] + 1 for i in range(len(size)))
    y = np.zeros((xb.shape[0], co, *out))
    for o, t, at in _landings(out, k, s, pad, d, size):
        for grp in range(g):
            patch = xb[(slice(None), slice(grp * cig, (grp + 1) * cig)) + at]       # (B, C/g)
            tap = w[(slice(grp * cog, (grp + 1) * cog), slice(None)) + t]            # (C_out/g, C/g)
            y[(slice(None), slice(grp * cog, (grp + 1) * cog)) + o] += patch @ tap.T
    return _unfold(y, lead, b)


def deconvolution_nd(p: Any, x: A, w: A, b: A | None) -> A:
    """deconv_layer.cpp with any number of spatial axes and any channel `axis` (col2im_nd's scatter:
    every input position paints its weighted kernel into the output)."""
    lead, xb, (k, s, pad, d) = _nd_setup(p, x)
    c, size = xb.shape[1], xb.shape[2:]
    g, co = p.group, p.num_output
    cig, cog = c // g, co // g
    out = tuple(s[i] * (size[i] - 1) + d[i] * (k[i] - 1) + 1 - 2 * pad[i] for i in range(len(size)))
    y = np.zeros((xb.shape[0], co, *out))
    for i_pos, t, at in _landings(size, k, s, pad, d, out):
        for grp in range(g):
            pixel = xb[(slice(None), slice(grp * cig, (grp + 1) * cig)) + i_pos]    # (B, C/g)
            tap = w[(slice(grp * cig, (grp + 1) * cig), slice(None)) + t]            # (C/g, C_out/g)
            y[(slice(None), slice(grp * cog, (grp + 1) * cog)) + at] += pixel @ tap
    return _unfold(y, lead, b)


# --- pooling_layer.cpp (+ the GPU-only stochastic TEST formula) --------------------------------------

def _pooled(size: int, k: int, s: int, pad: int, ceil: bool) -> int:
    span = size + 2 * pad - k
    out = (int(math.ceil(span / s)) if ceil else span // s) + 1
    if pad and (out - 1) * s >= size + pad:
        out -= 1
    return out


def pooling(p: Any, x: A, with_mask: bool = False) -> tuple[A, ...]:
    n, c, h, w = x.shape
    if p.global_pooling:
        (kh, kw), (sh, sw), (ph, pw) = (h, w), (1, 1), (0, 0)
    else:
        kh, kw = (p.kernel_h, p.kernel_w) if p.kernel_h is not None else (p.kernel_size, p.kernel_size)
        sh, sw = (p.stride_h, p.stride_w) if p.stride_h is not None else (p.stride, p.stride)
        ph, pw = (p.pad_h, p.pad_w) if p.pad_h is not None else (p.pad, p.pad)
    ceil = p.round_mode == "CEIL"
    oh, ow = _pooled(h, kh, sh, ph, ceil), _pooled(w, kw, sw, pw, ceil)
    y = np.zeros((n, c, oh, ow))
    mask = np.zeros((n, c, oh, ow))
    for a in range(oh):
        for b in range(ow):
            hs, ws = a * sh - ph, b * sw - pw
            if p.pool == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                for nn in range(n):
                    for cc in range(c):
                        best, arg = -float(np.finfo(np.float32).max), -1
                        for i in range(hs, he):
                            for j in range(ws, we):
                                if x[nn, cc, i, j] > best:
                                    best, arg = x[nn, cc, i, j], i * w + j
                        y[nn, cc, a, b], mask[nn, cc, a, b] = best, arg
            elif p.pool == "AVE":
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, a, b] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
            else:  # STOCHASTIC, TEST: Σx² / Σx over the window clipped to the image
                he, we = min(hs + kh, h), min(ws + kw, w)
                win = x[:, :, hs:he, ws:we]
                tot = win.sum(axis=(2, 3))
                y[:, :, a, b] = np.where(tot > 0, (win * win).sum(axis=(2, 3)) / np.where(tot > 0, tot, 1), 0)
    return (y, mask) if with_mask else (y,)


# --- inner_product_layer.cpp ----------------------------------------------------------------------

def inner_product(p: Any, x: A, w: A, b: A | None) -> A:
    axis = _axis(p.axis, x.ndim)
    m = int(np.prod(x.shape[:axis]))
    flat = x.reshape(m, -1)
    y = np.zeros((m, p.num_output))
    for r in range(m):
        for o in range(p.num_output):
            wrow = w[:, o] if p.transpose else w[o]
            y[r, o] = float(np.dot(flat[r], wrow)) + (b[o] if b is not None else 0.0)
    return y.reshape(*x.shape[:axis], p.num_output)


# --- neuron layers ----------------------------------------------------------------------------------

def relu(p: Any, x: A) -> A:
    return np.maximum(x, 0) + p.negative_slope * np.minimum(x, 0)


def prelu(p: Any, x: A, slope: A) -> A:
    out = np.empty_like(x)
    channels = x.shape[1] if x.ndim > 1 else 1
    for c in range(channels):
        a = slope[0] if p.channel_shared else slope[c]
        xc = x[:, c]
        out[:, c] = np.maximum(xc, 0) + a * np.minimum(xc, 0)
    return out


def elu(p: Any, x: A) -> A:
    return np.where(x > 0, x, p.alpha * (np.exp(np.minimum(x, 0)) - 1))


def bnll(x: A) -> A:
    return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0))))


def power(p: Any, x: A) -> A:
    return np.power(p.shift + p.scale * x, p.power)


# --- lrn_layer.cpp ----------------------------------------------------------------------------------

def lrn(p: Any, x: A) -> A:
    n, c, h, w = x.shape
    size, half = p.local_size, (p.local_size - 1) // 2
    if p.norm_region == "ACROSS_CHANNELS":
        padded = np.zeros((n, c + size - 1, h, w))
        padded[:, half:half + c] = x * x
        scale = np.full(x.shape, p.k)
        for ch in range(c):
            scale[:, ch] += (p.alpha / size) * padded[:, ch:ch + size].sum(axis=1)
        return x * scale ** (-p.beta)
    padded = np.zeros((n, c, h + 2 * half, w + 2 * half))
    padded[:, :, half:half + h, half:half + w] = x * x
    avg = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            avg[:, :, i, j] = padded[:, :, i:i + size, j:j + size].sum(axis=(2, 3)) / (size * size)
    return x * (1 + p.alpha * avg) ** (-p.beta)


# --- batch_norm_layer.cpp ---------------------------------------------------------------------------

def forward_bn(p: Any, x: A, blobs: list[A], batch_stats: bool) -> tuple[A, list[A]]:
    c = x.shape[1]
    moved = np.moveaxis(x, 1, -1).reshape(-1, c)
    m = moved.shape[0]
    if batch_stats:
        mean = moved.mean(axis=0)
        var = ((moved - mean) ** 2).mean(axis=0)
        maf = p.moving_average_fraction
        corr = m / (m - 1) if m > 1 else 1.0
        new = [maf * blobs[0] + mean, maf * blobs[1] + corr * var, maf * blobs[2] + 1]
    else:
        f = blobs[2][0]
        s = 0.0 if f == 0 else 1.0 / f
        mean, var = blobs[0] * s, blobs[1] * s
        new = list(blobs)
    shape = [1, c] + [1] * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + p.eps)
    return y, new


# --- scale_layer.cpp / bias_layer.cpp ---------------------------------------------------------------

def _operand_view(x: A, operand: A, axis: int) -> A:
    shape = [1] * axis + list(operand.shape) + [1] * (x.ndim - axis - operand.ndim)
    return operand.reshape(shape)


def scale(p: Any, x: A, operand: A, bias: A | None, two_bottoms: bool) -> A:
    axis = 0 if (two_bottoms and operand.ndim == 0) or (not two_bottoms and p.num_axes == 0) \
        else _axis(p.axis, x.ndim)
    y = x * _operand_view(x, operand, axis)
    if bias is not None:
        y = y + _operand_view(x, bias, axis)
    return y


def bias(p: Any, x: A, operand: A, two_bottoms: bool) -> A:
    axis = 0 if (two_bottoms and operand.ndim == 0) or (not two_bottoms and p.num_axes == 0) \
        else _axis(p.axis, x.ndim)
    return x + _operand_view(x, operand, axis)


# --- softmax_layer.cpp, softmax_loss_layer.cpp, accuracy_layer.cpp, euclidean_loss_layer.cpp -------

def softmax(axis: int, x: A) -> A:
    a = _axis(axis, x.ndim)
    e = np.exp(x - x.max(axis=a, keepdims=True))
    return e / e.sum(axis=a, keepdims=True)


def softmax_with_loss(sp: Any, lp: Any, x: A, label: A) -> A:
    a = _axis(sp.axis, x.ndim)
    prob = softmax(a, x)
    outer, inner, dim = int(np.prod(x.shape[:a])), int(np.prod(x.shape[a + 1:])), x.shape[a]
    pr = prob.reshape(outer, dim, inner)
    lab = label.reshape(outer, inner).astype(int)
    loss, count = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            if lp.ignore_label is not None and lab[i, j] == lp.ignore_label:
                continue
            loss -= math.log(max(pr[i, lab[i, j], j], FLT_MIN))
            count += 1
    mode = lp.normalization or ("BATCH_SIZE" if lp.normalize is False else "VALID")
    norm = {"FULL": outer * inner, "VALID": count if lp.ignore_label is not None else outer * inner,
            "BATCH_SIZE": outer, "NONE": 1}[mode]
    return np.asarray(loss / max(1.0, norm))


def accuracy(p: Any, x: A, label: A) -> tuple[A, A]:
    a = _axis(p.axis, x.ndim)
    outer, inner, dim = int(np.prod(x.shape[:a])), int(np.prod(x.shape[a + 1:])), x.shape[a]
    s = x.reshape(outer, dim, inner)
    lab = label.reshape(outer, inner).astype(int)
    correct = count = 0
    per_c, per_n = np.zeros(dim), np.zeros(dim)
    for i in range(outer):
        for j in range(inner):
            lv = lab[i, j]
            if p.ignore_label is not None and lv == p.ignore_label:
                continue
            per_n[lv] += 1
            true = s[i, lv, j]
            better = -1
            for k in range(dim):
                better += s[i, k, j] >= true
            if better < p.top_k:
                correct += 1
                per_c[lv] += 1
            count += 1
    return np.asarray(correct / count if count else 0.0), np.where(per_n > 0, per_c / np.maximum(per_n, 1), 0)


def euclidean_loss(a: A, b: A) -> A:
    d = a.ravel() - b.ravel()
    return np.asarray(np.dot(d, d) / a.shape[0] / 2)


# --- concat/eltwise/flatten/reshape/split/slice -----------------------------------------------------

def eltwise(p: Any, xs: list[A]) -> A:
    if p.operation == "PROD":
        out = xs[0].copy()
        for x in xs[1:]:
            out = out * x
        return out
    if p.operation == "MAX":
        out = xs[0].copy()
        for x in xs[1:]:
            out = np.maximum(out, x)
        return out
    coeff = p.coeff or [1.0] * len(xs)
    return sum(c * x for c, x in zip(coeff, xs))


def slice_(p: Any, x: A, ntops: int) -> tuple[A, ...]:
    a = _axis(p.slice_dim if p.slice_dim is not None else p.axis, x.ndim)
    pts = list(p.slice_point) or [x.shape[a] // ntops * i for i in range(1, ntops)]
    bounds = [0] + pts + [x.shape[a]]
    return tuple(np.take(x, range(lo, hi), axis=a) for lo, hi in zip(bounds, bounds[1:]))


def reshape(p: Any, x: A) -> A:
    dims = list(p.shape.dim)
    start = p.axis if p.axis >= 0 else x.ndim + 1 + p.axis
    end = x.ndim if p.num_axes == -1 else start + p.num_axes
    for i, d in enumerate(dims):
        if d == 0:
            dims[i] = x.shape[start + i]
    new = list(x.shape[:start]) + dims + list(x.shape[end:])
    return x.reshape([-1 if d == -1 else d for d in new])


def flatten(p: Any, x: A) -> A:
    a, e = _axis(p.axis, x.ndim), _axis(p.end_axis, x.ndim)
    return x.reshape(*x.shape[:a], -1, *x.shape[e + 1:])


# --- dispatcher -------------------------------------------------------------------------------------

def _neuron(fn: Callable[[A], A]) -> Callable[..., tuple[A, ...]]:
    return lambda layer, bottoms, blobs: (fn(bottoms[0]),)


def _msg(layer: Any, name: str) -> Any:
    return layer.messages[name]


TABLE: dict[str, Callable[..., tuple[A, ...]]] = {
    "Convolution": lambda l, b, w: (convolution(_msg(l, "convolution_param"), b[0], w[0],
                                                w[1] if len(w) > 1 else None),),
    "Deconvolution": lambda l, b, w: (deconvolution(_msg(l, "convolution_param"), b[0], w[0],
                                                    w[1] if len(w) > 1 else None),),
    "Pooling": lambda l, b, w: pooling(_msg(l, "pooling_param"), b[0], with_mask=len(l.top) > 1),
    "InnerProduct": lambda l, b, w: (inner_product(_msg(l, "inner_product_param"), b[0], w[0],
                                                   w[1] if len(w) > 1 else None),),
    "ReLU": lambda l, b, w: (relu(_msg(l, "relu_param"), b[0]),),
    "PReLU": lambda l, b, w: (prelu(_msg(l, "prelu_param"), b[0], w[0]),),
    "ELU": lambda l, b, w: (elu(_msg(l, "elu_param"), b[0]),),
    "Sigmoid": _neuron(lambda x: 1 / (1 + np.exp(-x))),
    "TanH": _neuron(np.tanh),
    "BNLL": _neuron(bnll),
    "AbsVal": _neuron(np.abs),
    "Power": lambda l, b, w: (power(_msg(l, "power_param"), b[0]),),
    "Dropout": lambda l, b, w: (b[0] if _msg(l, "dropout_param").scale_train
                                else b[0] * (1 - _msg(l, "dropout_param").dropout_ratio),),
    "LRN": lambda l, b, w: (lrn(_msg(l, "lrn_param"), b[0]),),
    "BatchNorm": lambda l, b, w: (forward_bn(_msg(l, "batch_norm_param"), b[0], w,
                                             _msg(l, "batch_norm_param").use_global_stats is False)[0],),
    "Scale": lambda l, b, w: (scale(_msg(l, "scale_param"), b[0], b[1] if len(b) > 1 else w[0],
                                    (w[-1] if _msg(l, "scale_param").bias_term else None), len(b) > 1),),
    "Bias": lambda l, b, w: (bias(_msg(l, "bias_param"), b[0], b[1] if len(b) > 1 else w[0], len(b) > 1),),
    "Softmax": lambda l, b, w: (softmax(_msg(l, "softmax_param").axis, b[0]),),
    "SoftmaxWithLoss": lambda l, b, w: (softmax_with_loss(_msg(l, "softmax_param"), _msg(l, "loss_param"),
                                                          b[0], b[1]),)
    + ((softmax(_msg(l, "softmax_param").axis, b[0]),) if len(l.top) > 1 else ()),
    "Accuracy": lambda l, b, w: accuracy(_msg(l, "accuracy_param"), b[0], b[1])[:len(l.top)],
    "EuclideanLoss": lambda l, b, w: (euclidean_loss(b[0], b[1]),),
    "Concat": lambda l, b, w: (np.concatenate(b, axis=_axis(
        _msg(l, "concat_param").concat_dim if _msg(l, "concat_param").concat_dim is not None
        else _msg(l, "concat_param").axis, b[0].ndim)),),
    "Eltwise": lambda l, b, w: (eltwise(_msg(l, "eltwise_param"), list(b)),),
    "Flatten": lambda l, b, w: (flatten(_msg(l, "flatten_param"), b[0]),),
    "Reshape": lambda l, b, w: (reshape(_msg(l, "reshape_param"), b[0]),),
    "Split": lambda l, b, w: (b[0],) * len(l.top),
    "Slice": lambda l, b, w: slice_(_msg(l, "slice_param"), b[0], len(l.top)),
}


def forward(layer: Any, bottoms: list[A], blobs: list[A]) -> tuple[A, ...]:
    """Caffe's TEST-phase forward of one layer (BatchNorm with global statistics unless
    use_global_stats is false) in float64."""
    f = TABLE[layer.type]
    return f(layer, [np.asarray(b, np.float64) for b in bottoms], [np.asarray(w, np.float64) for w in blobs])


# --- backward passes of the layers whose kinks decide ties by rule ----------------------------------
# relu_layer.cpp, prelu_layer.cpp, eltwise_layer.cpp (Backward_cpu): at a kink the gradient follows the
# comparison the forward made, never an average of the two sides.

def relu_backward(p: Any, x: A, dy: A) -> A:
    return dy * ((x > 0) + p.negative_slope * (x <= 0))


def prelu_backward(p: Any, x: A, slope: A, dy: A) -> tuple[A, A]:
    """(bottom diff, slope diff); x has a channel axis 1, as in `prelu`."""
    dx = np.empty_like(x)
    dslope = np.zeros_like(slope)
    for c in range(x.shape[1]):
        k = 0 if p.channel_shared else c
        xc, neg = x[:, c], x[:, c] <= 0
        dx[:, c] = dy[:, c] * ((xc > 0) + slope[k] * neg)
        dslope[k] += np.sum(dy[:, c] * xc * neg)
    return dx, dslope


def eltwise_max_backward(xs: list[A], dy: A) -> list[A]:
    """Forward's argmax mask: bottom 1 wins a tie with bottom 0; a later bottom must be strictly greater."""
    mask = np.where(xs[0] > xs[1], 0, 1)
    top = np.where(xs[0] > xs[1], xs[0], xs[1])
    for i, x in enumerate(xs[2:], start=2):
        better = x > top
        mask = np.where(better, i, mask)
        top = np.where(better, x, top)
    return [dy * (mask == i) for i in range(len(xs))]


# --- data layers: input_layer.cpp, dummy_data_layer.cpp and the database readers -------------------

DATA_TYPES = ("Input", "Data", "ImageData", "MemoryData", "HDF5Data", "DummyData")


def data_layer(layer: Any, fed: dict[str, A], shapes: list[tuple[int, ...]]) -> tuple[A, ...]:
    """A data layer's tops in float64: whatever the reader (or, for Input, the user) put there.
    Caffe fills DummyData from data_filler (none: constant 0; one: every top; else one per top);
    netspec lets a fed array stand in for a DummyData top, so a fed top wins here too."""
    out = []
    for i, (top, shape) in enumerate(zip(layer.top, shapes)):
        if top in fed:
            out.append(np.asarray(fed[top], np.float64))
            continue
        if layer.type != "DummyData":
            raise ValueError(f"{layer.type} top '{top}' must be fed")
        fillers = layer.messages["dummy_data_param"].data_filler
        f = fillers[i] if len(fillers) > 1 else (fillers[0] if fillers else None)
        if f is not None and f.type != "constant":
            raise ValueError(f"only constant fillers have a deterministic value, not {f.type}")
        out.append(np.full(shape, 0.0 if f is None else float(f.value)))
    return tuple(out)
