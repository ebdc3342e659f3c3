"""Caffe's file formats: protobuf text (`.prototxt`), its upgrades, and binary weights (`.caffemodel`).

Pure Python + numpy. The importer (`netspec import-caffe`) is built from these pieces:
parse_file -> upgrade_net -> to_yaml, and read_caffemodel for the weights.

The names below load their module on first use, so `from netspec.caffe.upgrade import V1_LAYER_TYPES`
(which `netspec check` does for V1 `layers:` specs) costs neither NumPy (caffemodel) nor YAML (emit).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .caffemodel import (
        CaffeLayerBlobs,
        CaffemodelError,
        encode_caffemodel,
        read_caffemodel,
        read_caffemodel_layers,
        write_caffemodel,
    )
    from .emit import collapse_singletons, to_prototxt, to_yaml
    from .prototxt import SCHEMA, FieldSpec, Parsed, PrototxtError, field_spec, parse, parse_file
    from .upgrade import V1_LAYER_TYPES, inputs_to_layer, is_v1, upgrade_net, upgrade_v1

_HOME = {
    **dict.fromkeys(("CaffeLayerBlobs", "CaffemodelError", "encode_caffemodel", "read_caffemodel",
                     "read_caffemodel_layers", "write_caffemodel"), "caffemodel"),
    **dict.fromkeys(("collapse_singletons", "to_prototxt", "to_yaml"), "emit"),
    **dict.fromkeys(("SCHEMA", "FieldSpec", "Parsed", "PrototxtError", "field_spec", "parse", "parse_file"),
                    "prototxt"),
    **dict.fromkeys(("V1_LAYER_TYPES", "inputs_to_layer", "is_v1", "upgrade_net", "upgrade_v1"), "upgrade"),
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
