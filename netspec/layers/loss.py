"""Softmax, losses and metrics (softmax_layer.cpp, softmax_loss_layer.cpp, accuracy_layer.cpp,
euclidean_loss_layer.cpp). Losses and Accuracy produce scalars (a 0-axis blob)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, Mapping

from netspec.layers.base import LayerType, Message, Shape, ShapeError, count, fmt_shape
from netspec.layers.spatial import canonical_axis
from netspec.message import Field, PositiveInt

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class SoftmaxParameter(Message):
    axis: int = 1
    engine: str = "DEFAULT"


class LossParameter(Message):
    ignore_label: int | None = None
    normalization: Literal["FULL", "VALID", "BATCH_SIZE", "NONE"] | None = None
    normalize: bool | None = Field(None, description="deprecated; false means BATCH_SIZE")


class AccuracyParameter(Message):
    top_k: PositiveInt = 1
    axis: int = 1
    ignore_label: int | None = None


def _labels_match(layer: LayerSpec, scores: Shape, labels: Shape, axis_field: int, what: str) -> tuple[int, int]:
    axis = canonical_axis(axis_field, len(scores))
    outer, inner = count(scores[:axis]), count(scores[axis + 1:])
    if count(labels) != outer * inner:
        raise ShapeError(f"{what} {fmt_shape(labels)} has {count(labels)} labels but the scores "
                         f"{fmt_shape(scores)} need {outer * inner} (one per position outside axis {axis})")
    return axis, scores[axis]


class Softmax(LayerType):
    type_name = "Softmax"
    messages: ClassVar[Mapping[str, type[Message]]] = {"softmax_param": SoftmaxParameter}
    summary = "softmax over axis"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        canonical_axis(cls.message(layer).axis, len(bottoms[0]))
        return (bottoms[0],)


class SoftmaxWithLoss(LayerType):
    type_name = "SoftmaxWithLoss"
    messages: ClassVar[Mapping[str, type[Message]]] = {"softmax_param": SoftmaxParameter,
                                                       "loss_param": LossParameter}
    bottoms = (2, 2)
    tops = (1, 2)
    is_loss = True
    summary = "softmax + multinomial logistic loss, normalised as loss_param says"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        _labels_match(layer, bottoms[0], bottoms[1], cls.message(layer).axis, "label blob")
        return ((),) + ((bottoms[0],) if len(layer.top) > 1 else ())


class Accuracy(LayerType):
    type_name = "Accuracy"
    messages: ClassVar[Mapping[str, type[Message]]] = {"accuracy_param": AccuracyParameter}
    bottoms = (2, 2)
    tops = (1, 2)
    summary = "top-k accuracy (ties count against you)"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        p: AccuracyParameter = cls.message(layer)
        _, classes = _labels_match(layer, bottoms[0], bottoms[1], p.axis, "label blob")
        if p.top_k > classes:
            raise ShapeError(f"top_k {p.top_k} exceeds the {classes} classes", field=("accuracy_param", "top_k"))
        return ((),) + (((classes,),) if len(layer.top) > 1 else ())


class EuclideanLoss(LayerType):
    type_name = "EuclideanLoss"
    bottoms = (2, 2)
    is_loss = True
    summary = "Σ(a − b)² / 2N"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        a, b = bottoms
        if count(a) != count(b) or a[:1] != b[:1]:
            raise ShapeError(f"bottoms must have the same count: {fmt_shape(a)} vs {fmt_shape(b)}")
        return ((),)


LAYERS = (Softmax, SoftmaxWithLoss, Accuracy, EuclideanLoss)
