"""Caffe `.prototxt` -> netspec YAML: parse, upgrade, validate with netspec's own rules, emit.

The pipeline (`import_net`):

1. parse the prototxt (positions kept) and apply Caffe's upgrades: V1 `layers` -> `layer`, net-level
   `input`/`input_dim`/`input_shape` -> an `Input` layer named "input" (UpgradeNetInput), and the
   BatchNorm param upgrade (UpgradeNetBatchNorm: a BatchNorm with exactly three `param` entries gets
   lr_mult 0 and decay_mult 0 on each);
2. find what netspec cannot lower: layer types outside `netspec.layers.REGISTRY` (Python, a fork's
   Axpy or DepthwiseConvolution, ...) and fields BVLC Caffe's schema does not have (a fork's
   `ceil_mode`, `bn_param`, ...): one located error each, never a silent drop. `fix_dialect` converts
   the one fork field with an exact BVLC equivalent (`ceil_mode` -> `round_mode`);
3. validate the faithful layer list with netspec's spec parser, graph builder and shape inference,
   on data whose positions point into the prototxt, so every problem reads `FILE:LINE:COL`;
4. emit idiomatic YAML (`render`): the same layers with netspec's implicit chaining where it changes
   nothing (`top` equal to the layer name, `bottom` equal to the previous layer's top), optionally
   folded into reusable blocks (`netspec.caffe.compact`), plus a `solver:` section from a Caffe
   solver prototxt (`import_solver`).

Pure Python: nothing here imports JAX (`netspec.caffe.weights` maps .caffemodel blobs and loads the
lowering lazily).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from netspec.errors import Diagnostic, NetspecError, SourceLoc, did_you_mean, sort_key
from netspec.layers import REGISTRY
from netspec.layers.base import Shape

from .prototxt import NET_ROOT, SOLVER_ROOT, Parsed, Path, PrototxtError, field_spec, parse
from .upgrade import upgrade_net_partial

# Every layer type BVLC Caffe registers (src/caffe/layers/*.cpp REGISTER_LAYER_CLASS / _CREATOR).
BVLC_TYPES = frozenset({
    "AbsVal", "Accuracy", "ArgMax", "BatchNorm", "BatchReindex", "Bias", "BNLL", "Clip", "Concat",
    "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout", "DummyData", "Eltwise",
    "ELU", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten", "HDF5Data", "HDF5Output", "HingeLoss",
    "Im2col", "ImageData", "InfogainLoss", "InnerProduct", "Input", "Log", "LRN", "LSTM", "LSTMUnit",
    "MemoryData", "MultinomialLogisticLoss", "MVN", "Parameter", "Pooling", "Power", "PReLU", "Python",
    "Reduction", "ReLU", "Reshape", "RNN", "Scale", "Sigmoid", "SigmoidCrossEntropyLoss", "Silence",
    "Slice", "Softmax", "SoftmaxWithLoss", "Split", "SPP", "Swish", "TanH", "Threshold", "Tile",
    "WindowData",
})

# What to do instead, for the custom types forks are known for.
TYPE_HINTS: Mapping[str, str] = {
    "Python": "netspec cannot run Python layers; a Python data layer becomes the spec's `data:` "
              "section, anything else needs a netspec layer type",
    "DepthwiseConvolution": "a fork's depthwise convolution: BVLC's Convolution with group equal to "
                            "its input channels (and num_output a multiple of them) computes the same",
    "ConvolutionDepthwise": "a fork's depthwise convolution: BVLC's Convolution with group equal to its "
                            "input channels computes the same",
    "Axpy": "SENet's Axpy is a*x + y with a per-channel scale a (NxCx1x1): Flatten a to NxC, Scale with "
            "bottoms [x, a] and axis 0, then Eltwise SUM with y",
    "ShuffleChannel": "ShuffleNet's channel shuffle has no BVLC equivalent netspec lowers",
    "Permute": "an SSD-fork layer; netspec has no axis permutation",
    "Normalize": "an SSD-fork L2 normalisation; netspec has no equivalent",
    "PriorBox": "an SSD-fork detection layer; netspec has no equivalent",
}

# Fork fields with something to say about them (beyond "BVLC Caffe has no such field").
FIELD_HINTS: Mapping[str, str] = {
    "ceil_mode": "BVLC Caffe's switch is `round_mode: CEIL|FLOOR` (default CEIL); "
                 "pass --fix-dialect to convert `ceil_mode` into it",
    "bn_param": "a fork's BatchNorm message: BVLC's is `batch_norm_param` (normalisation only, "
                "followed by a Scale layer for the affine part)",
    "scale_filler": "a fork's BatchNorm with a built-in scale: BVLC BatchNorm has no scale; add a "
                    "Scale layer (filler in scale_param)",
    "round_below": "not a BVLC field",
}

DATA_TYPES = frozenset({"Data", "ImageData", "HDF5Data", "WindowData", "MemoryData"})
_FIRST_KEYS = ("name", "type", "bottom", "top")


def _err(parsed: Parsed, path: Path, message: str, layer: str | None = None,
         hint: str | None = None, severity: str = "error") -> Diagnostic:
    return Diagnostic(severity, message, parsed.loc(path), layer, hint)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- reading


def read_prototxt(path: str | os.PathLike[str], expect: str) -> Parsed:
    """Parse a net (`expect` NET_ROOT) or solver (SOLVER_ROOT) prototxt; a file of the other kind,
    or one that cannot be read, is a located error."""
    file = os.fspath(path)
    start = SourceLoc(file, 1, 1)
    try:
        text = FsPath(file).read_text(encoding="utf-8")
    except OSError as e:
        raise NetspecError([Diagnostic("error", f"cannot read: {e.strerror or e}", start)]) from None
    except UnicodeDecodeError as e:
        raise NetspecError([Diagnostic("error", f"not UTF-8 text (byte {e.start})", start)]) from None
    parsed = parse(text, file=file, message="auto")
    if parsed.message != expect:
        solver = parsed.message == SOLVER_ROOT
        what = "a solver" if solver else "a net"
        option = "--solver SOLVER.prototxt" if solver else "the positional NET argument"
        want = "net" if expect == NET_ROOT else "solver"
        raise NetspecError([Diagnostic("error", f"this is {what} prototxt, not a {want}", start,
                                       hint=f"give it as {option}")])
    return parsed


# ------------------------------------------------------------------------------------ dialect check


@dataclass
class _Findings:
    errors: list[Diagnostic] = field(default_factory=list)
    notes: list[Diagnostic] = field(default_factory=list)
    bad_layers: set[int] = field(default_factory=set)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def unknown_fields(value: Any, message: str, path: Path = ()) -> list[Path]:
    """Paths of every field under `value` (a `message`) that BVLC's caffe.proto does not declare."""
    out: list[Path] = []
    if not isinstance(value, dict):
        return out
    for key, sub in value.items():
        spec = field_spec(message, key)
        here = path + (key,)
        if spec is None:
            out.append(here)
        elif spec.is_message:
            for j, item in enumerate(_as_list(sub)):
                out += unknown_fields(item, spec.kind, here + ((j,) if isinstance(sub, list) else ()))
    return out


