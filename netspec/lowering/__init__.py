"""Lowering: a checked spec -> a JIT-compilable JAX/Flax model (imports JAX; `check` never loads this).

Public API (re-exported by `netspec`): `compile`, `caffe_blobs`, `set_caffe_blobs`, and the
`Model` / `ParamInfo` types they use. See `model.py` for the variable layout and design notes.
"""

from __future__ import annotations

from netspec.lowering.model import Model, ParamInfo, caffe_blobs, compile, set_caffe_blobs
from netspec.lowering.table import LOWERINGS

__all__ = ["compile", "caffe_blobs", "set_caffe_blobs", "Model", "ParamInfo", "LOWERINGS"]
