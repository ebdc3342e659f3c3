"""Block expansion (netspec.blocks): semantics, located errors, the expression interpreter, bounds."""

from __future__ import annotations

import operator
import re
from textwrap import dedent
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec import blocks
from netspec.blocks import BLOCKS_JSON_SCHEMA, ExprError, evaluate, expand, split_template, with_origins
from netspec.errors import Diagnostic, NetspecError
from netspec.graph import build
from netspec.shapes import infer
from netspec.source import PosDict, PosList, load_yaml
from netspec.spec import load_spec, parse

INPUT = "  - {name: data, type: Input, input_param: {shape: {dim: [2, 3, 8, 8]}}}\n"


def expanded(text: str) -> tuple[list[Any], list[Diagnostic]]:
    diags: list[Diagnostic] = []
    raw = expand(load_yaml(dedent(text), "t.yaml"), "t.yaml", diags)
    return raw["layer"], diags


def errors_of(text: str) -> list[str]:
    """Every error as 'LINE:COL: message' (what the user sees, minus the file name)."""
    _, diags = expanded(text)
    return [f"{d.loc.line}:{d.loc.col}: {d.message}" for d in diags if d.severity == "error"]


def spec_errors(text: str) -> list[Diagnostic]:
    with pytest.raises(NetspecError) as e:
        spec = load_spec("t.yaml", dedent(text))
        infer(build(spec))
    return e.value.errors


CONV = """\
blocks:
  conv:
    args: [name, n, k: 3, pad: "${k // 2}", bias: ~]
    layer:
      - {name: $name, type: Convolution, convolution_param: {num_output: $n, kernel_size: $k, pad: $pad, bias_term: $bias}}
      - {name: relu_$name, type: ReLU, bottom: $name, top: $name}
"""


# ----------------------------------------------------------------------------------------------
# semantics


def test_whole_value_substitution_keeps_the_type_and_null_drops_the_key() -> None:
    layers, diags = expanded(CONV + "layer:\n" + INPUT + "  - {use: conv, with: {name: c1, n: 16}}\n")
    assert not diags
    conv, relu = layers[1], layers[2]
    assert conv == {"name": "c1", "type": "Convolution",
                    "convolution_param": {"num_output": 16, "kernel_size": 3, "pad": 1}}
    assert type(conv["convolution_param"]["num_output"]) is int
    assert relu == {"name": "relu_c1", "type": "ReLU", "bottom": "c1", "top": "c1"}


def test_defaults_see_earlier_arguments_and_explicit_values_win() -> None:
    layers, _ = expanded(CONV + "layer:\n" + INPUT + "  - {use: conv, with: {name: c, n: 4, k: 5, bias: false}}\n"
                         "  - {use: conv, with: {name: d, n: 4, k: 5, pad: 0}}\n")
    assert layers[1]["convolution_param"] == {"num_output": 4, "kernel_size": 5, "pad": 2, "bias_term": False}
    assert layers[3]["convolution_param"] == {"num_output": 4, "kernel_size": 5, "pad": 0}


def test_repeat_binds_the_index_in_with_values() -> None:
    layers, _ = expanded(CONV + "layer:\n" + INPUT +
                         '  - {use: conv, repeat: 3, with: {name: "conv3_${i + 1}", n: "${64 * 2 ** i}"}}\n'
                         '  - {use: conv, repeat: 2, index: j, with: {name: "x${letter(j)}", n: 1}}\n')
    names = [l["name"] for l in layers]
    assert names == ["data", "conv3_1", "relu_conv3_1", "conv3_2", "relu_conv3_2", "conv3_3", "relu_conv3_3",
                     "xa", "relu_xa", "xb", "relu_xb"]
    assert [l["convolution_param"]["num_output"] for l in layers[1:7:2]] == [64, 128, 256]


def test_a_list_of_argument_sets_expands_once_per_set() -> None:
    layers, _ = expanded(CONV + "layer:\n" + INPUT +
                         "  - use: conv\n    with:\n      - {name: a, n: 1}\n      - {name: b, n: 2, k: 1}\n")
    assert [(l["name"], l.get("convolution_param", {}).get("kernel_size")) for l in layers[1:]] == [
        ("a", 3), ("relu_a", None), ("b", 1), ("relu_b", None)]