def _fix_ceil_mode(layer: dict[str, Any], i: int, parsed: Parsed, name: str | None,
                   found: _Findings) -> None:
    """`pooling_param { ceil_mode: B }` -> `round_mode: CEIL|FLOOR` (BVLC's field for the same rule)."""
    pool = layer["pooling_param"]
    ceil = pool.pop("ceil_mode")
    path = ("layer", i, "pooling_param", "ceil_mode")
    if not isinstance(ceil, bool):
        found.errors.append(_err(parsed, path, f"ceil_mode must be true or false, got {ceil!r}", name))
        return
    want = "CEIL" if ceil else "FLOOR"
    if pool.get("round_mode", want) != want:
        found.errors.append(_err(parsed, path, f"ceil_mode: {str(ceil).lower()} contradicts round_mode: "
                                               f"{pool['round_mode']}", name))
        return
    pool["round_mode"] = want
    found.notes.append(_err(parsed, path, f"ceil_mode: {str(ceil).lower()} converted to round_mode: {want}",
                            name, severity="note"))


def check_dialect(parsed: Parsed, *, fix_dialect: bool = False,
                  opaque: frozenset[int] = frozenset()) -> tuple[dict[str, Any], _Findings]:
    """Net data with the known fixes applied, plus every unsupported type and fork field found.
    The layers in `opaque` (reported already: a V1 type that has no upgrade) are only marked bad."""
    data = copy.deepcopy(parsed.data)
    found = _Findings()
    for path in unknown_fields({k: v for k, v in data.items() if k != "layer"}, NET_ROOT, ()):
        where = ".".join(str(p) for p in path if not isinstance(p, int))
        found.errors.append(_err(parsed, path, f"'{where}' is not a field of Caffe's NetParameter",
                                 hint=FIELD_HINTS.get(str(path[-1]))))
        _drop(data, path)  # reported here: netspec's own validation must not report it again
    for i, layer in enumerate(_as_list(data.get("layer", []))):
        if not isinstance(layer, dict):
            continue
        name = layer.get("name") if isinstance(layer.get("name"), str) else None
        kind = layer.get("type")
        if i in opaque:
            found.bad_layers.add(i)
            continue
        if isinstance(kind, str) and kind not in REGISTRY:
            found.bad_layers.add(i)
            found.errors.append(_unsupported_type(parsed, i, kind, name))
            continue
        pooling = layer.get("pooling_param")
        if fix_dialect and isinstance(pooling, dict) and "ceil_mode" in pooling:
            _fix_ceil_mode(layer, i, parsed, name, found)
        for path in unknown_fields(layer, "LayerParameter", ("layer", i)):
            found.bad_layers.add(i)
            where = ".".join(str(p) for p in path[2:])
            hint = FIELD_HINTS.get(str(path[-1]))
            if path[-1] == "ceil_mode":
                flag = layer.get("pooling_param", {}).get("ceil_mode")
                hint = (f"`ceil_mode: {str(flag).lower()}` is BVLC's `round_mode: "
                        f"{'FLOOR' if flag is False else 'CEIL'}`; pass --fix-dialect to convert it")
            found.errors.append(_err(parsed, path, f"'{where}' is not a field of BVLC Caffe (a fork's "
                                                   "dialect); netspec cannot lower it", name,
                                     hint or _close_field(path)))
        _batch_norm_params(layer, i, parsed, name, found)
    return data, found


