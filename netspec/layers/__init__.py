"""The layer-type table: one read-only mapping from Caffe type name to its rules.

Each family module ends with a `LAYERS` tuple (as Caffe files end with REGISTER_LAYER_CLASS);
adding a type touches its family module only. A duplicate name fails at import.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from netspec.layers import activation, conv, data, linear, loss, merge, norm, pool
from netspec.layers.base import LayerType


def _table() -> Mapping[str, type[LayerType]]:
    table: dict[str, type[LayerType]] = {}
    for family in (data, conv, pool, linear, activation, norm, merge, loss):
        for cls in family.LAYERS:
            if cls.type_name in table:
                raise RuntimeError(f"layer type {cls.type_name} registered twice")
            table[cls.type_name] = cls
    return MappingProxyType(table)


REGISTRY: Mapping[str, type[LayerType]] = _table()


def lookup(type_name: str) -> type[LayerType] | None:
    return REGISTRY.get(type_name)
