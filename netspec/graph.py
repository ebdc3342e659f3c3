"""NetSpec + phase -> Graph: filter layers by phase, wire bottoms to tops, order topologically.

Caffe's in-place computation (top i == bottom i) means "last writer wins": the graph gives each
write its own blob id (`conv1`, then `conv1@relu1`), so later stages see a plain dataflow graph.
A bottom names the latest earlier write of that blob; a bottom written only later in the file is a
forward reference, allowed as long as the result is acyclic. Every problem is collected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from netspec.errors import Diagnostic, NetspecError, did_you_mean, sort_key
from netspec.layers import REGISTRY
from netspec.layers.base import LayerType
from netspec.spec import LayerSpec, NetSpec

Phase = Literal["TRAIN", "TEST"]
TERMINAL_TYPES = frozenset({"Accuracy", "Softmax", "Silence"})


@dataclass(frozen=True)
class Node:
    """One layer in the graph, with its bottoms and tops resolved to blob ids."""

    layer: LayerSpec
    kind: type[LayerType]
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.layer.name


@dataclass(frozen=True)
class Graph:
    """A phase of a net as a dataflow graph in execution order."""

    spec: NetSpec
    phase: Phase
    nodes: tuple[Node, ...]
    #: blob id -> the name the user wrote (in-place rewrites share it)
    blob_names: dict[str, str]
    #: blob ids no layer consumes: the net's outputs (losses, accuracies, predictions)
    outputs: tuple[str, ...]
    warnings: tuple[Diagnostic, ...] = field(default=())

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(t for n in self.nodes if n.kind.is_input for t in n.tops)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def _with_defaults(layers: list[LayerSpec]) -> list[LayerSpec]:
    """netspec's implicit chaining: a missing bottom reads the previous layer's first top,
    a missing top is the layer's own name."""
    out: list[LayerSpec] = []
    for layer in layers:
        kind = REGISTRY[layer.type]
        update: dict[str, object] = {}
        if not layer.bottom and kind.bottoms[0] >= 1 and out and out[-1].top:
            update["bottom"] = (out[-1].top[0],)
        if not layer.top and kind.tops[0] >= 1:
            update["top"] = (layer.name,)
        out.append(layer.model_copy(update=update) if update else layer)
    return out


def _count_check(layer: LayerSpec, kind: type[LayerType], diags: list[Diagnostic]) -> None:
    for what, (lo, hi), got, path in (("bottom", kind.bottoms, len(layer.bottom), "bottom"),
                                      ("top", kind.tops, len(layer.top), "top")):
        if got < lo or (hi is not None and got > hi):
            want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            diags.append(Diagnostic("error", f"{kind.type_name} takes {want} {what}(s), got {got}",
                                    layer.where(path), layer.name))
    if len(layer.loss_weight) > len(layer.top):
        diags.append(Diagnostic("error", f"{len(layer.loss_weight)} loss_weight values for "
                                         f"{len(layer.top)} top(s)", layer.where("loss_weight"), layer.name))
    if layer.propagate_down and len(layer.propagate_down) != len(layer.bottom):
        diags.append(Diagnostic("error", f"propagate_down needs one value per bottom ({len(layer.bottom)})",
                                layer.where("propagate_down"), layer.name))