def _drop(data: Any, path: Path) -> None:
    for step in path[:-1]:
        data = data[step]
    del data[path[-1]]


def _close_field(path: Path) -> str | None:
    from .prototxt import SCHEMA

    message = "LayerParameter"
    for step in path[2:-1]:
        if isinstance(step, int):
            continue
        spec = field_spec(message, str(step))
        if spec is None or not spec.is_message:
            return None
        message = spec.kind
    return did_you_mean(str(path[-1]), set(SCHEMA.get(message, {})))


def _unsupported_type(parsed: Parsed, i: int, kind: str, name: str | None) -> Diagnostic:
    path = ("layer", i, "type")
    if kind in TYPE_HINTS:
        origin = ("BVLC Caffe's Python layer" if kind == "Python"
                  else f"'{kind}' is a Caffe fork's custom layer")
        return _err(parsed, path, f"{origin}: netspec has no such layer type", name, TYPE_HINTS[kind])
    if kind in BVLC_TYPES:
        return _err(parsed, path, f"layer type '{kind}' (BVLC Caffe) is not supported by netspec yet", name,
                    f"netspec lowers: {', '.join(sorted(REGISTRY))}")
    return _err(parsed, path, f"layer type '{kind}' is not a BVLC Caffe type (a fork's custom layer?); "
                              "netspec cannot lower it", name,
                did_you_mean(kind, set(REGISTRY)) or f"netspec lowers: {', '.join(sorted(REGISTRY))}")


def _batch_norm_params(layer: dict[str, Any], i: int, parsed: Parsed, name: str | None,
                       found: _Findings) -> None:
    """Caffe's UpgradeNetBatchNorm: three `param` entries on a BatchNorm get lr_mult 0, decay_mult 0."""
    params = layer.get("param")
    if layer.get("type") != "BatchNorm" or not isinstance(params, list) or len(params) != 3:
        return
    changed = any(isinstance(p, dict) and (p.get("lr_mult", 1.0) != 0 or p.get("decay_mult", 1.0) != 0)
                  for p in params)
    for p in params:
        if isinstance(p, dict):
            p["lr_mult"] = 0
            p["decay_mult"] = 0
    what = ("set lr_mult and decay_mult to 0 on its three `param` entries (Caffe's UpgradeNetBatchNorm)"
            if changed else "its three `param` entries (lr_mult 0) are kept; they are redundant")
    found.notes.append(_err(parsed, ("layer", i, "param"), f"BatchNorm statistics are not learned: {what}",
                            name, severity="note"))


# ------------------------------------------------------------------------------------ located data


def located(parsed: Parsed, value: Any, path: Path = ()) -> Any:
    """`value` (data of `parsed`, possibly edited) as PosDict/PosList whose positions point into the
    prototxt, so netspec's own validators report `prototxt:LINE:COL`."""
    from netspec.source import PosDict, PosList

    if isinstance(value, dict):
        out = PosDict(loc=parsed.loc(path))
        for k, v in value.items():
            out[k] = located(parsed, v, path + (k,))
            out.key_locs[k] = out.value_locs[k] = parsed.loc(path + (k,))
        return out
    if isinstance(value, list):
        items = PosList([located(parsed, v, path + (j,)) for j, v in enumerate(value)], loc=parsed.loc(path))
        items.item_locs = [parsed.loc(path + (j,)) for j in range(len(value))]
        return items
    return value


