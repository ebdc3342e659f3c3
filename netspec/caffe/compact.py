"""`import-caffe --compact`: fold repeated runs of layers into the spec format's reusable blocks.

The input is a flat layer list (plain data); the output is `(blocks, items)` such that expanding the
blocks (`netspec.blocks.expand`) gives back exactly that list. Nothing is guessed about the network:

- Items (layers, and later `use:` entries) are compared by *structure*: the same keys, the same list
  lengths, the same layer `type` / block `use`. Runs of k >= 2 items whose structures repeat are
  candidate blocks; values that differ between the occurrences become the block's arguments.
- A string that differs keeps what all occurrences share: `conv1_1`, `conv1_2` -> `conv1_${a}` with
  a = 1, 2; holes with the same values across occurrences share one argument (`conv${a}` and
  `relu${a}`), so a layer's name and the bottoms that refer to it collapse into one argument.
- Greedy: candidates are ranked by the characters they save (a cheap estimate), and the first one
  that makes the written YAML shorter *in lines* (what a reader sees; a short layer that fits on one
  line at the top level may wrap inside a block) is folded; then the search runs again over the new
  item list, where `use:` entries are items too, so blocks nest (ResNet's bottleneck inside a stage
  block). Consecutive uses of one block at the top level merge into a `with:` list.
- A block is named after the module its layers share a name prefix for (`inception_3a/...` ->
  inception, `fire2/...` -> fire); without one, after the layer types it holds (`relu_pool`).
- A layer's `bottom` may be written in one occurrence and left to implicit chaining in another: its
  argument is then the whole list, or null, which drops the key when the block expands.

Strings inside a block's layer list and in `with:` values are templates, so every literal `$` is
written `$$`; templates are kept structured (`Tmpl`) until `emit`, so nesting never re-escapes.
"""

from __future__ import annotations

import heapq
import json
import keyword
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import count, islice
from typing import Any

from .emit import spec_yaml

MIN_RUN = 2            # a block holds at least this many items
MAX_RUN = 64           # longest run searched (GoogLeNet's inception module is 14 layers)
MIN_SAVING = 80        # characters a candidate must save to be measured at all (cheap pre-filter)
MAX_TRIES = 12         # candidates measured in lines per step before the folding stops

# Names an expression can call (netspec.blocks); an argument must not shadow them, nor the index.
_RESERVED = frozenset({"min", "max", "abs", "len", "str", "int", "float", "letter", "i", "true", "false",
                       "null", "True", "False", "None"})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Tmpl:
    """A template string: literal text and argument references, e.g. ("conv", Arg "a", "_relu")."""

    parts: tuple[str | tuple[str], ...]   # str = literal, (name,) = argument


_ABSENT = object()


@dataclass(frozen=True)
class Hole:
    """A value that differs between occurrences: its values, and the literal text they all share."""

    prefix: str
    suffix: str
    middles: tuple[Any, ...]   # one per occurrence
    is_text: bool


# --------------------------------------------------------------------------------------- structure


# A layer's `bottom` may be written or left to implicit chaining: occurrences may differ in it (the
# argument is then the whole list, or null, which drops the key when the block expands).
_LOOSE = "bottom"


def signature(value: Any) -> Any:
    """What must be equal for two items to be occurrences of one template."""
    if isinstance(value, Mapping):
        fixed = {k: value[k] for k in ("type", "use") if isinstance(value.get(k), str)}
        keys = tuple(sorted((k, fixed[k] if k in fixed else signature(v))
                            for k, v in value.items() if not (k == _LOOSE and "type" in value)))
        return ("map", keys)
    if isinstance(value, list):
        return ("list", tuple(signature(v) for v in value))
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "num"
    if isinstance(value, Tmpl):
        return ("tmpl", value)
    return "str"


def _size(value: Any) -> int:
    return len(json.dumps(value, default=lambda t: "$" * 4, separators=(",", ":")))


def _common_prefix(values: Sequence[str]) -> str:
    first, last = min(values), max(values)
    n = 0
    while n < len(first) and first[n] == last[n]:
        n += 1
    return first[:n]


