"""Input and Caffe's data layers: each top is an input of the compiled model, named like the top.

Reading databases, cropping, mirroring and mean subtraction (transform_param) belong to the data
pipeline, which feeds the already-transformed batch; the lowered net starts at the blobs. A
DummyData top that is not fed is filled with its constant filler, as Caffe does every forward.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from netspec.lowering.base import Ctx, Lowering


def _fed(ctx: Ctx, *unused: Any) -> tuple[Any, ...]:
    raise AssertionError("input layers are fed by the driver")  # never called


def dummy_fill(layer: Any, index: int, shape: tuple[int, ...]) -> Any:
    """The value of an unfed DummyData top (constant fillers only)."""
    fillers = layer.messages["dummy_data_param"].data_filler
    f = fillers[index] if len(fillers) > 1 else (fillers[0] if fillers else None)
    if f is not None and f.type != "constant":
        raise ValueError(f"DummyData '{layer.name}': top '{layer.top[index]}' uses a {f.type} filler; "
                         f"feed it as an input")
    return jnp.full(shape, f.value if f is not None else 0.0, jnp.float32)


LOWERINGS = tuple(Lowering(t, _fed, wants="nchw", cast="none", is_input=True)
                  for t in ("Input", "Data", "ImageData", "MemoryData", "HDF5Data", "DummyData"))
