"""Convolution and Deconvolution with any number of spatial axes, on channels-last blobs.

(In a batch-minor net, netspec.lowering.base's "chwn" layout, a 2-D convolution over axis 1 runs
netspec.kernels.conv.conv2d_batch_minor on the (C, H, W, N) blob as it is; any other one converts.)

A 2-D convolution over Caffe's channel axis 1 calls netspec.kernels.conv.conv2d (NHWC x HWIO, with its
hand-written VJP) with Caffe's symmetric padding. Every other convolution (1-D, 3-D, ... and any
Caffe `axis` other than 1) is one lax.conv_general_dilated over a channels-last (B, spatial..., C)
operand and a (k0, k1, ..., C_in/g, C_out) kernel, the N-D analogue of NHWC x HWIO.

Caffe's `axis` k says the channels are axis k, the axes before it are all batch (Caffe's
num_ = count(0, k)) and the axes after it are spatial. The lowering folds the leading axes into one
batch axis and unfolds them afterwards, so the top is bottom.shape[:k] + (num_output,) + spatial.

Deconvolution is Caffe's: the backward-data pass of a convolution whose weight is this layer's
(C_in, C_out/g, k0, k1, ...) blob, written as a forward convolution over the stride-dilated input with
padding ext−1−p and the kernel flipped and transposed per group.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax.numpy as jnp
from jax import lax

from netspec.kernels.conv import ConvGeometry, geometry
from netspec.layers.common import FillerParameter
from netspec.layers.spatial import canonical_axis, per_axis
from netspec.lowering.base import Ctx, Lowering, convert
from netspec.spec import LayerSpec

Ints = tuple[int, ...]


def _geometry(layer: LayerSpec, ndim: int) -> tuple[int, Ints, Ints, Ints, Ints]:
    """(channel axis, kernel, stride, pad, dilation) for a bottom of `ndim` axes (check has validated it)."""
    p = layer.messages["convolution_param"]
    axis = canonical_axis(p.axis, ndim)
    n = ndim - axis - 1
    return (axis, per_axis(p, "kernel_size", n, None), per_axis(p, "stride", n, 1), per_axis(p, "pad", n, 0),
            per_axis(p, "dilation", n, 1))


def _fillers(layer: LayerSpec) -> tuple[FillerParameter, ...]:
    p = layer.messages["convolution_param"]
    return (p.weight_filler, p.bias_filler) if p.bias_term else (p.weight_filler,)


def _add_bias(ctx: Ctx, y: Any) -> Any:
    """y is channels-last, so the (C_out,) bias broadcasts over the last axis."""
    if ctx.msg("convolution_param").bias_term:
        y = y + ctx.params[1]
    return y


def dimension_numbers(n_spatial: int) -> lax.ConvDimensionNumbers:
    """Channels-last operands, (k..., I, O) kernels: NWC/WIO, NHWC/HWIO, NDHWC/DHWIO, ..."""
    last = n_spatial + 1
    io = (0, last, *range(1, last))
    return lax.ConvDimensionNumbers(lhs_spec=io, rhs_spec=(last, n_spatial, *range(n_spatial)), out_spec=io)


def _channels_last(ctx: Ctx, x: Any, axis: int, fn: Callable[[Any], Any]) -> Any:
    """Apply `fn` (channels-last (B, spatial..., C) -> same) to a bottom whose Caffe channel axis is
    `axis`, and return the top in the layout the bottom came in."""
    if axis == 1:  # the driver's channels-last layout is exactly what fn takes
        return convert(fn(convert(x, ctx.layout, "nhwc")), "nhwc", ctx.layout)
    xc = convert(x, ctx.layout, "nchw")
    lead = xc.shape[:axis]
    folded = xc.reshape((math.prod(lead),) + xc.shape[axis:])
    y = convert(fn(convert(folded, "nchw", "nhwc")), "nhwc", "nchw")
    return convert(y.reshape(lead + y.shape[1:]), "nchw", ctx.layout)


def kernel_geometries(layer: LayerSpec, bottom: Ints, dtype: str) -> list[ConvGeometry]:
    """The netspec.kernels.conv.conv2d call a Convolution layer with a bottom of Caffe shape `bottom` makes
    (none for 1-D, 3-D, ... convolutions): what the program's compiler options are chosen from."""
    axis, kernel, stride, pad, dilation = _geometry(layer, len(bottom))
    if len(kernel) != 2:
        return []
    p = layer.messages["convolution_param"]
    x_shape = (math.prod(bottom[:axis]), *bottom[axis + 1:], bottom[axis])  # folded and channels-last, as run
    w_shape = (*kernel, bottom[axis] // p.group, p.num_output)
    return [geometry(x_shape, w_shape, stride, ((pad[0], pad[0]), (pad[1], pad[1])), dilation, p.group, dtype)]


def convolution(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    from netspec.kernels.conv import conv2d, conv2d_batch_minor

    axis, kernel, stride, pad, dilation = _geometry(ctx.layer, x.ndim)
    groups = ctx.msg("convolution_param").group
    w = ctx.params[0]
    if ctx.layout == "chwn" and x.ndim == 4 and axis == 1 and ctx.conv_impl in ("auto", "planned"):
        # The batch-minor net (netspec.lowering.base): (C, H, W, N) in and out, no transposes.
        y = conv2d_batch_minor(x, w, stride=stride, padding=((pad[0], pad[0]), (pad[1], pad[1])),
                               dilation=dilation, groups=groups)
        if ctx.msg("convolution_param").bias_term:
            y = y + ctx.params[1][:, None, None, None]
        return (y,)

    def run(xl: Any) -> Any:
        if xl.ndim == 4:
            y = conv2d(xl, w, stride=stride, padding=((pad[0], pad[0]), (pad[1], pad[1])), dilation=dilation,
                       groups=groups, impl=ctx.conv_impl, xla_convs=ctx.xla_convs)
        else:
            y = lax.conv_general_dilated(xl, w, stride, [(q, q) for q in pad], rhs_dilation=dilation,
                                         dimension_numbers=dimension_numbers(len(kernel)),
                                         feature_group_count=groups)
        return _add_bias(ctx, y)

    return (_channels_last(ctx, x, axis, run),)


def deconv_kernel(w: Any, groups: int) -> Any:
    """Caffe deconv weight (C_in, C_out/g, k0, k1, ...) -> (k0, k1, ..., C_in/g, C_out) kernel of the
    equivalent forward convolution: flipped spatially, in/out swapped within each group."""
    cin, cog, *k = w.shape
    n = len(k)
    w = jnp.flip(w.reshape(groups, cin // groups, cog, *k), axis=tuple(range(3, 3 + n)))
    return w.transpose(*range(3, 3 + n), 1, 0, 2).reshape(*k, cin // groups, groups * cog)


def deconvolution(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    axis, kernel, stride, pad, dilation = _geometry(ctx.layer, x.ndim)
    groups = ctx.msg("convolution_param").group
    ext = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    padding = [(e - 1 - q, e - 1 - q) for e, q in zip(ext, pad)]
    w = deconv_kernel(ctx.params[0], groups)

    def run(xl: Any) -> Any:
        y = lax.conv_general_dilated(xl, w, (1,) * len(kernel), padding, lhs_dilation=stride,
                                     rhs_dilation=dilation, dimension_numbers=dimension_numbers(len(kernel)),
                                     feature_group_count=groups)
        return _add_bias(ctx, y.astype(jnp.result_type(xl)))

    return (_channels_last(ctx, x, axis, run),)


LOWERINGS = (
    Lowering("Convolution", convolution, wants="spatial", fillers=_fillers, codecs=("hwio",)),
    Lowering("Deconvolution", deconvolution, wants="nhwc", fillers=_fillers),
)
