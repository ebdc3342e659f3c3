"""netspec spec -> Caffe `.prototxt` (`netspec export-caffe`), and its `solver:` section -> a solver prototxt.

The spec is validated first (`load_spec`: blocks expanded, every field checked), then written from
the validated layers, so what Caffe reads is what netspec checked:

- blocks are expanded; netspec's implicit chaining is made explicit (every layer names its bottoms
  and tops). netspec chains after the phase filter, so a layer whose implicit bottom differs between
  TRAIN and TEST has no single Caffe form: that is an error naming the layer;
- fields are the ones the user set (`exclude_unset`), with their validated types, under Caffe's
  names; enums bare, strings quoted (`emit.to_prototxt` with Caffe's schema);
- net-level legacy inputs stay net-level (Caffe reads them); netspec's own sections (`solver:`,
  `data:`) are not part of a NetParameter and are left out with a comment; the solver can be
  written to its own prototxt (`export_solver`);
- anything BVLC's caffe.proto does not declare (a netspec extension such as Dropout's
  `scale_train`) is written but reported, since BVLC Caffe will refuse it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netspec.errors import Diagnostic, NetspecError, SourceLoc, sort_key
from netspec.layers import REGISTRY

from .emit import to_prototxt
from .importer import unknown_fields
from .prototxt import NET_ROOT, SOLVER_ROOT

_NET_FIELDS = ("name", "input", "input_shape", "input_dim", "force_backward", "debug_info", "state")
_ENVELOPE = ("phase", "loss_weight", "param", "propagate_down", "include", "exclude")


def plain(value: Any) -> Any:
    """Validated data (pydantic dumps with tuples, PosDicts) as plain dicts, lists and scalars."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)  # `lr_mult: 1`, as Caffe files write it; float fields read integers
    return value


def _dump(message: Any, written: Any = None) -> Any:
    """The fields the spec sets, in the order it writes them (a re-import then reads the same YAML)."""
    return _written_order(plain(message.model_dump(exclude_unset=True)), written)


def _written_order(value: Any, written: Any) -> Any:
    if isinstance(value, dict):
        raw = written if isinstance(written, Mapping) else {}
        keys = [k for k in raw if k in value] + [k for k in value if k not in raw]
        return {k: _written_order(value[k], raw.get(k)) for k in keys}
    if isinstance(value, list):
        raw_items = written if isinstance(written, list) else [written] * len(value)
        return [_written_order(v, raw_items[j] if j < len(raw_items) else None) for j, v in enumerate(value)]
    numbers = (int, float)
    if (isinstance(written, numbers) and isinstance(value, numbers) and not isinstance(written, bool)
            and not isinstance(value, bool) and written == value):
        return written  # `mean: 0.0` stays 0.0, `lr_mult: 1` stays 1
    return value


def _chained(layers: list[Any]) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
    """netspec's implicit chaining over one layer list: index -> (bottoms, tops)."""
    out: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    prev_top: tuple[str, ...] = ()
    for layer in layers:
        kind = REGISTRY[layer.type]
        bottom = layer.bottom or ((prev_top[0],) if kind.bottoms[0] >= 1 and prev_top else ())
        top = layer.top or ((layer.name,) if kind.tops[0] >= 1 else ())
        out[layer.index] = (tuple(bottom), tuple(top))
        prev_top = top
    return out


def explicit_wiring(spec: Any) -> tuple[dict[int, tuple[tuple[str, ...], tuple[str, ...]]], list[Diagnostic]]:
    """Every layer's bottoms and tops as netspec resolves them, the same in every phase it is in."""
    layers = [x for x in spec.layers if x.index >= 0]
    per_phase = {phase: _chained([x for x in layers if x.in_phase(phase, spec.level, spec.stages)])
                 for phase in ("TRAIN", "TEST")}
    anywhere = _chained(layers)
    wiring: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    diags: list[Diagnostic] = []
    for layer in layers:
        seen = {phase: w[layer.index] for phase, w in per_phase.items() if layer.index in w}
        forms = set(seen.values())
        if len(forms) > 1:
            train, test = seen["TRAIN"][0], seen["TEST"][0]
            diags.append(Diagnostic(
                "error", f"its implicit bottom is '{train[0] if train else ''}' in TRAIN but "
                         f"'{test[0] if test else ''}' in TEST; one Caffe layer cannot say both",
                layer.loc, layer.name, "write its `bottom:` (or split it into one layer per phase)"))
            continue
        wiring[layer.index] = forms.pop() if forms else anywhere[layer.index]
    return wiring, diags