def _ordered(layer: Mapping[str, Any]) -> dict[str, Any]:
    """name, type, bottom, top first (netspec's house order), then the file's order."""
    head = {k: layer[k] for k in _FIRST_KEYS if k in layer}
    return {**head, **{k: v for k, v in layer.items() if k not in head}}


# ------------------------------------------------------------------------------------ the import


@dataclass(frozen=True)
class CaffeNet:
    """A validated import: the faithful layer list (explicit bottoms and tops) and what was found."""

    file: str
    name: str | None
    header: dict[str, Any]            # net-level fields other than the layer list (name, force_backward...)
    layers: tuple[dict[str, Any], ...]
    spec: Any                          # netspec.spec.NetSpec, located in the prototxt
    report: Any                        # ShapeReport of the TEST phase, or None without input shapes
    diagnostics: tuple[Diagnostic, ...]  # warnings and notes (errors are raised)
    legacy_inputs: tuple[str, ...] = ()  # net-level input names that became the Input layer "input"
    unchecked: tuple[str, ...] = ()      # data tops whose shapes `netspec check` needs --input-shape for
    data_layers: tuple[str, ...] = ()    # layers reading databases (LMDB, LevelDB, HDF5, images)
    data_shapes: Mapping[str, DataShape] = field(default_factory=dict)  # what Caffe fixes of those
    checked_shapes: Mapping[str, Shape] = field(default_factory=dict)  # input shapes the import checked with


@dataclass(frozen=True)
class DataShape:
    """What Caffe's own rules fix of a database top's shape; None where only the database knows."""

    dims: tuple[int | None, ...]  # N, C, H, W
    reasons: tuple[str, ...]      # how each known dimension follows, for the YAML's header

    @property
    def complete(self) -> bool:
        return all(d is not None for d in self.dims)

    def text(self) -> str:
        """For --input-shape: `50,3,224,224`, or `50,C,227,227` with the unknown ones named."""
        return ",".join(str(d) if d is not None else axis for d, axis in zip(self.dims, "NCHW"))


def data_shape(spec: Any, top: str) -> DataShape:
    """The shape of a database layer's top as far as Caffe's rules fix it: N is the TEST phase's
    batch_size; H = W = transform_param.crop_size when set (DataTransformer::InferBlobShape crops every
    image to it); C is the number of mean_value entries when there are several (the transformer
    CHECKs that they match the channels; one value, or a mean_file, leaves C to the database).
    A dimension the TRAIN and TEST layers disagree on stays unknown."""
    readers = [x for x in spec.layers if x.top and x.top[0] == top and x.type in DATA_TYPES]
    readers.sort(key=lambda x: not x.in_phase("TEST"))
    batches = [b for x in readers for m in x.messages.values() if (b := getattr(m, "batch_size", 0))]
    transforms = [x.messages.get("transform_param") for x in readers]
    crops = {getattr(t, "crop_size", 0) for t in transforms}
    means = {len(getattr(t, "mean_value", ())) for t in transforms}
    n = batches[0] if batches else None
    side = next(iter(crops)) if len(crops) == 1 and 0 not in crops else None
    c = next(iter(means)) if len(means) == 1 and min(means) >= 2 else None
    reasons = ([f"N = batch_size {n}" + (" (TEST)" if len(readers) > 1 else "")] if n else [])
    reasons += [f"C = {c} mean_value entries"] if c else []
    reasons += [f"H = W = crop_size {side}"] if side else []
    return DataShape((n, c, side, side), tuple(reasons))


def _missing_bottoms(parsed: Parsed, layers: Sequence[dict[str, Any]], bad: set[int]) -> list[Diagnostic]:
    """A layer that needs bottoms but names none is a Caffe error; netspec would chain it silently."""
    out = []
    for i, layer in enumerate(layers):
        kind = REGISTRY.get(layer.get("type", ""))
        if i in bad or kind is None or layer.get("bottom") or kind.bottoms[0] == 0:
            continue
        out.append(_err(parsed, ("layer", i), f"{kind.type_name} needs {kind.bottoms[0]} bottom(s) and names "
                                              "none (Caffe refuses this net)", layer.get("name")))
    return out


def _outside(diag: Diagnostic, spans: list[tuple[int, int]]) -> bool:
    line = diag.loc.line if diag.loc else 0
    return not any(lo <= line < hi for lo, hi in spans)


def _layer_spans(parsed: Parsed, n: int, bad: set[int]) -> list[tuple[int, int]]:
    starts = [parsed.loc(("layer", i)).line for i in range(n)] + [10**9]
    return [(starts[i], starts[i + 1]) for i in sorted(bad)]


