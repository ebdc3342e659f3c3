"""Graph + input shapes -> ShapeReport: every blob's shape, every layer's counts and receptive field.

This stage only calls the layer types' pure rules and never formats. A layer whose rule fails
gets a located error; blobs downstream of it stay unknown and independent branches carry on, so
one run reports every problem in the net.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from netspec.errors import Diagnostic, NetspecError, sort_key
from netspec.graph import Graph, Node
from netspec.layers.base import Blob, Shape, ShapeError, ShapeErrors, Window, count, fmt_shape

if TYPE_CHECKING:
    from fractions import Fraction

BYTES_PER_VALUE = 4  # activations are float32 unless lowered with another dtype


@dataclass(frozen=True)
class Receptive:
    """Receptive field of a blob relative to the net's input: size and jump (effective stride) per axis.

    A jump is an int while it is whole (Fraction arithmetic costs ten times as much) and a Fraction
    after upsampling; both have `numerator` and `denominator`.
    """

    size: tuple[int, ...]
    jump: tuple[int | Fraction, ...]


@dataclass(frozen=True)
class Row:
    """One layer's figures. MACs are per input sample; activation bytes are at the report's batch."""

    name: str
    type: str
    tops: tuple[tuple[str, Shape], ...]
    blobs: tuple[Blob, ...]
    params: int
    state: int
    macs: int
    activation_bytes: int
    rf: Receptive | None
    in_place: bool


@dataclass(frozen=True)
class ShapeReport:
    graph: Graph
    rows: tuple[Row, ...]
    shapes: dict[str, Shape]
    batch: int
    diagnostics: tuple[Diagnostic, ...] = field(default=())

    @property
    def learnable_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def state(self) -> int:
        return sum(r.state for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.rows)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


def _apply_batch(shape: Shape, batch: int | None) -> Shape:
    return (batch,) + shape[1:] if batch is not None and shape else shape


def _rf_step(w: Window, r: Receptive) -> Receptive | None:
    if len(w.kernel) != len(r.size):
        return None
    size, jump = [], []
    for k, s, d, rs, rj in zip(w.kernel, w.stride, w.dilation, r.size, r.jump):
        ext = d * (k - 1) + 1
        if w.transposed:
            span = -(-ext // s)
            size.append(int(rs + (span - 1) * rj))
            from fractions import Fraction  # only deconvolutions divide jumps (fractions loads decimal)

            j = Fraction(rj) / s
            jump.append(j.numerator if j.denominator == 1 else j)
        else:
            size.append(int(rs + (ext - 1) * rj))
            jump.append(rj * s)
    return Receptive(tuple(size), tuple(jump))


def _merge_rf(rfs: list[Receptive | None]) -> Receptive | None:
    known = [r for r in rfs if r is not None]
    if len(known) == 1:  # most layers: one bottom
        return known[0]
    if not known or len({len(r.size) for r in known}) != 1:
        return None
    n = len(known[0].size)
    return Receptive(tuple(max(r.size[i] for r in known) for i in range(n)),
                     tuple(max(r.jump[i] for r in known) for i in range(n)))


class _Counter:
    """Learnable/state totals honouring Caffe's shared parameters (`param { name }`)."""

    def __init__(self) -> None:
        self.shared: dict[str, tuple[Shape, str]] = {}

    def count(self, node: Node, blobs: tuple[Blob, ...], diags: list[Diagnostic]) -> tuple[int, int]:
        layer = node.layer
        if len(layer.param) > len(blobs):
            diags.append(Diagnostic("error", f"{len(layer.param)} 'param' entries but {node.kind.type_name} has "
                                             f"{len(blobs)} blob(s) here (too many params specified)",
                                    layer.where("param"), layer.name))
        learnable = state = 0
        for i, blob in enumerate(blobs):
            spec = layer.param[i] if i < len(layer.param) else None
            if not blob.learnable and spec is not None and spec.lr_mult != 0:
                diags.append(Diagnostic("error", f"blob {i} holds statistics, not parameters: its lr_mult must "
                                                 f"be 0, got {spec.lr_mult:g}", layer.where("param", i),
                                        layer.name))
            if spec is not None and spec.name:
                if spec.name in self.shared:
                    shape, owner = self.shared[spec.name]
                    same = shape == blob.shape if spec.share_mode == "STRICT" else count(shape) == count(blob.shape)
                    if not same:
                        diags.append(Diagnostic("error", f"shared param '{spec.name}' is {fmt_shape(shape)} in "
                                                         f"'{owner}' but {fmt_shape(blob.shape)} here",
                                                layer.where("param", i), layer.name))
                    continue
                self.shared[spec.name] = (blob.shape, layer.name)
            if blob.learnable:
                learnable += count(blob.shape)
            else:
                state += count(blob.shape)
        return learnable, state


