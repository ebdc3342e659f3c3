"""`--weights`: fine-tune from a netspec checkpoint or a Caffe .caffemodel, matching layers by name.

As `caffe train --weights`: a layer of the net whose name is in the source gets the source's blobs,
a layer the source lacks keeps its filler initialisation (rename a layer to re-learn it), and layers
of the source the net lacks are ignored. Unlike Caffe, a shape mismatch is not fatal: the layer is
initialised instead and the report says so (the new-head recipe without renaming).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

Blobs = Mapping[tuple[str, str], tuple[int, ...]]


@dataclass(frozen=True)
class TransferReport:
    source: str
    loaded: tuple[str, ...]
    mismatched: tuple[tuple[str, str], ...]  # (layer, why)
    initialised: tuple[str, ...]  # layers with blobs that the source does not have
    unused: tuple[str, ...]  # source layers this net does not have

    def lines(self) -> list[str]:
        out = [f"weights from {self.source}:",
               f"  loaded ({len(self.loaded)}): {', '.join(self.loaded) or '-'}"]
        if self.mismatched:
            out.append(f"  initialised, shape mismatch ({len(self.mismatched)}): "
                       + "; ".join(f"{layer} ({why})" for layer, why in self.mismatched))
        if self.initialised:
            out.append(f"  initialised, not in the source ({len(self.initialised)}): {', '.join(self.initialised)}")
        if self.unused:
            out.append(f"  ignored, not in this net ({len(self.unused)}): {', '.join(self.unused)}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "loaded": list(self.loaded),
                "mismatched": {layer: why for layer, why in self.mismatched},
                "initialised": list(self.initialised), "unused": list(self.unused)}


def _shapes(arrays: list[Any]) -> str:
    return ", ".join("x".join(map(str, np.shape(a))) or "scalar" for a in arrays)


def _by_layer(variables: Mapping[str, Any]) -> dict[str, dict[tuple[str, str], Any]]:
    out: dict[str, dict[tuple[str, str], Any]] = {}
    for collection in ("params", "batch_stats"):
        for layer, blobs in (variables.get(collection) or {}).items():
            for index, array in blobs.items():
                out.setdefault(layer, {})[(collection, str(index))] = array
    return out


def match_variables(target: Mapping[str, Any], source: Mapping[str, Any], where: str
                    ) -> tuple[dict[str, Any], TransferReport]:
    """Copy every layer whose blobs (keys and shapes) agree between the two variable trees."""
    t_layers, s_layers = _by_layer(target), _by_layer(source)
    params = {k: dict(v) for k, v in target.get("params", {}).items()}
    stats = {k: dict(v) for k, v in target.get("batch_stats", {}).items()}
    loaded, mismatched, initialised = [], [], []
    for layer, blobs in t_layers.items():
        src = s_layers.get(layer)
        if src is None:
            initialised.append(layer)
            continue
        same = set(src) == set(blobs) and all(np.shape(src[k]) == np.shape(v) for k, v in blobs.items())
        if not same:
            keys = sorted(blobs)
            mismatched.append((layer, f"net {_shapes([blobs[k] for k in keys])}, source "
                                      f"{_shapes([src[k] for k in sorted(src)])}"))
            continue
        for (collection, index), array in src.items():
            into = params if collection == "params" else stats
            into[layer][index] = np.asarray(array, dtype=np.asarray(blobs[(collection, index)]).dtype)
        loaded.append(layer)
    unused = sorted(set(s_layers) - set(t_layers))
    report = TransferReport(where, tuple(loaded), tuple(mismatched), tuple(initialised), tuple(unused))
    return {**target, "params": params, "batch_stats": stats}, report


def match_caffe(model: Any, target: Mapping[str, Any], blobs: Mapping[str, list[Any]], where: str
                ) -> tuple[dict[str, Any], TransferReport]:
    """The same for Caffe-layout blobs by layer name (a .caffemodel)."""
    from netspec.lowering import caffe_blobs, set_caffe_blobs

    mine = caffe_blobs(model, target)
    take, loaded, mismatched, initialised = {}, [], [], []
    for layer, arrays in mine.items():
        src = blobs.get(layer)
        if src is None:
            initialised.append(layer)
        elif len(src) == len(arrays) and all(np.size(a) == np.size(b) for a, b in zip(src, arrays)) and all(
                np.shape(a) == np.shape(b) or np.squeeze(a).shape == np.squeeze(b).shape for a, b in zip(src, arrays)):
            take[layer] = [np.asarray(a).reshape(np.shape(b)) for a, b in zip(src, arrays)]
            loaded.append(layer)
        else:
            mismatched.append((layer, f"net {_shapes(arrays)}, source {_shapes(list(src))}"))
    unused = sorted(set(blobs) - set(mine))
    # Blobs-less layers of the source (ReLU, pooling...) carry nothing to transfer; do not list them.
    unused = [name for name in unused if len(blobs[name])]
    variables = set_caffe_blobs(model, target, take) if take else dict(target)
    return variables, TransferReport(where, tuple(loaded), tuple(mismatched), tuple(initialised), tuple(unused))


def load_weights(model: Any, target: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], TransferReport]:
    """Fine-tuning start point: `target` (fresh variables) with every matching layer taken from `path`."""
    from netspec.errors import Diagnostic, NetspecError

    if path.suffix == ".caffemodel" or (path.is_file() and path.suffix in (".bin", ".pb")):
        from netspec.caffe import read_caffemodel

        if not path.is_file():
            raise NetspecError([Diagnostic("error", f"weights file not found: {path}")])
        return match_caffe(model, target, read_caffemodel(path), str(path))
    from netspec.train.checkpoint import read_variables

    source, where = read_variables(path)
    return match_variables(target, source, where)
