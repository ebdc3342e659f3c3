"""The `check` pipeline as one function: file -> spec -> graph -> shape report."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from netspec.graph import Phase, build
from netspec.layers.base import Shape
from netspec.shapes import ShapeReport, infer
from netspec.spec import NetSpec, load_spec


def check(spec: NetSpec | str | Path, *, phase: Phase = "TEST", input_shapes: Mapping[str, Shape] | None = None,
          batch: int | None = None, strict: bool = False) -> ShapeReport:
    """Validate a spec and infer every shape and count. Raises NetspecError with every problem."""
    if not isinstance(spec, NetSpec):
        spec = load_spec(spec)
    return infer(build(spec, phase), input_shapes, batch, strict)
