"""`netspec import-caffe`: the real model zoo (counts, shapes, compact blocks), fork-dialect errors,
Caffe's upgrades, solvers, and weights (a generated .caffemodel against a NumPy forward)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.blocks import expand
from netspec.caffe.compact import compact_layers
from netspec.caffe.emit import BLOCK_LIST_KEYS, collapse_singletons, to_yaml
from netspec.caffe.importer import idiomatic, import_net, import_solver, net_data, render
from netspec.check import check
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.graph import build
from netspec.source import load_yaml
from netspec.spec import load_spec

ZOO = Path(__file__).resolve().parents[2] / "shared" / "caffe-zoo"
needs_zoo = pytest.mark.skipif(not ZOO.is_dir(), reason=f"{ZOO} is absent (the shared model zoo)")
NET_FILES = sorted(p for p in ZOO.glob("*/*.prototxt") if "solver" not in p.name) if ZOO.is_dir() else []
SOLVER_FILES = sorted(p for p in ZOO.glob("*/*solver*.prototxt")) if ZOO.is_dir() else []


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def expected_figures() -> dict[str, tuple[tuple[int, int, int], int, int]]:
    """EXPECTED.md's table: file -> ((C, H, W), learnable parameters, BatchNorm statistics).
    "(= train_val)" extends a row to the sibling train_val file; GoogLeNet's train_val figure is the
    row's note ("train_val with both auxiliary heads: N")."""
    out: dict[str, tuple[tuple[int, int, int], int, int]] = {}
    for line in (ZOO / "EXPECTED.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].endswith((".prototxt", "(= train_val)")):
            continue
        file = cells[0].split()[0]
        chw = tuple(int(d) for d in re.findall(r"\d+", cells[1])[:3])
        figures = (chw, _int(cells[2]), _int(cells[3]))
        out[file] = figures  # type: ignore[assignment]
        if "(= train_val)" in cells[0]:
            out[str(Path(file).parent / "train_val.prototxt")] = figures  # type: ignore[assignment]
        aux = re.search(r"train_val with both auxiliary heads: ([\d,]+)", cells[4])
        if aux:
            train_val = str(Path(file).parent / "train_val.prototxt")
            out[train_val] = (chw, _int(aux.group(1)), figures[2])  # type: ignore[assignment]
    return out


def zoo_input_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """--input-shape for the files whose data comes from a database: EXPECTED.md's C,H,W and the
    TEST-phase Data layer's batch_size (deploy files state their own shapes)."""
    chw = expected_figures()[str(path.relative_to(ZOO))][0]
    text = path.read_text()
    if 'type: "Data"' not in text:
        return {}
    test_part = text[text.index("phase: TEST"):] if "phase: TEST" in text else text
    batch = int(re.search(r"batch_size:\s*(\d+)", test_part).group(1))  # type: ignore[union-attr]
    return {"data": (batch, *chw)}


def _rel(path: Path) -> str:
    return str(path.relative_to(ZOO)) if ZOO.is_dir() else path.name


def graph_signature(spec: Any, phase: str) -> list[tuple[Any, ...]]:
    """What "the same graph" means: every node's name, type, wiring, parameter messages (as validated,
    defaults filled), param specs and phase rules, in execution order."""
    out = []
    for node in build(spec, phase).nodes:  # type: ignore[arg-type]
        layer = node.layer
        messages = {k: v.model_dump() for k, v in layer.messages.items()}
        params = [p.model_dump() for p in layer.param]
        out.append((layer.name, layer.type, node.bottoms, node.tops, messages, params,
                    list(layer.loss_weight), list(layer.propagate_down)))
    return out


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


# ------------------------------------------------------------------------------------- the zoo


def test_expected_table_covers_every_zoo_net() -> None:
    if not ZOO.is_dir():
        pytest.skip(f"{ZOO} is absent (the shared model zoo)")
    assert sorted(expected_figures()) == sorted(_rel(p) for p in NET_FILES)


@needs_zoo
@pytest.mark.parametrize("path", NET_FILES, ids=_rel)
def test_zoo_file_imports_and_checks_with_published_counts(path: Path, tmp_path: Path) -> None:
    _, learnable, stats = expected_figures()[_rel(path)]
    shapes = zoo_input_shapes(path)
    out = tmp_path / "net.yaml"
    args = [str(path), "-o", str(out)]
    args += [f"--input-shape={k}={','.join(map(str, v))}" for k, v in shapes.items()]
    assert main(["import-caffe", *args]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["net.yaml"]  # written atomically: no temporary left
    spec = load_spec(out)
    for phase in ("TEST", "TRAIN"):
        report = check(spec, phase=phase, input_shapes=shapes)  # type: ignore[arg-type]
        assert (report.learnable_params, report.state) == (learnable, stats), phase
    # The header tells how to check the file, and that command works.
    line = next(x for x in out.read_text().splitlines() if x.startswith("# Check: "))
    argv = line.removeprefix("# Check: netspec ").split()
    assert main(argv) == 0


@needs_zoo
def test_zoo_files_with_data_layers_need_input_shapes() -> None:
    net = import_net(ZOO / "lenet/lenet_train_test.prototxt")
    assert net.report is None and net.unchecked == ("data",) and net.data_layers == ("mnist",)
    text = render(net, command="netspec import-caffe x", output="lenet.yaml")
    assert "# Check: netspec check lenet.yaml --input-shape data=100,C,H,W" in text
    # Faithful: the LMDB sources and both phase-specific Data layers are kept.
    data = yaml.safe_load(text)["layer"]
    assert [(x["name"], x["include"]["phase"], x["data_param"]["source"]) for x in data[:2]] == [
        ("mnist", "TRAIN", "examples/mnist/mnist_train_lmdb"),
        ("mnist", "TEST", "examples/mnist/mnist_test_lmdb")]
    with pytest.raises(NetspecError, match="database, which check does not open"):
        check(load_spec("lenet.yaml", text=text))


@needs_zoo
def test_data_shapes_caffe_fixes_are_derived_and_checked(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # GoogLeNet's Data layers crop to 224 and subtract 3 mean values: the whole shape is fixed.
    path = ZOO / "bvlc_googlenet/train_val.prototxt"
    out = tmp_path / "g.yaml"
    assert main(["import-caffe", str(path), "-o", str(out)]) == 0
    assert "(checked with data=50,3,224,224, by Caffe's rules)" in capsys.readouterr().out
    text = out.read_text()
    assert ("# By Caffe's rules data is 50,3,224,224 (N = batch_size 50 (TEST), C = 3 mean_value entries, "
            "H = W = crop_size 224); the import checked the net with it.") in text
    line = next(x for x in text.splitlines() if x.startswith("# Check: "))
    assert line.endswith("--input-shape data=50,3,224,224")
    assert main(line.removeprefix("# Check: netspec ").split()) == 0
    net = import_net(path)
    assert net.report.learnable_params == expected_figures()[_rel(path)][1]
    assert yaml.safe_load(text)["layer"] == yaml.safe_load(render(
        import_net(path, input_shapes={"data": (50, 3, 224, 224)}), command="c", output="g.yaml"))["layer"]
    # AlexNet subtracts a mean_file: C is left to the user, the rest is filled in.
    net = import_net(ZOO / "bvlc_alexnet/train_val.prototxt")
    assert net.report is None and net.data_shapes["data"].text() == "50,C,227,227"
    text = render(net, command="c", output="a.yaml")
    assert "# Check: netspec check a.yaml --input-shape data=50,C,227,227" in text
    assert "C only the database knows (give it with --input-shape)" in text


def test_data_shapes_stay_unknown_where_caffe_leaves_them_to_the_database() -> None:
    # One mean_value does not tell the channels; TRAIN and TEST crops that differ fix no H, W.
    _write(Path("d.prototxt"), """layer { name: "d" type: "Data" top: "data" top: "label"
  include { phase: TRAIN }
  transform_param { crop_size: 8 mean_value: 128 } data_param { source: "x" batch_size: 4 } }
layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 10 mean_value: 128 } data_param { source: "y" batch_size: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
""")
    net = import_net(Path("d.prototxt"))
    assert net.report is None and net.data_shapes["data"].dims == (2, None, None, None)
    text = render(net, command="c", output="d.yaml")
    assert "By Caffe's rules" not in text and "--input-shape data=2,C,H,W" in text


def _shapes(report: Any, names: list[str]) -> list[tuple[int, ...]]:
    return [report.row(n).tops[0][1][1:] for n in names]


@needs_zoo
def test_alexnet_top_shapes_equal_caffes() -> None:
    report = import_net(ZOO / "bvlc_alexnet/deploy.prototxt").report
    names = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]
    assert _shapes(report, names) == [(96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13), (384, 13, 13),
                                      (384, 13, 13), (256, 13, 13), (256, 6, 6)]


@needs_zoo
def test_googlenet_resnet_squeezenet_spot_shapes() -> None:
    g = import_net(ZOO / "bvlc_googlenet/deploy.prototxt").report
    assert _shapes(g, ["pool1/3x3_s2", "pool2/3x3_s2", "pool3/3x3_s2", "pool5/7x7_s1"]) == [
        (64, 56, 56), (192, 28, 28), (480, 14, 14), (1024, 1, 1)]
    r = import_net(ZOO / "resnet50/ResNet-50-deploy.prototxt").report
    assert _shapes(r, ["pool1", "res5c", "pool5"]) == [(64, 56, 56), (2048, 7, 7), (2048, 1, 1)]
    s = import_net(ZOO / "squeezenet_v1.0/deploy.prototxt").report
    assert _shapes(s, ["conv10"]) == [(1000, 15, 15)]


@needs_zoo
def test_legacy_inputs_become_an_input_layer() -> None:
    net = import_net(ZOO / "vgg16/VGG_ILSVRC_16_layers_deploy.prototxt")
    assert net.legacy_inputs == ("data",)
    assert net.layers[0] == {"name": "input", "type": "Input", "top": ["data"],
                             "input_param": {"shape": [{"dim": [10, 3, 224, 224]}]}}
    assert "input" not in net.header and "input_dim" not in net.header
    # V1 `layers { type: CONVOLUTION ... }` became V2 `layer { type: "Convolution" ... }`.
    assert [x["type"] for x in net.layers[1:3]] == ["Convolution", "ReLU"]


def test_v1_blobs_lr_become_param_entries() -> None:
    text = """input: "data" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3
layers { name: "c" type: CONVOLUTION bottom: "data" top: "c" blobs_lr: 1 blobs_lr: 2 weight_decay: 1
  weight_decay: 0 convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "r" type: RELU bottom: "c" top: "c" }
"""
    net = import_net(_write(Path("v1.prototxt"), text))
    assert net.layers[1] == {"name": "c", "type": "Convolution", "bottom": ["data"], "top": ["c"],
                             "param": [{"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0}],
                             "convolution_param": {"num_output": 4, "kernel_size": [3]}}
    assert net.report.learnable_params == 4 * 2 * 9 + 4


@needs_zoo
@pytest.mark.parametrize("path", NET_FILES, ids=_rel)
def test_compact_expands_to_the_faithful_import(path: Path) -> None:
    net = import_net(path, input_shapes=zoo_input_shapes(path))
    flat = render(net, command="c", output="n.yaml")
    folded = render(net, command="c", output="n.yaml", compact=True)
    diags: list[Any] = []
    expanded = expand(load_yaml(folded, "n.yaml"), "n.yaml", diags)
    assert diags == []
    assert _plain(expanded["layer"]) == yaml.safe_load(flat)["layer"]
    a, b = load_spec("flat.yaml", text=flat), load_spec("folded.yaml", text=folded)
    for phase in ("TRAIN", "TEST"):
        assert graph_signature(a, phase) == graph_signature(b, phase)
    # What a reader sees: the file (header included) never gets longer; when blocks are written, it
    # is strictly shorter in lines, the header's line announcing them counted.
    if "blocks:" in folded:
        assert len(folded.splitlines()) < len(flat.splitlines())
    else:
        assert folded == flat


@needs_zoo
def test_compact_block_names_say_what_they_hold() -> None:
    def blocks(rel: str) -> dict[str, Any]:
        return net_data(import_net(ZOO / rel), compact=True).get("blocks", {})

    # A run of one-line layers saves characters but no lines: CaffeNet and CIFAR-10 full stay flat.
    assert blocks("bvlc_reference_caffenet/deploy.prototxt") == {}
    assert blocks("cifar10_full/cifar10_full_train_test.prototxt") == {}
    alexnet = blocks("bvlc_alexnet/deploy.prototxt")
    assert {name: [x["type"] for x in b["layer"]] for name, b in alexnet.items()} == {
        "fc_relu_drop": ["InnerProduct", "ReLU", "Dropout"], "conv_relu": ["Convolution", "ReLU"]}
    assert list(blocks("lenet/lenet.prototxt")) == ["conv_pool"]
    # A module whose layers all share a name prefix is named after it.
    assert list(blocks("bvlc_googlenet/train_val.prototxt")) == ["inception", "loss"]
    assert list(blocks("squeezenet_v1.0/deploy.prototxt")) == ["fire"]


@needs_zoo
def test_compact_folds_the_repeated_modules() -> None:
    def blocks(rel: str) -> dict[str, Any]:
        net = import_net(ZOO / rel)
        return net_data(net, compact=True).get("blocks", {})

    g = blocks("bvlc_googlenet/deploy.prototxt")
    inception = [b for b in g.values() if len(b["layer"]) == 14 and b["layer"][-1]["type"] == "Concat"]
    assert len(inception) == 1  # the inception module: 4 branches, 6 convs + 6 ReLUs, pool, concat
    assert len(blocks("resnet50/ResNet-50-deploy.prototxt")) >= 2
    squeeze = blocks("squeezenet_v1.0/deploy.prototxt")
    assert any(len(b["layer"]) == 7 for b in squeeze.values())  # fire: squeeze, expand 1x1/3x3, concat


@needs_zoo
@pytest.mark.parametrize("path", SOLVER_FILES, ids=_rel)
def test_zoo_solvers_become_the_solver_section(path: Path) -> None:
    from netspec.solver_spec import SolverSpec

    solver = import_solver(path)
    assert "net" not in solver.solver and [k for k, _ in solver.dropped] == ["net"]
    spec = SolverSpec.model_validate(solver.solver)
    assert spec.base_lr > 0 and spec.max_iter > 0


@needs_zoo
def test_solver_section_is_written_and_validated(tmp_path: Path) -> None:
    out = tmp_path / "lenet.yaml"
    assert main(["import-caffe", str(ZOO / "lenet/lenet_train_test.prototxt"), "--solver",
                 str(ZOO / "lenet/lenet_solver.prototxt"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "#   dropped `net: examples/mnist/lenet_train_test.prototxt`" in text
    spec = load_spec(out)
    assert (spec.solver.lr_policy, spec.solver.gamma, spec.solver.power, spec.solver.max_iter,
            spec.solver.test_iter) == ("inv", 0.0001, 0.75, 10000, [100])


# ------------------------------------------------------------------------------------- dialects


FORK = """name: "fork"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 8 dim: 9 dim: 9 } } }
layer { name: "py" type: "Python" bottom: "data" top: "py" python_param { module: "m" layer: "L" } }
layer { name: "dw" type: "DepthwiseConvolution" bottom: "data" top: "dw"
  convolution_param { num_output: 8 group: 8 kernel_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 ceil_mode: false } }
layer { name: "se" type: "Axpy" bottom: "pool" bottom: "pool" bottom: "pool" top: "se" }
layer { name: "bn" type: "BatchNorm" bottom: "pool" top: "pool" bn_param { momentum: 0.9 } }
layer { name: "up" type: "Crop" bottom: "pool" bottom: "data" top: "up" }
"""


def test_unsupported_layers_get_one_located_error_each(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "fork.prototxt"
    src.write_text(FORK)
    out = tmp_path / "fork.yaml"
    assert main(["import-caffe", str(src), "-o", str(out)]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    heads = [line for line in err.splitlines() if ": error: " in line]
    assert heads == [
        f"{src}:3:20: error: py: BVLC Caffe's Python layer: netspec has no such layer type",
        f"{src}:4:20: error: dw: 'DepthwiseConvolution' is a Caffe fork's custom layer: netspec has no such "
        "layer type",
        f"{src}:7:54: error: pool: 'pooling_param.ceil_mode' is not a field of BVLC Caffe (a fork's "
        "dialect); netspec cannot lower it",
        f"{src}:8:20: error: se: 'Axpy' is a Caffe fork's custom layer: netspec has no such layer type",
        f"{src}:9:65: error: bn: 'bn_param' is not a field of BVLC Caffe (a fork's dialect); netspec cannot "
        "lower it",
        f"{src}:10:20: error: up: layer type 'Crop' (BVLC Caffe) is not supported by netspec yet",
    ]
    assert "hint: `ceil_mode: false` is BVLC's `round_mode: FLOOR`; pass --fix-dialect to convert it" in err
    assert err.rstrip().endswith("6 errors")


def test_fix_dialect_turns_ceil_mode_into_round_mode() -> None:
    text = """layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 8 dim: 9 dim: 9 } } }
layer { name: "floor" type: "Pooling" bottom: "data" top: "floor"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 ceil_mode: false } }
layer { name: "ceil" type: "Pooling" bottom: "data" top: "ceil"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 ceil_mode: true } }
"""
    path = Path("fork.prototxt")
    with pytest.raises(NetspecError) as e:
        import_net(_write(path, text))
    assert len(e.value.errors) == 2
    net = import_net(path, fix_dialect=True)
    assert [x["pooling_param"].get("round_mode") for x in net.layers[1:]] == ["FLOOR", "CEIL"]
    # 9 -> floor((9-2)/2)+1 = 4 with FLOOR, ceil(...)+1 = 5 with Caffe's default CEIL.
    assert [net.report.row(n).tops[0][1] for n in ("floor", "ceil")] == [(1, 8, 4, 4), (1, 8, 5, 5)]
    assert [d.message for d in net.diagnostics if d.severity == "note"] == [
        "ceil_mode: false converted to round_mode: FLOOR", "ceil_mode: true converted to round_mode: CEIL"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_batch_norm_param_upgrade_and_note() -> None:
    text = """input: "data" input_dim: 2 input_dim: 3 input_dim: 4 input_dim: 4
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data"
  param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 } }
layer { name: "bn2" type: "BatchNorm" bottom: "data" top: "data"
  param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 } }
"""
    net = import_net(_write(Path("bn.prototxt"), text))
    assert net.layers[1]["param"] == [{"lr_mult": 0, "decay_mult": 0}] * 3
    notes = [d.format() for d in net.diagnostics if d.severity == "note"]
    assert notes == [
        "bn.prototxt:3:3: note: bn: BatchNorm statistics are not learned: set lr_mult and decay_mult to 0 on "
        "its three `param` entries (Caffe's UpgradeNetBatchNorm)",
        "bn.prototxt:5:3: note: bn2: BatchNorm statistics are not learned: its three `param` entries "
        "(lr_mult 0) are kept; they are redundant"]
    assert net.report.state == 2 * (2 * 3 + 1) and net.report.learnable_params == 0
    assert "# Note: bn: BatchNorm statistics are not learned" in render(net, command="c", output="bn.yaml")


def test_a_layer_without_bottoms_is_an_error_not_implicit_chaining() -> None:
    text = """layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" top: "ip" inner_product_param { num_output: 3 } }
"""
    with pytest.raises(NetspecError) as e:
        import_net(_write(Path("n.prototxt"), text))
    assert [d.format() for d in e.value.errors] == [
        "n.prototxt:2:1: error: ip: InnerProduct needs 1 bottom(s) and names none (Caffe refuses this net)"]


def test_netspec_validation_errors_point_into_the_prototxt() -> None:
    text = """layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 3 kernel_size: 7 } }
layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }
"""
    with pytest.raises(NetspecError) as e:
        import_net(_write(Path("n.prototxt"), text))
    # Both problems, wiring and shape, in one run.
    assert [(d.loc[:3], d.message) for d in e.value.errors] == [
        (("n.prototxt", 2, 1), "needs a blob with spatial axes after the channel axis, got 1×2"),
        (("n.prototxt", 4, 32), "unknown bottom blob 'nope'")]


def _error_heads(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


def test_unlowerable_layers_and_the_rest_of_the_nets_problems_come_together(
        capsys: pytest.CaptureFixture[str]) -> None:
    # A Python layer is opaque (its top still exists), so the conv's unknown bottom and the pooling
    # window that does not fit are found in the same run.
    _write(Path("n.prototxt"), """name: "n"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "py" type: "Python" bottom: "data" top: "py" }
layer { name: "c" type: "Convolution" bottom: "nope" top: "c"
  convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 20 } }
layer { name: "after" type: "ReLU" bottom: "py" top: "after" }
""")
    assert main(["import-caffe", "n.prototxt", "-o", "n.yaml"]) == 1
    err = capsys.readouterr().err
    assert _error_heads(err) == [
        "n.prototxt:3:20: error: py: BVLC Caffe's Python layer: netspec has no such layer type",
        "n.prototxt:4:39: error: c: unknown bottom blob 'nope'",
        "n.prototxt:6:59: error: p: window 20 does not fit the padded input: 8+2·0 = 8 rows"]
    assert err.rstrip().endswith("3 errors") and not Path("n.yaml").exists()


def test_v1_types_without_an_upgrade_and_unsupported_ones_come_together(
        capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("v1.prototxt"), """name: "v1"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layers { name: "b" type: BOGUS bottom: "data" top: "b" }
layers { name: "am" type: ARGMAX bottom: "data" top: "am" }
layers { name: "w" type: WINDOW_DATA top: "w" }
layers { name: "s" type: SILENCE bottom: "am" }
layers { name: "c" type: CONVOLUTION bottom: "b" top: "c" convolution_param { num_output: 2 kernel_size: 3 } }
layers { name: "r" type: RELU bottom: "nope" top: "r" }
""")
    assert main(["import-caffe", "v1.prototxt", "-o", "v1.yaml"]) == 1
    err = capsys.readouterr().err
    assert _error_heads(err) == [
        "v1.prototxt:4:20: error: b: unknown V1 layer type BOGUS",
        "v1.prototxt:5:21: error: am: layer type 'ArgMax' (BVLC Caffe) is not supported by netspec yet",
        "v1.prototxt:6:20: error: w: layer type 'WindowData' (BVLC Caffe) is not supported by netspec yet",
        "v1.prototxt:7:20: error: s: layer type 'Silence' (BVLC Caffe) is not supported by netspec yet",
        "v1.prototxt:9:31: error: r: unknown bottom blob 'nope'"]


def test_enum_numbers_import_as_names(capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("n.prototxt"), """layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: 1 kernel_size: 2 stride: 2 } }
layer { name: "e" type: "Eltwise" bottom: "p" bottom: "p" top: "e" eltwise_param { operation: 2 } }
""")
    assert main(["import-caffe", "n.prototxt", "-o", "n.yaml"]) == 0
    layers = yaml.safe_load(Path("n.yaml").read_text())["layer"]
    assert (layers[1]["pooling_param"]["pool"], layers[2]["eltwise_param"]["operation"]) == ("AVE", "MAX")
    assert load_spec("n.yaml").layers[1].messages["pooling_param"].pool == "AVE"


def test_out_of_range_integers_are_located_in_the_prototxt(capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("n.prototxt"), """layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 99999999999999999999 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 4294967296 } }
""")
    assert main(["import-caffe", "n.prototxt", "-o", "n.yaml"]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if ": error: " in line] == [
        "n.prototxt:2:32: error: field 'dim' is int64: 99999999999999999999 is out of its range "
        "[-9223372036854775808, 9223372036854775807]",
        "n.prototxt:4:25: error: field 'num_output' is uint32: 4294967296 is out of its range "
        "[0, 4294967295]"]
    assert not Path("n.yaml").exists()


@pytest.mark.parametrize("depth", [1000, 10000])
def test_deeply_nested_files_are_a_located_error_not_a_crash(depth: int,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("deep.prototxt"), "name: 'deep'\n" + "layer {\n" * depth + "}\n" * depth)
    assert main(["import-caffe", "deep.prototxt", "-o", "deep.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "deep.prototxt:102:7: error: messages nested more than 100 deep (protobuf's text parser stops there "
        "too)", "1 error"]
    assert not Path("deep.yaml").exists()


def test_an_unknown_net_level_field_is_reported_once(capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("n.prototxt"), """name: "n"
foo_unknown: 3
state { phase: TEST bar: 1 }
layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 dim: 2 } } }
""")
    assert main(["import-caffe", "n.prototxt", "-o", "n.yaml"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "n.prototxt:2:1: error: 'foo_unknown' is not a field of Caffe's NetParameter",
        "n.prototxt:3:21: error: 'state.bar' is not a field of Caffe's NetParameter",
        "2 errors"]


def test_a_solver_given_as_the_net_and_a_missing_file_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("s.prototxt"), 'net: "x.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n')
    assert main(["import-caffe", "s.prototxt"]) == 1
    assert main(["import-caffe", "missing.prototxt"]) == 1
    _write(Path("bad_solver.prototxt"), 'base_lr: 0.1\nlr_policy: "cosh"\nmax_itr: 3\n')
    _write(Path("n.prototxt"), 'layer { name: "d" type: "Input" top: "d" '
                               'input_param { shape { dim: 1 } } }\n')
    assert main(["import-caffe", "n.prototxt", "--solver", "bad_solver.prototxt"]) == 1
    err = capsys.readouterr().err
    assert "s.prototxt:1:1: error: this is a solver prototxt, not a net\n  hint: give it as --solver" in err
    assert "missing.prototxt:1:1: error: cannot read: No such file or directory" in err
    assert "bad_solver.prototxt:3:1: error: 'max_itr' is not a field of Caffe's SolverParameter" in err
    assert "bad_solver.prototxt:2:1: error: lr_policy: Input should be 'fixed'" in err  # in the same run
    assert "did you mean 'max_iter'?" in err
    assert "Traceback" not in err


def test_syntax_errors_and_empty_nets_are_located(capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("bad.prototxt"), 'layer { name: "a" type: "Input" top: "a"\n')
    _write(Path("empty.prototxt"), "# nothing\n")
    assert main(["import-caffe", "bad.prototxt"]) == 1
    assert main(["import-caffe", "empty.prototxt"]) == 1
    err = capsys.readouterr().err
    assert "bad.prototxt:1:7: error: '{' of 'layer' is never closed (reached end of file)" in err
    assert "empty.prototxt:1:1: error: the net has no layers" in err


def test_solver_value_errors_are_located() -> None:
    _write(Path("s.prototxt"), 'base_lr: 0.1\nlr_policy: "cosh"\n')
    with pytest.raises(NetspecError) as e:
        import_solver("s.prototxt")
    assert e.value.errors[0].loc[:3] == ("s.prototxt", 2, 1) and "lr_policy" in e.value.errors[0].message


def test_stdout_when_no_output(capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("n.prototxt"), 'name: "n"\nlayer { name: "d" type: "Input" top: "d" '
                               'input_param { shape { dim: 1 dim: 2 } } }\n')
    assert main(["import-caffe", "n.prototxt"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == {"name": "n", "layer": [
        {"name": "d", "type": "Input", "input_param": {"shape": {"dim": [1, 2]}}}]}


def test_idiomatic_chaining_only_where_it_resolves_to_the_same_blobs() -> None:
    layers = [
        {"name": "d", "type": "Input", "top": ["d"], "input_param": {"shape": [{"dim": [1, 2]}]}},
        {"name": "a", "type": "InnerProduct", "bottom": ["d"], "top": ["a"], "include": [{"phase": "TRAIN"}]},
        {"name": "b", "type": "InnerProduct", "bottom": ["a"], "top": ["b"], "include": [{"phase": "TRAIN"}]},
        {"name": "c", "type": "InnerProduct", "bottom": ["b"], "top": ["out"]},
        {"name": "r", "type": "ReLU", "bottom": ["out"], "top": ["out"]},
        {"name": "s", "type": "Softmax", "bottom": ["out"], "top": ["s"]},
    ]
    assert [sorted(k for k in x if k in ("bottom", "top")) for x in idiomatic(layers)] == [
        [],                 # Input: its top is its name
        ["bottom"],         # d's top, but `a` is TRAIN-only and Input is not: chaining would differ
        [],                 # same rules as `a`
        ["bottom", "top"],  # `b` is TRAIN-only, `c` is in both phases
        ["bottom", "top"],  # in place: written out, as the house style does
        [],                 # the previous layer's (r's) top
    ]


# ------------------------------------------------------------------------------------- compact


_names = st.sampled_from(["conv", "res", "a/b", "x$y", "n"])


@st.composite
def _nets(draw: Any) -> list[dict[str, Any]]:
    """Layer lists with repeating conv/relu/pool runs, arbitrary names (some with '$') and values."""
    data = {"name": "data", "type": "Input", "input_param": {"shape": {"dim": [1, 3, 8, 8]}}}
    layers: list[dict[str, Any]] = [data]
    prev = "data"
    for i in range(draw(st.integers(1, 12))):
        stem = f"{draw(_names)}{i}_{draw(st.integers(0, 3))}"
        n = draw(st.sampled_from([8, 16]))
        layers.append({"name": stem, "type": "Convolution", "bottom": prev,
                       "convolution_param": {"num_output": n, "kernel_size": 1}})
        layers.append({"name": f"relu_{stem}", "type": "ReLU", "bottom": stem, "top": stem})
        if draw(st.booleans()):
            pool = draw(st.sampled_from(["MAX", "AVE"]))
            layers.append({"name": f"{stem}$p", "type": "Pooling",
                           "pooling_param": {"pool": pool, "kernel_size": 1}})
            prev = f"{stem}$p"
        else:
            prev = stem
    return layers


@settings(max_examples=40, deadline=None)
@given(_nets())
def test_compact_always_expands_to_the_same_layers(layers: list[dict[str, Any]]) -> None:
    blocks, items = compact_layers(layers)
    doc = {"blocks": blocks, "layer": items} if blocks else {"layer": items}
    text = to_yaml(doc, flow_layers=True, keep_lists=BLOCK_LIST_KEYS | {"args"})
    diags: list[Any] = []
    expanded = expand(load_yaml(text, "c.yaml"), "c.yaml", diags)
    assert [d for d in diags if d.severity == "error"] == []
    assert _plain(expanded["layer"]) == collapse_singletons({"layer": layers})["layer"]


def _conv_relu_pool(k: int, prefix: str = "") -> list[dict[str, Any]]:
    """Conv + ReLU + Pooling whose conv and pooling lines wrap (the form that folding shortens)."""
    conv = {"name": f"{prefix}conv{k}", "type": "Convolution",
            "param": [{"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0}],
            "convolution_param": {"num_output": 8 * k, "kernel_size": 3, "pad": 1,
                                  "weight_filler": {"type": "gaussian", "std": 0.01},
                                  "bias_filler": {"type": "constant", "value": 0}}}
    blob = f"{prefix}conv{k}"
    relu = {"name": f"{prefix}relu{k}", "type": "ReLU", "bottom": blob, "top": blob}
    pool = {"name": f"{prefix}pool{k}", "type": "Pooling",
            "pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 0, "round_mode": "FLOOR",
                              "global_pooling": False}}
    return [conv, relu, pool]


def _lines(blocks: dict[str, Any], items: list[Any]) -> int:
    doc = {"blocks": blocks, "layer": items} if blocks else {"layer": items}
    return to_yaml(doc, flow_layers=True, keep_lists=BLOCK_LIST_KEYS | {"args"}).count("\n")


def test_compact_names_share_one_argument() -> None:
    layers = [x for k in (1, 2, 3) for x in _conv_relu_pool(k)]
    blocks, items = compact_layers(layers)
    assert list(blocks) == ["conv_relu_pool"]
    body = blocks["conv_relu_pool"]
    assert body["args"] == ["id", "num_output"]
    assert [x["name"] for x in body["layer"]] == ["conv$id", "relu$id", "pool$id"]
    assert body["layer"][0]["convolution_param"]["num_output"] == "$num_output"
    assert body["layer"][1] == {"name": "relu$id", "type": "ReLU", "bottom": "conv$id", "top": "conv$id"}
    assert items == [{"use": "conv_relu_pool", "with": [{"id": "1", "num_output": 8},
                                                        {"id": "2", "num_output": 16},
                                                        {"id": "3", "num_output": 24}]}]
    assert _lines(blocks, items) < _lines({}, layers)


def test_compact_folds_only_what_saves_lines() -> None:
    # Three conv+ReLU pairs on one line each save characters but no lines: nothing is folded.
    short = []
    for k in (1, 2, 3):
        short += [{"name": f"conv{k}", "type": "Convolution", "convolution_param": {"num_output": 8 * k}},
                  {"name": f"relu{k}", "type": "ReLU", "bottom": f"conv{k}", "top": f"conv{k}"}]
    assert compact_layers(short) == ({}, short)
    # Layers that all name one module give the block its name; the fold is shorter in lines.
    layers = [x for k in (1, 2) for x in _conv_relu_pool(k, prefix=f"stage{k}/")]
    blocks, items = compact_layers(layers)
    assert list(blocks) == ["stage"] and _lines(blocks, items) < _lines({}, layers)


@settings(max_examples=40, deadline=None)
@given(st.recursive(
    st.dictionaries(st.sampled_from(["name", "a", "b/c", "layer"]),
                    st.text(max_size=8) | st.integers() | st.booleans() | st.floats(allow_nan=False),
                    max_size=4),
    lambda children: st.dictionaries(st.sampled_from(["x", "y", "layer", "param"]),
                                     children | st.lists(children, max_size=3), max_size=4),
    max_leaves=20))
def test_flow_layer_yaml_round_trips(data: dict[str, Any]) -> None:
    assert yaml.safe_load(to_yaml(data, flow_layers=True)) == collapse_singletons(data)


# ------------------------------------------------------------------------------------- weights


TINY_LAYERS = """layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
  batch_norm_param { use_global_stats: true } }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
TINY = 'name: "tiny"\ninput: "data"\ninput_shape { dim: 2 dim: 3 dim: 8 dim: 8 }\n' + TINY_LAYERS


def _tiny(v1: bool) -> str:
    """V1 nets (and caffemodels) predate BatchNorm and Scale: the V1 variant leaves them out."""
    if not v1:
        return TINY
    layers = ["layer {" + x for x in TINY.split("layer {")[1:]]
    head = TINY.split("layer {")[0]
    return head + "".join(x for x in layers if '"bn1"' not in x and '"sc1"' not in x)


def _tiny_blobs(seed: int = 0) -> dict[str, tuple[str, list[np.ndarray]]]:
    r = np.random.default_rng(seed)

    def f(*shape: int) -> np.ndarray:
        return r.normal(size=shape).astype(np.float32)

    factor = np.float32(0.37)  # BatchNorm's moving-average scale factor: blobs 0 and 1 hold sums
    return {
        "conv1": ("Convolution", [f(4, 3, 3, 3), f(4)]),
        "bn1": ("BatchNorm", [f(4) * factor, (r.uniform(0.5, 2, 4) * factor).astype(np.float32),
                              np.array([factor], np.float32)]),
        "sc1": ("Scale", [f(4), f(4)]),
        "fc": ("InnerProduct", [f(5, 4 * 4 * 4), f(5)]),
        "stale": ("Convolution", [f(1, 1, 1, 1)]),  # not in the net: ignored, as by Caffe
    }


def _numpy_forward(spec: Any, blobs: dict[str, list[np.ndarray]], x: np.ndarray) -> dict[str, np.ndarray]:
    import reference

    values: dict[str, np.ndarray] = {"data": x}
    graph = build(spec, "TEST")
    for node in graph.nodes:
        if node.kind.is_input:
            continue
        tops = reference.forward(node.layer, [values[b] for b in node.bottoms], blobs.get(node.name, []))
        values.update(zip(node.tops, tops))
    return {graph.blob_names[t]: values[t] for t in graph.outputs}


@pytest.mark.slow
@pytest.mark.parametrize("v1", [False, True], ids=["v2-blobs", "v1-legacy-4d-blobs"])
def test_weights_become_a_checkpoint_the_trainer_loads(v1: bool, capsys: pytest.CaptureFixture[str]) -> None:
    import netspec
    from netspec.caffe import write_caffemodel
    from netspec.train.checkpoint import read_variables
    from netspec.train.weights import load_weights

    _write(Path("tiny.prototxt"), _tiny(v1))
    blobs = _tiny_blobs()
    if v1:
        blobs = {k: v for k, v in blobs.items() if k not in ("bn1", "sc1")}
    write_caffemodel("tiny.caffemodel", "tiny", blobs, v1=v1)
    expected = sorted(k for k in blobs if k != "stale")
    assert main(["import-caffe", "tiny.prototxt", "--weights", "tiny.caffemodel", "-o", "tiny.yaml"]) == 0
    captured = capsys.readouterr()
    assert "tiny.caffemodel: layer 'stale' is not a layer with blobs in this net: ignored" in captured.err
    wrote = f"wrote tiny.ckpt/checkpoints/0: blobs of {len(expected)} layers from tiny.caffemodel"
    assert wrote in captured.out

    variables, _ = read_variables(Path("tiny.ckpt"))
    model = netspec.compile("tiny.yaml")
    # Exactly Caffe's blobs, in Caffe's layout and order (BatchNorm's triple untouched).
    got = netspec.caffe_blobs(model, variables)
    assert sorted(got) == expected
    for name, arrays in got.items():
        assert len(arrays) == len(blobs[name][1])
        for a, b in zip(arrays, blobs[name][1]):
            np.testing.assert_array_equal(a, b)
    # The compiled net computes what Caffe's forward computes with these blobs.
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    out = model.apply(variables, x)
    ref = _numpy_forward(model.graph.spec, {k: v for k, (_, v) in blobs.items()}, x.astype(np.float64))
    np.testing.assert_allclose(np.asarray(out["prob"]), ref["prob"], rtol=1e-4, atol=1e-6)
    # `netspec train --weights tiny.ckpt` takes every layer from it.
    fresh = model.init(7)
    loaded, report = load_weights(model, fresh, Path("tiny.ckpt"))
    assert sorted(report.loaded) == expected and not report.mismatched
    for name, arrays in netspec.caffe_blobs(model, loaded).items():
        for a, b in zip(arrays, blobs[name][1]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_reimporting_replaces_its_checkpoint_but_never_a_training_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    from netspec.caffe import write_caffemodel

    _write(Path("tiny.prototxt"), TINY)
    write_caffemodel("tiny.caffemodel", "tiny", _tiny_blobs(0))
    args = ["import-caffe", "tiny.prototxt", "--weights", "tiny.caffemodel", "-o", "tiny.yaml"]
    assert main(args) == 0
    write_caffemodel("tiny.caffemodel", "tiny", _tiny_blobs(1))
    assert main(args) == 0  # the same command again: the new blobs replace the old
    from netspec.train.checkpoint import read_variables

    variables, _ = read_variables(Path("tiny.ckpt"))
    np.testing.assert_array_equal(variables["params"]["sc1"]["0"], _tiny_blobs(1)["sc1"][1][0])
    Path("run/checkpoints/100").mkdir(parents=True)
    capsys.readouterr()
    assert main([*args[:-2], "--checkpoint", "run", "-o", "other.yaml"]) == 1
    assert "error: run already holds checkpoints that import-caffe did not write" in capsys.readouterr().err
    assert not Path("other.yaml").exists()


@pytest.mark.slow
def test_weight_shape_mismatch_is_a_located_error(capsys: pytest.CaptureFixture[str]) -> None:
    from netspec.caffe import write_caffemodel

    _write(Path("tiny.prototxt"), TINY)
    blobs = _tiny_blobs()
    blobs["fc"] = ("InnerProduct", [np.zeros((5, 63), np.float32), np.zeros(5, np.float32)])
    del blobs["sc1"]
    write_caffemodel("tiny.caffemodel", "tiny", blobs)
    assert main(["import-caffe", "tiny.prototxt", "--weights", "tiny.caffemodel", "-o", "tiny.yaml"]) == 1
    captured = capsys.readouterr()
    err = captured.err
    # Located in the prototxt: the YAML was never written, and is not now.
    fc_line = TINY.splitlines().index(next(x for x in TINY.splitlines() if '"fc"' in x)) + 1
    assert (f"tiny.prototxt:{fc_line}:1: error: fc: blob shapes differ (blob 0: caffemodel (5, 63), "
            "net (5, 64))") in err
    assert "tiny.prototxt:8:1: warning: sc1: not in the caffemodel: keeps its filler initialisation" in err
    assert err.rstrip().endswith("1 error") and "wrote" not in captured.out
    assert not Path("tiny.yaml").exists() and not Path("tiny.ckpt").exists()
    assert [p.name for p in Path(".").iterdir() if p.name.startswith(".tiny")] == []  # no temporary left


@pytest.mark.slow
def test_weights_of_a_train_val_net_whose_data_shape_caffe_fixes(capsys: pytest.CaptureFixture[str]) -> None:
    from netspec.caffe import write_caffemodel

    _write(Path("tv.prototxt"), """layer { name: "d" type: "Data" top: "data" top: "label"
  transform_param { crop_size: 6 mean_value: 104 mean_value: 117 mean_value: 123 }
  data_param { source: "db" batch_size: 2 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 6 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "conv" bottom: "label" top: "loss" }
""")
    conv = [np.ones((4, 3, 6, 6), np.float32), np.zeros(4, np.float32)]
    write_caffemodel("tv.caffemodel", "tv", {"conv": ("Convolution", conv)})
    # No --input-shape: 2,3,6,6 follows from batch_size, the three mean values and crop_size.
    assert main(["import-caffe", "tv.prototxt", "--weights", "tv.caffemodel", "-o", "tv.yaml"]) == 0
    out = capsys.readouterr().out
    assert "(checked with data=2,3,6,6, by Caffe's rules)" in out and "blobs of 1 layer" in out


def test_weights_need_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("tiny.prototxt"), TINY)
    assert main(["import-caffe", "tiny.prototxt", "--weights", "w.caffemodel"]) == 2
    assert "--weights writes a checkpoint beside the spec: give -o" in capsys.readouterr().err


def test_an_output_path_in_the_way_is_reported_before_the_checkpoint_is_written(
        capsys: pytest.CaptureFixture[str]) -> None:
    _write(Path("tiny.prototxt"), TINY)
    Path("folder").mkdir()
    Path("afile").write_text("")
    assert main(["import-caffe", "tiny.prototxt", "-o", "folder"]) == 1
    assert "error: -o folder: it is a folder" in capsys.readouterr().err
    assert main(["import-caffe", "tiny.prototxt", "-o", "afile/tiny.yaml", "--weights", "w.caffemodel"]) == 1
    err = capsys.readouterr().err
    assert "error: -o afile/tiny.yaml: afile is a file, not a folder" in err and "internal error" not in err
    # What the operating system refuses is named too, not reported as a netspec bug.
    assert main(["import-caffe", "tiny.prototxt", "-o", "n" * 300 + ".yaml"]) == 1
    err = capsys.readouterr().err
    assert f"error: -o {'n' * 300}.yaml: File name too long" in err and "internal error" not in err
    assert sorted(p.name for p in Path(".").iterdir()) == ["afile", "folder", "tiny.prototxt"]
    assert list(Path("folder").iterdir()) == []


MNIST_LINEAR = """name: "mnist-linear"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 100 dim: 1 dim: 28 dim: 28 } shape { dim: 100 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 10 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""


@pytest.mark.slow
def test_imported_weights_give_netspec_test_the_numpy_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: a linear MNIST classifier fitted in NumPy, saved as a .caffemodel, imported, and
    evaluated by `netspec test --weights` on the vendored test digits: the same accuracy."""
    from netspec.caffe import write_caffemodel
    from netspec.data.mnist import load_mnist

    splits = load_mnist()
    x = splits.train.images.reshape(len(splits.train.images), -1) / 256.0
    xa = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(xa.T @ xa + np.eye(xa.shape[1]), xa.T @ np.eye(10)[splits.train.labels])
    weight, bias = w[:-1].T.astype(np.float32), w[-1].astype(np.float32)
    xt = splits.test.images.reshape(len(splits.test.images), -1).astype(np.float32) / 256
    correct = int(((xt @ weight.T + bias).argmax(1) == splits.test.labels).sum())
    assert correct > 0.8 * len(xt)  # a real classifier, so a wrong mapping could not pass by chance

    _write(Path("m.prototxt"), MNIST_LINEAR)
    write_caffemodel("m.caffemodel", "mnist-linear", {"ip": ("InnerProduct", [weight, bias])})
    assert main(["import-caffe", "m.prototxt", "--weights", "m.caffemodel", "-o", "m.yaml"]) == 0
    with open("m.yaml", "a") as fh:
        fh.write("data: {source: mnist, transform_param: {scale: 0.00390625}}\n")
    capsys.readouterr()
    assert main(["test", "m.yaml", "--weights", "m.ckpt", "--quiet", "--batch-size", "100"]) == 0
    out = capsys.readouterr().out
    got = float(re.search(r"^accuracy = ([0-9.]+)$", out, re.M).group(1))  # type: ignore[union-attr]
    # float32 sums in another order may flip a borderline digit or two, never more.
    assert len(xt) == 2000 and abs(got * len(xt) - correct) <= 2