def _hole(values: Sequence[Any]) -> Hole:
    if all(isinstance(v, str) for v in values):
        prefix = _common_prefix(values)
        rest = [v[len(prefix):] for v in values]
        suffix = _common_prefix([r[::-1] for r in rest])[::-1]
        middles = tuple(r[: len(r) - len(suffix)] for r in rest)
        return Hole(prefix, suffix, middles, True)
    return Hole("", "", tuple(values), False)


def _template(occurrences: Sequence[Any], holes: list[Hole]) -> Any:
    """The shared structure of the occurrences, with a Hole wherever their values differ."""
    first = occurrences[0]
    if isinstance(first, Mapping):
        out = {}
        keys = list(first) + [k for o in occurrences for k in o if k not in first]
        for k in dict.fromkeys(keys):
            values = [o.get(k, _ABSENT) for o in occurrences]
            if any(v is _ABSENT for v in values) or (k == _LOOSE and len({signature(v) for v in values}) > 1):
                hole = Hole("", "", tuple(None if v is _ABSENT else v for v in values), False)
                holes.append(hole)
                out[k] = hole
            else:
                out[k] = _template(values, holes)
        return out
    if isinstance(first, list):
        return [_template([o[j] for o in occurrences], holes) for j in range(len(first))]
    if all(o == first and type(o) is type(first) for o in occurrences):
        return first
    hole = _hole(occurrences)
    holes.append(hole)
    return hole


