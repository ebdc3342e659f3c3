"""Fuzzing `netspec check` with mutated real specs: it must never crash, whatever the input.

Each example takes a real spec (the check fixtures, the small zoo specs, and some of them in Caffe's
legacy V1 form: `layers:` with V1 type names), applies one to three mutations, at the data level (drop,
duplicate, rename or retype keys, swap values, odd numbers, duplicate/drop/move layers, block expansion
bombs, recursive blocks, conversion to or from V1) or at the byte level (garbage bytes, truncation, line
edits), and runs `netspec check` in-process. Properties: no exception escapes, the exit status is 0 or
1, every line on stderr is a located diagnostic (`FILE:LINE:COL: error|warning|note: ...`), a hint, or
the error count, never an internal error, and no net passes with more than the layer limit. (Speed is
tools/bench_check.py's business, not a test's.)

NETSPEC_FUZZ_EXAMPLES overrides the number of examples (default 2000, about a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from netspec.caffe.upgrade import V1_LAYER_TYPES
from netspec.spec import MAX_LAYERS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "2000"))
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# Zoo specs that check in ~10-40 ms (the big ones would make each example slow); blocks included.
ZOO_SEEDS = ("alexnet", "cifar10_quick", "lenet", "alphago_policy", "resnet18", "vgg16")
V1_SEEDS = ("alexnet", "cifar10_quick", "lenet")  # also checked in their legacy V1 form
V1_NAMES = {v2: v1 for v1, v2 in V1_LAYER_TYPES.items()}  # Convolution -> CONVOLUTION, ...


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=2**20)


def _to_v1(data: dict[str, Any], key: bool = True, names: bool = True) -> dict[str, Any]:
    """The net in Caffe's legacy V1 form: the layer list under `layers:` and/or V1 type names."""
    out = {}
    for k, v in data.items():
        if k == "layer" and isinstance(v, list):
            v = [dict(item, type=V1_NAMES.get(item.get("type"), item.get("type")))
                 if names and isinstance(item, dict) and isinstance(item.get("type"), str) else item for item in v]
        out["layers" if key and k == "layer" else k] = v
    return out


@dataclass(frozen=True)
class Seed:
    text: str
    data: bytes  # the parsed spec, pickled: a fresh copy per example costs far less than parsing the YAML

    def fresh(self) -> Any:
        return pickle.loads(self.data)


def _seeds() -> list[Seed]:
    files = sorted((ROOT / "tests" / "fixtures" / "check").glob("*.yaml"))
    files += [ROOT / "specs" / f"{name}.yaml" for name in ZOO_SEEDS if (ROOT / "specs" / f"{name}.yaml").exists()]
    texts = [p.read_text(encoding="utf-8") for p in files]
    texts += [_dump(_to_v1(yaml.load((ROOT / "specs" / f"{name}.yaml").read_text(encoding="utf-8"), Loader=_LOADER)))
              for name in V1_SEEDS]
    return [Seed(text, pickle.dumps(yaml.load(text, Loader=_LOADER))) for text in texts]


SEEDS = _seeds()

ODD_NUMBERS = [0, -1, 1, 2, 3, 7, -3, 2**31, -(2**31), 2**63 - 1, 2**63, 10**30, 10**12, 0.5, -0.0, 1e400,
               float("nan"), float("inf"), 1e-300]
FIELD_WORDS = ["num_output", "kernel_size", "stride", "pad", "bottom", "top", "name", "type", "include",
               "exclude", "phase", "axis", "group", "dim", "shape", "param", "lr_mult", "pool", "operation",
               "global_pooling", "bias_term", "convolution_param", "pooling_param", "input_param", "use",
               "blocks", "with", "repeat", "layer", "layers", "input_dim", "slice_point", "coeff", "top_k", "if"]