def _data_tops(spec: Any, given: Mapping[str, Shape]) -> tuple[str, ...]:
    """Tops of data layers whose shape comes from a database check does not open."""
    from netspec.layers.data import _DataLayer

    out = []
    for layer in spec.layers:
        kind = REGISTRY[layer.type]
        if issubclass(kind, _DataLayer) and layer.top and layer.top[0] not in given:
            if kind.known_shape(layer) is None and layer.top[0] not in out:
                out.append(layer.top[0])
    return tuple(out)


def import_net(path: str | os.PathLike[str], *, fix_dialect: bool = False,
               input_shapes: Mapping[str, Shape] | None = None) -> CaffeNet:
    """Read, upgrade and validate a Caffe net prototxt. Raises NetspecError with every problem,
    each located in the prototxt.

    Like a compiler, one run reports every independent problem: a layer netspec cannot lower (or whose
    V1 type cannot be upgraded) is reported once and kept as an opaque layer that still defines its
    tops, so the rest of the net is wired and shape-checked as far as it does not depend on it. Only a
    file that cannot be read as a net (syntax, a value of the wrong type, inconsistent legacy inputs)
    stops before that."""
    from netspec.spec import parse_partial

    given = dict(input_shapes or {})
    parsed = read_prototxt(path, NET_ROOT)
    legacy = tuple(_as_list(parsed.data.get("input", []))) if any(
        k in parsed.data for k in ("input_shape", "input_dim")) else ()
    try:
        parsed, upgrade_errors, not_upgraded = upgrade_net_partial(parsed, inputs=True)
    except PrototxtError as e:
        raise NetspecError(e.diagnostics) from None
    data, found = check_dialect(parsed, fix_dialect=fix_dialect, opaque=not_upgraded)
    layers = [_ordered(layer) for layer in _as_list(data.get("layer", [])) if isinstance(layer, dict)]
    if not layers:
        raise NetspecError([Diagnostic("error", "the net has no layers (no `layer { ... }`, `layers { ... }` "
                                                "or net-level input)", SourceLoc(parsed.file, 1, 1))])
    data["layer"] = layers
    errors = upgrade_errors + found.errors + _missing_bottoms(parsed, layers, found.bad_layers)
    spans = _layer_spans(parsed, len(layers), found.bad_layers)
    # netspec's own validation of a layer already reported here (unknown type, fork field) would say
    # it again; the layer stays in the spec as a broken one, which defines its tops for the wiring.
    try:
        spec, spec_diags = parse_partial(located(parsed, data), parsed.file)
    except NetspecError as e:  # nothing of the net is usable: what was found so far, and why
        errors += [d for d in e.diagnostics if d.severity == "error" and _outside(d, spans)]
        raise NetspecError(sorted(errors, key=sort_key)) from None
    spec_diags = [d for d in spec_diags if _outside(d, spans)]
    errors += [d for d in spec_diags if d.severity == "error"]
    unchecked = _data_tops(spec, given)
    derived = {top: data_shape(spec, top) for top in unchecked}
    # Where Caffe's rules fix the whole shape, the import checks the net with it (the YAML is unchanged:
    # `netspec check` is told the shape by the header's Check: line).
    fixed = {top: tuple(d for d in shape.dims if d is not None) for top, shape in derived.items()
             if shape.complete}
    complete = all(shape.complete for shape in derived.values())
    checked = {**fixed, **given}
    diags, report = _check_phases(spec, checked, shapes=complete)
    errors += [d for d in diags if d.severity == "error" and d not in errors]
    if errors:
        warnings = [d for d in diags if d.severity == "warning"]
        raise NetspecError(sorted(dict.fromkeys(errors + warnings), key=sort_key))
    notes = list(found.notes) + [d for d in diags if d.severity != "error" and d not in found.notes]
    header = {k: v for k, v in data.items() if k not in ("layer",)}
    readers = tuple(dict.fromkeys(layer.name for layer in spec.layers if layer.type in DATA_TYPES))
    return CaffeNet(parsed.file, data.get("name"), header, tuple(layers), spec, report,
                    tuple(sorted(notes, key=sort_key)), legacy, unchecked, readers, derived, checked)


def _check_phases(spec: Any, given: Mapping[str, Shape], *, shapes: bool) -> tuple[list[Diagnostic], Any]:
    """Every wiring (and, with `shapes`, shape) diagnostic of both phases, and the TEST phase's report
    (None without shapes or with errors). The TEST phase's warnings only: TRAIN's repeat them."""
    from netspec.check import check
    from netspec.graph import build_partial

    out: list[Diagnostic] = []
    report = None
    for phase in ("TRAIN", "TEST"):
        if shapes:
            try:
                checked = check(spec, phase=phase, input_shapes=given)  # type: ignore[arg-type]
                found = list(checked.diagnostics)
                report = checked if phase == "TEST" else report
            except NetspecError as e:
                found = e.diagnostics
        else:
            found = build_partial(spec, phase)[1]  # type: ignore[arg-type]
        out += [d for d in found if d not in out and (d.severity == "error" or phase == "TEST")]
    return out, report


