"""Pooling (caffe/src/caffe/layers/pooling_layer.cpp).

out = ⌈(in + 2p − k)/s⌉ + 1 (CEIL, Caffe's default; ⌊⌋ under round_mode FLOOR), then, only when
p > 0, one less if the last window would start inside the padding: (out − 1)·s ≥ in + p.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, Mapping

from netspec.layers.base import LayerType, Message, Shape, ShapeError, Window, fmt_shape, gather
from netspec.layers.spatial import axis_names
from netspec.message import Field, NonNegativeInt, PositiveInt

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class PoolingParameter(Message):
    """Caffe `PoolingParameter`."""

    pool: Literal["MAX", "AVE", "STOCHASTIC"] = Field("MAX", description="pooling method")
    pad: NonNegativeInt = Field(0, description="zero padding per side")
    pad_h: NonNegativeInt | None = None
    pad_w: NonNegativeInt | None = None
    kernel_size: PositiveInt | None = Field(None, description="window size (square)")
    kernel_h: PositiveInt | None = None
    kernel_w: PositiveInt | None = None
    stride: PositiveInt = Field(1, description="window step")
    stride_h: PositiveInt | None = None
    stride_w: PositiveInt | None = None
    engine: str = "DEFAULT"
    global_pooling: bool = Field(False, description="pool the whole H×W plane to 1×1")
    round_mode: Literal["CEIL", "FLOOR"] = Field("CEIL", description="output size rounding")


def pooled_size(size: int, k: int, s: int, p: int, ceil: bool = True) -> int:
    """Caffe's pooled extent along one axis, before the >= 1 check."""
    span = size + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pair(p: PoolingParameter, stem: str, single: int | None, default: int | None) -> tuple[int, int]:
    h, w = getattr(p, f"{stem}_h"), getattr(p, f"{stem}_w")
    field = "kernel_size" if stem == "kernel" else stem
    if h is not None or w is not None:
        if single is not None and (stem == "kernel" or single != default):
            raise ShapeError(f"give either '{field}' or '{stem}_h'/'{stem}_w', not both",
                             field=("pooling_param", field))
        if h is None or w is None:
            raise ShapeError(f"'{stem}_h' and '{stem}_w' go together",
                             field=("pooling_param", f"{stem}_h" if w is None else f"{stem}_w"))
        return (h, w)
    if single is None:
        if default is None:
            raise ShapeError("pooling needs 'kernel_size' (or kernel_h/kernel_w, or global_pooling: true)",
                             field=("pooling_param",))
        return (default, default)
    return (single, single)


class Geometry:
    """Per-axis kernel, stride and pad of one pooling layer on one 4-D input."""

    def __init__(self, layer: LayerSpec, bottom: Shape) -> None:
        p: PoolingParameter = layer.messages["pooling_param"]
        self.p = p
        if len(bottom) != 4:
            raise ShapeError(f"pooling needs a 4-D N×C×H×W input, got {fmt_shape(bottom)}")
        self.size = bottom[2:]
        if p.global_pooling:
            if p.kernel_size is not None or p.kernel_h is not None:
                raise ShapeError("global_pooling takes the whole plane; remove the kernel size",
                                 field=("pooling_param", "global_pooling"))
            self.kernel = (bottom[2], bottom[3])
            self.stride, self.pad = (1, 1), (0, 0)
            pad, stride = gather(lambda: _pair(p, "pad", p.pad, 0), lambda: _pair(p, "stride", p.stride, 1))
            if pad != (0, 0) or stride != (1, 1):
                raise ShapeError("global_pooling needs pad 0 and stride 1", field=("pooling_param",))
        else:
            self.kernel, self.stride, self.pad = gather(
                lambda: _pair(p, "kernel", p.kernel_size, None), lambda: _pair(p, "stride", p.stride, 1),
                lambda: _pair(p, "pad", p.pad, 0))
        if any(self.pad) and p.pool == "STOCHASTIC":
            raise ShapeError("padding is implemented only for MAX and AVE pooling", field=("pooling_param", "pad"))
        for pad, k in zip(self.pad, self.kernel):
            if pad >= k:
                raise ShapeError(f"pad {pad} must be smaller than the kernel {k}", field=("pooling_param", "pad"))


class Pooling(LayerType):
    type_name = "Pooling"
    messages: ClassVar[Mapping[str, type[Message]]] = {"pooling_param": PoolingParameter}
    tops = (1, 2)
    summary = "MAX/AVE pooling with Caffe's ceil rounding and pad clip"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        g = Geometry(layer, bottoms[0])
        ceil = g.p.round_mode == "CEIL"
        out = []
        for name, size, k, s, p in zip(axis_names(2), g.size, g.kernel, g.stride, g.pad):
            o = pooled_size(size, k, s, p, ceil)
            if o < 1:
                raise ShapeError(f"window {k} does not fit the padded input: {size}+2·{p} = {size + 2 * p} "
                                 f"{name}s", field=("pooling_param",))
            out.append(o)
        shape = bottoms[0][:2] + tuple(out)
        return (shape,) * len(layer.top)

    @classmethod
    def window(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> Window | None:
        g = Geometry(layer, bottoms[0])
        return Window(g.kernel, g.stride, g.pad, (1, 1))


LAYERS = (Pooling,)
