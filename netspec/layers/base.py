"""What a layer type is: its parameter messages and its pure shape, count and window rules.

A layer type is a stateless class. The validated YAML layer (`LayerSpec`) carries the parameter
messages; the rules read them and work on plain tuples of ints, never on arrays. The lowering to
JAX lives in `netspec.lowering` (keyed by the same type name) so that checking never imports JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from netspec.message import Message

if TYPE_CHECKING:
    from netspec.spec import LayerSpec

Shape = tuple[int, ...]


class ShapeError(Exception):
    """A layer cannot produce a shape from its bottoms. `field` locates it inside the layer."""

    def __init__(self, message: str, *, field: tuple[Any, ...] = (), hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint


class ShapeErrors(ShapeError):
    """Independent problems of one layer, raised together so that one pass reports them all."""

    def __init__(self, errors: Sequence[ShapeError]) -> None:
        super().__init__(errors[0].message, field=errors[0].field, hint=errors[0].hint)
        self.errors = tuple(errors)


def gather(*rules: Callable[[], Any]) -> tuple[Any, ...]:
    """Run independent rules; raise every ShapeError among them at once, else return their results."""
    results: list[Any] = []
    errors: list[ShapeError] = []
    for rule in rules:
        try:
            results.append(rule())
        except ShapeErrors as e:
            errors += e.errors
        except ShapeError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ShapeErrors(errors)
    return tuple(results)


@dataclass(frozen=True)
class ShapeNote:
    """A shape warning, e.g. a convolution that never reads its last input row.

    `strict` notes become errors under `netspec check --strict`.
    """

    message: str
    field: tuple[Any, ...] = ()
    strict: bool = True


@dataclass(frozen=True)
class Blob:
    """One of a layer's stored arrays (Caffe `blobs[i]`): learnable, or state such as BN statistics."""

    shape: Shape
    learnable: bool = True


@dataclass(frozen=True)
class Window:
    """A sliding window over the spatial axes, for receptive-field arithmetic.

    `transposed` windows (deconvolution) divide the jump by the stride instead of multiplying.
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool = False


#: (tops, notes, blobs, MACs, window): what `LayerType.evaluate` returns
Evaluation = tuple[tuple[Shape, ...], list[ShapeNote], tuple[Blob, ...], int, Window | None]


def count(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def fmt_shape(shape: Shape) -> str:
    """2×3×4; a 0-axis blob (Caffe allows them, e.g. a loss) is `scalar`, as in the report's table."""
    return "×".join(str(d) for d in shape) if shape else "scalar"


class LayerType:
    """Base of every layer type. Subclasses override the ClassVars and the rules they need."""

    type_name: ClassVar[str]
    #: parameter messages this type reads, by their Caffe field name (first = the primary one)
    messages: ClassVar[Mapping[str, type[Message]]] = {}
    #: allowed number of bottoms and tops: (min, max); max None = unbounded
    bottoms: ClassVar[tuple[int, int | None]] = (1, 1)
    tops: ClassVar[tuple[int, int | None]] = (1, 1)
    #: whether `top == bottom` (Caffe's in-place computation) is allowed
    in_place: ClassVar[bool] = False
    #: Caffe gives layers whose type ends in "Loss" a default loss_weight of 1 on top 0
    is_loss: ClassVar[bool] = False
    #: layers that produce the net's inputs (Input, Data, ...)
    is_input: ClassVar[bool] = False
    #: the number of parameter blobs for `param { }` entries; None = whatever `blobs()` returns
    summary: ClassVar[str] = ""

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        """Top shapes from bottom shapes (Caffe's `Reshape`). Raises ShapeError."""
        return bottoms[:1] * max(1, len(layer.top))

    @classmethod
    def notes(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> list[ShapeNote]:
        """Warnings about legal but suspicious shapes."""
        return []

    @classmethod
    def blobs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Blob, ...]:
        """Stored arrays in Caffe's blob order and layout."""
        return ()

    @classmethod
    def macs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        """Multiply-accumulates for the whole batch (FLOPs = 2 x MACs).

        Only layers that multiply the input by a weight tensor count (Convolution, Deconvolution,
        InnerProduct), as the papers count them (He et al., Simonyan & Zisserman); elementwise and
        normalising layers (BatchNorm, Scale, LRN, Eltwise, pooling, activations) count 0.
        """
        return 0

    @classmethod
    def window(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> Window | None:
        """The spatial window, or None for layers that map each position to itself."""
        return None

    @classmethod
    def evaluate(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> Evaluation:
        """Every rule for one layer, in the order above (the shape stage's single call); types whose
        rules share work, such as resolving a kernel geometry, override it to do that work once."""
        return cls.rules(layer, bottoms, cls.infer(layer, bottoms))

    @classmethod
    def rules(cls, layer: LayerSpec, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> Evaluation:
        """Every rule but the shape rule, for tops already known (an input layer's come from its source)."""
        return (tops, cls.notes(layer, bottoms), cls.blobs(layer, bottoms), cls.macs(layer, bottoms, tops),
                cls.window(layer, bottoms))

    @classmethod
    def message(cls, layer: LayerSpec) -> Any:
        """The primary parameter message (defaults filled in)."""
        return layer.messages[next(iter(cls.messages))]