def layer_data(layer: Any, bottom: tuple[str, ...], top: tuple[str, ...]) -> dict[str, Any]:
    """One validated layer as Caffe LayerParameter data."""
    out: dict[str, Any] = {"name": layer.name, "type": layer.type}
    if bottom:
        out["bottom"] = list(bottom)
    if top:
        out["top"] = list(top)
    raw = layer.raw if isinstance(layer.raw, Mapping) else {}
    if raw.get("phase") is not None:
        out["phase"] = raw["phase"]
    for field in _ENVELOPE[1:]:
        value = getattr(layer, field)
        if value:
            written = raw.get(field)
            items = written if isinstance(written, list) else [written] * len(value)
            out[field] = [_dump(v, w) if hasattr(v, "model_dump") else _written_order(plain(v), w)
                          for v, w in zip(value, items)]
    order = [k for k in raw if k in layer.messages] + [k for k in layer.messages if k not in raw]
    for name in order:
        dumped = _dump(layer.messages[name], raw.get(name))
        if dumped or name in raw:
            out[name] = dumped
    return out


@dataclass(frozen=True)
class Exported:
    text: str
    diagnostics: tuple[Diagnostic, ...]   # warnings: what BVLC Caffe will not read


def export_net(spec: Any, *, header: str | None = None) -> Exported:
    """The validated spec as Caffe NetParameter text. Raises NetspecError when it has no Caffe form."""
    wiring, errors = explicit_wiring(spec)
    if errors:
        raise NetspecError(sorted(errors, key=sort_key))
    raw = spec.raw if isinstance(spec.raw, Mapping) else {}
    net: dict[str, Any] = {k: plain(raw[k]) for k in _NET_FIELDS if raw.get(k) is not None}
    layers = [layer_data(x, *wiring[x.index]) for x in spec.layers if x.index >= 0]
    net["layer"] = layers
    diags = []
    for path in unknown_fields(net, NET_ROOT):
        where = ".".join(str(p) for p in path[2:]) if path[0] == "layer" else ".".join(map(str, path))
        who = layers[int(path[1])]["name"] if path[0] == "layer" else None
        layer = next((x for x in spec.layers if x.name == who), None)
        diags.append(Diagnostic("warning", f"'{where}' is a netspec extension: BVLC Caffe will refuse it",
                                layer.loc if layer is not None else SourceLoc(spec.file, 1, 1), who))
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in (header or "").splitlines())
    return Exported(comment + to_prototxt(net, message=NET_ROOT), tuple(diags))


def export_solver(spec: Any, *, net_path: str | None, header: str | None = None) -> Exported:
    """The spec's `solver:` section as a Caffe SolverParameter, naming `net_path` as its `net`.
    netspec's extensions (cosine policy, warmup, max_epochs, AdamW) have no Caffe form: an error."""
    if spec.solver is None:
        raise NetspecError([Diagnostic("error", "the spec has no `solver:` section",
                                       SourceLoc(spec.file, 1, 1))])
    written = spec.raw.get("solver") if isinstance(spec.raw, Mapping) else None
    solver = {k: v for k, v in _dump(spec.solver, written).items()
              if k not in ("net", "train_net", "test_net")}
    if net_path is not None:
        solver = {"net": net_path, **solver}
    errors = []
    for path in unknown_fields(solver, SOLVER_ROOT):
        errors.append(Diagnostic("error", f"solver: '{path[0]}' is a netspec extension with no Caffe form",
                                 SourceLoc(spec.file, 1, 1), hint="remove it to export the solver"))
    for field, value in (("lr_policy", "cosine"), ("type", "AdamW")):
        if solver.get(field) == value:
            message = f"solver: {field} '{value}' is a netspec extension; Caffe has no such value"
            errors.append(Diagnostic("error", message, SourceLoc(spec.file, 1, 1)))
    if errors:
        raise NetspecError(errors)
    comment = "".join(f"# {line}\n" for line in (header or "").splitlines())
    return Exported(comment + to_prototxt(solver, message=SOLVER_ROOT), ())


def export_file(path: str | os.PathLike[str]) -> tuple[Any, Exported]:
    """Load and validate a spec file and export it (the spec is returned for the solver)."""
    from netspec.spec import load_spec

    spec = load_spec(os.fspath(path))
    return spec, export_net(spec, header=f"Exported from {os.fspath(path)} by netspec export-caffe.")
