"""Caffe's rules for spatial fields given as one value, one per axis, or `_h`/`_w` (2-D only)."""

from __future__ import annotations

from typing import Any

from netspec.layers.base import ShapeError


def per_axis(msg: Any, field: str, n_spatial: int, default: int | None) -> tuple[int, ...]:
    """Resolve `kernel_size`/`stride`/`pad`/`dilation` (+ `_h`/`_w`) to one value per spatial axis."""
    # the message's fields as a dict: a message has no attribute for a field its type lacks (dilation_h)
    fields = vars(msg)
    stem = _stem(field)
    h, w = fields.get(stem + "_h"), fields.get(stem + "_w")
    values: tuple[int, ...] = fields.get(field, ()) or ()
    if h is not None or w is not None:
        if values:
            raise ShapeError(f"give either '{field}' or '{_stem(field)}_h'/'{_stem(field)}_w', not both",
                             field=(field,))
        if h is None or w is None:
            raise ShapeError(f"'{_stem(field)}_h' and '{_stem(field)}_w' go together",
                             field=(f"{_stem(field)}_w" if h is None else f"{_stem(field)}_h",))
        if n_spatial != 2:
            raise ShapeError(f"'{_stem(field)}_h'/'_w' need a 4-D input, got {n_spatial} spatial axes",
                             field=(f"{_stem(field)}_h",))
        return (h, w)
    if not values:
        if default is None:
            raise ShapeError(f"'{field}' is required", field=())
        return (default,) * n_spatial
    if len(values) == 1:
        return values * n_spatial
    if len(values) != n_spatial:
        raise ShapeError(f"'{field}' has {len(values)} values for {n_spatial} spatial axes", field=(field,))
    return tuple(values)


def _stem(field: str) -> str:
    return "kernel" if field == "kernel_size" else field


AXIS_NAMES = {1: ("column",), 2: ("row", "column"), 3: ("plane", "row", "column")}


def axis_names(n_spatial: int) -> tuple[str, ...]:
    return AXIS_NAMES.get(n_spatial, tuple(f"axis-{i}" for i in range(n_spatial)))


def canonical_axis(axis: int, ndim: int, field: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end."""
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{field} {axis} is out of range for a {ndim}-D blob", field=(field,))
    return axis % ndim
