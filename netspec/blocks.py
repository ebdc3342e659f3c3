"""Reusable parameterised blocks: `blocks:` definitions and `use:` entries, expanded before validation.

    blocks:
      conv_relu:                       # a block: arguments and a template layer list
        args: [name, n, k: 3, pad: 1]  # a bare name is required; `name: default` is optional
        layer:
          - {name: $name, type: Convolution, convolution_param: {num_output: $n, kernel_size: $k, pad: $pad}}
          - {name: "relu${name[4:]}", type: ReLU, bottom: $name, top: $name}
    layer:
      - {use: conv_relu, with: {name: conv1_1, n: 64}}
      - {use: conv_relu, repeat: 3, with: {name: "conv3_${i+1}", n: 256}}   # i = 0, 1, 2
      - {use: conv_relu, with: [{name: conv4_1, n: 512}, {name: conv4_2, n: 512}]}

Inside a block's `layer:` list every string is a template: `$name` or `${expression}` is replaced,
`$$` is a literal `$`. A string that is exactly one substitution takes the value's type (so
`num_output: $n` stays an int, and a list argument can be a whole `bottom:`); one that evaluates to
null drops its key (or list item). Expressions are a small, bounded subset of Python's syntax
(arithmetic, comparisons, `a if c else b`, indexing, `min max abs len str int float letter`),
interpreted here over a whitelisted AST, never `eval`. `if:` on a template layer or a `use:` entry
keeps it only when true. `with:` values are evaluated in the caller's scope plus the repetition
index; a block's body sees only its own arguments, and defaults may use the arguments before them.

Positions survive: expanded layers reuse the template's PosDict/PosList locations, so a later error
points at the template line, and every expanded layer carries its chain of use sites (`origin`).
Bounds, checked before the work is done: a net has at most MAX_LAYERS layers (netspec.spec's one
limit, whether written out or expanded), and a use whose copies are bound to pass it is refused before
its first copy, from lower bounds on each block's size computed from the definitions; what those
bounds cannot see (`repeat: $n`, `if:`) is caught by counters as expansion goes, which also cap the
work (copies plus template entries visited) at MAX_STEPS. Recursion is found in the definitions;
uses nest at most MAX_DEPTH deep; every value an expression builds has a size cap.
"""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from netspec.errors import Diagnostic, SourceLoc, did_you_mean
from netspec.source import PosDict, PosList
from netspec.spec import MAX_LAYERS

# Work besides the layers themselves (block copies, entries dropped by `if:`); three times the layers so
# that a net of MAX_LAYERS layers made one copy per layer still fits.
MAX_STEPS = 3 * MAX_LAYERS
MAX_DEPTH = 32
MAX_EXPR_CHARS = 1_000
MAX_EXPR_NODES = 200
MAX_STR = 10_000
MAX_LIST = 10_000
MAX_INT = 2**63
MAX_DIAGNOSTICS = 50
_HUGE = 10**30  # lower bounds saturate here: anything near it is refused anyway

BLOCK_KEYS = ("args", "layer", "doc")
USE_KEYS = ("use", "with", "repeat", "index", "if")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MARK = re.compile(r"\$(\$|\{|[A-Za-z_][A-Za-z0-9_]*)")
_DROP = object()  # an expression that evaluated to null: its key or item disappears

