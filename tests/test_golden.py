"""Golden output of `netspec check` for every spec in the zoo and the check fixtures.

tests/golden/<spec>.check.txt holds exactly what `netspec check specs/<spec>.yaml` prints (stdout,
then stderr), run from the repository root. `pytest tests/test_golden.py --update-golden` rewrites
them; review the diff. Invariant tests parse the same output: the per-layer params and MACs sum to
the printed totals, and the JSON form carries the documented keys with consistent totals.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"

# (golden name, arguments after `netspec check`)
CASES: list[tuple[str, tuple[str, ...]]] = [
    (p.stem, (f"specs/{p.name}",)) for p in sorted((ROOT / "specs").glob("*.yaml"))
] + [
    (f"fixture_{p.stem}", (f"tests/fixtures/check/{p.name}",))
    for p in sorted((ROOT / "tests" / "fixtures" / "check").glob("*.yaml"))
] + [
    ("fixture_lenet_train_test.train", ("tests/fixtures/check/lenet_train_test.yaml", "--phase", "TRAIN")),
    ("fixture_resnet152", ("tests/fixtures/resnet152.yaml",)),
]
IDS = [c[0] for c in CASES]


def _output(args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(ROOT)
    r = run_cli(["check", *args])
    return r.rc, r.out + r.err


@pytest.mark.parametrize("name,args", CASES, ids=IDS)
def test_golden(name: str, args: tuple[str, ...], update_golden: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, text = _output(args, monkeypatch)
    path = GOLDEN / f"{name}.check.txt"
    if update_golden:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert rc == 0, text
    assert path.exists(), f"no golden file {path.name}; run pytest --update-golden and review it"
    assert text == path.read_text(encoding="utf-8")


def test_no_stale_golden_files() -> None:
    stale = sorted({p.name for p in GOLDEN.glob("*.check.txt")} - {f"{n}.check.txt" for n in IDS})
    assert not stale, f"golden files without a spec (delete them): {stale}"


def _table_sums(text: str) -> tuple[int, int]:
    """Sum of the params and MACs columns of a printed table."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    params = macs = 0
    for line in lines[rules[0] + 1: rules[1]]:
        if line.startswith(" "):
            continue  # an extra top of the row above
        cells = line.split()
        params += 0 if cells[-4] == "-" else int(cells[-4].replace(",", ""))
        macs += 0 if cells[-3] == "-" else int(cells[-3].replace(",", ""))
    return params, macs


def _printed_total(text: str, label: str) -> int:
    match = re.search(rf"^{label}\s+([\d,]+)", text, re.MULTILINE)
    assert match, label
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize("name,args", CASES, ids=IDS)
def test_rows_sum_to_the_printed_totals(name: str, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    rc, text = _output(args, monkeypatch)
    assert rc == 0
    params, macs = _table_sums(text)
    assert params == _printed_total(text, "learnable parameters")
    assert macs == _printed_total(text, "multiply-adds")


LAYER_KEYS = {"name", "type", "tops", "params", "state", "macs", "activation_bytes", "blobs", "receptive_field"}
TOTAL_KEYS = {"layers", "learnable_params", "state", "macs", "flops", "activation_bytes", "param_bytes"}


@pytest.mark.parametrize("name,args", CASES, ids=IDS)
def test_json_has_the_documented_keys(name: str, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    r = run_cli(["check", "--json", *args])
    assert r.rc == 0
    doc = json.loads(r.out)
    assert set(doc) == {"format", "ok", "name", "file", "phase", "batch", "layers", "outputs", "totals",
                        "diagnostics"}
    assert (doc["format"], doc["ok"], doc["file"]) == ("netspec-check/1", True, args[0])
    layers, totals = doc["layers"], doc["totals"]
    assert all(set(layer) == LAYER_KEYS for layer in layers)
    assert all(set(top) == {"name", "shape", "in_place"} for layer in layers for top in layer["tops"])
    for layer in layers:
        rf = layer["receptive_field"]
        assert rf is None or (set(rf) == {"size", "jump"} and len(rf["size"]) == len(rf["jump"]))
    assert set(totals) == TOTAL_KEYS
    assert totals["layers"] == len(layers)
    assert totals["learnable_params"] == sum(layer["params"] for layer in layers)
    assert totals["state"] == sum(layer["state"] for layer in layers)
    assert totals["macs"] == sum(layer["macs"] for layer in layers)
    assert totals["flops"] == 2 * totals["macs"]
    assert totals["activation_bytes"] == sum(layer["activation_bytes"] for layer in layers)
    assert totals["param_bytes"] == 4 * (totals["learnable_params"] + totals["state"])
    assert doc["outputs"], "a net has outputs"
    assert all(set(d) == {"severity", "message", "file", "line", "col", "layer", "hint", "code"}
               for d in doc["diagnostics"])
