"""NetSpec + phase -> Graph: filter layers by phase, wire bottoms to tops, order topologically.

Caffe's in-place computation (top i == bottom i) means "last writer wins": the graph gives each
write its own blob id (`conv1`, then `conv1@relu1`), so later stages see a plain dataflow graph.
A bottom names the latest earlier write of that blob; a bottom written only later in the file is a
forward reference, allowed as long as the result is acyclic. Every problem is collected.

Layers that failed validation (`NetSpec.broken`) and layers with wiring errors still define their
tops, so the rest of the net is wired and checked in the same run; they are left out of the graph's
nodes, and the shape stage skips whatever depends on them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cached_property
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
        """The node of a layer (the first, should two share a name)."""
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Node]:
        index: dict[str, Node] = {}
        for n in self.nodes:
            index.setdefault(n.name, n)
        return index


def _kind(layer: LayerSpec) -> type[LayerType] | None:
    return REGISTRY.get(layer.type)


def _with_defaults(layers: list[LayerSpec]) -> list[LayerSpec]:
    """netspec's implicit chaining: a missing bottom reads the previous layer's first top,
    a missing top is the layer's own name."""
    out: list[LayerSpec] = []
    for layer in layers:
        kind = _kind(layer)
        update: dict[str, object] = {}
        if kind is not None and not layer.bottom and kind.bottoms[0] >= 1 and out and out[-1].top:
            update["bottom"] = (out[-1].top[0],)
        if not layer.top and (kind is None or kind.tops[0] >= 1):
            update["top"] = (layer.name,)
        out.append(layer.model_copy(update=update) if update else layer)
    return out


def _count_check(layer: LayerSpec, kind: type[LayerType], diags: list[Diagnostic]) -> None:
    counts = (("bottom", kind.bottoms, len(layer.bottom)), ("top", kind.tops, len(layer.top)))
    for what, (lo, hi), got in counts:
        if got < lo or (hi is not None and got > hi):
            want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            plural = "" if want == "1" else "s"
            diags.append(Diagnostic("error", f"{kind.type_name} takes {want} {what}{plural}, got {got}",
                                    layer.where(what), layer.name))
    if len(layer.loss_weight) > len(layer.top):
        diags.append(Diagnostic("error", f"{len(layer.loss_weight)} loss_weight values for "
                                         f"{len(layer.top)} top(s)", layer.where("loss_weight"), layer.name))
    if layer.propagate_down and len(layer.propagate_down) != len(layer.bottom):
        diags.append(Diagnostic("error", f"propagate_down needs one value per bottom ({len(layer.bottom)}), "
                                         f"got {len(layer.propagate_down)}",
                                layer.where("propagate_down"), layer.name))


def _rule_text(layer: LayerSpec) -> str:
    """How a layer's include/exclude rules read in a message: 'include: {phase: TRAIN}'."""
    field_name, rules = ("include", layer.include) if layer.include else ("exclude", layer.exclude)
    shown = []
    for rule in rules:
        parts = [f"{k}: {v}" for k, v in rule.model_dump(exclude_defaults=True).items()]
        shown.append("{" + ", ".join(parts) + "}")
    return f"{field_name}: {shown[0] if len(shown) == 1 else '[' + ', '.join(shown) + ']'}"


