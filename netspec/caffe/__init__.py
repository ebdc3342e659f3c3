"""Caffe's file formats: protobuf text (`.prototxt`), its upgrades, and binary weights (`.caffemodel`).

Pure Python + numpy. The importer (`netspec import-caffe`) is built from these pieces:
parse_file -> upgrade_net -> to_yaml, and read_caffemodel for the weights.
"""

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

__all__ = [
    "SCHEMA",
    "V1_LAYER_TYPES",
    "CaffeLayerBlobs",
    "CaffemodelError",
    "FieldSpec",
    "Parsed",
    "PrototxtError",
    "collapse_singletons",
    "encode_caffemodel",
    "field_spec",
    "inputs_to_layer",
    "is_v1",
    "parse",
    "parse_file",
    "read_caffemodel",
    "read_caffemodel_layers",
    "to_prototxt",
    "to_yaml",
    "upgrade_net",
    "upgrade_v1",
    "write_caffemodel",
]