def test_blocks_use_blocks_and_if_keeps_or_drops_entries() -> None:
    text = CONV + dedent("""\
      unit:
        args: [name, bottom, proj: false]
        layer:
          - {if: $proj, use: conv, with: {name: "${name}_proj", n: 8, k: 1}}
          - {name: "${name}_sum", type: Eltwise, bottom: ["${name + '_proj' if proj else bottom}", $bottom]}
          - {if: "${not proj}", name: "${name}_note", type: ReLU}
    layer:
    """) + INPUT + "  - {use: unit, with: {name: u, bottom: data, proj: true}}\n" \
                   "  - {use: unit, with: {name: v, bottom: u_sum}}\n"
    layers, diags = expanded(text)
    assert not diags
    assert [l["name"] for l in layers] == ["data", "u_proj", "relu_u_proj", "u_sum", "v_sum", "v_note"]
    assert layers[3]["bottom"] == ["u_proj", "data"]
    assert layers[4]["bottom"] == ["u_sum", "u_sum"]
    assert "if" not in layers[5]


def test_list_arguments_pass_whole_and_dollar_dollar_is_a_literal_dollar() -> None:
    text = """\
    blocks:
      cat:
        args: [name, inputs]
        layer: {name: $name, type: Concat, bottom: $inputs, include: {stage: "cost$$"}}
    layer:
      - {use: cat, with: {name: c, inputs: [a, b, "${'c' * 2}"]}}
    """
    layers, diags = expanded(text)
    assert not diags
    assert layers[0]["bottom"] == ["a", "b", "cc"] and layers[0]["include"]["stage"] == "cost$"


def test_top_level_layers_are_taken_as_written() -> None:
    layers, diags = expanded(CONV + "layer:\n  - {name: x, type: ReLU, top: cost$}\n  - {use: conv, with: {name: c, n: 1}}\n")
    assert not diags and layers[0]["top"] == "cost$"


def test_spec_without_blocks_is_returned_unchanged() -> None:
    raw = load_yaml("layer:\n  - {name: a, type: ReLU, top: $x}\n", "t.yaml")
    assert expand(raw, "t.yaml", []) is raw


def test_expanded_layers_keep_the_template_positions() -> None:
    layers, _ = expanded(CONV + "layer:\n" + INPUT + "  - {use: conv, repeat: 2, with: {name: 'c$i', n: 1}}\n")
    for conv in (layers[1], layers[3]):
        assert isinstance(conv, PosDict) and isinstance(conv["convolution_param"], PosDict)
        assert (conv.loc.line, conv.loc.col) == (5, 9)
        assert (conv.value_locs["convolution_param"].line, conv.value_locs["convolution_param"].col) == (5, 61)
    assert isinstance(layers, PosList) and [(l.line, l.col) for l in layers.item_locs] == [
        (8, 5), (5, 9), (6, 9), (5, 9), (6, 9)]


def test_expansion_equals_the_hand_written_layers() -> None:
    by_block = load_spec("a.yaml", dedent(CONV + "layer:\n" + INPUT +
                                          "  - {use: conv, repeat: 2, with: {name: 'c${i}', n: '${4 + i}'}}\n"))
    by_hand = load_spec("b.yaml", "layer:\n" + INPUT +
                        "  - {name: c0, type: Convolution, convolution_param: {num_output: 4, kernel_size: 3, pad: 1}}\n"
                        "  - {name: relu_c0, type: ReLU, bottom: c0, top: c0}\n"
                        "  - {name: c1, type: Convolution, convolution_param: {num_output: 5, kernel_size: 3, pad: 1}}\n"
                        "  - {name: relu_c1, type: ReLU, bottom: c1, top: c1}\n")

    def key(s: Any) -> list[Any]:
        return [(l.name, l.type, l.bottom, l.top, {k: v.model_dump() for k, v in l.messages.items()})
                for l in s.layers]

    assert key(by_block) == key(by_hand)
    assert infer(build(by_block)).learnable_params == infer(build(by_hand)).learnable_params == 112 + 185


# ----------------------------------------------------------------------------------------------
# located errors


