"""InnerProduct (caffe/src/caffe/layers/inner_product_layer.cpp).

The input is flattened from `axis` on in C,H,W order: K = prod(shape[axis:]); y = x·Wᵀ + b with
W of shape (num_output, K), or (K, num_output) when `transpose`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Mapping

from netspec.layers.base import Blob, LayerType, Message, Shape, Window, count
from netspec.layers.common import FillerParameter
from netspec.layers.spatial import canonical_axis
from netspec.message import Field, PositiveInt

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class InnerProductParameter(Message):
    """Caffe `InnerProductParameter`."""

    num_output: PositiveInt = Field(..., description="number of outputs")
    bias_term: bool = True
    weight_filler: FillerParameter = Field(default_factory=FillerParameter)
    bias_filler: FillerParameter = Field(default_factory=FillerParameter)
    axis: int = Field(1, description="first axis flattened into K")
    transpose: bool = Field(False, description="store W as (K, num_output)")


class InnerProduct(LayerType):
    type_name = "InnerProduct"
    messages: ClassVar[Mapping[str, type[Message]]] = {"inner_product_param": InnerProductParameter}
    summary = "fully connected; flattens C,H,W in Caffe's order"

    @classmethod
    def _k(cls, layer: LayerSpec, bottom: Shape) -> tuple[int, int]:
        p: InnerProductParameter = cls.message(layer)
        axis = canonical_axis(p.axis, len(bottom))
        return axis, count(bottom[axis:])

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        axis, _ = cls._k(layer, bottoms[0])
        return (bottoms[0][:axis] + (cls.message(layer).num_output,),)

    @classmethod
    def blobs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Blob, ...]:
        p: InnerProductParameter = cls.message(layer)
        _, k = cls._k(layer, bottoms[0])
        w = Blob((k, p.num_output) if p.transpose else (p.num_output, k))
        return (w, Blob((p.num_output,))) if p.bias_term else (w,)

    @classmethod
    def macs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        _, k = cls._k(layer, bottoms[0])
        return count(tops[0]) * k

    @classmethod
    def window(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> Window | None:
        # Every output sees the whole spatial extent: a window the size of the input plane.
        axis, _ = cls._k(layer, bottoms[0])
        spatial = bottoms[0][axis + 1:] if axis == 1 else ()
        if not spatial:
            return None
        ones = (1,) * len(spatial)
        return Window(tuple(spatial), ones, (0,) * len(spatial), ones)


LAYERS = (InnerProduct,)
