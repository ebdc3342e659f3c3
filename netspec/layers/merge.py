"""Layers that join, split or reshape blobs: Concat, Eltwise, Flatten, Reshape, Split, Slice."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, Mapping

from netspec.layers.base import LayerType, Message, Shape, ShapeError, count, fmt_shape
from netspec.layers.common import BlobShape
from netspec.layers.spatial import canonical_axis
from netspec.message import Field, NonNegativeInt, Repeated

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class ConcatParameter(Message):
    axis: int = 1
    concat_dim: NonNegativeInt | None = Field(None, description="deprecated spelling of axis")


class EltwiseParameter(Message):
    operation: Literal["PROD", "SUM", "MAX"] = "SUM"
    coeff: Repeated[float] = Field((), description="SUM only: one coefficient per bottom")
    stable_prod_grad: bool = True


class FlattenParameter(Message):
    axis: int = 1
    end_axis: int = -1


class ReshapeParameter(Message):
    shape: BlobShape = Field(default_factory=BlobShape)
    axis: int = 0
    num_axes: int = Field(-1, ge=-1)


class ReshapeShape(Message):
    """Reshape allows 0 (copy) and −1 (infer) in its dims, so it has its own BlobShape."""

    dim: Repeated[int] = ()


class ReshapeParameterDims(ReshapeParameter):
    shape: ReshapeShape = Field(default_factory=ReshapeShape)  # type: ignore[assignment]


class SliceParameter(Message):
    axis: int = 1
    slice_point: Repeated[NonNegativeInt] = ()
    slice_dim: NonNegativeInt | None = Field(None, description="deprecated spelling of axis")


def _mismatch(kind: str, shapes: tuple[Shape, ...], axis: int | None) -> str:
    listed = ", ".join(fmt_shape(s) for s in shapes)
    where = f" except along axis {axis}" if axis is not None else ""
    return f"{kind} needs bottoms of equal shape{where}; got {listed}"


class Concat(LayerType):
    type_name = "Concat"
    messages: ClassVar[Mapping[str, type[Message]]] = {"concat_param": ConcatParameter}
    bottoms = (1, None)
    summary = "joins bottoms along axis"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        p: ConcatParameter = cls.message(layer)
        if p.concat_dim is not None and "axis" in p.model_fields_set:
            raise ShapeError("give either axis or the deprecated concat_dim", field=("concat_param",))
        first = bottoms[0]
        axis = canonical_axis(p.concat_dim if p.concat_dim is not None else p.axis, len(first))
        for b in bottoms[1:]:
            if len(b) != len(first) or b[:axis] + b[axis + 1:] != first[:axis] + first[axis + 1:]:
                raise ShapeError(_mismatch("Concat", bottoms, axis))
        total = sum(b[axis] for b in bottoms)
        return (first[:axis] + (total,) + first[axis + 1:],)


class Eltwise(LayerType):
    type_name = "Eltwise"
    messages: ClassVar[Mapping[str, type[Message]]] = {"eltwise_param": EltwiseParameter}
    bottoms = (2, None)
    summary = "element-wise SUM (with coefficients), PROD or MAX"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        p: EltwiseParameter = cls.message(layer)
        if p.coeff and p.operation != "SUM":
            raise ShapeError("coeff is only for operation SUM", field=("eltwise_param", "coeff"))
        if p.coeff and len(p.coeff) != len(bottoms):
            raise ShapeError(f"{len(p.coeff)} coeff values for {len(bottoms)} bottoms",
                             field=("eltwise_param", "coeff"))
        if any(b != bottoms[0] for b in bottoms[1:]):
            raise ShapeError(_mismatch("Eltwise", bottoms, None))
        return (bottoms[0],)


class Flatten(LayerType):
    type_name = "Flatten"
    messages: ClassVar[Mapping[str, type[Message]]] = {"flatten_param": FlattenParameter}
    summary = "merges axes [axis, end_axis] in row-major (C,H,W) order"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        p: FlattenParameter = cls.message(layer)
        x = bottoms[0]
        a = canonical_axis(p.axis, len(x))
        e = canonical_axis(p.end_axis, len(x), "end_axis")
        if e < a:
            raise ShapeError(f"end_axis {p.end_axis} comes before axis {p.axis}", field=("flatten_param",))
        return (x[:a] + (count(x[a:e + 1]),) + x[e + 1:],)


class Reshape(LayerType):
    type_name = "Reshape"
    messages: ClassVar[Mapping[str, type[Message]]] = {"reshape_param": ReshapeParameterDims}
    summary = "reinterprets the row-major buffer; 0 copies a dim, −1 infers one"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        p: ReshapeParameterDims = cls.message(layer)
        x = bottoms[0]
        start = canonical_axis(p.axis, len(x) + 1) if p.axis < 0 else p.axis
        if p.axis < 0:
            start = len(x) + 1 + p.axis
        end = len(x) if p.num_axes == -1 else start + p.num_axes
        if start > len(x) or end > len(x):
            raise ShapeError(f"axis {p.axis}/num_axes {p.num_axes} do not fit a {len(x)}-D input",
                             field=("reshape_param",))
        dims = list(p.shape.dim)
        if sum(1 for d in dims if d == -1) > 1:
            raise ShapeError("at most one dim may be −1", field=("reshape_param", "shape"))
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= len(x):
                    raise ShapeError(f"dim {i} is 0 (copy) but the input has no axis {start + i}",
                                     field=("reshape_param", "shape"))
                dims[i] = x[start + i]
            elif d < -1:
                raise ShapeError(f"dim {d} is invalid", field=("reshape_param", "shape"))
        replaced = count(x[start:end])
        known = count(tuple(d for d in dims if d != -1))
        if -1 in dims:
            if known == 0 or replaced % known:
                raise ShapeError(f"cannot infer −1: {replaced} elements do not divide by {known}",
                                 field=("reshape_param", "shape"))
            dims[dims.index(-1)] = replaced // known
        elif known != replaced:
            raise ShapeError(f"reshape changes the element count: {fmt_shape(x)} has {count(x)}, "
                             f"the new shape {count(x[:start]) * known * count(x[end:])}",
                             field=("reshape_param", "shape"))
        return (x[:start] + tuple(dims) + x[end:],)


class Split(LayerType):
    type_name = "Split"
    tops = (1, None)
    summary = "copies its bottom to every top"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        return (bottoms[0],) * len(layer.top)


class Slice(LayerType):
    type_name = "Slice"
    messages: ClassVar[Mapping[str, type[Message]]] = {"slice_param": SliceParameter}
    tops = (1, None)
    summary = "cuts its bottom along axis at slice_point, or evenly"

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        p: SliceParameter = cls.message(layer)
        x = bottoms[0]
        axis = canonical_axis(p.slice_dim if p.slice_dim is not None else p.axis, len(x))
        n = len(layer.top)
        size = x[axis]
        if p.slice_point:
            points = list(p.slice_point)
            if len(points) != n - 1:
                raise ShapeError(f"{len(points)} slice_point(s) for {n} tops; need {n - 1}",
                                 field=("slice_param", "slice_point"))
            bounds = [0] + points + [size]
            if any(b <= a for a, b in zip(bounds, bounds[1:])):
                raise ShapeError(f"slice points {points} must increase strictly inside (0, {size})",
                                 field=("slice_param", "slice_point"))
            sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        else:
            if size % n:
                raise ShapeError(f"axis {axis} of size {size} does not split evenly into {n} tops",
                                 field=("slice_param",))
            sizes = [size // n] * n
        return tuple(x[:axis] + (s,) + x[axis + 1:] for s in sizes)


LAYERS = (Concat, Eltwise, Flatten, Reshape, Split, Slice)