BLOCKS_JSON_SCHEMA: dict[str, Any] = {
    "blocks": {
        "description": "Reusable parameterised layer blocks (netspec extension): name -> block.",
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "required": ["layer"],
            "additionalProperties": False,
            "properties": {
                "doc": {"type": "string", "description": "what the block builds"},
                "args": {
                    "description": "arguments: a list of names (required) and `name: default` "
                                   "pairs (optional), or a mapping name -> default",
                    "oneOf": [
                        {"type": "array", "items": {"oneOf": [
                            {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                            {"type": "object", "minProperties": 1, "maxProperties": 1,
                             "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}]}},
                        {"type": "object", "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}},
                    ],
                },
                "layer": {
                    "description": "template layers (and `use:` entries); strings may contain "
                                   "$name / ${expression}",
                    "oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}],
                },
            },
        },
    },
    "use": {
        "description": "Expands a block in place of this layer entry (netspec extension).",
        "type": "object",
        "required": ["use"],
        "additionalProperties": False,
        "properties": {
            "use": {"type": "string", "description": "the block's name"},
            "with": {
                "description": "argument values; a list of mappings expands the block once per mapping",
                "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
            },
            "repeat": {
                "description": "expand the block this many times (index variable: `index`, default i)",
                "oneOf": [{"type": "integer", "minimum": 0, "maximum": MAX_LAYERS},
                          {"type": "string", "pattern": "\\$"}],
            },
            "index": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                      "description": "name of the 0-based repetition index (default i)"},
            "if": {"type": ["boolean", "string"], "description": "expand only when true"},
        },
    },
}


class ExprError(Exception):
    """A template or expression that cannot be evaluated; the caller adds the location."""


class UnknownName(ExprError):
    """A name not in scope; the expander explains it when it is a repetition index of an outer use."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


# ----------------------------------------------------------------------------------------------
# expressions: Python syntax, interpreted over a whitelist with size bounds


def _letter(i: Any) -> str:
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < 26:
        raise ExprError(f"letter() takes an index 0..25, got {i!r}")
    return "abcdefghijklmnopqrstuvwxyz"[i]


def _to_int(x: Any) -> int:
    if isinstance(x, str) and not re.fullmatch(r"\s*[-+]?\d{1,19}\s*", x):
        raise ExprError(f"int() needs an integer, got {x!r}")
    return int(x)


def _length(x: Any) -> int:
    if not isinstance(x, (str, list)):
        raise ExprError(f"len() takes a string or a list, got {_type(x)}")
    return len(x)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min, "max": max, "abs": abs, "len": _length, "int": _to_int, "float": float,
    "str": lambda x: _text(x), "letter": _letter,
}
CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**"}


def _type(x: Any) -> str:
    if x is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(type(x), "list")


def _bounded(x: Any) -> Any:
    if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= MAX_INT:
        raise ExprError(f"integer {x:.3e} is out of range (|x| < 2**63)")
    if isinstance(x, str) and len(x) > MAX_STR:
        raise ExprError(f"string of {len(x)} characters is longer than {MAX_STR}")
    if isinstance(x, list) and len(x) > MAX_LIST:
        raise ExprError(f"list of {len(x)} items is longer than {MAX_LIST}")
    return x


def _binop(op: ast.operator, a: Any, b: Any) -> Any:
    fn = _BINOPS.get(type(op))
    if fn is None:
        raise ExprError(f"operator {type(op).__name__} is not supported")
    if isinstance(op, ast.Mult) and isinstance(a, (int, str, list)) and isinstance(b, (int, str, list)):
        seq, n = (a, b) if isinstance(a, (str, list)) else (b, a)
        if isinstance(seq, (str, list)) and isinstance(n, int) and len(seq) * max(n, 0) > MAX_STR:
            raise ExprError(f"repeating a {_type(seq)} {n} times is too long")
    if isinstance(op, ast.Pow) and isinstance(b, (int, float)) and abs(b) > 64:
        raise ExprError(f"exponent {b} is too large (at most 64)")
    try:
        return _bounded(fn(a, b))
    except ZeroDivisionError:
        raise ExprError("division by zero") from None
    except OverflowError:
        raise ExprError("arithmetic overflow") from None
    except TypeError:
        raise ExprError(f"cannot apply '{_SYMBOL[type(op)]}' to {_type(a)} and {_type(b)}"
                        + (" (convert with str())" if str in (type(a), type(b)) else "")) from None


class _Interpreter:
    """Evaluates one parsed expression in a scope. Every node type it accepts is listed here."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    def run(self, node: ast.AST) -> Any:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise ExprError(f"{type(node).__name__} expressions are not supported")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        if node.value is not None and not isinstance(node.value, (bool, int, float, str)):
            raise ExprError(f"literal {node.value!r} is not supported")
        return _bounded(node.value)

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        known = sorted(self.scope) + sorted(CONSTANTS)
        hint = did_you_mean(node.id, known)
        raise UnknownName(f"unknown name '{node.id}'" + (f"; {hint}" if hint else
                          f" (known here: {', '.join(sorted(self.scope)) or 'none'})"), node.id)

    def _BinOp(self, node: ast.BinOp) -> Any:
        return _binop(node.op, self.run(node.left), self.run(node.right))

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.run(node.operand)
        if isinstance(node.op, ast.Not):
            return not v
        if not isinstance(v, (int, float)):
            raise ExprError(f"unary minus/plus needs a number, got {_type(v)}")
        return -v if isinstance(node.op, ast.USub) else +v

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for sub in node.values:
            value = self.run(sub)
            if isinstance(node.op, ast.And) != bool(value):
                return value
        return value

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.run(node.left)
        for op, sub in zip(node.ops, node.comparators):
            right = self.run(sub)
            try:
                ok = _CMPOPS[type(op)](left, right)
            except TypeError:
                raise ExprError(f"cannot compare {_type(left)} with {_type(right)}") from None
            except KeyError:
                raise ExprError("'is' comparisons are not supported; use == and !=") from None
            if not ok:
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    def _Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            shown = node.func.id if isinstance(node.func, ast.Name) else "this"
            raise ExprError(f"cannot call {shown}(); functions: {', '.join(sorted(FUNCTIONS))}")
        args = [self.run(a) for a in node.args]
        try:
            return _bounded(FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError, OverflowError) as e:
            raise ExprError(f"{node.func.id}(): {e}") from None

    def _Subscript(self, node: ast.Subscript) -> Any:
        seq = self.run(node.value)
        if not isinstance(seq, (str, list)):
            raise ExprError(f"cannot index a {_type(seq)}")
        if isinstance(node.slice, ast.Slice):
            parts = [None if p is None else self.run(p) for p in (node.slice.lower, node.slice.upper,
                                                                  node.slice.step)]
            if any(p is not None and (not isinstance(p, int) or isinstance(p, bool)) for p in parts):
                raise ExprError("slice bounds must be integers")
            if parts[2] == 0:
                raise ExprError("slice step cannot be zero")
            return seq[slice(*parts)]
        index = self.run(node.slice)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ExprError(f"index must be an integer, got {_type(index)}")
        if not -len(seq) <= index < len(seq):
            raise ExprError(f"index {index} is out of range for a {_type(seq)} of length {len(seq)}")
        return seq[index]

    def _List(self, node: ast.List) -> list[Any]:
        return _bounded([self.run(e) for e in node.elts])

    _Tuple = _List


def parse_expression(text: str) -> ast.expr:
    """Parse `text` as one expression of the supported subset, or raise ExprError."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression is longer than {MAX_EXPR_CHARS} characters")
    if not text.strip():
        raise ExprError("empty expression '${}'")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"syntax error in expression '{text}': {e.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError(f"expression '{text}' nests too deeply") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPR_NODES:
        raise ExprError(f"expression has more than {MAX_EXPR_NODES} parts")
    return tree.body


def evaluate(text: str, scope: dict[str, Any]) -> Any:
    """The value of one expression (the part between `${` and `}`) in `scope`."""
    return _Interpreter(scope).run(parse_expression(text))


def _text(x: Any) -> str:
    """How a value reads inside a longer string (YAML spelling for booleans)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float, str)):
        return str(x)
    raise ExprError(f"a {_type(x)} cannot be part of a string")


# ----------------------------------------------------------------------------------------------
# templates: "res${stage}${letter(i)}" -> literal and expression parts


Part = tuple[bool, str]  # (is_expression, text)


def split_template(text: str) -> list[Part]:
    """Literal and expression parts of a template string, or raise ExprError."""
    parts: list[Part] = []
    pos = 0
    literal: list[str] = []
    while True:
        m = _MARK.search(text, pos)
        if m is None:
            if "$" in text[pos:]:
                raise ExprError(f"stray '$' in '{text}': write $name, ${{expression}} or $$ for a literal $")
            literal.append(text[pos:])
            break
        if "$" in text[pos:m.start()]:
            raise ExprError(f"stray '$' in '{text}': write $name, ${{expression}} or $$ for a literal $")
        literal.append(text[pos:m.start()])
        token = m.group(1)
        if token == "$":
            literal.append("$")
            pos = m.end()
            continue
        if literal and "".join(literal):
            parts.append((False, "".join(literal)))
        literal = []
        if token == "{":
            end = _closing_brace(text, m.end())
            parts.append((True, text[m.end():end]))
            pos = end + 1
        else:
            parts.append((True, token))
            pos = m.end()
    if "".join(literal):
        parts.append((False, "".join(literal)))
    return parts


def _closing_brace(text: str, start: int) -> int:
    depth, quote = 0, ""
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            if depth == 0:
                if c == "}":
                    return i
                raise ExprError(f"unbalanced '{c}' in '{text}'")
            depth -= 1
    raise ExprError(f"unterminated '${{' in '{text}'")


# ----------------------------------------------------------------------------------------------
# block definitions


@dataclass(frozen=True)
class Arg:
    name: str
    required: bool
    default: Any = None
    loc: SourceLoc | None = None


@dataclass(frozen=True)
class Block:
    name: str
    args: tuple[Arg, ...]
    layers: PosList
    loc: SourceLoc | None

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


@dataclass(frozen=True)
class Use:
    """One step of the chain that produced an expanded layer."""

    block: str
    loc: SourceLoc | None
    index: tuple[str, int] | None = None

    def __str__(self) -> str:
        at = f" used at {self.loc}" if self.loc else ""
        idx = f" ({self.index[0]} = {self.index[1]})" if self.index else ""
        return f"block '{self.block}'{at}{idx}"


def describe(chain: tuple[Use, ...]) -> str:
    """'in block 'a' used at f:3:5, in block 'b' used at f:9:5 (i = 2)', innermost first."""
    return "in " + ", in ".join(str(u) for u in reversed(chain))


def origin(layer_raw: Any) -> str | None:
    """For an expanded layer (its raw mapping), where it came from; None for a hand-written layer."""
    chain = getattr(layer_raw, "__dict__", {}).get("block_origin")
    return describe(chain) if chain else None


def with_origins(diags: list[Diagnostic], layers: Any) -> list[Diagnostic]:
    """Add the use-site chain to the hint of every diagnostic about an expanded layer.

    `layers` is an iterable of validated layers (anything with `name` and `raw`), e.g. NetSpec.layers.
    """
    import dataclasses

    where = {layer.name: origin(layer.raw) for layer in layers}
    out = []
    for d in diags:
        note = where.get(d.layer) if d.layer else None
        if note and (d.hint is None or note not in d.hint):
            d = dataclasses.replace(d, hint=f"{d.hint}; {note}" if d.hint else note)
        out.append(d)
    return out


def _loc_of(container: Any, key: Any, *, key_loc: bool = False) -> SourceLoc | None:
    if isinstance(container, PosDict):
        return (container.key_locs if key_loc else container.value_locs).get(key, container.loc)
    if isinstance(container, PosList) and isinstance(key, int) and key < len(container.item_locs):
        return container.item_locs[key] or container.loc
    return getattr(container, "loc", None)


class _Abort(Exception):
    """Expansion exceeded a hard bound; stop at once (the diagnostic is already recorded)."""


@dataclass
class _Expander:
    file: str
    diags: list[Diagnostic]
    blocks: dict[str, Block] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    layers: int = 0  # layers in the net so far (written out or expanded)
    steps: int = 0  # block copies and template entries visited so far
    recursive: set[str] = field(default_factory=set)  # blocks on a cycle of uses (reported)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # block -> lower bounds per copy
    seen: set[tuple[Any, ...]] = field(default_factory=set)
    parsed: dict[str, list[Part]] = field(default_factory=dict)
    trees: dict[str, ast.expr] = field(default_factory=dict)
    errors: int = 0
    failures: int = 0  # every error() call, repeats included

    # -- diagnostics ----------------------------------------------------------------------------

    def error(self, message: str, loc: SourceLoc | None, chain: tuple[Use, ...] = (),
              hint: str | None = None) -> None:
        self.failures += 1
        key = (message, loc)
        if key in self.seen:
            return  # the same template error in every instance says nothing new
        self.seen.add(key)
        self.errors += 1
        if self.errors > MAX_DIAGNOSTICS:
            return
        where = describe(chain) if chain else None
        full = "; ".join(h for h in (hint, where) if h) or None
        self.diags.append(Diagnostic("error", message, loc or SourceLoc(self.file, 1, 1), None, full))

    # -- definitions ----------------------------------------------------------------------------

    def define(self, section: Any, raw: PosDict) -> None:
        if not isinstance(section, dict):
            self.error("'blocks' must be a mapping of block name -> {args, layer}", _loc_of(raw, "blocks"))
            return
        for name, body in section.items():
            at = _loc_of(section, name, key_loc=True)
            if not isinstance(name, str) or not name:
                self.error(f"block names are strings, got {name!r}", at)
                continue
            if not isinstance(body, dict):
                self.error(f"block '{name}' must be a mapping with 'layer' (and 'args')", _loc_of(section, name))
                continue
            for key in body:
                if key not in BLOCK_KEYS:
                    self.error(f"unknown field '{key}' in block '{name}'", _loc_of(body, key, key_loc=True),
                               hint=did_you_mean(str(key), BLOCK_KEYS) or f"a block has {', '.join(BLOCK_KEYS)}")
            layers = body.get("layer")
            if isinstance(layers, dict):
                wrapped = PosList([layers], loc=getattr(layers, "loc", None))
                wrapped.item_locs = [wrapped.loc]
                layers = wrapped
            if not isinstance(layers, list) or not layers:
                self.error(f"block '{name}' needs a non-empty 'layer:' list", _loc_of(body, "layer")
                           if "layer" in body else at)
                continue
            if not isinstance(layers, PosList):
                layers = PosList(layers)
                layers.item_locs = [None] * len(layers)
            args = self.arguments(name, body)
            if args is not None:
                self.blocks[name] = Block(name, args, layers, at)
        self.find_recursion()

    def static_uses(self, block: Block) -> list[tuple[str, SourceLoc | None]]:
        """The blocks `block` uses by a written-out name (a template name is only known when expanded)."""
        out = []
        for i, item in enumerate(block.layers):
            name = item.get("use") if isinstance(item, dict) else None
            if isinstance(name, str) and "$" not in name and name in self.blocks:
                out.append((name, _loc_of(block.layers, i)))
        return out

    def find_recursion(self) -> None:
        """Report every cycle of uses at the `use:` that closes it, before anything expands."""
        done: set[str] = set()
        for root in self.blocks:
            if root in done:
                continue
            path = [root]
            stack = [iter(self.static_uses(self.blocks[root]))]
            while stack:  # iterative: a chain of thousands of blocks must not hit Python's recursion limit
                step = next(stack[-1], None)
                if step is None:
                    stack.pop()
                    done.add(path.pop())
                    continue
                target, at = step
                if target in path:
                    cycle = path[path.index(target):] + [target]
                    self.recursive.update(cycle)
                    shown = cycle if len(cycle) <= 8 else cycle[:3] + [f"... {len(cycle) - 6} more ..."] + cycle[-3:]
                    self.error(f"block '{target}' uses itself (recursion: {' -> '.join(shown)})", at,
                               hint="a block cannot contain itself; 'repeat:' makes copies")
                elif target not in done:
                    path.append(target)
                    stack.append(iter(self.static_uses(self.blocks[target])))

    def arguments(self, block: str, body: PosDict) -> tuple[Arg, ...] | None:
        spec = body.get("args", [])
        if spec is None:
            spec = []
        entries: list[tuple[Any, bool, Any, SourceLoc | None]] = []
        if isinstance(spec, dict):
            entries = [(k, False, v, _loc_of(spec, k, key_loc=True)) for k, v in spec.items()]
        elif isinstance(spec, list):
            for i, item in enumerate(spec):
                at = _loc_of(spec, i)
                if isinstance(item, dict) and len(item) == 1:
                    (k, v), = item.items()
                    entries.append((k, False, v, at))
                elif isinstance(item, str):
                    entries.append((item, True, None, at))
                else:
                    self.error(f"block '{block}': each argument is a name or one 'name: default' pair, "
                               f"got {item!r}", at)
                    return None
        else:
            self.error(f"block '{block}': 'args' must be a list (names, 'name: default' pairs) or a "
                       "mapping name -> default", _loc_of(body, "args"))
            return None
        out: list[Arg] = []
        for name, required, default, at in entries:
            if not isinstance(name, str) or not _IDENT.match(name) or keyword.iskeyword(name):
                self.error(f"block '{block}': argument name {name!r} is not an identifier", at)
                return None
            if any(a.name == name for a in out):
                self.error(f"block '{block}': argument '{name}' is declared twice", at)
                return None
            out.append(Arg(name, required, default, at))
        return tuple(out)

    # -- expansion ------------------------------------------------------------------------------

    def least(self, name: str, depth: int = 0) -> tuple[int, int]:
        """Lower bounds on the layers and the steps one copy of block `name` makes, from the definitions
        alone, assuming its templates evaluate; what they cannot see counts 0. Memoised per block."""
        known = self.sizes.get(name)
        if known is not None:
            return known
        if depth > MAX_DEPTH or name in self.recursive:
            return 0, 0  # both are errors of their own when expanded
        self.sizes[name] = (0, 0)  # guards a cycle through a template name while this one is computed
        layers = steps = 0
        for item in self.blocks[name].layers:
            steps += 1
            if not isinstance(item, dict):
                continue
            target = item.get("use")
            if "use" not in item:
                layers += _surely(item)
            elif isinstance(target, str) and "$" not in target and target in self.blocks:
                attempted, sure = _copies(self.blocks[target], item)
                inner_layers, inner_steps = self.least(target, depth + 1)
                layers += sure * inner_layers
                steps += attempted + sure * inner_steps
            layers, steps = min(layers, _HUGE), min(steps, _HUGE)
        self.sizes[name] = (layers, steps)
        return layers, steps

    def reserve(self, name: str, attempted: int, sure: int, at: SourceLoc | None, chain: tuple[Use, ...]) -> None:
        """Refuse a use whose copies are bound to pass a bound, before expanding the first of them."""
        per_layers, per_steps = self.least(name)
        layers, steps = sure * per_layers, attempted + sure * per_steps
        copies = f"{sure:,} cop{'y' if sure == 1 else 'ies'} of at least {per_layers:,} layer{'s' * (per_layers != 1)} each"
        if self.layers + layers > MAX_LAYERS:
            before = f", besides {self.layers:,} other layer{'s' * (self.layers != 1)}" if self.layers else ""
            self.error(f"'use: {name}' asks for at least {layers:,} layers ({copies}{before}); a net may have "
                       f"at most {MAX_LAYERS:,} layers", at, chain, "refused before expanding (an expansion bomb?)")
            raise _Abort
        if self.steps + steps > MAX_STEPS:
            self.error(f"'use: {name}' asks for at least {steps:,} expansion steps ({attempted:,} block copies and "
                       f"their template entries); expansion stops at {MAX_STEPS:,}", at, chain,
                       "copies that make no layers (dropped by 'if:') cost work too")
            raise _Abort

    def step(self, at: SourceLoc | None, chain: tuple[Use, ...]) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            # What the lower bounds could not see; blame the top-level entry, the hint shows the chain.
            self.error(f"block expansion takes more than {MAX_STEPS:,} steps (block copies and template "
                       "entries); refusing to expand further (an expansion bomb?)", chain[0].loc if chain else at,
                       chain)
            raise _Abort

    def emit(self, at: SourceLoc | None, chain: tuple[Use, ...]) -> None:
        self.layers += 1
        if self.layers > MAX_LAYERS:
            self.error(f"block expansion makes more than {MAX_LAYERS:,} layers, the most a net may have; "
                       "refusing to expand further (an expansion bomb?)", chain[0].loc, chain)
            raise _Abort

    def layer_list(self, items: PosList, scope: dict[str, Any] | None, chain: tuple[Use, ...],
                   out: PosList) -> None:
        """Expand `items` into `out`. scope None: the top level, where only `use:` entries expand."""
        for i, item in enumerate(items):
            at = _loc_of(items, i)
            if isinstance(item, dict) and "use" in item:
                self.use(item, at, scope or {}, chain, out)
            elif scope is None:
                out.append(item)  # counted before expansion began (expand)
                out.item_locs.append(at)
            else:
                self.step(at, chain)
                if isinstance(item, dict) and "if" in item:
                    keep = self.condition(item, scope, chain)
                    if not keep:
                        continue
                    item = _without(item, "if")
                before = self.failures
                value = self.substitute(item, scope, at, chain)
                if value is _DROP or self.failures > before:
                    continue  # reported; a half-substituted layer would only add follow-on errors
                if isinstance(value, PosDict) and chain:
                    value.__dict__["block_origin"] = chain
                self.emit(at, chain)
                out.append(value)
                out.item_locs.append(at)

    def condition(self, entry: PosDict, scope: dict[str, Any], chain: tuple[Use, ...]) -> bool:
        at = _loc_of(entry, "if")
        value = self.substitute(entry["if"], scope, at, chain)
        if value is _DROP or value is None:
            return False
        if not isinstance(value, (bool, int)) or isinstance(value, float):
            self.error(f"'if' needs true or false, got {_type(value)} {value!r}", at, chain)
            return False
        return bool(value)

    def use(self, entry: PosDict, at: SourceLoc | None, scope: dict[str, Any], chain: tuple[Use, ...],
            out: PosList) -> None:
        ok = True
        for key in entry:
            if key not in USE_KEYS:
                ok = False
                self.error(f"unknown field '{key}' in a 'use:' entry", _loc_of(entry, key, key_loc=True), chain,
                           did_you_mean(str(key), USE_KEYS) or
                           "a 'use:' entry has use, with, repeat, index and if; layer fields go in the block")
        name = self.substitute(entry["use"], scope, _loc_of(entry, "use"), chain)
        if not isinstance(name, str) or name not in self.blocks:
            if isinstance(name, str):
                self.used.add(name)
                self.error(f"unknown block '{name}'", _loc_of(entry, "use"), chain,
                           did_you_mean(name, set(self.blocks)) or
                           (f"blocks defined: {', '.join(sorted(self.blocks))}" if self.blocks
                            else "define it under a top-level 'blocks:' mapping"))
            elif name is not _DROP:
                self.error(f"'use' needs a block name, got {_type(name)}", _loc_of(entry, "use"), chain)
            return
        self.used.add(name)
        block = self.blocks[name]
        if name in self.recursive:
            return  # reported with the definitions
        if any(u.block == name for u in chain):
            path = " -> ".join([u.block for u in chain] + [name])
            self.error(f"block '{name}' uses itself (recursion: {path})", at, chain)
            return
        if len(chain) >= MAX_DEPTH:
            self.error(f"blocks nest deeper than {MAX_DEPTH} levels", at, chain)
            return
        index = entry.get("index", "i")
        if not isinstance(index, str) or not _IDENT.match(index):
            self.error(f"'index' must be an identifier, got {index!r}", _loc_of(entry, "index"), chain)
            return
        argsets = self.iterations(entry, scope, chain)
        if argsets is None or not ok:
            return
        self.reserve(name, len(argsets), _sure(block, entry, [s for s, _ in argsets]), at, chain)
        for k, (argset, argset_loc) in enumerate(argsets):
            local = {**scope, index: k}
            self.step(at, chain)
            if "if" in entry and not self.condition(entry, local, chain):
                continue
            args = self.bind(block, argset, argset_loc or at, local, chain)
            if args is None:
                continue
            step = Use(name, at, (index, k) if len(argsets) > 1 or "repeat" in entry else None)
            self.layer_list(block.layers, args, chain + (step,), out)

    def iterations(self, entry: PosDict, scope: dict[str, Any],
                   chain: tuple[Use, ...]) -> list[tuple[Any, SourceLoc | None]] | None:
        sets = entry.get("with")
        sets_loc = _loc_of(entry, "with")
        if sets is None:
            sets = PosDict(loc=_loc_of(entry, "use"))
        if isinstance(sets, list):
            if "repeat" in entry:
                self.error("give either 'repeat' or a list of 'with' argument sets, not both",
                           _loc_of(entry, "repeat", key_loc=True), chain)
                return None
            out = []
            for j, s in enumerate(sets):
                if not isinstance(s, dict):
                    self.error(f"each 'with' argument set must be a mapping, got {_type(s)}", _loc_of(sets, j),
                               chain)
                    return None
                out.append((s, _loc_of(sets, j)))
            return out
        if not isinstance(sets, dict):
            self.error(f"'with' must be a mapping of arguments (or a list of them), got {_type(sets)}",
                       sets_loc, chain)
            return None
        count = 1
        if "repeat" in entry:
            at = _loc_of(entry, "repeat")
            before = self.failures
            count = self.substitute(entry["repeat"], scope, at, chain)
            if self.failures > before:
                return None
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                shown = "null" if count is None or count is _DROP else repr(count)
                self.error(f"'repeat' needs a count >= 0, got {shown}", at, chain)
                return None
            if count > MAX_LAYERS:
                self.error(f"'repeat: {count}' exceeds the limit of {MAX_LAYERS:,}", at, chain,
                           "a net may have at most that many layers")
                return None
        return [(sets, sets_loc if "with" in entry else None)] * count

    def bind(self, block: Block, argset: PosDict, at: SourceLoc | None, caller: dict[str, Any],
             chain: tuple[Use, ...]) -> dict[str, Any] | None:
        args: dict[str, Any] = {}
        ok = True
        before = self.failures
        for key, value in argset.items():
            if block.arg(key) is None:
                ok = False
                known = [a.name for a in block.args]
                self.error(f"block '{block.name}' has no argument '{key}'", _loc_of(argset, key, key_loc=True),
                           chain, did_you_mean(str(key), known) or
                           f"its arguments: {', '.join(known) if known else 'none'}")
                continue
            v = self.substitute(value, caller, _loc_of(argset, key), chain)
            args[key] = None if v is _DROP else v
        missing = [a.name for a in block.args if a.required and a.name not in args]
        if missing:
            names = ", ".join(f"'{m}'" for m in missing)
            self.error(f"block '{block.name}' needs argument{'s' if len(missing) > 1 else ''} {names}", at, chain,
                       f"'{block.name}' is defined at {block.loc}" if block.loc else None)
            return None
        if not ok or self.failures > before:
            return None  # reported; expanding with a broken argument would only add follow-on errors
        for a in block.args:
            if a.name not in args:
                v = self.substitute(a.default, dict(args), a.loc, chain)
                args[a.name] = None if v is _DROP else v
        return None if self.failures > before else args

    # -- substitution ---------------------------------------------------------------------------

    def substitute(self, value: Any, scope: dict[str, Any], at: SourceLoc | None, chain: tuple[Use, ...]) -> Any:
        """A copy of `value` with every template string evaluated; containers keep their locations."""
        if isinstance(value, str):
            return self.string(value, scope, at, chain)
        if isinstance(value, dict):
            out = PosDict(loc=getattr(value, "loc", None))
            key_locs = getattr(value, "key_locs", {})
            value_locs = getattr(value, "value_locs", {})
            for k, v in value.items():
                new = self.substitute(v, scope, value_locs.get(k, at), chain)
                if new is _DROP:
                    continue
                out[k] = new
                if k in key_locs:
                    out.key_locs[k] = key_locs[k]
                if k in value_locs:
                    out.value_locs[k] = value_locs[k]
            return out
        if isinstance(value, list):
            out_list = PosList(loc=getattr(value, "loc", None))
            item_locs = getattr(value, "item_locs", [])
            for i, v in enumerate(value):
                item_at = item_locs[i] if i < len(item_locs) and item_locs[i] else at
                new = self.substitute(v, scope, item_at, chain)
                if new is _DROP:
                    continue
                out_list.append(new)
                out_list.item_locs.append(item_at)
            return out_list
        return value

    def string(self, text: str, scope: dict[str, Any], at: SourceLoc | None, chain: tuple[Use, ...]) -> Any:
        if "$" not in text:
            return text
        try:
            parts = self.parsed.get(text)
            if parts is None:
                parts = self.parsed[text] = split_template(text)
            if len(parts) == 1 and parts[0][0]:
                result = self.expression(parts[0][1], scope)
                return _DROP if result is None else result
            pieces = [self.expression(t, scope) if is_expr else t for is_expr, t in parts]
            joined = "".join(_text(p) if p is not None else _null_in_string() for p in pieces)
            return _bounded(joined)
        except ExprError as e:
            self.error(str(e), at, chain, _index_hint(e, chain))
            return _DROP

    def expression(self, text: str, scope: dict[str, Any]) -> Any:
        tree = self.trees.get(text)
        if tree is None:
            tree = self.trees[text] = parse_expression(text)
        result = _Interpreter(scope).run(tree)
        if isinstance(result, list):
            return _as_poslist(result)
        return result


def _index_hint(e: ExprError, chain: tuple[Use, ...]) -> str | None:
    """Why a repetition index shown in the chain ('(i = 0)') is unknown in the block's own layers."""
    if not isinstance(e, UnknownName):
        return None
    for use in reversed(chain):
        if use.index and use.index[0] == e.name:
            where = f" at {use.loc}" if use.loc else ""
            return (f"'{e.name}' is the copy index of the 'use: {use.block}'{where}: it is bound in that entry's "
                    f"with/repeat/if only, and a block's layers see only its arguments; pass it in "
                    f"(add {e.name} to the block's args, and with: {{{e.name}: ${e.name}}})")
    return None


def _copies(block: Block, entry: PosDict) -> tuple[int, int]:
    """How many copies a `use:` entry inside a block attempts, and how many of them surely expand,
    as far as its text says (a `repeat: $n` or an `if:` is known only when expanded: 0)."""
    index = entry.get("index", "i")
    if any(key not in USE_KEYS for key in entry) or not isinstance(index, str) or not _IDENT.match(index):
        return 0, 0
    sets = entry.get("with")
    if isinstance(sets, list):
        if "repeat" in entry or not all(isinstance(s, dict) for s in sets):
            return 0, 0
        return len(sets), _sure(block, entry, sets)
    if sets is None or isinstance(sets, dict):
        count = entry.get("repeat", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_LAYERS:
            return 0, 0
        return count, _sure(block, entry, [sets or {}] * count)
    return 0, 0


def _sure(block: Block, entry: PosDict, sets: list[Any]) -> int:
    """How many of a `use:` entry's copies (one per argument set) surely expand: none when an `if:` may
    drop them, all or none for a repeated set, else those whose arguments bind. Shared by the bound
    worked out from the definitions (_copies) and the running count at expansion, so they agree."""
    if not _surely(entry):
        return 0
    if "repeat" in entry:  # one argument set, copied
        return len(sets) if sets and _binds(block, sets[0]) else 0
    return sum(_binds(block, s) for s in sets)


def _surely(entry: PosDict) -> bool:
    """Whether an entry's `if:` surely keeps it: no `if:`, or a literal true (a template is known later)."""
    return entry.get("if", True) is True


def _binds(block: Block, argset: Any) -> bool:
    """Whether an argument set names only the block's arguments and all the required ones."""
    if not isinstance(argset, dict):
        return False
    return all(block.arg(key) is not None for key in argset) and \
        all(a.name in argset for a in block.args if a.required)


def _null_in_string() -> str:
    raise ExprError("a null value cannot be part of a string")


def _as_poslist(values: list[Any]) -> PosList:
    return values if isinstance(values, PosList) else PosList(values)


def _without(entry: PosDict, key: str) -> PosDict:
    out = PosDict(loc=entry.loc)
    for k, v in entry.items():
        if k != key:
            out[k] = v
            if k in entry.key_locs:
                out.key_locs[k] = entry.key_locs[k]
            if k in entry.value_locs:
                out.value_locs[k] = entry.value_locs[k]
    return out


def _needs_expansion(raw: PosDict) -> bool:
    if raw.get("blocks") is not None:
        return True
    for key in ("layer", "layers"):
        items = raw.get(key)
        if isinstance(items, dict):
            items = [items]
        if isinstance(items, list) and any(isinstance(i, dict) and "use" in i for i in items):
            return True
    return False


def _top_list(items: Any) -> PosList | None:
    """A top-level layer list as a PosList (a lone mapping is a one-item list); None if it is not one."""
    if isinstance(items, dict):
        wrapped = PosList([items], loc=getattr(items, "loc", None))
        wrapped.item_locs = [wrapped.loc]
        return wrapped
    if not isinstance(items, list):
        return None
    if not isinstance(items, PosList):
        items = PosList(items)
        items.item_locs = [None] * len(items)
    return items


def expand(raw: Any, file: str, diags: list[Diagnostic]) -> Any:
    """Expand `blocks:`/`use:` in loaded spec data; problems go to `diags` (located), never raise."""
    if not isinstance(raw, PosDict) or not _needs_expansion(raw):
        return raw
    ex = _Expander(file, diags)
    if raw.get("blocks") is not None:
        ex.define(raw["blocks"], raw)
    result = PosDict(loc=raw.loc)
    for k, v in raw.items():
        result[k] = v
        result.key_locs[k] = raw.key_locs.get(k)  # type: ignore[assignment]
        result.value_locs[k] = raw.value_locs.get(k)  # type: ignore[assignment]
    lists = {key: items for key in ("layer", "layers") if (items := _top_list(raw.get(key))) is not None}
    # The written-out layers count towards the limit from the start, so a use is refused before its
    # first copy when it cannot fit beside them.
    ex.layers = sum(1 for items in lists.values() for item in items if not (isinstance(item, dict) and "use" in item))
    for key, items in lists.items():
        out = PosList(loc=items.loc)
        try:
            ex.layer_list(items, None, (), out)
        except _Abort:
            # A refused net has nothing worth checking: a partial expansion only adds follow-on errors.
            for other in lists:
                result[other] = PosList(loc=lists[other].loc)
            break
        result[key] = out
    if ex.errors > MAX_DIAGNOSTICS:
        diags.append(Diagnostic("note", f"{ex.errors - MAX_DIAGNOSTICS} more block expansion error(s) not shown",
                                SourceLoc(file, 1, 1)))
    for name, block in ex.blocks.items():
        if name not in ex.used and not ex.errors:
            diags.append(Diagnostic("warning", f"block '{name}' is never used", block.loc))
    return result
