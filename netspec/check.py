"""The `check` pipeline as one function: file -> spec -> graph -> shape report.

Every stage runs even when an earlier one found errors (on whatever is still valid), so one run
reports every problem in the file. After the shapes, a few whole-net checks that no single layer
can make: blobs too large for Caffe, and weights whose shape changes between the TRAIN and TEST
nets or under `--input-shape` (Caffe's "Input size incompatible with inner product parameters").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from netspec.errors import Diagnostic, NetspecError, SourceLoc, did_you_mean, sort_key
from netspec.graph import Graph, Phase, build_partial
from netspec.layers.base import Shape, count, fmt_shape
from netspec.report import count_text, human_bytes, shape_text
from netspec.shapes import ShapeReport, infer
from netspec.spec import NetSpec, parse_partial, read_spec

#: Caffe's Blob::Reshape refuses more values than an int32 counts ("blob size exceeds INT_MAX")
CAFFE_MAX_BLOB = 2**31 - 1


def check(spec: NetSpec | str | Path, *, phase: Phase = "TEST",
          input_shapes: Mapping[str, Shape] | None = None, batch: int | None = None,
          strict: bool = False) -> ShapeReport:
    """Validate a spec and infer every shape and count. Raises NetspecError with every problem."""
    if isinstance(spec, NetSpec):
        spec_diags = list(spec.warnings)
    else:
        spec, spec_diags = parse_partial(read_spec(spec), str(spec))
    report, diags = _infer_all(spec, phase, input_shapes, batch, strict, spec_diags)
    if report is not None:
        diags += _big_blobs(report)
        if not _errors(diags):
            diags += _empty_blobs(report)
            diags += _other_phase(spec, report, input_shapes, batch)
            diags += _input_override(spec, report, input_shapes, batch)
    diags = _finish(spec, diags)
    if report is None or _errors(diags):
        raise NetspecError(diags)
    return dataclasses.replace(report, diagnostics=tuple(diags))


def _errors(diags: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diags)


def _infer_all(spec: NetSpec, phase: Phase, input_shapes: Mapping[str, Shape] | None, batch: int | None,
               strict: bool, spec_diags: list[Diagnostic]) -> tuple[ShapeReport | None, list[Diagnostic]]:
    """Graph and shapes for one phase, with the spec's diagnostics: (report or None, all diagnostics)."""
    graph, graph_diags = build_partial(spec, phase)
    errors = [d for d in spec_diags + graph_diags if d.severity == "error"]
    errors += _unknown_inputs(graph, input_shapes)
    try:
        report: ShapeReport | None = infer(graph, input_shapes, batch, strict)
        shape_diags = list(report.diagnostics) if report else []
    except NetspecError as e:
        report, shape_diags = None, e.diagnostics
    # infer() repeats the spec's and the graph's warnings; errors of the earlier stages come from here
    return report, errors + shape_diags


def _unknown_inputs(graph: Graph, input_shapes: Mapping[str, Shape] | None) -> list[Diagnostic]:
    """`--input-shape NAME=...` must name an input of the checked net."""
    inputs = sorted({graph.blob_names[t] for t in graph.inputs})
    out = []
    for name in input_shapes or {}:
        if name in inputs:
            continue
        guess = did_you_mean(name, inputs)
        known = f"; {guess}" if guess else f" (its inputs: {', '.join(inputs) or 'none'})"
        out.append(Diagnostic("error", f"--input-shape gives '{name}', but the {graph.phase} net has no "
                                       f"input blob of that name{known}", SourceLoc(graph.spec.file, 1, 1)))
    return out


def _finish(spec: NetSpec, diags: list[Diagnostic]) -> list[Diagnostic]:
    """Deduplicated, in source order, with block use sites added to expanded layers' hints.

    A layer with errors loses its "top never used" warning: its consumers are what failed.
    """
    failed = {d.layer for d in diags if d.severity == "error"}
    unique = [d for d in dict.fromkeys(diags) if not (d.code == "unused-top" and d.layer in failed)]
    named = {d.layer for d in unique}
    layers = [l for l in spec.layers + spec.broken if l.name in named]  # the use-site chains worth writing
    if any(getattr(l.raw, "__dict__", {}).get("block_origin") for l in layers):
        from netspec.blocks import with_origins

        unique = with_origins(unique, layers)
    return sorted(unique, key=sort_key)


def _big_blobs(report: ShapeReport) -> list[Diagnostic]:
    """Blobs Caffe refuses to create (Blob::Reshape's CHECK_LE(count_, INT_MAX)): errors, as they abort
    Caffe's net setup. Counted here with Python's exact integers, never allocated."""
    out = []
    for row in report.rows:
        node = report.graph.node(row.name)
        for i, blob in enumerate(row.blobs):
            n = count(blob.shape)
            if n > CAFFE_MAX_BLOB:
                out.append(Diagnostic("error", f"parameter blob {i} is {_size(blob.shape)}", node.layer.loc,
                                      row.name))
        for name, shape in row.tops:
            n = count(shape)
            if n > CAFFE_MAX_BLOB:
                out.append(Diagnostic("error", f"top '{name}' is {_size(shape)}", node.layer.where("top"),
                                      row.name))
    return out