def test_unknown_block_points_at_the_use_value() -> None:
    assert errors_of(CONV + "layer:\n  - {use: cnov, with: {name: a, n: 1}}\n") == ["8:11: unknown block 'cnov'"]
    _, diags = expanded(CONV + "layer:\n  - {use: cnov}\n")
    assert diags[0].hint == "did you mean 'conv'?"


def test_missing_and_unknown_arguments() -> None:
    assert errors_of(CONV + "layer:\n  - {use: conv, with: {name: a}}\n") == [
        "8:23: block 'conv' needs argument 'n'"]
    assert errors_of(CONV + "layer:\n  - {use: conv, with: {name: a, n: 1, kk: 3}}\n") == [
        "8:39: block 'conv' has no argument 'kk'"]
    assert errors_of(CONV + "layer:\n  - {use: conv}\n") == ["8:5: block 'conv' needs arguments 'name', 'n'"]


def test_bad_substitution_points_at_the_template_value_and_names_the_use_site() -> None:
    text = """\
    blocks:
      b:
        args: [n]
        layer:
          - {name: x, type: ReLU, top: "${n +* 2}"}
          - {name: y, type: ReLU, top: "${m}"}
          - {name: z, type: ReLU, top: "${n / 0}"}
    layer:
      - {use: b, repeat: 2, with: {n: 1}}
    """
    assert errors_of(text) == ["5:36: syntax error in expression 'n +* 2': invalid syntax",
                               "6:36: unknown name 'm' (known here: n)",
                               "7:36: division by zero"]
    _, diags = expanded(text)
    assert diags[0].hint == "in block 'b' used at t.yaml:9:5 (i = 0)"  # reported once, not per instance
    assert len(diags) == 3


def test_recursion_is_an_error_at_the_inner_use() -> None:
    text = """\
    blocks:
      a: {layer: [{use: b}]}
      b:
        layer:
          - {name: x, type: ReLU}
          - {use: a}
    layer:
      - {use: a}
    """
    assert errors_of(text) == ["6:9: block 'a' uses itself (recursion: a -> b -> a)"]