class _Wiring:
    """Blob writes in file order, and what each bottom resolves to."""

    def __init__(self, layers: list[LayerSpec], skip: set[int], quiet: set[int],
                 diags: list[Diagnostic]) -> None:
        """`skip`: layers not to check (broken); `quiet`: layers whose clash with an earlier top named
        like them is already reported as a duplicate layer name. Layers with top errors join `skip`."""
        self.layers = layers
        self._first: list[tuple[int, str]] | None = None
        self.writes: dict[str, list[tuple[int, str]]] = {}
        self.tops_of: list[tuple[str, ...]] = []
        for i, layer in enumerate(layers):
            kind = _kind(layer)
            ids = []
            for t, top in enumerate(layer.top):
                in_place = t < len(layer.bottom) and layer.bottom[t] == top
                if i not in skip and kind is not None and not (i in quiet and top == layer.name):
                    before = len(diags)
                    self.check_top(i, t, top, in_place, kind, diags)
                    if len(diags) > before:
                        skip.add(i)
                blob_id = top if top not in self.writes else f"{top}@{layer.name}"
                self.writes.setdefault(top, []).append((i, blob_id))
                ids.append(blob_id)
            self.tops_of.append(tuple(ids))

    def check_top(self, i: int, t: int, top: str, in_place: bool, kind: type[LayerType],
                  diags: list[Diagnostic]) -> None:
        layer = self.layers[i]
        if in_place and not kind.in_place:
            diags.append(Diagnostic("error", f"{kind.type_name} cannot compute in place (top '{top}' "
                                             f"is also its bottom)", layer.where("top", t), layer.name,
                                    f"give the top its own name, e.g. '{layer.name}'"))
        elif top in layer.bottom and not in_place:
            j = layer.bottom.index(top)
            diags.append(Diagnostic("error", f"top {t} '{top}' is the layer's bottom {j}; in-place "
                                             f"computation pairs top i with bottom i",
                                    layer.where("top", t), layer.name))
        elif top in self.writes and not in_place:
            owner = self.layers[self.writes[top][0][0]].name
            diags.append(Diagnostic("error", f"top blob '{top}' is produced by multiple sources (layers "
                                             f"'{owner}' and '{layer.name}')", layer.where("top", t),
                                    layer.name, "an in-place layer names the blob as both its bottom and "
                                                "its top; otherwise give this top its own name"))

    def resolve(self, i: int, name: str) -> str | None:
        """The blob id bottom `name` of layer i reads, or None when nothing writes it."""
        # Writes are appended in layer order, so both neighbours of i are a bisection away: a chain of
        # thousands of in-place layers on one blob must not cost a scan per bottom.
        ws = self.writes.get(name, [])
        k = bisect.bisect_left(ws, (i, ""))
        if k:
            return ws[k - 1][1]
        k = bisect.bisect_left(ws, (i + 1, ""))
        if k < len(ws) and ws[k][1] == name:
            return name  # a forward reference; the toposort orders it or finds the cycle
        return None

    def known_before(self, i: int) -> list[str]:
        """Blob names written by layers before layer i, sorted."""
        if self._first is None:
            # (index of the first write, name), in index order: a prefix of it is "before i"
            self._first = sorted((ws[0][0], n) for n, ws in self.writes.items())
        return sorted(n for _, n in self._first[:bisect.bisect_left(self._first, (i, ""))])


#: did-you-mean searches per graph: each is linear in the blobs, so a file of thousands of
#: unknown bottoms must not make thousands of them
MAX_SUGGESTIONS = 25


class _Unknowns:
    """Messages for unknown bottoms, with the work per message bounded."""

    def __init__(self, spec: NetSpec, phase: str) -> None:
        self.spec, self.phase = spec, phase
        self.suggestions = 0
        self._elsewhere: dict[str, LayerSpec] | None = None

    def elsewhere(self, name: str) -> LayerSpec | None:
        """A layer that makes blob `name` but is not in this phase's net."""
        if self._elsewhere is None:
            spec = self.spec
            self._elsewhere = {}
            for other in spec.layers + spec.broken:
                if not other.in_phase(self.phase, spec.level, spec.stages):
                    for top in other.top or (other.name,):
                        self._elsewhere.setdefault(top, other)
        return self._elsewhere.get(name)

    def diagnostic(self, layer: LayerSpec, b: int, name: str, wiring: _Wiring, i: int) -> Diagnostic:
        phase = self.phase
        msg = f"unknown bottom blob '{name}'" + (f" (bottom {b})" if len(layer.bottom) > 1 else "")
        other = self.elsewhere(name)
        if other is not None:
            msg += f": layer '{other.name}' makes it, but that layer is not in the {phase} net " \
                   f"({_rule_text(other)})"
            hint = f"exclude '{layer.name}' from {phase} too, or give the {phase} net its own '{name}'"
            return Diagnostic("error", msg, layer.where("bottom", b), layer.name, hint)
        known = wiring.known_before(i) if self.suggestions < MAX_SUGGESTIONS else []
        self.suggestions += 1
        suggestion = did_you_mean(name, known) if known else None
        if suggestion:
            return Diagnostic("error", f"{msg}; {suggestion}", layer.where("bottom", b), layer.name)
        if self.suggestions > MAX_SUGGESTIONS:
            hint = None
        elif known:
            shown = ", ".join(known[:12]) + (f", … ({len(known) - 12} more)" if len(known) > 12 else "")
            hint = f"blobs defined before this layer: {shown}"
        else:
            hint = "no blob is defined before this layer"
        return Diagnostic("error", msg, layer.where("bottom", b), layer.name, hint)


