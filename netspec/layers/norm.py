"""Normalisation and affine layers.

LRN (lrn_layer.cpp): ACROSS_CHANNELS y = x·(k + α/n·Σx²)^−β over n neighbouring channels;
WITHIN_CHANNEL y = x·(1 + α·mean_{n×n}(x²))^−β. BatchNorm (batch_norm_layer.cpp) normalises only
and stores (mean·f, variance·f, f) as three non-learnable blobs. Scale/Bias (scale_layer.cpp,
bias_layer.cpp) multiply/add a learned (or second-bottom) tensor broadcast from `axis`.
None of them counts multiply-adds (see `LayerType.macs`): BatchNorm and Scale fold into the preceding
convolution at inference, and the papers' figures leave elementwise work out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, Mapping

from netspec.layers.base import Blob, LayerType, Message, Shape, ShapeError, Window, fmt_shape
from netspec.layers.common import FillerParameter, constant
from netspec.layers.spatial import canonical_axis
from netspec.message import Field, PositiveInt, field_validator

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class LRNParameter(Message):
    local_size: PositiveInt = Field(5, description="channels (or n×n window) summed; odd")
    alpha: float = 1.0
    beta: float = 0.75
    norm_region: Literal["ACROSS_CHANNELS", "WITHIN_CHANNEL"] = "ACROSS_CHANNELS"
    k: float = 1.0
    engine: str = "DEFAULT"

    @staticmethod
    @field_validator("local_size")
    def _odd(v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"local_size must be odd, got {v}")
        return v


class BatchNormParameter(Message):
    use_global_stats: bool | None = Field(None, description="unset: batch statistics in TRAIN, stored in TEST")
    moving_average_fraction: float = Field(0.999, ge=0.0, le=1.0)
    eps: float = Field(1e-5, gt=0.0)


class ScaleParameter(Message):
    axis: int = 1
    num_axes: int = Field(1, ge=-1)
    filler: FillerParameter = Field(default_factory=lambda: constant(1.0))
    bias_term: bool = False
    bias_filler: FillerParameter = Field(default_factory=FillerParameter)


class BiasParameter(Message):
    axis: int = 1
    num_axes: int = Field(1, ge=-1)
    filler: FillerParameter = Field(default_factory=FillerParameter)


class LRN(LayerType):
    type_name = "LRN"
    messages: ClassVar[Mapping[str, type[Message]]] = {"lrn_param": LRNParameter}
    summary = "local response normalisation (α divided by local_size)"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        if len(bottoms[0]) != 4:
            raise ShapeError(f"LRN needs a 4-D input, got {fmt_shape(bottoms[0])}")
        return (bottoms[0],)

    @classmethod
    def window(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> Window | None:
        p: LRNParameter = cls.message(layer)
        if p.norm_region == "ACROSS_CHANNELS":
            return None
        half = (p.local_size - 1) // 2
        return Window((p.local_size,) * 2, (1, 1), (half, half), (1, 1))


def _channels(bottom: Shape) -> int:
    if len(bottom) < 2:
        raise ShapeError(f"needs a channel axis (axis 1), got {fmt_shape(bottom)}")
    return bottom[1]


class BatchNorm(LayerType):
    type_name = "BatchNorm"
    messages: ClassVar[Mapping[str, type[Message]]] = {"batch_norm_param": BatchNormParameter}
    in_place = True
    summary = "normalise per channel; statistics are state, not learned (pair with Scale)"

    @classmethod
    def blobs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Blob, ...]:
        c = _channels(bottoms[0])
        return (Blob((c,), learnable=False), Blob((c,), learnable=False), Blob((1,), learnable=False))



def affine_shape(layer: LayerSpec, axis: int, num_axes: int, bottoms: tuple[Shape, ...]) -> Shape:
    """Shape of the Scale/Bias operand: bottom[axis : axis+num_axes] (or bottom 1's shape)."""
    x = bottoms[0]
    if len(bottoms) > 1:
        other = bottoms[1]
        a = canonical_axis(axis, len(x)) if other else 0
        if x[a:a + len(other)] != other:
            raise ShapeError(f"second bottom {fmt_shape(other)} does not match {fmt_shape(x)} from axis {a}")
        return other
    a = canonical_axis(axis, len(x)) if num_axes != 0 or x else 0
    end = len(x) if num_axes == -1 else a + num_axes
    if end > len(x):
        raise ShapeError(f"axis {axis} + num_axes {num_axes} goes past the {len(x)}-D input")
    return x[a:end]


class Scale(LayerType):
    type_name = "Scale"
    messages: ClassVar[Mapping[str, type[Message]]] = {"scale_param": ScaleParameter}
    bottoms = (1, 2)
    in_place = True
    summary = "y = x·s (+ b), s learned or the second bottom"

    @classmethod
    def blobs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Blob, ...]:
        p: ScaleParameter = cls.message(layer)
        shape = affine_shape(layer, p.axis, p.num_axes, bottoms)
        out = () if len(bottoms) > 1 else (Blob(shape),)
        return out + ((Blob(shape),) if p.bias_term else ())


class Bias(LayerType):
    type_name = "Bias"
    messages: ClassVar[Mapping[str, type[Message]]] = {"bias_param": BiasParameter}
    bottoms = (1, 2)
    in_place = True
    summary = "y = x + b, b learned or the second bottom"

    @classmethod
    def blobs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Blob, ...]:
        p: BiasParameter = cls.message(layer)
        shape = affine_shape(layer, p.axis, p.num_axes, bottoms)
        return () if len(bottoms) > 1 else (Blob(shape),)


LAYERS = (LRN, BatchNorm, Scale, Bias)
