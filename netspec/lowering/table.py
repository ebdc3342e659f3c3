"""The lowering table: Caffe type name -> Lowering, built from each family's LOWERINGS tuple."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from netspec.lowering import activation, conv, data, linear, loss, merge, norm, pool
from netspec.lowering.base import Lowering


def _table() -> Mapping[str, Lowering]:
    table: dict[str, Lowering] = {}
    for family in (data, conv, pool, linear, activation, norm, merge, loss):
        for low in family.LOWERINGS:
            if low.type_name in table:
                raise RuntimeError(f"lowering for {low.type_name} registered twice")
            table[low.type_name] = low
    return MappingProxyType(table)


LOWERINGS: Mapping[str, Lowering] = _table()