TYPE_WORDS = ["Convolution", "Pooling", "InnerProduct", "ReLU", "Concat", "Eltwise", "Input", "Data",
              "BatchNorm", "Scale", "Softmax", "SoftmaxWithLoss", "Accuracy", "Deconvolution", "Slice",
              "Reshape", "Flatten", "Split", "LRN", "Dropout", "DummyData", "Convolutoin", "relu", "",
              "CONVOLUTION", "RELU", "INNER_PRODUCT", "SOFTMAX_LOSS", "CONVOLUTON", "NONE", "DATA"]

values = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(FIELD_WORDS + TYPE_WORDS + ["MAX", "AVE", "TRAIN", "TEST", "SUM", "x" * 300]),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-3, max_value=70), max_size=5),
    st.dictionaries(st.sampled_from(FIELD_WORDS), st.integers(min_value=-2, max_value=9), max_size=3),
)


def _nodes(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value below the root."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append(path + (k,))
            out += _nodes(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.append(path + (i,))
            out += _nodes(v, path + (i,))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


def _typo(word: str, draw: Any) -> str:
    if not word:
        return "x"
    i = draw(st.integers(0, len(word) - 1))
    op = draw(st.sampled_from(["drop", "double", "swap", "change"]))
    if op == "drop":
        return word[:i] + word[i + 1:]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    if op == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + draw(st.sampled_from("aeiou_1X")) + word[i + 1:]


def _mutate_data(data: Any, draw: Any) -> Any:
    paths = _nodes(data)
    if not paths:
        return draw(values)
    path = draw(st.sampled_from(paths))
    parent, key = _get(data, path[:-1]), path[-1]
    op = draw(st.sampled_from(["drop", "retype", "rename", "duplicate", "swap", "number", "layer", "bomb",
                               "recursion", "v1"]))
    if op == "drop":
        del parent[key]
    elif op == "retype":
        parent[key] = draw(values)
    elif op == "rename" and isinstance(parent, dict):
        new = _typo(str(key), draw) if draw(st.booleans()) else draw(st.sampled_from(FIELD_WORDS))
        parent[new] = parent.pop(key)
    elif op == "duplicate":
        if isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), parent[key])
        else:
            parent[draw(st.sampled_from(FIELD_WORDS))] = parent[key]
    elif op == "swap":
        other = draw(st.sampled_from(paths))
        try:
            a, b = _get(data, path), _get(data, other)
            _get(data, other[:-1])[other[-1]] = a
            parent[key] = b
        except (KeyError, IndexError, TypeError):
            pass
    elif op == "number":
        parent[key] = draw(st.sampled_from(ODD_NUMBERS))
    elif op == "bomb":
        data = _bomb(data, draw)
    elif op == "recursion":
        data = _recursion(data, draw)
    elif op == "v1" and isinstance(data, dict):
        kind = draw(st.sampled_from(["key", "names", "both"]))  # V1 names under `layer:` are an error
        data = _to_v1(data, key=kind != "names", names=kind != "key")
    elif op == "layer":
        layers = _layer_list(data)
        if layers:
            i = draw(st.integers(0, len(layers) - 1))
            j = draw(st.integers(0, len(layers) - 1))
            kind = draw(st.sampled_from(["dup", "drop", "move"]))
            item = layers[i]
            if kind == "dup":
                layers.insert(j, item)
            elif kind == "drop":
                del layers[i]
            else:
                layers.insert(j, layers.pop(i))
    return data


def _layer_list(data: Any) -> list[Any] | None:
    if isinstance(data, dict):
        for key in ("layer", "layers"):
            if isinstance(data.get(key), list):
                return data[key]  # type: ignore[no-any-return]
    return None