def test_recursion_is_found_in_the_definitions_before_anything_expands(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even a recursion that an `if:` would end is refused, and so is one that no layer uses.
    text = """\
    blocks:
      down:
        args: [n]
        layer:
          - {name: "d$n", type: ReLU}
          - {if: "${n > 0}", use: down, with: {n: "${n - 1}"}}
      loop: {layer: {use: loop, repeat: 9000}}
    layer:
      - {use: down, repeat: 9000, with: {n: 9000}}
    """
    binds = count_binds(monkeypatch)
    _, diags = expanded(text)
    assert [(d.loc.line, d.loc.col, d.message) for d in diags] == [
        (6, 9, "block 'down' uses itself (recursion: down -> down)"),
        (7, 17, "block 'loop' uses itself (recursion: loop -> loop)")]
    assert diags[0].hint == "a block cannot contain itself; 'repeat:' makes copies"
    assert binds == [0]


def test_a_repetition_index_used_inside_the_block_is_explained() -> None:
    text = """\
    blocks:
      a: {layer: {name: r$i, type: ReLU}}
      b: {layer: {use: a, repeat: 2}}
    layer:
      - {use: b}
    """
    _, diags = expanded(text)
    assert [(d.loc.line, d.loc.col, d.message) for d in diags] == [(2, 21, "unknown name 'i' (known here: none)")]
    assert diags[0].hint == (
        "'i' is the copy index of the 'use: a' at t.yaml:3:14: it is bound in that entry's with/repeat/if only, "
        "and a block's layers see only its arguments; pass it in (add i to the block's args, and with: {i: $i}); "
        "in block 'a' used at t.yaml:3:14 (i = 0), in block 'b' used at t.yaml:5:5")


def test_malformed_definitions_and_use_entries() -> None:
    text = """\
    blocks:
      a: {args: [1x], layer: {name: x, type: ReLU}}
      b: {layers: [{name: x, type: ReLU}]}
      c: {args: [n, n], layer: {name: x, type: ReLU}}
      d: {layer: {name: $n, type: ReLU}}
    layer:
      - {use: d, repeat: -1}
      - {use: d, repeat: 2, with: [{}]}
      - {use: d, with: 3}
      - {use: d, name: x}
      - {use: d, index: 2x}
      - {use: d, if: maybe}
    """
    assert errors_of(text) == [
        "2:14: block 'a': argument name '1x' is not an identifier",
        "3:7: unknown field 'layers' in block 'b'",
        "3:3: block 'b' needs a non-empty 'layer:' list",
        "4:17: block 'c': argument 'n' is declared twice",
        "7:22: 'repeat' needs a count >= 0, got -1",
        "8:14: give either 'repeat' or a list of 'with' argument sets, not both",
        "9:20: 'with' must be a mapping of arguments (or a list of them), got int",
        "10:14: unknown field 'name' in a 'use:' entry",
        "11:21: 'index' must be an identifier, got '2x'",
        "12:18: 'if' needs true or false, got string 'maybe'",
    ]


def test_blocks_section_must_be_a_mapping() -> None:
    assert errors_of("blocks: [a]\nlayer:\n  - {name: x, type: ReLU}\n") == [
        "1:9: 'blocks' must be a mapping of block name -> {args, layer}"]


def test_unused_block_is_a_warning() -> None:
    _, diags = expanded(CONV + "  spare: {layer: {name: x, type: ReLU}}\nlayer:\n  - {use: conv, with: {name: a, n: 1}}\n")
    assert [(d.severity, d.message, d.loc.line) for d in diags] == [("warning", "block 'spare' is never used", 7)]


def test_errors_in_expanded_layers_point_at_the_template_and_name_the_use_site() -> None:
    text = CONV.replace("kernel_size: $k", "kernel_size: $k, kernel_sise: 1") + "layer:\n" + INPUT + \
        "  - {use: conv, repeat: 2, with: {name: 'c$i', n: 1}}\n"
    errs = spec_errors(text)
    assert [(e.loc.line, e.loc.col, e.layer) for e in errs] == [(5, 95, "c0"), (5, 95, "c1")]
    assert all("unknown field 'kernel_sise'" in e.message for e in errs)
    spec_text = CONV + "layer:\n" + INPUT + "  - {use: conv, with: {name: big, n: 1, k: 99, pad: 0}}\n"
    spec = load_spec("t.yaml", dedent(spec_text))
    with pytest.raises(NetspecError) as e:
        infer(build(spec))
    (err,) = with_origins(e.value.errors, spec.layers)
    assert (err.loc.line, err.layer) == (5, "big")
    assert err.hint is not None and err.hint.endswith("in block 'conv' used at t.yaml:9:5")


def test_parse_reports_expansion_errors_with_the_rest() -> None:
    with pytest.raises(NetspecError) as e:
        parse(load_yaml(dedent(CONV + "layer:\n  - {use: conv, with: {name: a}}\n  - {name: q, type: Nope}\n"),
                        "t.yaml"), "t.yaml")
    assert [(d.loc.line, d.message) for d in e.value.errors] == [
        (8, "block 'conv' needs argument 'n'"), (9, "unknown layer type 'Nope'")]


# ----------------------------------------------------------------------------------------------
# bounds


def count_binds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many block copies get as far as binding their arguments (the start of a copy's work)."""
    calls = [0]
    bind = blocks._Expander.bind

    def counted(self: Any, *args: Any) -> Any:
        calls[0] += 1
        return bind(self, *args)

    monkeypatch.setattr(blocks._Expander, "bind", counted)
    return calls


NESTED_BOMB = """\
blocks:
  a:
    args: [p, q]
    layer:
      - {name: "r${p}_${q}", type: ReLU}
  b:
    args: [p]
    layer:
      - {use: a, repeat: 9000, with: {p: $p, q: $i}}
layer:
  - {name: data, type: Input, input_param: {shape: {dim: [1, 3, 8, 8]}}}
  - {use: b, repeat: 9000, with: {p: $i}}
"""


@pytest.mark.timeout(60)  # a hang guard, not a speed test (speed: tools/bench_check.py)
def test_a_nested_repeat_bomb_is_refused_before_its_first_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    binds = count_binds(monkeypatch)
    layers, diags = expanded(NESTED_BOMB)
    assert [(d.loc.line, d.loc.col, d.message) for d in diags] == [
        (12, 5, f"'use: b' asks for at least 81,000,000 layers (9,000 copies of at least 9,000 layers each, besides "
                f"1 other layer); a net may have at most {blocks.MAX_LAYERS:,} layers")]
    assert diags[0].hint == "refused before expanding (an expansion bomb?)"
    assert binds == [0] and list(layers) == []  # no copy was started; nothing half-expanded is left to check


@pytest.mark.timeout(60)
def test_a_bomb_is_one_located_error_from_the_whole_check() -> None:
    errs = spec_errors(NESTED_BOMB)
    assert [(e.loc.line, e.loc.col, e.message.split(" (")[0]) for e in errs] == [
        (12, 5, "'use: b' asks for at least 81,000,000 layers")]


def test_the_layer_limit_is_the_nets() -> None:
    """Block expansion stops where `netspec check` does: MAX_LAYERS layers in all, the hand-written ones
    included; one more is refused by the expander alone (no second error from the spec)."""
    from netspec import spec

    assert blocks.MAX_LAYERS is spec.MAX_LAYERS
    one = "blocks: {one: {layer: {name: 'r$n', type: ReLU}, args: [n]}}\nlayer:\n" + INPUT
    fits = one + f"  - {{use: one, repeat: {blocks.MAX_LAYERS - 1}, with: {{n: $i}}}}\n"
    layers, diags = expanded(fits)
    assert not diags and len(layers) == blocks.MAX_LAYERS
    errs = spec_errors(fits.replace(f"repeat: {blocks.MAX_LAYERS - 1}", f"repeat: {blocks.MAX_LAYERS}"))
    assert [(e.loc.line, e.message) for e in errs] == [
        (4, f"'use: one' asks for at least {blocks.MAX_LAYERS:,} layers ({blocks.MAX_LAYERS:,} copies of at "
            f"least 1 layer each, besides 1 other layer); a net may have at most {blocks.MAX_LAYERS:,} layers")]


def test_written_out_layers_after_a_use_count_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "MAX_LAYERS", 10)
    text = "blocks: {one: {layer: {name: x, type: ReLU}}}\nlayer:\n  - {use: one, repeat: 9}\n" + INPUT * 2
    assert errors_of(text) == ["3:5: 'use: one' asks for at least 9 layers (9 copies of at least 1 layer each, "
                               "besides 2 other layers); a net may have at most 10 layers"]
    layers, diags = expanded(text.replace("repeat: 9", "repeat: 8"))
    assert not diags and len(layers) == 10


def test_a_repeat_count_known_only_when_expanded_is_refused_at_the_copy_that_would_pass_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "MAX_LAYERS", 100)
    text = """\
    blocks:
      one: {layer: {name: x, type: ReLU}}
      many: {args: [n], layer: {use: one, repeat: $n}}
    layer:
      - {use: many, repeat: 50, with: {n: 10}}
    """
    binds = count_binds(monkeypatch)
    layers, diags = expanded(text)
    assert [(d.loc.line, d.loc.col, d.message) for d in diags] == [
        (3, 28, "'use: one' asks for at least 10 layers (10 copies of at least 1 layer each, besides 100 other "
                "layers); a net may have at most 100 layers")]
    assert diags[0].hint == "refused before expanding (an expansion bomb?); in block 'many' used at t.yaml:5:5 (i = 10)"
    assert binds == [11 + 100] and list(layers) == []  # 11 copies of many, 100 of one; the 101st never began


