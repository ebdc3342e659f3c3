"""Caffe's own upgrades (`src/caffe/util/upgrade_proto.cpp`), applied to parsed prototxt data.

- `upgrade_v1`: V1 `layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 ... }` becomes
  `layer { type: "Convolution" param { lr_mult: 1 decay_mult: 1 } ... }` (UpgradeV1Net), after moving the
  deprecated data-layer `scale/mean_file/crop_size/mirror` into `transform_param`
  (UpgradeNetDataTransformation).
- `inputs_to_layer`: net-level `input` + `input_shape`/`input_dim` become a leading `Input` layer named
  "input" (UpgradeNetInput). netspec's schema accepts the legacy fields, so this one is optional.

Every function is pure: it returns a new `Parsed` whose positions still point into the original file,
and reports all problems at once as a located `PrototxtError`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from netspec.errors import Diagnostic, did_you_mean

from .prototxt import ENUMS, Parsed, Path, PrototxtError

# V1LayerParameter.LayerType: enum name -> V2 type string (`UpgradeV1LayerType`); the enum numbers
# (they matter for binary V1 caffemodels, where the enum is a varint) are caffe.proto's, in ENUMS.
_V2_NAMES: dict[str, str] = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}
_V1_TYPES: dict[str, tuple[int, str]] = {k: (ENUMS["LayerType"][k], v) for k, v in _V2_NAMES.items()}

V1_LAYER_TYPES: Mapping[str, str] = MappingProxyType({k: v for k, (_, v) in _V1_TYPES.items() if v})
V1_TYPE_BY_NUMBER: Mapping[int, str] = MappingProxyType({n: k for k, (n, _) in _V1_TYPES.items()})
V1_NUMBER_BY_TYPE: Mapping[str, int] = MappingProxyType({v: n for _, (n, v) in _V1_TYPES.items() if v})

# V1 per-blob lists that become fields of `param[i]` (UpgradeV1LayerParameter).
_PARAM_SOURCES = {
    "param": "name",
    "blob_share_mode": "share_mode",
    "blobs_lr": "lr_mult",
    "weight_decay": "decay_mult",
}
_DATA_TRANSFORM = {"DATA": "data_param", "IMAGE_DATA": "image_data_param", "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")
_FIRST_KEYS = ("name", "type", "bottom", "top")

Remap = Callable[[Path], Path | None]


def _error(parsed: Parsed, path: Path, message: str, hint: str | None = None,
           layer: str | None = None) -> Diagnostic:
    return Diagnostic("error", message, parsed.loc(path), layer, hint)


def _with(
    parsed: Parsed, data: dict[str, Any], remap: Remap, extra: Mapping[Path, tuple[int, int]]
) -> Parsed:
    """A new Parsed with `data`, old positions moved by `remap` (None drops one), plus `extra`."""
    positions: dict[Path, tuple[int, int]] = {}
    for path, pos in parsed.positions.items():
        moved = remap(path)
        if moved is not None:
            positions.setdefault(moved, pos)
    for path, pos in extra.items():
        positions.setdefault(path, pos)
    return Parsed(data, MappingProxyType(positions), parsed.file, parsed.message)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _replace_key(d: dict[str, Any], old: str, new: str, value: Any) -> dict[str, Any]:
    """`d` with key `old` swapped for `new` in place in the key order (readers see the file's order)."""
    return {(new if k == old else k): (value if k == old else v) for k, v in d.items()}


# ----------------------------------------------------------------------------------------- V1 -> V2


def is_v1(data: Mapping[str, Any]) -> bool:
    """True for a net written with V1 `layers` entries."""
    return "layers" in data


def _v2_type(parsed: Parsed, i: int, v1: Any, diags: list[Diagnostic], layer: str | None) -> str | None:
    name = V1_TYPE_BY_NUMBER.get(v1) if isinstance(v1, int) and not isinstance(v1, bool) else v1
    if isinstance(name, str) and V1_LAYER_TYPES.get(name):
        return V1_LAYER_TYPES[name]
    path = ("layers", i, "type")
    if name == "NONE":
        diags.append(_error(parsed, path, "V1 layer type NONE has no layer to upgrade to", layer=layer))
    else:
        hint = (
            did_you_mean(str(v1), list(V1_LAYER_TYPES))
            or "V1 types are enum names such as CONVOLUTION, "
            "POOLING, RELU, INNER_PRODUCT, SOFTMAX_LOSS (netspec.caffe.upgrade.V1_LAYER_TYPES lists them)"
        )
        diags.append(_error(parsed, path, f"unknown V1 layer type {v1}", hint, layer))
    return None


def _v1_params(v1: Mapping[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for source, target in _PARAM_SOURCES.items():
        for j, value in enumerate(_as_list(v1.get(source, []))):
            while len(params) <= j:
                params.append({})
            params[j][target] = value
    return params


def _upgrade_v1_layer(parsed: Parsed, i: int, v1: dict[str, Any], diags: list[Diagnostic]) -> dict[str, Any]:
    """The V2 layer; one whose type cannot be upgraded keeps its V1 type name (the caller can tell by
    the diagnostics added)."""
    name = v1.get("name") if isinstance(v1.get("name"), str) else None
    if "layer" in v1:
        diags.append(
            _error(
                parsed,
                ("layers", i, "layer"),
                "V0 layer definitions (layers { layer { ... } }) are not supported",
                "upgrade the file with Caffe's upgrade_net_proto_text",
                name,
            )
        )
    layer: dict[str, Any] = {k: v1[k] for k in ("name",) if k in v1}
    if "type" in v1:
        v2 = _v2_type(parsed, i, v1["type"], diags, name)
        layer["type"] = v2 if v2 is not None else str(v1["type"])
    layer.update({k: v1[k] for k in ("bottom", "top") if k in v1})
    params = _v1_params(v1)
    if params:
        layer["param"] = params
    skip = set(_FIRST_KEYS) | set(_PARAM_SOURCES) | {"layer"}
    layer.update({k: copy.deepcopy(v) for k, v in v1.items() if k not in skip})
    return layer


def _v1_remap(i_types: Mapping[int, Mapping[str, str]]) -> Remap:
    def remap(path: Path) -> Path | None:
        if not path or path[0] != "layers":
            return path
        if len(path) < 3:
            return ("layer",) + path[1:]
        i, key, rest = path[1], path[2], path[3:]
        if key in _PARAM_SOURCES:
            return ("layer", i, "param") + (rest[:1] + (_PARAM_SOURCES[str(key)],) if rest else ())
        param = i_types.get(int(i), {}).get(str(rest[0])) if rest else None
        if param is not None and key == param:
            return ("layer", i, "transform_param") + rest
        return ("layer", i, key) + rest

    return remap


def upgrade_v1(parsed: Parsed) -> Parsed:
    """V1 `layers` -> V2 `layer` as Caffe's UpgradeV1Net does; a V2 net comes back unchanged.
    Unknown V1 types, NONE, V0 sub-layers and a net mixing `layer` with `layers` are located errors."""
    upgraded, diags, _ = upgrade_v1_partial(parsed)
    if diags:
        raise PrototxtError(diags)
    return upgraded


def upgrade_v1_partial(parsed: Parsed) -> tuple[Parsed, list[Diagnostic], frozenset[int]]:
    """`upgrade_v1` that upgrades every layer it can and reports the rest: (net, diagnostics, indices of
    the layers that could not be upgraded, which keep their V1 type name). Only a net mixing `layer`
    with `layers` cannot be upgraded at all (PrototxtError)."""
    if not is_v1(parsed.data):
        return parsed, [], frozenset()
    if "layer" in parsed.data:
        raise PrototxtError([_error(parsed, ("layers",), "a net must use either V1 'layers' or V2 'layer', "
                                                         "not both")])
    diags: list[Diagnostic] = []
    failed: set[int] = set()
    new_layers: list[dict[str, Any]] = []
    moves: dict[int, dict[str, str]] = {}
    for i, v1 in enumerate(_as_list(parsed.data["layers"])):
        v1_dict = dict(v1)
        v1_dict, moved = _move_transform(v1_dict)
        moves[i] = moved
        before = len(diags)
        new_layers.append(_upgrade_v1_layer(parsed, i, v1_dict, diags))
        if len(diags) > before:
            failed.add(i)
    data = _replace_key(parsed.data, "layers", "layer", new_layers)
    # A transform_param the upgrade created is located where its fields used to be.
    extra: dict[Path, tuple[int, int]] = {
        ("layer", i, "transform_param"): parsed.positions[("layers", i, param)]
        for i, moved in moves.items()
        for param in moved.values()
        if ("layers", i, param) in parsed.positions
    }
    return _with(parsed, data, _v1_remap(moves), extra), diags, frozenset(failed)


def _move_transform(v1: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """UpgradeNetDataTransformation on one V1 layer: returns the layer and {moved field: source param}."""
    param = _DATA_TRANSFORM.get(str(v1.get("type")))
    source = v1.get(param) if param else None
    if param is None or not isinstance(source, dict):
        return v1, {}
    moved = {f: param for f in _TRANSFORM_FIELDS if f in source}
    if not moved:
        return v1, {}
    transform = dict(v1.get("transform_param", {}))
    transform.update({f: source[f] for f in moved})
    out = dict(v1)
    out[param] = {k: v for k, v in source.items() if k not in moved}
    out["transform_param"] = transform
    return out, moved


# ----------------------------------------------------------------------------------------- inputs


def _input_shapes(parsed: Parsed, n_inputs: int, diags: list[Diagnostic]) -> list[tuple[list[Any], Path]]:
    """One (dims, source path) per input, from input_shape or the legacy 4-per-input input_dim."""
    data = parsed.data
    if "input_shape" in data and "input_dim" in data:
        diags.append(_error(parsed, ("input_dim",), "give either input_shape or input_dim, not both"))
        return []
    if "input_shape" in data:
        shapes = _as_list(data["input_shape"])
        if len(shapes) != n_inputs:
            diags.append(
                _error(
                    parsed,
                    ("input_shape",),
                    f"{n_inputs} input(s) but {len(shapes)} input_shape "
                    "entries: give one input_shape per input",
                )
            )
        return [(list(_as_list(s.get("dim", []))), ("input_shape", k)) for k, s in enumerate(shapes)]
    dims = _as_list(data["input_dim"])
    if len(dims) != 4 * n_inputs:
        diags.append(
            _error(
                parsed,
                ("input_dim",),
                f"{n_inputs} input(s) need {4 * n_inputs} input_dim "
                f"values (N, C, H, W each), found {len(dims)}",
            )
        )
    return [(dims[4 * k : 4 * k + 4], ("input_dim", 4 * k)) for k in range(len(dims) // 4)]


def _input_positions(
    parsed: Parsed, inputs: list[Any], shapes: list[tuple[list[Any], Path]]
) -> dict[Path, tuple[int, int]]:
    extra: dict[Path, tuple[int, int]] = {}
    where = parsed.positions.get
    first = where(("input",)) or where(("input_shape",)) or where(("input_dim",)) or (1, 1)
    for p in [("layer", 0), ("layer", 0, "name"), ("layer", 0, "type"), ("layer", 0, "input_param")]:
        extra[p] = first
    for j in range(len(inputs)):
        extra[("layer", 0, "top", j)] = where(("input", j), first)
    extra[("layer", 0, "top")] = first
    for k, (dims, src) in enumerate(shapes):
        base = ("layer", 0, "input_param", "shape", k)
        extra[base] = extra[base + ("dim",)] = where(src, first)
        for d in range(len(dims)):
            src_dim = src + ("dim", d) if src[0] == "input_shape" else ("input_dim", int(src[1]) + d)
            extra[base + ("dim", d)] = where(src_dim, first)
    extra[("layer", 0, "input_param", "shape")] = first
    return extra


def inputs_to_layer(parsed: Parsed) -> Parsed:
    """Net-level `input` (+ `input_shape` or `input_dim`) -> a first layer `{name: input, type: Input}`,
    as Caffe's UpgradeNetInput does; `input` alone (a legacy caffemodel's) is simply dropped, as there.
    Needs a V2 net (run `upgrade_v1` first)."""
    data = parsed.data
    legacy = ("input", "input_shape", "input_dim")
    if not any(k in data for k in legacy):
        return parsed
    if is_v1(data):
        raise ValueError("inputs_to_layer needs a V2 net: call upgrade_v1 first")
    inputs = list(_as_list(data.get("input", [])))
    diags: list[Diagnostic] = []
    has_shapes = "input_shape" in data or "input_dim" in data
    shapes = _input_shapes(parsed, len(inputs), diags) if has_shapes else []
    if diags:
        raise PrototxtError(diags)
    rest = {k: v for k, v in data.items() if k not in legacy}
    if not has_shapes:
        return _with(parsed, rest, lambda p: None if p and p[0] in legacy else p, {})
    layer = {
        "name": "input",
        "type": "Input",
        "top": inputs,
        "input_param": {"shape": [{"dim": dims} for dims, _ in shapes]},
    }
    rest["layer"] = [layer] + list(_as_list(data.get("layer", [])))
    return _with(parsed, rest, _shift_layers, _input_positions(parsed, inputs, shapes))


def _shift_layers(path: Path) -> Path | None:
    if path and path[0] in ("input", "input_shape", "input_dim"):
        return None
    if len(path) >= 2 and path[0] == "layer":
        return ("layer", int(path[1]) + 1) + path[2:]
    return path


def upgrade_net(parsed: Parsed, *, inputs: bool = False) -> Parsed:
    """Caffe's net upgrades known here: V1 -> V2, then (with `inputs`) legacy inputs -> an Input layer."""
    upgraded = upgrade_v1(parsed)
    return inputs_to_layer(upgraded) if inputs else upgraded


def upgrade_net_partial(parsed: Parsed, *, inputs: bool = False
                        ) -> tuple[Parsed, list[Diagnostic], frozenset[int]]:
    """`upgrade_net` that goes on past layers it cannot upgrade: (net, diagnostics, indices into the
    net's `layer` list of the layers that kept their V1 type). A mixed V1/V2 net and inconsistent
    legacy inputs still raise PrototxtError: nothing after them could be trusted."""
    upgraded, diags, failed = upgrade_v1_partial(parsed)
    if not inputs:
        return upgraded, diags, failed
    with_input = inputs_to_layer(upgraded)
    shift = len(_as_list(with_input.data.get("layer", []))) - len(_as_list(upgraded.data.get("layer", [])))
    return with_input, diags, frozenset(i + shift for i in failed)
