"""Fuzzing `netspec check` with mutated real specs: it must never crash, whatever the input.

Each example takes a real spec (the check fixtures and the small zoo specs), applies one to three
mutations, at the data level (drop, duplicate, rename or retype keys, swap values, odd numbers,
duplicate/drop/move layers) or at the byte level (garbage bytes, truncation, line edits), and runs
`netspec check` in-process. Properties: no exception escapes, the exit status is 0 or 1, every
line on stderr is a located diagnostic (`FILE:LINE:COL: error|warning|note: ...`), a hint, or the
error count, never an internal error. (Speed is tools/bench_check.py's business, not a test's.)

NETSPEC_FUZZ_EXAMPLES overrides the number of examples (default 1500, about 30 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "1500"))
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# Zoo specs that check in ~10-40 ms (the big ones would make each example slow); blocks included.
ZOO_SEEDS = ("alexnet", "cifar10_quick", "lenet", "alphago_policy", "resnet18", "vgg16")


def _seeds() -> list[str]:
    files = sorted((ROOT / "tests" / "fixtures" / "check").glob("*.yaml"))
    files += [ROOT / "specs" / f"{name}.yaml" for name in ZOO_SEEDS if (ROOT / "specs" / f"{name}.yaml").exists()]
    return [p.read_text(encoding="utf-8") for p in files]


SEEDS = _seeds()

ODD_NUMBERS = [0, -1, 1, 2, 3, 7, -3, 2**31, -(2**31), 2**63 - 1, 2**63, 10**30, 10**12, 0.5, -0.0, 1e400,
               float("nan"), float("inf"), 1e-300]
FIELD_WORDS = ["num_output", "kernel_size", "stride", "pad", "bottom", "top", "name", "type", "include",
               "exclude", "phase", "axis", "group", "dim", "shape", "param", "lr_mult", "pool", "operation",
               "global_pooling", "bias_term", "convolution_param", "pooling_param", "input_param", "use",
               "blocks", "with", "repeat", "layer", "input_dim", "slice_point", "coeff", "top_k"]
TYPE_WORDS = ["Convolution", "Pooling", "InnerProduct", "ReLU", "Concat", "Eltwise", "Input", "Data",
              "BatchNorm", "Scale", "Softmax", "SoftmaxWithLoss", "Accuracy", "Deconvolution", "Slice",
              "Reshape", "Flatten", "Split", "LRN", "Dropout", "DummyData", "Convolutoin", "relu", ""]

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
    op = draw(st.sampled_from(["drop", "retype", "rename", "duplicate", "swap", "number", "layer"]))
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
    elif op == "layer":
        layers = data.get("layer") if isinstance(data, dict) else None
        if isinstance(layers, list) and layers:
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
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            text_bytes = _mutate_bytes(text.encode("utf-8", "surrogatepass"), draw)
            text = text_bytes.decode("utf-8", "surrogateescape")
            continue
        try:
            data = yaml.load(text, Loader=_LOADER)
        except (yaml.YAMLError, ValueError):
            continue
        data = _mutate_data(data, draw)
        text = yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=2**20)
    return text.encode("utf-8", "surrogateescape")


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
    elif rc == 0:
        assert " — " + file + " — " in out.splitlines()[0]
    if rc == 1:
        assert lines and SUMMARY.fullmatch(lines[-1]), err


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(raw=mutated_specs(), as_json=st.booleans(), phase=st.sampled_from(["TEST", "TRAIN"]))
def test_check_never_crashes(raw: bytes, as_json: bool, phase: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes(raw)
        args = ["check", str(path), "--phase", phase] + (["--json"] if as_json else [])
        r = run_cli(args)
    _check_output(str(path), r.rc, r.out, r.err, as_json)


def test_seeds_are_valid_specs(tmp_path: Path) -> None:
    """The fuzzer starts from specs that check cleanly, so mutations probe real structure."""
    for i, text in enumerate(SEEDS):
        path = tmp_path / f"seed{i}.yaml"
        path.write_text(text, encoding="utf-8")
        assert run_cli(["check", str(path)]).rc == 0, text[:200]