def build_partial(spec: NetSpec, phase: Phase = "TEST", level: int | None = None,
                  stages: frozenset[str] | None = None) -> tuple[Graph, list[Diagnostic]]:
    """The graph of every layer that is wired correctly, and every wiring diagnostic.

    Layers with errors (and `spec.broken` ones) define their tops but are not nodes.
    """
    level = spec.level if level is None else level
    stages = spec.stages if stages is None else stages
    diags: list[Diagnostic] = []
    everything = sorted(spec.layers + spec.broken, key=lambda l: l.index)
    broken_ids = {id(l) for l in spec.broken}
    present = [l for l in everything if l.in_phase(phase, level, stages)]
    bad = {i for i, l in enumerate(present) if id(l) in broken_ids}
    layers = _with_defaults(present)

    seen: dict[str, LayerSpec] = {}
    duplicates: set[int] = set()
    for i, layer in enumerate(layers):
        if layer.name in seen:
            duplicates.add(i)
            first = seen[layer.name].loc
            diags.append(Diagnostic("error", f"duplicate layer name '{layer.name}'"
                                             + (f" (first at line {first.line})" if first else ""),
                                    layer.where("name"), layer.name))
        seen.setdefault(layer.name, layer)
        kind = _kind(layer)
        if i not in bad and kind is not None:
            before = len(diags)
            _count_check(layer, kind, diags)
            if len(diags) > before:
                bad.add(i)

    wiring = _Wiring(layers, bad, duplicates, diags)
    unknowns = _Unknowns(spec, phase)
    nodes: list[Node] = []
    consumed: set[str] = set()  # blob ids some layer reads: the others are the net's outputs
    for i, layer in enumerate(layers):
        bottoms = []
        for b, name in enumerate(layer.bottom):
            blob = wiring.resolve(i, name)
            if blob is not None:
                consumed.add(blob)
            else:
                if name not in layer.top:  # reading its own top is reported as a top problem
                    diags.append(unknowns.diagnostic(layer, b, name, wiring, i))
                bad.add(i)
                blob = f"{name}@undefined"
            bottoms.append(blob)
        kind = _kind(layer)
        if i not in bad and kind is not None:
            nodes.append(Node(layer, kind, tuple(bottoms), wiring.tops_of[i]))

    ordered = _toposort(nodes, diags)
    blob_names = {bid: name for name, ws in wiring.writes.items() for _, bid in ws}
    outputs = tuple(t for n in ordered for t in n.tops if t not in consumed)
    last = ordered[-1].name if ordered else None
    # blobs that depend on a layer with errors: whether they are used is not worth a warning
    tainted = {t for i in bad for t in wiring.tops_of[i]}
    for n in ordered:
        if any(b in tainted for b in n.bottoms):
            tainted.update(n.tops)
            continue
        if n.kind.is_loss or n.kind.type_name in TERMINAL_TYPES or n.name == last or n.kind.is_input:
            continue
        for t in n.tops:
            if t not in consumed:
                diags.append(Diagnostic("warning", f"top '{blob_names[t]}' is never used (it becomes a net output)",
                                        n.layer.where("top"), n.name, code="unused-top"))
    diags.sort(key=sort_key)
    warnings = tuple(d for d in diags if d.severity != "error")
    return Graph(spec, phase, tuple(ordered), blob_names, outputs, warnings), diags


def build(spec: NetSpec, phase: Phase = "TEST", level: int | None = None,
          stages: frozenset[str] | None = None) -> Graph:
    """Resolve the net for one phase. Raises NetspecError with every wiring problem."""
    graph, diags = build_partial(spec, phase, level, stages)
    if any(d.severity == "error" for d in diags):
        raise NetspecError(diags)
    return graph


def _toposort(nodes: list[Node], diags: list[Diagnostic]) -> list[Node]:
    """Kahn's algorithm, preferring file order; nodes left over sit on or behind a cycle."""
    import heapq

    producer = {t: i for i, n in enumerate(nodes) for t in n.tops}
    deps = [{producer[b] for b in n.bottoms if b in producer and producer[b] != i}
            for i, n in enumerate(nodes)]
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
    stuck = {i for i, w in enumerate(waiting) if w > 0}
    for cycle in _cycles(deps, stuck):
        first = min(cycle)
        names = [nodes[i].name for i in _rotate(cycle, first)]
        path = " → ".join(names + [names[0]])
        diags.append(Diagnostic("error", f"the layers form a cycle: {path}", nodes[first].layer.where("bottom"),
                                nodes[first].name,
                                "a bottom may name a blob written later in the file, but the data must still "
                                "flow one way"))
    return order


def _cycles(deps: list[set[int]], stuck: set[int]) -> list[list[int]]:
    """Disjoint cycles among the stuck nodes, each in data-flow order: one depth-first search over
    all of them (each node entered once), a cycle for each edge back into the current path."""
    state: dict[int, int] = {}  # 1 = on the current path, 2 = finished
    found: list[list[int]] = []
    used: set[int] = set()
    for start in sorted(stuck):
        if start in state:
            continue
        path = [start]
        state[start] = 1
        todo = [iter(sorted(deps[start] & stuck))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                state[path.pop()] = 2
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):]
                if not used & set(cycle):
                    used.update(cycle)
                    found.append(list(reversed(cycle)))
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(sorted(deps[nxt] & stuck)))
    return found


def _rotate(cycle: list[int], first: int) -> list[int]:
    k = cycle.index(first)
    return cycle[k:] + cycle[:k]