def build(spec: NetSpec, phase: Phase = "TEST", level: int = 0,
          stages: frozenset[str] = frozenset()) -> Graph:
    """Resolve the net for one phase. Raises NetspecError with every wiring problem."""
    diags: list[Diagnostic] = []
    layers = _with_defaults([l for l in spec.layers if l.in_phase(phase, level, stages)])
    seen: dict[str, LayerSpec] = {}
    for layer in layers:
        if layer.name in seen:
            first = seen[layer.name].loc
            diags.append(Diagnostic("error", f"duplicate layer name '{layer.name}'"
                                             + (f" (first at line {first.line})" if first else ""),
                                    layer.where("name"), layer.name))
        seen.setdefault(layer.name, layer)
        _count_check(layer, REGISTRY[layer.type], diags)

    # Every write of a blob name, in file order: (layer index, blob id).
    writes: dict[str, list[tuple[int, str]]] = {}
    tops_of: list[tuple[str, ...]] = []
    for i, layer in enumerate(layers):
        kind = REGISTRY[layer.type]
        ids = []
        for t, top in enumerate(layer.top):
            in_place = t < len(layer.bottom) and layer.bottom[t] == top
            if in_place and not kind.in_place:
                diags.append(Diagnostic("error", f"{kind.type_name} cannot compute in place (top '{top}' "
                                                 f"is also its bottom)", layer.where("top", t), layer.name))
            if top in writes and not in_place:
                owner = layers[writes[top][0][0]].name
                diags.append(Diagnostic("error", f"top blob '{top}' produced by multiple sources "
                                                 f"(layers '{owner}' and '{layer.name}'); in-place layers "
                                                 f"must name the blob as both bottom and top",
                                        layer.where("top", t), layer.name))
            blob_id = top if top not in writes else f"{top}@{layer.name}"
            writes.setdefault(top, []).append((i, blob_id))
            ids.append(blob_id)
        tops_of.append(tuple(ids))

    nodes: list[Node] = []
    for i, layer in enumerate(layers):
        bottoms = []
        for b, name in enumerate(layer.bottom):
            before = [bid for j, bid in writes.get(name, []) if j < i]
            after = [bid for j, bid in writes.get(name, []) if j > i]
            if before:
                bottoms.append(before[-1])
            elif after and after[0] == name:
                bottoms.append(name)  # forward reference; ordering below
            else:
                known = sorted({n for n, ws in writes.items() if any(j < i for j, _ in ws)})
                diags.append(Diagnostic("error", f"unknown bottom blob '{name}' (bottom index {b})",
                                        layer.where("bottom", b), layer.name,
                                        did_you_mean(name, known) or
                                        (f"blobs defined before this layer: {', '.join(known)}"
                                         if known else "no blob is defined before this layer")))
                bottoms.append(name)
        nodes.append(Node(layer, REGISTRY[layer.type], tuple(bottoms), tops_of[i]))

    if any(d.severity == "error" for d in diags):
        raise NetspecError(sorted(diags, key=sort_key))
    ordered = _toposort(nodes, diags)
    blob_names = {bid: name for name, ws in writes.items() for _, bid in ws}
    consumed = {b for n in ordered for b in n.bottoms}
    outputs = tuple(t for n in ordered for t in n.tops if t not in consumed)
    last = ordered[-1].name if ordered else None
    for n in ordered:
        if n.kind.is_loss or n.kind.type_name in TERMINAL_TYPES or n.name == last or n.kind.is_input:
            continue
        for t in n.tops:
            if t not in consumed:
                diags.append(Diagnostic("warning", f"top '{blob_names[t]}' is never used (it becomes a net "
                                                   "output)", n.layer.where("top"), n.name))
    if any(d.severity == "error" for d in diags):
        raise NetspecError(sorted(diags, key=sort_key))
    return Graph(spec, phase, tuple(ordered), blob_names, outputs, tuple(sorted(diags, key=sort_key)))


def _toposort(nodes: list[Node], diags: list[Diagnostic]) -> list[Node]:
    """Kahn's algorithm, preferring file order; nodes left over sit on a cycle."""
    import heapq

    producer = {t: i for i, n in enumerate(nodes) for t in n.tops}
    deps = [{producer[b] for b in n.bottoms if b in producer and producer[b] != i} for i, n in enumerate(nodes)]
    users: list[list[int]] = [[] for _ in nodes]
    for i, ds in enumerate(deps):
        for d in ds:
            users[d].append(i)
    waiting = [len(ds) for ds in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    stuck = [n for i, n in enumerate(nodes) if waiting[i] > 0]
    if stuck:
        names = " -> ".join(n.name for n in stuck)
        diags.append(Diagnostic("error", f"the graph has a cycle through layers {names}", stuck[0].layer.loc,
                                stuck[0].name))
    return order