# (inner, outer) repeat counts: nested past the layer limit, each past it alone, small, errors, and
# templates known only when expanded. Pairs that make a large but legal net (thousands of layers) are
# left out: such a net is checked in full, which is slow and not hostile.
BOMB_COUNTS: list[tuple[Any, Any]] = [
    (9000, 9000), (150, 150), (MAX_LAYERS, 2), (2, MAX_LAYERS), (MAX_LAYERS + 1, 1), (2**62, 2), (0, 10**9),
    (7, 7), (0, 0), ("${10 ** 4}", 3), (3, "${10 ** 4}"), ("${150}", 150), ("$n", 2), (-1, 3), ("x", 1), (1, 2.5)]


def _blocks_of(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data.get("blocks"), dict):
        data["blocks"] = {}
    return data["blocks"]  # type: ignore[no-any-return]


def _bomb(data: Any, draw: Any) -> Any:
    """Ask block expansion for far too much: nested repeats, copies whose layer `if:` drops or keeps, a
    repeat count passed as an argument, or a big repeat on a use the spec already has."""
    if not isinstance(data, dict):
        data = {"layer": [data]}
    layers = _layer_list(data)
    if layers is None:
        layers = data["layer"] = []
    kind = draw(st.sampled_from(["nested", "nested", "if", "argument", "existing"]))
    inner, outer = draw(st.sampled_from(BOMB_COUNTS))
    uses = [item for item in layers if isinstance(item, dict) and "use" in item]
    blocks = _blocks_of(data)
    for body in blocks.values():
        if isinstance(body, dict) and isinstance(body.get("layer"), list):
            uses += [item for item in body["layer"] if isinstance(item, dict) and "use" in item]
    if kind == "existing" and uses:
        draw(st.sampled_from(uses))["repeat"] = outer
        return data
    one: dict[str, Any] = {"name": "fz${p}", "type": "ReLU"}
    if kind == "if":  # copies whose layer is dropped, or kept by a condition known only when expanded
        one["if"] = draw(st.sampled_from([False, True, "${p >= 0}"]))
    blocks["fz_one"] = {"args": ["p"], "layer": [one]}
    copies: dict[str, Any] = {"use": "fz_one", "repeat": inner, "with": {"p": "${p * 100000 + i}"}}
    entry: dict[str, Any] = {"use": "fz_many", "repeat": outer, "with": {"p": "$i"}}
    if kind == "argument":
        copies["repeat"], entry["with"]["n"] = "$n", inner
    blocks["fz_many"] = {"args": ["p", "n"] if kind == "argument" else ["p"], "layer": [copies]}
    layers.insert(draw(st.integers(0, len(layers))), entry)
    return data


def _recursion(data: Any, draw: Any) -> Any:
    """Make a block use itself: directly, through another block, or through a template name."""
    if not isinstance(data, dict):
        data = {"layer": [data]}
    blocks = _blocks_of(data)
    names = [name for name, body in blocks.items() if isinstance(body, dict) and isinstance(body.get("layer"), list)]
    if not names or draw(st.booleans()):
        blocks["fz_r"] = {"args": ["k"], "layer": [{"name": "fz_r$k", "type": "ReLU"}]}
        blocks["fz_s"] = {"args": ["k"], "layer": [{"use": "fz_r", "with": {"k": "${k + 1}"}}]}
        names += ["fz_r", "fz_s"]
        layers = _layer_list(data)
        if layers is None:
            layers = data["layer"] = []
        layers.insert(draw(st.integers(0, len(layers))), {"use": "fz_s", "with": {"k": 0}})
    user, used = draw(st.sampled_from(names)), draw(st.sampled_from(names))
    entry: dict[str, Any] = {"use": draw(st.sampled_from([used, "${'" + used + "'}"]))}
    if "fz_" in used:
        entry["with"] = {"k": "${k + 1}"}
    # Without a cycle (a block given a use of another), MAX_LAYERS copies are a bomb of their own.
    entry.update(draw(st.sampled_from([{}, {"repeat": MAX_LAYERS}, {"repeat": 2}, {"if": "${k < 3}"}])))
    blocks[user]["layer"].append(entry)
    return data


