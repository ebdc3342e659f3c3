"""Convolution and Deconvolution on channels-last blobs.

Convolution calls netspec.kernels.conv.conv2d (NHWC x HWIO) with Caffe's symmetric padding.
Deconvolution is Caffe's: the backward-data pass of a convolution whose weight is this layer's
(C_in, C_out/g, kh, kw) blob, written as a forward convolution over the stride-dilated input with
padding ext−1−p and the kernel flipped and transposed per group.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import lax

from netspec.layers.common import FillerParameter
from netspec.layers.spatial import per_axis
from netspec.lowering.base import Ctx, Lowering
from netspec.spec import LayerSpec


def _geometry(layer: LayerSpec) -> tuple[tuple[int, int], ...]:
    p = layer.messages["convolution_param"]
    if p.axis != 1:
        raise NotImplementedError(f"layer '{layer.name}': convolution axis {p.axis} (only 1 is lowered)")
    return (per_axis(p, "kernel_size", 2, None), per_axis(p, "stride", 2, 1), per_axis(p, "pad", 2, 0),
            per_axis(p, "dilation", 2, 1))


def _spatial_check(layer: LayerSpec, x: Any) -> None:
    if x.ndim != 4:
        raise NotImplementedError(f"layer '{layer.name}': only 2-D convolution (4-D blobs) is lowered, "
                                  f"got a {x.ndim}-D input")


def _fillers(layer: LayerSpec) -> tuple[FillerParameter, ...]:
    p = layer.messages["convolution_param"]
    return (p.weight_filler, p.bias_filler) if p.bias_term else (p.weight_filler,)


def _add_bias(ctx: Ctx, y: Any) -> Any:
    if ctx.msg("convolution_param").bias_term:
        y = y + ctx.params[1]
    return y


def convolution(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    from netspec.kernels.conv import conv2d

    _spatial_check(ctx.layer, x)
    kernel, stride, pad, dilation = _geometry(ctx.layer)
    p = ctx.msg("convolution_param")
    y = conv2d(x, ctx.params[0], stride=stride, padding=((pad[0], pad[0]), (pad[1], pad[1])),
               dilation=dilation, groups=p.group, impl=ctx.conv_impl)
    return (_add_bias(ctx, y),)


def deconv_kernel(w: Any, groups: int) -> Any:
    """Caffe deconv weight (C_in, C_out/g, kh, kw) -> HWIO kernel (kh, kw, C_in/g, C_out) of the
    equivalent forward convolution: flipped spatially, in/out swapped within each group."""
    cin, cog, kh, kw = w.shape
    w = w.reshape(groups, cin // groups, cog, kh, kw)[..., ::-1, ::-1]
    return w.transpose(3, 4, 1, 0, 2).reshape(kh, kw, cin // groups, groups * cog)


def deconvolution(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    _spatial_check(ctx.layer, x)
    kernel, stride, pad, dilation = _geometry(ctx.layer)
    p = ctx.msg("convolution_param")
    ext = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    padding = [(e - 1 - q, e - 1 - q) for e, q in zip(ext, pad)]
    y = lax.conv_general_dilated(x, deconv_kernel(ctx.params[0], p.group), (1, 1), padding,
                                 lhs_dilation=stride, rhs_dilation=dilation,
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=p.group)
    return (_add_bias(ctx, y.astype(jnp.result_type(x))),)


LOWERINGS = (
    Lowering("Convolution", convolution, wants="nhwc", fillers=_fillers, codecs=("hwio",)),
    Lowering("Deconvolution", deconvolution, wants="nhwc", fillers=_fillers),
)