def _size(shape: Shape) -> str:
    n = count(shape)
    return (f"{shape_text(shape)} = {count_text(n)} values ({human_bytes(4 * n)} as float32); Caffe refuses "
            "blobs over 2^31−1 values")


def _empty_blobs(report: ShapeReport) -> list[Diagnostic]:
    """Where a blob with no values first appears (Caffe allows 0 dimensions; it is rarely meant)."""
    out = []
    for row in report.rows:
        node = report.graph.node(row.name)
        if any(count(report.shapes[b]) == 0 for b in node.bottoms if b in report.shapes):
            continue
        for name, shape in row.tops:
            if shape and count(shape) == 0:
                out.append(Diagnostic("warning", f"top '{name}' is {shape_text(shape)}: it holds no values",
                                      node.layer.where("top"), row.name))
    return out


def _weights_differ(here: ShapeReport, there: ShapeReport, why: tuple[str, str], severity: str,
                    advice: str) -> list[Diagnostic]:
    """Layers present in both reports whose parameter blobs differ in shape.

    `why` says what distinguishes the reports, e.g. ("in the TEST net", "in the TRAIN net").
    """
    theirs = {r.name: r for r in there.rows}
    out = []
    for row in here.rows:
        other = theirs.get(row.name)
        if other is None or other.type != row.type:
            continue
        mine = [b.shape for b in row.blobs]
        their = [b.shape for b in other.blobs]
        if mine == their:
            continue
        if row.type == "InnerProduct":
            msg = (f"input size incompatible with inner product parameters: K = {_k_text(here, row.name)} "
                   f"{why[0]} but {_k_text(there, row.name)} {why[1]}, so the weights would be "
                   f"{fmt_shape(mine[0])} and {fmt_shape(their[0])}")
        else:
            i = next((j for j, (a, b) in enumerate(zip(mine, their)) if a != b), min(len(mine), len(their)))
            a = fmt_shape(mine[i]) if i < len(mine) else "absent"
            b = fmt_shape(their[i]) if i < len(their) else "absent"
            msg = f"parameter blob {i} is {a} {why[0]} but {b} {why[1]}"
        where = here.graph.node(row.name).layer.loc
        out.append(Diagnostic(severity, msg, where, row.name, advice))  # type: ignore[arg-type]
    return out


def _k_text(report: ShapeReport, layer: str) -> str:
    node = report.graph.node(layer)
    shape = report.shapes.get(node.bottoms[0], ())
    axis = getattr(node.layer.messages.get("inner_product_param"), "axis", 1) % max(1, len(shape))
    dims = shape[axis:]
    return f"{'·'.join(map(str, dims))} = {count(dims)}" if len(dims) > 1 else f"{count(dims)}"


def _has_phase_rules(spec: NetSpec) -> bool:
    return any(r.phase is not None for l in spec.layers for r in l.include + l.exclude)


def _other_phase(spec: NetSpec, report: ShapeReport, input_shapes: Mapping[str, Shape] | None,
                 batch: int | None) -> list[Diagnostic]:
    """The TRAIN and TEST nets share weights by layer name, so their shapes must agree."""
    if not _has_phase_rules(spec):
        return []
    phase: Phase = "TRAIN" if report.graph.phase == "TEST" else "TEST"
    other = _quiet_report(spec, phase, input_shapes, batch)
    if other is None:
        return []
    why = (f"in the {report.graph.phase} net", f"in the {phase} net")
    return _weights_differ(report, other, why, "error",
                           f"Caffe's {phase} net shares this layer's weights by name; give both phases "
                           "inputs of the same size, or rename the layer in one of them")


def _input_override(spec: NetSpec, report: ShapeReport, input_shapes: Mapping[str, Shape] | None,
                    batch: int | None) -> list[Diagnostic]:
    """`--input-shape` may resize a net whose weights were made for the spec's own input size."""
    if not input_shapes:
        return []
    base = _quiet_report(spec, report.graph.phase, None, batch)
    if base is None:
        return []
    given = ", ".join(f"{k}={','.join(map(str, v))}" for k, v in input_shapes.items())
    why = (f"with --input-shape {given}", "with the spec's own input shape")
    return _weights_differ(report, base, why, "warning",
                           "weights made for the spec's input size will not load into this net; a global "
                           "pooling before this layer makes the net independent of the input size")


def _quiet_report(spec: NetSpec, phase: Phase, input_shapes: Mapping[str, Shape] | None,
                  batch: int | None) -> ShapeReport | None:
    """A second report for comparison, or None when that net does not check on its own."""
    graph: Graph
    graph, diags = build_partial(spec, phase)
    if _errors(diags):
        return None
    try:
        return infer(graph, input_shapes, batch)
    except NetspecError:
        return None
