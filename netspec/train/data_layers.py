"""Caffe's data layers in a spec `netspec train` and `netspec test` run: where each one maps.

A faithful prototxt->YAML translation of a train_val file keeps its Data/ImageData/MemoryData/HDF5Data
layers. Their images live in databases netspec does not open (LMDB/LevelDB, HDF5, list files), so
the spec's `data:` section says where the images come from; everything else stays the layer's, as
in Caffe:

- the layer's batch size (`data_param.batch_size`, ...) is the batch of its phase, unless `data:`
  sets `batch_size` or the command line gives `--batch-size`;
- its `transform_param` (scale, mean, crop, mirror) is the transform, unless `data:` sets its own
  (setting both is an error: one of them would be silently ignored);
- its tops are fed: each layer becomes an `Input` layer of the same name, tops and phase rules,
  shaped from the data after the transform (MemoryData keeps its stated shape, which the data must
  then fit).

jax-free, like the rest of the plan.
"""

from __future__ import annotations

from typing import Any

from netspec.errors import Diagnostic, NetspecError
from netspec.layers.common import BlobShape
from netspec.layers.data import InputParameter, MemoryDataParameter, TransformationParameter
from netspec.spec import LayerSpec, NetSpec

# type -> the message holding its batch size
DATA_LAYERS = {"Data": "data_param", "ImageData": "image_data_param", "MemoryData": "memory_data_param",
               "HDF5Data": "hdf5_data_param"}


def data_layers(spec: NetSpec) -> list[LayerSpec]:
    return [layer for layer in spec.layers if layer.type in DATA_LAYERS]


def _source(layer: LayerSpec) -> str:
    param = layer.messages.get(DATA_LAYERS[layer.type])
    source = getattr(param, "source", None)
    backend = getattr(param, "backend", None)
    db = backend or "LEVELDB"
    what = {"Data": "an LMDB database" if db == "LMDB" else "a LevelDB database", "ImageData": "a list of image files",
            "HDF5Data": "a list of HDF5 files", "MemoryData": "arrays handed over in memory"}[layer.type]
    return f"{what} ({source})" if source else what


def missing_data_section(layers: list[LayerSpec]) -> NetspecError:
    """The error for data layers without a `data:` section saying where their images are."""
    return NetspecError([Diagnostic(
        "error", f"{layer.name}: this {layer.type} layer reads {_source(layer)}, which netspec does not open",
        layer.loc, hint="add a `data:` section saying where the images are, e.g. `data: {source: mnist}`; "
        "the layer's batch size and transform_param still apply") for layer in layers])


def _batch(layer: LayerSpec) -> int:
    return int(getattr(layer.messages.get(DATA_LAYERS[layer.type]), "batch_size", 0) or 0)


def _phase_layer(layers: list[LayerSpec], phase: str) -> LayerSpec | None:
    return next((layer for layer in layers if layer.in_phase(phase)), None)


def _transform(layer: LayerSpec | None) -> TransformationParameter | None:
    return None if layer is None else layer.messages.get("transform_param")


def resolve_data_layers(spec: NetSpec, data: Any, image_shape: tuple[int, int, int]
                        ) -> tuple[NetSpec, Any, list[str]]:
    """(the spec with its data layers turned into Input layers, the `data:` section with the layers'
    batch sizes and transform_param filled in, notes). `image_shape` is the stored images' C,H,W."""
    from netspec.data import data_transformer

    layers = data_layers(spec)
    if not layers:
        return spec, data, []
    explicit = data.model_fields_set
    train, test = _phase_layer(layers, "TRAIN"), _phase_layer(layers, "TEST")
    diags: list[Diagnostic] = []
    notes: list[str] = []
    transforms = [(layer, t) for layer in (train, test) if layer is not None
                  for t in [_transform(layer)] if t is not None and t != TransformationParameter()]
    update: dict[str, Any] = {}
    if transforms and "transform_param" in explicit:
        layer = transforms[0][0]
        diags.append(Diagnostic(
            "error", f"{layer.name}: transform_param is set both on this {layer.type} layer and in the `data:` "
            "section", layer.where("transform_param"), hint="keep one of them (the layer's is Caffe's)"))
    elif transforms:
        first = transforms[0][1]
        for layer, t in transforms[1:]:
            # TEST never mirrors here (evaluation stays deterministic), so only mirror may differ.
            if t.model_copy(update={"mirror": first.mirror}) != first:
                diags.append(Diagnostic(
                    "error", f"{layer.name}: its transform_param differs from the TRAIN layer's in more than "
                    "`mirror`; netspec applies one transform to both phases", layer.where("transform_param"),
                    hint="make them equal, or move one transform_param into the `data:` section"))
        update["transform_param"] = first
    if "batch_size" not in explicit and train is not None and _batch(train):
        update["batch_size"] = _batch(train)
    if "test_batch_size" not in explicit and "batch_size" not in explicit and test is not None and _batch(test):
        update["test_batch_size"] = _batch(test)
    if diags:
        raise NetspecError(diags)
    data = data.model_copy(update=update)
    c, h, w = data_transformer(data, image_shape).output_shape
    rewritten = []
    for layer in spec.layers:
        if layer.type not in DATA_LAYERS:
            rewritten.append(layer)
            continue
        param = layer.messages.get(DATA_LAYERS[layer.type])
        n = _batch(layer) or 1  # the plan sets the batch; this only states the per-sample shape
        image = (n, c, h, w)
        if isinstance(param, MemoryDataParameter):
            image = (param.batch_size, param.channels, param.height, param.width)
        shapes = [BlobShape(dim=image)] + [BlobShape(dim=(image[0],))] * (len(layer.top) - 1)
        rewritten.append(layer.model_copy(update={
            "type": "Input", "messages": {"input_param": InputParameter(shape=tuple(shapes))}, "raw": None}))
    names = ", ".join(dict.fromkeys(f"{layer.name} ({layer.type})" for layer in layers))
    notes.append(f"data layer(s) {names} fed from the `data:` section ({data.source}); "
                 f"their batch sizes and transform_param apply")
    return spec.model_copy(update={"layers": tuple(rewritten)}), data, notes