def test_copies_that_make_no_layers_still_count_as_work(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
    blocks:
      one: {layer: {name: x, type: ReLU}}
      none: {layer: {use: one, repeat: 5000, if: false}}
    layer:
      - {use: none, repeat: 1000}
    """
    binds = count_binds(monkeypatch)
    assert errors_of(text) == [
        f"5:5: 'use: none' asks for at least 5,002,000 expansion steps (1,000 block copies and their template "
        f"entries); expansion stops at {blocks.MAX_STEPS:,}"]
    assert binds == [0]


def test_a_literal_if_counts_in_the_lower_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    binds = count_binds(monkeypatch)
    text = "blocks: {a: {layer: {if: true, name: x, type: ReLU}}, b: {layer: {use: a, repeat: 9000}}}\n" \
           "layer:\n  - {use: b, repeat: 2}\n"
    assert errors_of(text) == [f"3:5: 'use: b' asks for at least 18,000 layers (2 copies of at least 9,000 layers "
                               f"each); a net may have at most {blocks.MAX_LAYERS:,} layers"]
    assert binds == [0]


def two_levels(condition: str, inner: int, outer: int) -> str:
    """`outer` copies of a block that makes `inner` copies of a one-layer block kept `if: condition`."""
    return dedent(f"""\
    blocks:
      one: {{layer: {{if: {condition}, name: x, type: ReLU}}}}
      many: {{layer: {{use: one, repeat: {inner}}}}}
    layer:
      - {{use: many, repeat: {outer}}}
    """)


def test_the_counters_stop_what_the_lower_bounds_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    # An `if:` template on a template layer makes its lower bound 0: only the running count sees these layers.
    monkeypatch.setattr(blocks, "MAX_LAYERS", 50)
    assert errors_of(two_levels('"${true}"', 30, 2)) == [
        "5:5: block expansion makes more than 50 layers, the most a net may have; refusing to expand further "
        "(an expansion bomb?)"]
    # With the lower bounds switched off, the running counts alone still stop a bomb.
    monkeypatch.setattr(blocks._Expander, "least", lambda self, name, depth=0: (0, 0))
    monkeypatch.setattr(blocks, "MAX_STEPS", 500)
    assert errors_of(two_levels("false", 50, 50)) == [
        "5:5: block expansion takes more than 500 steps (block copies and template entries); refusing to "
        "expand further (an expansion bomb?)"]


def test_repeat_and_nesting_depth_are_capped() -> None:
    too_many = blocks.MAX_LAYERS + 1
    assert errors_of(f"blocks: {{a: {{layer: {{name: x, type: ReLU}}}}}}\nlayer:\n  - {{use: a, repeat: {too_many}}}\n") == [
        f"3:22: 'repeat: {too_many}' exceeds the limit of {blocks.MAX_LAYERS:,}"]
    depth = blocks.MAX_DEPTH + 2
    chain = "".join(f"  b{i}: {{layer: {{use: b{i + 1}}}}}\n" for i in range(depth)) + \
        f"  b{depth}: {{layer: {{name: x, type: ReLU}}}}\n"
    errs = errors_of("blocks:\n" + chain + "layer:\n  - {use: b0}\n")
    assert errs == [f"{blocks.MAX_DEPTH + 1}:16: blocks nest deeper than {blocks.MAX_DEPTH} levels"]


def test_a_long_chain_or_cycle_of_blocks_is_reported_not_a_recursion_error() -> None:
    n = 3000  # deeper than Python's recursion limit
    chain = "".join(f"  b{i}: {{layer: {{use: b{i + 1}}}}}\n" for i in range(n)) + f"  b{n}: {{layer: {{name: x, type: ReLU}}}}\n"
    assert errors_of("blocks:\n" + chain + "layer:\n  - {use: b0}\n") == [
        f"{blocks.MAX_DEPTH + 1}:16: blocks nest deeper than {blocks.MAX_DEPTH} levels"]
    cycle = chain.replace(f"b{n}: {{layer: {{name: x, type: ReLU}}}}", f"b{n}: {{layer: {{use: b0}}}}")
    assert errors_of("blocks:\n" + cycle + "layer:\n  - {use: b0}\n") == [
        f"{n + 2}:18: block 'b0' uses itself (recursion: b0 -> b1 -> b2 -> ... {n - 4} more ... -> b{n - 1} -> b{n} -> b0)"]


def test_expression_size_limits() -> None:
    for text, message in [("'x' * 100000", "repeating a string 100000 times is too long"),
                          ("2 ** 1000", "exponent 1000 is too large (at most 64)"),
                          ("(2 ** 62) * 16", "out of range"),
                          ("1+" * 150 + "1", "more than 200 parts"),
                          ("(" * 300 + "1" + ")" * 300, "too many nested parentheses")]:
        with pytest.raises(ExprError, match=re.escape(message)):
            evaluate(text, {})


# ----------------------------------------------------------------------------------------------
# the expression language


@pytest.mark.parametrize("text, value", [
    ("planes * 4", 256), ("planes // 3", 21), ("planes / 128", 0.5), ("-planes % 5", 1), ("2 ** 10", 1024),
    ("'res' + str(stage) + letter(1)", "res2b"), ("name[1:3]", "on"), ("name[-1]", "v"), ("[1, 2][1]", 2),
    ("'a' if stage > 1 and not flag else 'b'", "a"), ("stage in [1, 2]", True), ("1 < stage <= 2", True),
    ("min(3, planes, 9)", 3), ("max([4, 7])", 7), ("abs(-2)", 2), ("len(name)", 4), ("int('12') + 1", 13),
    ("float(3) / 2", 1.5), ("true or false", True), ("null", None), ("flag or 'x'", "x"),
])
def test_expressions(text: str, value: Any) -> None:
    got = evaluate(text, {"planes": 64, "stage": 2, "name": "conv", "flag": False})
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text, message", [
    ("x.__class__", "Attribute expressions are not supported"),
    ("__import__('os')", "cannot call __import__()"),
    ("open('f')", "cannot call open()"),
    ("(lambda: 1)()", "cannot call this()"),
    ("[c for c in 'ab']", "ListComp expressions are not supported"),
    ("{'a': 1}", "Dict expressions are not supported"),
    ("f'{x}'", "JoinedStr expressions are not supported"),
    ("x is None", "'is' comparisons are not supported"),
    ("'a' + 1", "cannot apply '+' to string and int (convert with str())"),
    ("letter(26)", "letter() takes an index 0..25"),
    ("int('1e9')", "int() needs an integer"),
    ("'ab'[5]", "index 5 is out of range"),
    ("x = 1", "syntax error"),
    ("", "empty expression"),
])
def test_expression_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=re.escape(message)):
        evaluate(text, {"x": 1})


def test_template_parts() -> None:
    assert split_template("res${st}${letter(i)}_$name/x$$") == [
        (False, "res"), (True, "st"), (True, "letter(i)"), (False, "_"), (True, "name"), (False, "/x$")]
    assert split_template("${'}' + a}") == [(True, "'}' + a")]
    for bad, message in [("a$", "stray '$'"), ("$ a", "stray"), ("${a", "unterminated"), ("${a)}", "unbalanced")]:
        with pytest.raises(ExprError, match=re.escape(message)):
            split_template(bad)


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod}


@st.composite
def _arith(draw: st.DrawFn, depth: int = 0) -> tuple[str, int]:
    if depth >= 3 or draw(st.booleans()):
        if draw(st.booleans()):
            name = draw(st.sampled_from(["a", "b"]))
            return name, {"a": 7, "b": -3}[name]
        n = draw(st.integers(-50, 50))
        return f"({n})", n
    op = draw(st.sampled_from(sorted(_OPS)))
    (lt, lv), (rt, rv) = draw(_arith(depth + 1)), draw(_arith(depth + 1))
    if op in ("//", "%") and rv == 0:
        return lt, lv
    return f"({lt} {op} {rt})", _OPS[op](lv, rv)


@settings(max_examples=60, deadline=None)
@given(_arith())
def test_integer_arithmetic_matches_python_semantics(case: tuple[str, int]) -> None:
    text, value = case
    assert evaluate(text, {"a": 7, "b": -3}) == value


# ----------------------------------------------------------------------------------------------
# schema fragment


def test_schema_fragment_describes_blocks_and_use_entries() -> None:
    import jsonschema  # a test extra: an independent validator of the fragment editors get
    use = BLOCKS_JSON_SCHEMA["use"]
    assert set(use["properties"]) == set(blocks.USE_KEYS)
    block = BLOCKS_JSON_SCHEMA["blocks"]["additionalProperties"]
    assert set(block["properties"]) == set(blocks.BLOCK_KEYS)
    raw = load_yaml(dedent(CONV), "t.yaml")
    jsonschema.validate(dict(raw)["blocks"], BLOCKS_JSON_SCHEMA["blocks"])
    jsonschema.validate({"use": "conv", "repeat": 3, "index": "j", "with": {"name": "c$j", "n": 1}}, use)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"use": "conv", "name": "x"}, use)
