"""netspec: a declarative neural-network compiler for Caffe-style YAML specs.

The checking half (`load_spec`, `check`) is pure Python; `compile` and training import JAX
lazily, on first use.
"""

from __future__ import annotations

from typing import Any

from netspec.check import check
from netspec.errors import Diagnostic, NetspecError, SourceLoc
from netspec.spec import NetSpec, load_spec

__all__ = ["check", "load_spec", "NetSpec", "NetspecError", "Diagnostic", "SourceLoc",
           "compile", "caffe_blobs", "set_caffe_blobs"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # JAX-backed entry points load on first use so that `netspec check` never imports JAX.
    if name in ("compile", "caffe_blobs", "set_caffe_blobs"):
        from netspec import lowering

        return getattr(lowering, name)
    raise AttributeError(f"module 'netspec' has no attribute {name!r}")
