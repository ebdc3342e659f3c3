"""`netspec check` and `netspec schema` as commands: exit codes, options, the internal-error
catch-all, and what checking imports (never JAX)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "tests" / "fixtures" / "check" / "lenet_train_test.yaml"
RESNET152 = ROOT / "specs" / "resnet152.yaml" if (ROOT / "specs" / "resnet152.yaml").exists() else \
    ROOT / "tests" / "fixtures" / "resnet152.yaml"

SMALL = "name: t\nlayer:\n  - {name: data, type: Input, input_param: {shape: {dim: [8, 1, 28, 28]}}}\n" \
        "  - {name: ip, type: InnerProduct, inner_product_param: {num_output: 10}}\n"


def test_ok_prints_the_table(check_text) -> None:
    r = check_text(SMALL)
    assert (r.rc, r.err) == (0, "")
    assert r.out.splitlines()[0] == "t — net.yaml — TEST net, batch 8"


def test_batch_and_input_shape_options(check_text) -> None:
    r = check_text(SMALL, "--batch", "2")
    assert "ip     InnerProduct  ip    2×10" in r.out and "batch 2" in r.out.splitlines()[0]
    r = check_text(SMALL, "--input-shape", "data=4,1,14,14")
    assert r.rc == 0 and "4×1×14×14" in r.out


@pytest.mark.parametrize("args,message", [
    (["--input-shape", "data=4,y"], "argument --input-shape: expected NAME=N,C,H,W (e.g. data=64,1,28,28), got 'data=4,y'"),
    (["--input-shape", "4,1,28,28"], "argument --input-shape: expected NAME=N,C,H,W (e.g. data=64,1,28,28), got '4,1,28,28'"),
    (["--batch", "0"], "argument --batch: expected a positive integer, got '0'"),
    (["--phase", "DEPLOY"], "argument --phase: invalid choice: 'DEPLOY' (choose from 'TRAIN', 'TEST')"),
])
def test_usage_errors_exit_2(check_text, args: list[str], message: str) -> None:
    r = check_text(SMALL, *args)
    assert (r.rc, r.out) == (2, "")
    assert r.err.startswith("usage: netspec check [-h]") and r.err.endswith(f"error: {message}\n")


def test_input_shape_must_name_an_input(check_text) -> None:
    r = check_text(SMALL, "--input-shape", "dta=1,1,28,28")
    assert (r.rc, r.out) == (1, "")
    assert r.err == ("net.yaml:1:1: error: --input-shape gives 'dta', but the TEST net has no input blob of that "
                     "name; did you mean 'data'?\n1 error\n")


def test_summary_counts_errors_and_warnings(check_text) -> None:
    text = SMALL + "  - {name: drop, type: Dropout, phase: TRAIN}\n  - {name: bad, type: ReLU, bottom: nope}\n"
    r = check_text(text)
    assert r.rc == 1 and r.err.splitlines()[-1] == "1 error, 1 warning"
    # a problem reported twice is printed once (print_diagnostics) and counted once
    from netspec.cli import summary
    from netspec.errors import Diagnostic

    same = Diagnostic("error", "data: x.npz: no such file")
    assert summary([same, same, Diagnostic("warning", "w")]) == "1 error, 1 warning"


def test_unreadable_file_is_a_located_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = run_cli(["check", "missing.yaml"])
    assert (r.rc, r.out) == (1, "")
    assert r.err == "missing.yaml:1:1: error: cannot read spec: No such file or directory\n1 error\n"


CAFFE_NET = 'name: "t"\nlayer {\n  name: "data"\n  type: "Input"\n  top: "data"\n' \
            '  input_param { shape { dim: 8 dim: 1 dim: 28 dim: 28 } }\n}\n'
CAFFE_SOLVER = 'net: "t.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: "inv"\nmax_iter: 10000\n'


@pytest.mark.parametrize("name,text,message,hint", [
    ("t.prototxt", CAFFE_NET, "this is a Caffe net prototxt, not a netspec YAML spec",
     "convert it: netspec import-caffe t.prototxt -o t.yaml (with --weights X.caffemodel for trained "
     "weights)"),
    ("net.txt", CAFFE_NET, "this is a Caffe net prototxt, not a netspec YAML spec",  # told by its blocks
     "convert it: netspec import-caffe net.txt -o net.yaml (with --weights X.caffemodel for trained "
     "weights)"),
    ("t_solver.prototxt", CAFFE_SOLVER, "this is a Caffe solver prototxt, not a netspec YAML spec",
     "convert it with its net: netspec import-caffe NET.prototxt --solver t_solver.prototxt -o net.yaml (the "
     "solver becomes the spec's `solver:` section)"),
])
@pytest.mark.parametrize("command", ["check", "train"])
def test_a_caffe_prototxt_is_one_error_that_says_how_to_convert_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, name: str, text: str, message: str,
        hint: str) -> None:
    """Not a YAML syntax error at line 3, or a dozen unknown solver fields: what a Caffe user first types."""
    monkeypatch.chdir(tmp_path)
    Path(name).write_text(text)
    r = run_cli([command, name])
    assert (r.rc, r.out) == (1, "")
    assert r.err.splitlines()[:2] == [f"{name}:1:1: error: {message}", f"  hint: {hint}"]
    assert r.err.splitlines()[2:] == (["1 error"] if command == "check" else [])


def test_json_success(check_text) -> None:
    r = check_text(SMALL, "--json")
    doc = json.loads(r.out)
    assert (r.rc, doc["ok"], doc["batch"], doc["totals"]["learnable_params"]) == (0, True, 8, 7850)


def test_unexpected_exception_is_a_one_line_internal_error(check_text, monkeypatch: pytest.MonkeyPatch) -> None:
    check_module = sys.modules["netspec.check"]  # `netspec.check` is the re-exported function

    def boom(*args: object, **kw: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(check_module, "check", boom)
    r = check_text(SMALL)
    assert (r.rc, r.out) == (1, "")
    assert re.fullmatch(r"netspec: internal error: RuntimeError: boom second line \(at cli\.py:\d+ in cmd_check\); "
                        r"please report it\n", r.err), r.err
    monkeypatch.setenv("NETSPEC_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        check_text(SMALL)


def test_help_lists_the_commands() -> None:
    r = run_cli(["--help"])
    assert r.rc == 0
    assert re.search(r"check\s+validate a spec", r.out) and re.search(r"schema\s+print the JSON Schema", r.out)


_PROBE = """
import sys
from netspec import cli
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    rc = cli.main(["check", sys.argv[1]])
# NumPy too: the spec's solver: and data: sections are validated without it (it costs ~70 ms to import).
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "orbax", "torch",
                                                              "numpy")
               or m.startswith("netspec.commands.") or m.startswith("netspec.lowering"))