# ------------------------------------------------------------------------------------ idiomatic form


def _rules(layer: Mapping[str, Any]) -> tuple[Any, ...]:
    return (layer.get("include"), layer.get("exclude"), layer.get("phase"))


def idiomatic(layers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The layers with netspec's implicit chaining where it resolves to exactly the same blobs:
    `top` dropped when it is the layer's name, `bottom` when it is the previous layer's first top and
    both layers are in the same phases (netspec chains after the phase filter). In-place layers keep
    both, as the house style writes them."""
    out: list[dict[str, Any]] = []
    prev_top: str | None = None
    prev: Mapping[str, Any] | None = None
    for layer in layers:
        kind = REGISTRY[layer["type"]]
        new = dict(layer)
        tops = _as_list(layer.get("top", []))
        bottoms = _as_list(layer.get("bottom", []))
        if tops == [layer.get("name")] and kind.tops[0] >= 1:
            del new["top"]
        in_place = bool(tops) and bool(bottoms) and tops[0] == bottoms[0]
        if (len(bottoms) == 1 and not in_place and prev is not None and prev_top == bottoms[0]
                and kind.bottoms[0] >= 1 and _rules(prev) == _rules(layer)):
            del new["bottom"]
        out.append(new)
        prev = layer
        effective = tops or ([layer.get("name")] if kind.tops[0] >= 1 else [])
        prev_top = effective[0] if effective else None
    return out


# ------------------------------------------------------------------------------------ solver


SOLVER_NET_FIELDS = ("net", "net_param", "train_net", "test_net", "train_net_param", "test_net_param")


@dataclass(frozen=True)
class CaffeSolver:
    file: str
    solver: dict[str, Any]
    dropped: tuple[tuple[str, Any], ...]  # (field, value) of the net references left out


def import_solver(path: str | os.PathLike[str]) -> CaffeSolver:
    """A Caffe solver prototxt as the `solver:` section (SolverSpec's field names are Caffe's).
    The net references (`net`, `train_net`, ...) are dropped: the spec is the net. Errors are located."""
    from netspec.message import MessageError
    from netspec.solver_spec import SolverSpec

    parsed = read_prototxt(path, SOLVER_ROOT)
    unknown = unknown_fields(parsed.data, SOLVER_ROOT)
    diags = [_err(parsed, p, f"'{p[-1]}' is not a field of Caffe's SolverParameter",
                  hint=_close_solver_field(str(p[-1])))
             for p in unknown]
    known = copy.deepcopy(parsed.data)
    for p in unknown:
        _drop(known, p)  # reported: the values of the other fields are still checked
    solver = {k: v for k, v in known.items() if k not in SOLVER_NET_FIELDS}
    dropped = tuple((k, v) for k, v in known.items() if k in SOLVER_NET_FIELDS)
    try:
        SolverSpec.model_validate(solver)
    except MessageError as e:
        for err in e.errors:
            loc = tuple(err["loc"])
            where = parsed.loc(loc) if loc else SourceLoc(parsed.file, 1, 1)
            field_name = ".".join(str(p) for p in loc)
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{field_name}: {text}" if field_name else text
            diags.append(Diagnostic("error", msg, where))
    if diags:
        raise NetspecError(sorted(diags, key=sort_key))
    return CaffeSolver(parsed.file, solver, dropped)


def _close_solver_field(name: str) -> str | None:
    from .prototxt import SCHEMA

    return did_you_mean(name, set(SCHEMA[SOLVER_ROOT]))


# ------------------------------------------------------------------------------------ rendering


def _fmt_shape(shape: Shape) -> str:
    return ",".join(str(d) for d in shape)


def header_lines(net: CaffeNet, *, command: str, solver: CaffeSolver | None, output: str,
                 input_shapes: Mapping[str, Shape], folded: bool) -> list[str]:
    """The comment at the top of the YAML: where it came from and what the import changed (`folded`:
    the document holds `blocks:`)."""
    lines = [f"Imported from {net.file} by netspec import-caffe:", f"  {command}"]
    if net.legacy_inputs:
        lines.append(f"The net-level input(s) {', '.join(net.legacy_inputs)} became the Input layer 'input' "
                     "(Caffe's UpgradeNetInput).")
    if folded:
        lines.append("Repeated runs of layers are folded into `blocks:`; they expand to the layer list "
                     "import-caffe writes without --compact.")
    if solver is not None:
        lines.append(f"solver: from {solver.file}.")
        for name, value in solver.dropped:
            shown = value if isinstance(value, str) else "..."
            lines.append(f"  dropped `{name}: {shown}`: the network is this file's layer list.")
    notes = [d for d in net.diagnostics if d.severity == "note"]
    for d in notes:
        lines.append(f"Note: {d.layer + ': ' if d.layer else ''}{d.message}.")
    check_cmd = f"netspec check {output}"
    shapes = {top: _fmt_shape(shape) for top, shape in input_shapes.items()}
    if net.data_layers:
        lines.append(f"Data layer(s) {', '.join(net.data_layers)} read databases netspec does not open: "
                     "`check` needs the data shape (--input-shape); `train` needs a `data:` section.")
        for top in net.unchecked:
            known = net.data_shapes[top]
            shapes.setdefault(top, known.text())
            if known.dims[1:] != (None, None, None):
                unknown = [axis for d, axis in zip(known.dims, "NCHW") if d is None]
                them = "it" if len(unknown) == 1 else "them"
                rest = (f"; {', '.join(unknown)} only the database knows (give {them} with --input-shape)"
                        if unknown else "; the import checked the net with it")
                lines.append(f"By Caffe's rules {top} is {known.text()} ({', '.join(known.reasons)}){rest}.")
    check_cmd += "".join(f" --input-shape {top}={dims}" for top, dims in shapes.items())
    lines.append(f"Check: {check_cmd}")
    return lines


def net_data(net: CaffeNet, *, solver: CaffeSolver | None = None, compact: bool = False) -> dict[str, Any]:
    """The YAML document as plain data: net header fields, (blocks,) layers, solver."""
    layers = idiomatic(net.layers)
    doc: dict[str, Any] = {k: v for k, v in net.header.items()}
    if compact:
        from .compact import compact_layers
        from .emit import spec_yaml

        blocks, folded = compact_layers(layers)

        def lines(d: dict[str, Any]) -> int:
            return spec_yaml(d).count("\n")

        # Every fold made the YAML shorter in lines; the blocks also cost the header's line saying
        # they are there, so they are kept only if the file as a whole still gets shorter.
        if blocks and lines({"blocks": blocks, "layer": folded}) + 1 < lines({"layer": layers}):
            doc["blocks"], layers = blocks, folded
    doc["layer"] = layers
    if solver is not None:
        doc["solver"] = solver.solver
    return doc


def render(net: CaffeNet, *, command: str, output: str, solver: CaffeSolver | None = None,
           compact: bool = False, input_shapes: Mapping[str, Shape] | None = None) -> str:
    from .emit import spec_yaml

    doc = net_data(net, solver=solver, compact=compact)
    header = header_lines(net, command=command, solver=solver, output=output,
                          input_shapes=input_shapes or {}, folded="blocks" in doc)
    return spec_yaml(doc, header_comment="\n".join(header))


# ------------------------------------------------------------------------------------ weights


@dataclass(frozen=True)
class ImportedWeights:
    """Variables ({"params", "batch_stats"}, netspec's layout) with the caffemodel's blobs in them."""

    variables: dict[str, Any]
    loaded: tuple[str, ...]       # layers whose blobs came from the caffemodel
    diagnostics: tuple[Diagnostic, ...]


def _blob_fits(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Equal shapes, or a legacy 4-D blob (leading 1s) holding the same values."""
    if got == want:
        return True
    strip = tuple(d for i, d in enumerate(got) if not (d == 1 and i < len(got) - len(want)))
    return strip == want


def import_weights(spec: Any, caffemodel: str | os.PathLike[str], *,
                   input_shapes: Mapping[str, Shape] | None = None, seed: int = 0) -> ImportedWeights:
    """Map a .caffemodel's blobs onto the spec's compiled parameters by layer name and blob order,
    as Caffe's CopyTrainedLayersFrom does: a caffemodel layer that is not in the net is ignored (a
    warning), a net layer missing from the caffemodel keeps its filler initialisation (a warning), a
    blob count or shape that differs is an error. BatchNorm keeps Caffe's three blobs exactly
    (mean sum, variance sum, scale factor): the lowering stores that form and divides at run time.
    Both phases are compiled, so TRAIN-only layers (GoogLeNet's auxiliary heads) get their blobs too."""
    import numpy as np

    from netspec.lowering import compile as compile_net
    from netspec.lowering import set_caffe_blobs

    from .caffemodel import CaffemodelError, read_caffemodel_layers

    file = os.fspath(caffemodel)
    try:
        _, layers = read_caffemodel_layers(file)
    except OSError as e:
        raise NetspecError([Diagnostic("error", f"cannot read {file}: {e.strerror or e}")]) from None
    except CaffemodelError as e:
        raise NetspecError(e.diagnostics) from None
    blobs = {layer.name: list(layer.blobs) for layer in layers}  # a later duplicate wins, as in Caffe
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    wanted: dict[str, tuple[Any, list[tuple[int, ...]]]] = {}
    models = []
    for phase in _phases_with_own_layers(spec):
        model = compile_net(spec, phase, input_shapes=dict(input_shapes or {}))
        models.append(model)
        for info in model.param_info.values():
            layer = next(x for x in spec.layers if x.name == info.layer and x.in_phase(phase))
            shapes = wanted.setdefault(info.layer, (layer, []))[1]
            if info.index == len(shapes):
                shapes.append(info.caffe_shape)
    loaded = []
    for name, (layer, shapes) in wanted.items():
        got = blobs.get(name)
        if got is None:
            warnings.append(Diagnostic("warning", "not in the caffemodel: keeps its filler initialisation",
                                       layer.loc, name))
            continue
        if len(got) != len(shapes):
            errors.append(Diagnostic("error", f"the caffemodel has {len(got)} blob(s) for this layer, "
                                              f"the net {len(shapes)}", layer.loc, name))
            continue
        bad = [f"blob {i}: caffemodel {tuple(g.shape)}, net {w}" for i, (g, w) in enumerate(zip(got, shapes))
               if not _blob_fits(tuple(g.shape), w)]
        if bad:
            errors.append(Diagnostic("error", "blob shapes differ (" + "; ".join(bad) + ")", layer.loc, name))
            continue
        loaded.append(name)
    for name in blobs:
        if name not in wanted and blobs[name]:
            warnings.append(Diagnostic("warning", f"{file}: layer '{name}' is not a layer with blobs in this "
                                                  "net: ignored (as Caffe ignores it)"))
    if errors:
        raise NetspecError(sorted(errors + warnings, key=sort_key))
    for model in models:
        variables = model.init(seed)
        own = {info.layer for info in model.param_info.values()}
        here = {n: [np.asarray(b, np.float32) for b in blobs[n]] for n in loaded if n in own}
        variables = set_caffe_blobs(model, variables, here)
        for key, into in (("params", params), ("batch_stats", stats)):
            for layer_name, arrays in variables[key].items():
                into.setdefault(layer_name, {k: np.asarray(v) for k, v in arrays.items()})
    return ImportedWeights({"params": params, "batch_stats": stats}, tuple(loaded),
                           tuple(sorted(warnings, key=sort_key)))


def _phases_with_own_layers(spec: Any) -> tuple[str, ...]:
    """TEST, plus TRAIN when it has layers TEST lacks (compiling a phase is not free)."""
    from netspec.graph import build

    test = {n.name for n in build(spec, "TEST").nodes}
    train = {n.name for n in build(spec, "TRAIN").nodes}
    return ("TEST", "TRAIN") if train - test else ("TEST",)


def checkpoint_in_the_way(directory: str | os.PathLike[str]) -> Diagnostic | None:
    """An error when DIR holds checkpoints import-caffe did not write (a training run's): those are
    never replaced. An earlier import's checkpoint is replaced."""
    folder = FsPath(directory) / "checkpoints"
    steps = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not steps:
        return None
    if steps == ["0"] and _imported_meta(folder):
        return None
    return Diagnostic("error", f"{directory} already holds checkpoints that import-caffe did not write",
                      hint="give another folder with --checkpoint")


def _imported_meta(folder: FsPath) -> bool:
    import json

    try:
        meta = json.loads((folder / "0" / "meta" / "metadata").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "caffemodel" in meta


def write_checkpoint(directory: str | os.PathLike[str], weights: ImportedWeights, *,
                     meta: Mapping[str, Any]) -> FsPath:
    """A netspec checkpoint (iteration 0) holding the variables, which `netspec train --weights DIR`
    and `netspec test --weights DIR` load; returns its folder (DIR/checkpoints/0). An earlier
    import's checkpoint there is replaced (see `checkpoint_in_the_way`)."""
    import shutil

    from netspec.train.checkpoint import Checkpointer

    root = FsPath(directory)
    folder = root / "checkpoints"
    problem = checkpoint_in_the_way(root)
    if problem is not None:
        raise NetspecError([problem])
    if (folder / "0").exists():
        shutil.rmtree(folder / "0")
    ckpt = Checkpointer(folder)
    try:
        ckpt.save(0, weights.variables, {"iteration": 0, **meta})
    finally:
        ckpt.close()
    return folder / "0"