def _mutate_bytes(raw: bytes, draw: Any) -> bytes:
    op = draw(st.sampled_from(["garbage", "truncate", "delete_line", "duplicate_line", "char"]))
    pos = draw(st.integers(0, max(0, len(raw) - 1)))
    if op == "garbage":
        return raw[:pos] + draw(st.binary(min_size=1, max_size=8)) + raw[pos:]
    if op == "truncate":
        return raw[:pos]
    lines = raw.split(b"\n")
    n = draw(st.integers(0, max(0, len(lines) - 1)))
    if op == "delete_line":
        return b"\n".join(lines[:n] + lines[n + 1:])
    if op == "duplicate_line":
        return b"\n".join(lines[:n + 1] + lines[n:])
    return raw[:pos] + draw(st.sampled_from([b"\t", b":", b"[", b"{", b"}", b"&a", b"*a", b"!!", b"\xff",
                                             b"-", b"'", b'"', b"#", b"<<: "])) + raw[pos + 1:]


@st.composite
def mutated_specs(draw: Any) -> bytes:
    seed = SEEDS[draw(st.integers(0, len(SEEDS) - 1))]
    text: str | None = seed.text  # the spec as text, or None while `data` holds it
    data: Any = None
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            if text is None:
                text = _dump(data)
            text_bytes = _mutate_bytes(text.encode("utf-8", "surrogatepass"), draw)
            text = text_bytes.decode("utf-8", "surrogateescape")
            continue
        if text == seed.text:
            data = seed.fresh()
        elif text is not None:
            try:
                data = yaml.load(text, Loader=_LOADER)
            except (yaml.YAMLError, ValueError):
                continue
        data, text = _mutate_data(data, draw), None
    return (_dump(data) if text is None else text).encode("utf-8", "surrogateescape")


DIAGNOSTIC = r"(?:{file}:\d+:\d+: )(?:error|warning|note): \S"
SUMMARY = re.compile(r"\d+ errors?(, \d+ warnings?)?")


def _check_output(file: str, rc: int, out: str, err: str, as_json: bool) -> None:
    diagnostic = re.compile(DIAGNOSTIC.format(file=re.escape(file)))
    assert rc in (0, 1), err
    lines = err.splitlines()
    for line in lines:
        assert diagnostic.match(line) or line.startswith("  hint: ") or SUMMARY.fullmatch(line), line
    if as_json:
        doc = json.loads(out)
        assert doc["ok"] is (rc == 0)
        assert rc == 1 or len(doc["layers"]) <= MAX_LAYERS
    elif rc == 0:
        assert " — " + file + " — " in out.splitlines()[0]
    if rc == 1:
        assert lines and SUMMARY.fullmatch(lines[-1]), err


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file, rewritten by every example (a directory per example costs more than many checks)."""
    return tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"


@pytest.mark.timeout(900)  # a hang guard, not a speed test (speed: tools/bench_check.py)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(raw=mutated_specs(), as_json=st.booleans(), phase=st.sampled_from(["TEST", "TRAIN"]))
def test_check_never_crashes(spec_file: Path, raw: bytes, as_json: bool, phase: str) -> None:
    spec_file.write_bytes(raw)
    args = ["check", str(spec_file), "--phase", phase] + (["--json"] if as_json else [])
    r = run_cli(args)
    _check_output(str(spec_file), r.rc, r.out, r.err, as_json)


def test_seeds_are_valid_specs(tmp_path: Path) -> None:
    """The fuzzer starts from specs that check cleanly, so mutations probe real structure."""
    assert sum("layers:" in seed.text and "CONVOLUTION" in seed.text for seed in SEEDS) == len(V1_SEEDS)
    for i, seed in enumerate(SEEDS):
        path = tmp_path / f"seed{i}.yaml"
        path.write_text(seed.text, encoding="utf-8")
        r = run_cli(["check", str(path)])
        assert r.rc == 0, seed.text[:200] + r.err
