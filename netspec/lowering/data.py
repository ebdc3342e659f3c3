"""Input and Caffe's data layers: each top is an input of the compiled model, named like the top.

Reading databases, cropping, mirroring and mean subtraction (transform_param) belong to the data
pipeline, which feeds the already-transformed batch; the lowered net starts at the blobs.

A DummyData top that is not fed is filled by its `data_filler` on every forward, as Caffe does (Caffe
fills constant tops once and refills random ones every forward; a constant fill is the same either
way). The random fillers (gaussian, uniform, xavier, msra, positive_unitball) of all unfed tops are
drawn together by `fillers.fill_many` from root key `rng`, the key given to `Model.apply` /
`apply_train` (the one Dropout uses), so a top's values depend only on (rng, layer name, top index)
and every call with a fresh key is a fresh draw. Without a key the root is PRNGKey(0): repeated calls
then return the same draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import jax

from netspec.layers.common import FillerParameter
from netspec.lowering.base import Ctx, Lowering, layer_seed
from netspec.lowering.fillers import fill_many

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


def _fed(ctx: Ctx, *unused: Any) -> tuple[Any, ...]:
    raise AssertionError("input layers are fed by the driver")  # never called


def dummy_fills(tops: Sequence[tuple[LayerSpec, int, tuple[int, ...]]], rng: jax.Array | None) -> list[Any]:
    """The values (float32, Caffe layout) of these unfed DummyData tops (layer, top index, shape) for one
    forward: one fill_many call, so one set of RNG kernels however many tops (constant ones draw none)."""
    requests = []
    for layer, index, shape in tops:
        fillers = layer.messages["dummy_data_param"].data_filler
        f = fillers[index] if len(fillers) > 1 else (fillers[0] if fillers else FillerParameter())
        requests.append((layer_seed(layer.name), index, f, tuple(shape)))
    return fill_many(requests, jax.random.PRNGKey(0) if rng is None else rng)


LOWERINGS = tuple(Lowering(t, _fed, wants="nchw", cast="none", is_input=True)
                  for t in ("Input", "Data", "ImageData", "MemoryData", "HDF5Data", "DummyData"))