def infer(graph: Graph, input_shapes: Mapping[str, Shape] | None = None, batch: int | None = None,
          strict: bool = False) -> ShapeReport:
    """Every blob's shape and every layer's counts. Raises NetspecError listing every problem."""
    given = dict(input_shapes or {})
    diags: list[Diagnostic] = list(graph.spec.warnings) + list(graph.warnings)
    shapes: dict[str, Shape] = {}
    rfs: dict[str, Receptive | None] = {}
    rows: list[tuple[Any, ...]] = []  # Row fields, MACs still for the whole batch
    counter = _Counter()
    for node in graph.nodes:
        layer = node.layer
        if any(b not in shapes for b in node.bottoms):
            continue  # downstream of a failed layer: already reported
        bottoms = tuple(shapes[b] for b in node.bottoms)
        kind = node.kind
        try:
            if kind.is_input:
                sources = kind.source_shapes(layer, given)  # type: ignore[attr-defined]
                tops, notes, blobs, macs, window = kind.rules(layer, bottoms,
                                                              tuple(_apply_batch(s, batch) for s in sources))
            else:
                tops, notes, blobs, macs, window = kind.evaluate(layer, bottoms)
            for note in notes:
                severity = "error" if strict and note.strict else "warning"
                diags.append(Diagnostic(severity, note.message, layer.where(*note.field), layer.name))
        except ShapeError as e:
            detail = "; ".join(f"bottom '{graph.blob_names[b]}' is {fmt_shape(s)}"
                               for b, s in zip(node.bottoms, bottoms))
            for one in e.errors if isinstance(e, ShapeErrors) else (e,):
                hint = one.hint or (detail if detail else None)
                diags.append(Diagnostic("error", one.message, layer.where(*one.field), layer.name, hint))
            continue
        for t, s in zip(node.tops, tops):
            if any(d < 0 for d in s):
                diags.append(Diagnostic("error", f"top '{graph.blob_names[t]}' would be {fmt_shape(s)}",
                                        layer.loc, layer.name))
            shapes[t] = s
        params, state = counter.count(node, blobs, diags)
        rf = _receptive(node, bottoms, tops, window, rfs)
        for t in node.tops:
            rfs[t] = rf
        names = graph.blob_names
        rows.append((layer.name, kind.type_name, tuple((names[t], s) for t, s in zip(node.tops, tops)),
                     blobs, params, state, macs, _new_bytes(node, tops), rf,
                     any(names[t] == names.get(b) for t, b in zip(node.tops, node.bottoms))))
    n = _batch_of(graph, shapes)
    # MACs were counted for the whole batch; the table gives them per sample
    rows = [Row(name, type_, tops_, blobs_, params_, state_, macs_ // n if n else macs_, bytes_, rf_, in_place)
            for name, type_, tops_, blobs_, params_, state_, macs_, bytes_, rf_, in_place in rows]
    if any(d.severity == "error" for d in diags):
        raise NetspecError(sorted(diags, key=sort_key))
    return ShapeReport(graph, tuple(rows), shapes, n, tuple(sorted(diags, key=sort_key)))


def _batch_of(graph: Graph, shapes: Mapping[str, Shape]) -> int:
    for t in graph.inputs:
        s = shapes.get(t)
        if s:
            return s[0]
    return 1


def _new_bytes(node: Node, tops: tuple[Shape, ...]) -> int:
    """Storage for this layer's tops; in-place tops reuse their bottom's memory, as in Caffe."""
    fresh = [s for t, s in zip(node.tops, tops) if "@" not in t]
    return sum(count(s) for s in fresh) * BYTES_PER_VALUE


def _receptive(node: Node, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...], window: Window | None,
               rfs: dict[str, Receptive | None]) -> Receptive | None:
    if node.kind.is_input:
        spatial = len(tops[0]) - 2 if tops and len(tops[0]) > 2 else 0
        return Receptive((1,) * spatial, (1,) * spatial) if spatial else None
    incoming = _merge_rf([rfs.get(b) for b in node.bottoms])
    if incoming is None or not tops or len(tops[0]) < 2:
        return None
    if window is None:
        return incoming
    return _rf_step(window, incoming)