print(rc, heavy)
"""


@pytest.mark.parametrize("spec", [LENET, RESNET152], ids=["lenet", "resnet152"])
def test_check_never_imports_jax(spec: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(spec)], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert done.stdout.strip() == "0 []", done.stderr


@pytest.mark.parametrize("spec", [LENET, RESNET152], ids=["lenet", "resnet152"])
def test_check_of_a_valid_spec_never_imports_pydantic(spec: Path) -> None:
    # pydantic is for the error path (and the solver:/data: sections these specs do not have):
    # importing it would be about half of a fresh `netspec check`
    probe = _PROBE.replace('m.split(".")[0] in (', 'm.split(".")[0] in ("pydantic", "pydantic_core", ')
    done = subprocess.run([sys.executable, "-c", probe, str(spec)], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert done.stdout.strip() == "0 []", done.stderr


def test_an_ascii_terminal_gets_escapes_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "net.yaml").write_text(SMALL, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "netspec.cli", "check", "net.yaml"], capture_output=True,
                          cwd=tmp_path, check=False, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert b"t \\u2014 net.yaml \\u2014 TEST net, batch 8" in done.stdout


def test_schema_takes_v1_type_names_under_layers_only() -> None:
    from netspec.caffe.upgrade import V1_LAYER_TYPES
    from netspec.layers import REGISTRY

    r = run_cli(["schema"])
    schema = json.loads(r.out)
    props, defs = schema["properties"], schema["$defs"]
    assert props["layer"] == {"$ref": "#/$defs/LayerList"}
    assert props["layers"]["$ref"] == "#/$defs/V1LayerList"
    assert "V1Layer" not in json.dumps(defs["LayerList"])
    accepted = {k for k, v in V1_LAYER_TYPES.items() if v in REGISTRY}
    assert set(defs["V1Layer"]["properties"]["type"]["enum"]) == accepted
    assert {"CONVOLUTION", "RELU", "POOLING", "INNER_PRODUCT", "SOFTMAX_LOSS"} <= accepted
