"""`netspec export-caffe`: the project's own prototxt writer. Round trips on the zoo and the repo's
specs (blocks included), explicit wiring, phase-ambiguous chaining, extensions, solver export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_import_caffe import NET_FILES, ZOO, _rel, graph_signature, needs_zoo, zoo_input_shapes

from netspec.caffe import parse
from netspec.caffe.exporter import export_net, export_solver
from netspec.caffe.importer import import_net, render
from netspec.check import check
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.spec import load_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _reimport_text(spec: Any, shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """Export, write, import the prototxt again: the re-imported YAML."""
    Path("out.prototxt").write_text(export_net(spec).text)
    net = import_net("out.prototxt", input_shapes=shapes)
    return render(net, command="c", output="again.yaml")


def _reimport(spec: Any, shapes: dict[str, tuple[int, ...]] | None = None) -> Any:
    return load_spec("again.yaml", text=_reimport_text(spec, shapes))


def _body(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


@needs_zoo
@pytest.mark.parametrize("path", NET_FILES, ids=_rel)
def test_zoo_round_trip_imports_to_the_same_graph(path: Path) -> None:
    shapes = zoo_input_shapes(path)
    flat = render(import_net(path, input_shapes=shapes), command="c", output="n.yaml")
    for compact in (False, True):
        text = render(import_net(path, input_shapes=shapes), command="c", output="n.yaml", compact=compact)
        first = load_spec("n.yaml", text=text)
        again_text = _reimport_text(first, shapes)
        again = load_spec("again.yaml", text=again_text)
        for phase in ("TRAIN", "TEST"):
            assert graph_signature(again, phase) == graph_signature(first, phase), (phase, compact)
        # Stronger: the re-import is the same YAML, field order and number spelling included.
        assert _body(again_text) == _body(flat), compact


@pytest.mark.parametrize("name", ["alexnet.yaml", "resnet50.yaml"])
def test_repo_specs_round_trip(name: str) -> None:
    if not (SPECS / name).is_file():
        pytest.skip(f"specs/{name} is not in this checkout")
    spec = load_spec(SPECS / name)
    again = _reimport(spec)
    for phase in ("TRAIN", "TEST"):
        assert graph_signature(again, phase) == graph_signature(spec, phase)
    assert check(again).learnable_params == check(spec).learnable_params


SPEC = """name: small
blocks:
  conv_relu:
    args: [name, n]
    layer:
      - {name: $name, type: Convolution, convolution_param: {num_output: $n, kernel_size: 3, pad: 1}}
      - {name: "relu_$name", type: ReLU, bottom: $name, top: $name}
layer:
  - {name: data, type: Input, input_param: {shape: {dim: [1, 3, 8, 8]}}}
  - {use: conv_relu, with: [{name: c1, n: 4}, {name: c2, n: 8}]}
  - {name: pool, type: Pooling, pooling_param: {pool: AVE, kernel_size: 2, stride: 2}}
  - {name: drop, type: Dropout, bottom: pool, top: pool, dropout_param: {dropout_ratio: 0.25}}
  - name: fc
    type: InnerProduct
    param: [{lr_mult: 1, decay_mult: 1}, {lr_mult: 2, decay_mult: 0}]
    inner_product_param: {num_output: 10, weight_filler: {type: gaussian, std: 0.01}}
  - {name: prob, type: Softmax}