# --------------------------------------------------------------------------------------- arguments


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_freeze(v) for v in value))
    if isinstance(value, Mapping):
        return ("map", tuple((k, _freeze(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def _key(hole: Hole) -> tuple[Any, ...]:
    """Holes with equal keys share one argument (same values in every occurrence, same kind)."""
    return (hole.is_text, _freeze(hole.middles))


def _arg_names(template: Any, path: tuple[Any, ...], hint: dict[tuple[Any, ...], str]) -> None:
    """A readable argument name per hole, from the field it first appears in."""
    if isinstance(template, Hole):
        key = _key(template)
        if key not in hint:
            field = next((str(p) for p in reversed(path) if isinstance(p, str) and p != "with"), "v")
            hint[key] = "id" if field in ("name", "bottom", "top", "use") and template.is_text else field
        return
    if isinstance(template, Mapping):
        for k, v in template.items():
            _arg_names(v, path + (k,), hint)
    elif isinstance(template, list):
        for j, v in enumerate(template):
            _arg_names(v, path + (j,), hint)


def _unique(names: dict[tuple[Any, ...], str]) -> dict[tuple[Any, ...], str]:
    taken: set[str] = set()
    out = {}
    for key, base in names.items():
        base = base if _IDENT.match(base) and not keyword.iskeyword(base) and base not in _RESERVED else "v"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}{n}", n + 1
        taken.add(name)
        out[key] = name
    return out


def _fill(template: Any, args: Mapping[tuple[Any, ...], str]) -> Any:
    if isinstance(template, Hole):
        name = args[_key(template)]
        parts: list[str | tuple[str]] = [p for p in (template.prefix,) if p]
        parts.append((name,))
        parts += [s for s in (template.suffix,) if s]
        return Tmpl(tuple(parts))
    if isinstance(template, Mapping):
        return {k: _fill(v, args) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, args) for v in template]
    return template


@dataclass(frozen=True)
class Fold:
    """One candidate block: where its occurrences start, its body and each occurrence's arguments."""

    length: int
    starts: tuple[int, ...]
    body: list[Any]
    args: tuple[str, ...]
    values: tuple[dict[str, Any], ...]
    saving: int


def _fold(items: Sequence[Any], length: int, starts: Sequence[int]) -> Fold:
    occurrences = [items[s: s + length] for s in starts]
    holes: list[Hole] = []
    template = _template(occurrences, holes)
    hint: dict[tuple[Any, ...], str] = {}
    _arg_names(template, (), hint)
    names = _unique(hint)
    body = _fill(template, names)
    middles = {_key(h): h.middles for h in holes}
    values = tuple({names[k]: middles[k][j] for k in names} for j in range(len(starts)))
    before = sum(_size(o) for o in occurrences)
    uses = sum(_size({"use": "block", "with": v}) for v in values)
    saving = before - _size(body) - _size(list(names.values())) - uses
    return Fold(length, tuple(starts), body, tuple(names.values()), values, saving)


def _occurrences(starts: Sequence[int], length: int) -> list[int]:
    out: list[int] = []
    for s in starts:
        if not out or s >= out[-1] + length:
            out.append(s)
    return out


def ranked_folds(items: Sequence[Any]) -> Iterator[Fold]:
    """Every repeated run saving at least MIN_SAVING characters, the largest saving first (lazily:
    candidates are folded in the order of their upper bound, and a fold is yielded once no later
    candidate can beat it)."""
    ids: dict[Any, int] = {}
    seq = [ids.setdefault(signature(x), len(ids)) for x in items]
    sizes = [_size(x) for x in items]
    candidates: list[tuple[int, int, list[int]]] = []
    n = len(seq)
    for length in range(MIN_RUN, min(MAX_RUN, n // 2) + 1):
        where: dict[tuple[int, ...], list[int]] = {}
        for s in range(n - length + 1):
            where.setdefault(tuple(seq[s: s + length]), []).append(s)
        for starts in where.values():
            occ = _occurrences(starts, length)
            if len(occ) >= 2:
                # Upper bound of the saving: every occurrence but one disappears.
                bound = sum(sum(sizes[s: s + length]) for s in occ[1:])
                candidates.append((bound, length, occ))
    candidates.sort(key=lambda c: (-c[0], -c[1], c[2][0]))
    ready: list[tuple[int, int, Fold]] = []
    order = count()
    for bound, length, occ in candidates:
        while ready and -ready[0][0] >= bound:
            yield heapq.heappop(ready)[2]
        fold = _fold(items, length, occ)
        if fold.saving >= MIN_SAVING:
            heapq.heappush(ready, (-fold.saving, next(order), fold))
    while ready:
        yield heapq.heappop(ready)[2]


# --------------------------------------------------------------------------------------- folding


# Short words for the layer types a block name is made of.
_SHORT_TYPES = {"Convolution": "conv", "Deconvolution": "deconv", "InnerProduct": "fc", "Pooling": "pool",
                "BatchNorm": "bn", "Dropout": "drop", "SoftmaxWithLoss": "loss"}
_MAX_KINDS = 3
_MAX_NAME = 40


def _module_prefix(names: Sequence[Any]) -> str:
    """What every layer name of every occurrence starts with, as an identifier ("" if nothing)."""
    if not names or not all(isinstance(v, str) for v in names):
        return ""
    return re.sub(r"[^A-Za-z0-9]+", "_", _common_prefix(names)).strip("_0123456789").lower()


def _block_name(items: Sequence[Any], fold: Fold, taken: Mapping[str, Any]) -> str:
    """The module the occurrences' layers all name (`inception_3a/1x1`, `inception_3a/relu_1x1`...
    -> inception); otherwise the kinds the block holds, in order, when they are few (`relu_pool`,
    `conv_relu`); otherwise the neutral `block`."""
    members = [x for s in fold.starts for x in items[s: s + fold.length]]
    names = [x.get("name") if isinstance(x, Mapping) and "use" not in x else None for x in members]
    base = _module_prefix(names)
    if len(base) < 2:
        kinds = [x.get("use") or _SHORT_TYPES.get(str(x.get("type")), str(x.get("type")).lower())
                 for x in fold.body if isinstance(x, Mapping)]
        distinct = list(dict.fromkeys(k for k in kinds if isinstance(k, str)))
        base = "_".join(distinct) if len(distinct) <= _MAX_KINDS else ""
    base = base if len(base) <= _MAX_NAME and _IDENT.match(base) and not keyword.iskeyword(base) else "block"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    return name


Measure = Callable[[Mapping[str, Mapping[str, Any]], Sequence[Any]], int]


def yaml_lines(blocks: Mapping[str, Mapping[str, Any]], items: Sequence[Any]) -> int:
    """Lines of the `blocks:` and `layer:` YAML that import-caffe writes for these."""
    out_blocks, out_items = emit(blocks, _merge_uses(items))
    doc = {"blocks": out_blocks, "layer": out_items} if out_blocks else {"layer": out_items}
    return spec_yaml(doc).count("\n")


def _apply(items: Sequence[Any], fold: Fold, name: str) -> list[Any]:
    new: list[Any] = []
    k = 0
    for s, values in zip(fold.starts, fold.values):
        new += items[k:s]
        new.append({"use": name, "with": values} if values else {"use": name})
        k = s + fold.length
    return new + list(items[k:])


def fold_all(layers: Sequence[Mapping[str, Any]], measure: Measure = yaml_lines,
             ) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """Blocks (name -> {args, layer}) and the top-level items, before escaping (`emit`). Each fold
    must make `measure` (lines of YAML) smaller, or it is not made."""
    items: list[Any] = [dict(x) for x in layers]
    blocks: dict[str, dict[str, Any]] = {}
    current = measure(blocks, items)
    while True:
        for fold in islice(ranked_folds(items), MAX_TRIES):
            name = _block_name(items, fold, blocks)
            new_blocks = {**blocks, name: {"args": list(fold.args), "layer": fold.body}}
            new_items = _apply(items, fold, name)
            size = measure(new_blocks, new_items)
            if size < current:
                blocks, items, current = new_blocks, new_items, size
                break
        else:
            break
    return blocks, _merge_uses(items)


def _merge_uses(items: Sequence[Any]) -> list[Any]:
    """Consecutive top-level uses of one block -> one entry with a `with:` list."""
    out: list[Any] = []
    for item in items:
        prev = out[-1] if out else None
        if (isinstance(item, Mapping) and "use" in item and isinstance(prev, Mapping)
                and prev.get("use") == item["use"] and "with" in item and "with" in prev):
            sets = prev["with"] if isinstance(prev["with"], list) else [prev["with"]]
            out[-1] = {"use": item["use"], "with": sets + [item["with"]]}
        else:
            out.append(item)
    return out


# --------------------------------------------------------------------------------------- emitting


def _escape(text: str) -> str:
    return text.replace("$", "$$")


def _render_tmpl(t: Tmpl) -> str:
    parts = t.parts
    if len(parts) == 1 and isinstance(parts[0], tuple):
        return f"${parts[0][0]}"
    out = []
    for j, p in enumerate(parts):
        if isinstance(p, str):
            out.append(_escape(p))
            continue
        following = parts[j + 1] if j + 1 < len(parts) else ""
        bare = isinstance(following, str) and not re.match(r"[A-Za-z0-9_]", following)
        out.append(f"${p[0]}" if bare else f"${{{p[0]}}}")
    return "".join(out)


def _as_template(value: Any) -> Any:
    """Inside a block or a `with:`: every string is a template."""
    if isinstance(value, Tmpl):
        return _render_tmpl(value)
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, Mapping):
        if "use" in value and "with" in value:
            head = {k: _as_template(v) for k, v in value.items() if k != "with"}
            return {**head, "with": _with(value["with"])}
        return {k: _as_template(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_template(v) for v in value]
    return value


def _with(sets: Any) -> Any:
    if isinstance(sets, list):
        return [{k: _as_template(v) for k, v in s.items()} for s in sets]
    return {k: _as_template(v) for k, v in sets.items()}


def emit(blocks: Mapping[str, Mapping[str, Any]], items: Sequence[Any]) -> tuple[dict[str, Any], list[Any]]:
    """Plain YAML data for `blocks:` and `layer:`."""
    out_blocks = {name: {"args": list(b["args"]), "layer": [_as_template(x) for x in b["layer"]]}
                  if b["args"] else {"layer": [_as_template(x) for x in b["layer"]]}
                  for name, b in blocks.items()}
    out_items = [_use_entry(x) if isinstance(x, Mapping) and "use" in x else x for x in items]
    return out_blocks, out_items


def _use_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A top-level `use:` entry: only its `with:` values are templates."""
    out = {k: v for k, v in entry.items() if k != "with"}
    if "with" in entry:
        out["with"] = _with(entry["with"])
    return out


def compact_layers(layers: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
    """Blocks and the top-level layer list that expand to exactly `layers`."""
    blocks, items = fold_all(layers)
    return emit(blocks, items)