solver: {base_lr: 0.01, lr_policy: step, stepsize: 100, gamma: 0.1, max_iter: 300, momentum: 0.9}
"""


def test_blocks_expanded_and_chaining_made_explicit(capsys: pytest.CaptureFixture[str]) -> None:
    Path("small.yaml").write_text(SPEC)
    assert main(["export-caffe", "small.yaml", "-o", "small.prototxt"]) == 0
    text = Path("small.prototxt").read_text()
    assert text.startswith("# Exported from small.yaml by netspec export-caffe.\n"
                           "# The spec's `solver:` section(s) are not part of a Caffe net.\n")
    layers = parse(text).data["layer"]
    assert [(x["name"], x["type"], x.get("bottom", []), x["top"]) for x in layers] == [
        ("data", "Input", [], ["data"]),
        ("c1", "Convolution", ["data"], ["c1"]),
        ("relu_c1", "ReLU", ["c1"], ["c1"]),
        ("c2", "Convolution", ["c1"], ["c2"]),
        ("relu_c2", "ReLU", ["c2"], ["c2"]),
        ("pool", "Pooling", ["c2"], ["pool"]),
        ("drop", "Dropout", ["pool"], ["pool"]),
        ("fc", "InnerProduct", ["pool"], ["fc"]),
        ("prob", "Softmax", ["fc"], ["prob"]),
    ]
    # Only what the spec sets, with Caffe's spelling: enums bare, strings quoted, integral floats as ints.
    assert """  param {
    lr_mult: 1
    decay_mult: 1
  }""" in text
    assert "    pool: AVE\n" in text and '      type: "gaussian"\n' in text
    assert "solver" not in text.split("\n", 2)[2]
    assert layers[3]["convolution_param"] == {"num_output": 8, "kernel_size": [3], "pad": [1]}


def test_solver_out_names_the_net(capsys: pytest.CaptureFixture[str]) -> None:
    Path("small.yaml").write_text(SPEC)
    assert main(["export-caffe", "small.yaml", "-o", "net.prototxt", "--solver-out", "solver.prototxt"]) == 0
    solver = parse(Path("solver.prototxt").read_text())
    assert solver.message == "SolverParameter"
    assert solver.data == {"net": "net.prototxt", "base_lr": 0.01, "lr_policy": "step", "stepsize": 100,
                           "gamma": 0.1, "max_iter": 300, "momentum": 0.9}
    # ... and import-caffe reads both back to the same spec.
    assert main(["import-caffe", "net.prototxt", "--solver", "solver.prototxt", "-o", "again.yaml"]) == 0
    first, again = load_spec("small.yaml"), load_spec("again.yaml")
    assert graph_signature(again, "TEST") == graph_signature(first, "TEST")
    assert again.solver == first.solver
    # Every file written whole (a temporary beside it, renamed): none is left behind.
    assert sorted(p.name for p in Path(".").iterdir()) == [
        "again.yaml", "net.prototxt", "small.yaml", "solver.prototxt"]


def test_an_unexportable_solver_writes_neither_file(capsys: pytest.CaptureFixture[str]) -> None:
    Path("s.yaml").write_text(SPEC.replace("lr_policy: step, stepsize: 100, gamma: 0.1",
                                           "lr_policy: cosine, warmup_iter: 10"))
    assert main(["export-caffe", "s.yaml", "-o", "net.prototxt", "--solver-out", "solver.prototxt"]) == 1
    assert sorted(p.name for p in Path(".").iterdir()) == ["s.yaml"]


def test_an_output_path_in_the_way_writes_neither_file(capsys: pytest.CaptureFixture[str]) -> None:
    Path("s.yaml").write_text(SPEC)
    Path("folder").mkdir()
    Path("afile").write_text("")
    assert main(["export-caffe", "s.yaml", "-o", "net.prototxt", "--solver-out", "folder"]) == 1
    assert "error: --solver-out folder: it is a folder" in capsys.readouterr().err
    assert main(["export-caffe", "s.yaml", "-o", "afile/net.prototxt", "--solver-out", "solver.prototxt"]) \
        == 1
    assert "error: -o afile/net.prototxt: afile is a file, not a folder" in capsys.readouterr().err
    assert main(["export-caffe", "s.yaml", "-o", "n" * 300 + ".prototxt"]) == 1
    err = capsys.readouterr().err
    assert f"error: -o {'n' * 300}.prototxt: File name too long" in err and "internal error" not in err
    assert sorted(p.name for p in Path(".").iterdir()) == ["afile", "folder", "s.yaml"]


def test_solver_extensions_have_no_caffe_form() -> None:
    Path("s.yaml").write_text(SPEC.replace("lr_policy: step, stepsize: 100, gamma: 0.1",
                                           "lr_policy: cosine, warmup_iter: 10"))
    with pytest.raises(NetspecError) as e:
        export_solver(load_spec("s.yaml"), net_path="n.prototxt")
    assert sorted(d.message for d in e.value.errors) == [
        "solver: 'warmup_iter' is a netspec extension with no Caffe form",
        "solver: lr_policy 'cosine' is a netspec extension; Caffe has no such value"]


def test_phase_dependent_implicit_bottom_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    Path("p.yaml").write_text("""layer:
  - {name: data, type: Input, input_param: {shape: {dim: [1, 4]}}}
  - {name: a, type: InnerProduct, bottom: data, include: {phase: TRAIN}, inner_product_param: {num_output: 4}}
  - {name: b, type: InnerProduct, bottom: data, include: {phase: TEST}, inner_product_param: {num_output: 4}}
  - {name: c, type: InnerProduct, inner_product_param: {num_output: 2}}
""")
    assert main(["export-caffe", "p.yaml", "-o", "p.prototxt"]) == 1
    err = capsys.readouterr().err
    assert ("p.yaml:5:5: error: c: its implicit bottom is 'a' in TRAIN but 'b' in TEST; one Caffe layer "
            "cannot say both\n  hint: write its `bottom:`") in err
    assert not Path("p.prototxt").exists()


def test_netspec_extension_fields_are_reported() -> None:
    Path("x.yaml").write_text("""layer:
  - {name: data, type: Input, input_param: {shape: {dim: [1, 4]}}}
  - {name: drop, type: Dropout, dropout_param: {dropout_ratio: 0.3, scale_train: false}}
""")
    out = export_net(load_spec("x.yaml"))
    assert [d.format() for d in out.diagnostics] == [
        "x.yaml:3:5: warning: drop: 'dropout_param.scale_train' is a netspec extension: BVLC Caffe will "
        "refuse it"]
    assert "scale_train: false" in out.text


def test_legacy_net_inputs_stay_net_level() -> None:
    Path("l.yaml").write_text("""name: legacy
input: data
input_shape: {dim: [2, 3, 4, 4]}
layer:
  - {name: conv, type: Convolution, bottom: data, convolution_param: {num_output: 2, kernel_size: 1}}
""")
    data = parse(export_net(load_spec("l.yaml")).text).data
    assert (data["input"], data["input_shape"]) == (["data"], [{"dim": [2, 3, 4, 4]}])
    assert [x["name"] for x in data["layer"]] == ["conv"]


def test_zoo_header_names_the_source() -> None:
    if not ZOO.is_dir():
        pytest.skip(f"{ZOO} is absent (the shared model zoo)")
    net = import_net(ZOO / "bvlc_alexnet/deploy.prototxt")
    Path("a.yaml").write_text(render(net, command="c", output="a.yaml"))
    assert main(["export-caffe", "a.yaml", "-o", "a.prototxt"]) == 0
    assert Path("a.prototxt").read_text().splitlines()[0] == "# Exported from a.yaml by netspec export-caffe."
