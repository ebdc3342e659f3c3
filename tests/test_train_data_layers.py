"""Caffe data layers (Data, ImageData, MemoryData, HDF5Data) in a spec that `netspec train` runs: the
`data:` section says where the images are, the layers keep their batch sizes and transform_param."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netspec.cli import main
from netspec.errors import NetspecError
from netspec.train.config import TrainOptions
from netspec.train.plan import make_eval_plan, make_plan

ZOO = Path(__file__).resolve().parents[2] / "shared" / "caffe-zoo"
OFF = ["--compile-cache", "off", "--progress", "none"]

# lenet_train_test.prototxt as `netspec import-caffe` writes it (layers of the TRAIN/TEST Data pair
# and a small classifier), with a `data:` section added.
TRAIN_VAL = """\
name: LeNet
data: {source: mnist}
solver: {base_lr: 0.01, lr_policy: fixed, momentum: 0.9, max_iter: 30, test_iter: 2, test_interval: 0}
layer:
  - name: mnist
    type: Data
    top: [data, label]
    include: {phase: TRAIN}
    transform_param: {scale: 0.00390625}
    data_param: {source: examples/mnist/mnist_train_lmdb, batch_size: 64, backend: LMDB}
  - name: mnist
    type: Data
    top: [data, label]
    include: {phase: TEST}
    transform_param: {scale: 0.00390625}
    data_param: {source: examples/mnist/mnist_test_lmdb, batch_size: 100, backend: LMDB}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, inner_product_param: {num_output: 10}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
  - {name: accuracy, type: Accuracy, bottom: [ip1, label], top: accuracy, include: {phase: TEST}}
"""


def _write(tmp_path: Path, text: str, name: str = "net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_layers_batch_sizes_and_transform_apply(tmp_path: Path) -> None:
    plan = make_plan(TrainOptions(spec=_write(tmp_path, TRAIN_VAL)))
    assert (plan.batch_size, plan.test_batch_size) == (64, 100)  # data_param.batch_size of each phase
    assert plan.data.transform_param.scale == 0.00390625
    assert plan.feed.names == ("data", "label")
    inputs = [layer for layer in plan.spec.layers if layer.name == "mnist"]
    assert [layer.type for layer in inputs] == ["Input", "Input"]
    assert [layer.include[0].phase for layer in inputs] == ["TRAIN", "TEST"]
    assert any("mnist (Data) fed from the `data:` section (mnist)" in note for note in plan.notes)
    evaluation = make_eval_plan(_write(tmp_path, TRAIN_VAL), None, None)
    assert evaluation.batch_size == 100 and evaluation.data.transform_param.scale == 0.00390625


def test_the_command_line_and_the_data_section_still_choose_the_batch(tmp_path: Path) -> None:
    spec = _write(tmp_path, TRAIN_VAL)
    assert make_plan(TrainOptions(spec=spec, batch_size=32)).batch_size == 32
    spec = _write(tmp_path, TRAIN_VAL.replace("data: {source: mnist}", "data: {source: mnist, batch_size: 50}"))
    plan = make_plan(TrainOptions(spec=spec))
    assert (plan.batch_size, plan.test_batch_size) == (50, 50)


def test_without_a_data_section_each_data_layer_is_an_error_at_its_line(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(tmp_path, TRAIN_VAL.replace("data: {source: mnist}\n", ""))
    assert main(["train", str(spec), *OFF]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (f"{spec}:4:5: error: mnist: this Data layer reads an LMDB database (examples/mnist/mnist_train_lmdb), "
            "which netspec does not open") in err
    assert f"{spec}:10:5: error: mnist: this Data layer reads an LMDB database (examples/mnist/mnist_test_lmdb)" in err
    assert "hint: add a `data:` section saying where the images are" in err


def test_two_transforms_are_refused(tmp_path: Path) -> None:
    both = TRAIN_VAL.replace("data: {source: mnist}", "data: {source: mnist, transform_param: {scale: 0.5}}")
    with pytest.raises(NetspecError, match="transform_param is set both on this Data layer and in the `data:`"):
        make_plan(TrainOptions(spec=_write(tmp_path, both)))
    lines = TRAIN_VAL.splitlines(keepends=True)
    lines[14] = lines[14].replace("{scale: 0.00390625}", "{scale: 0.00390625, crop_size: 20}")
    with pytest.raises(NetspecError, match="differs from the TRAIN layer's in more than `mirror`"):
        make_plan(TrainOptions(spec=_write(tmp_path, "".join(lines))))
    lines[14] = lines[14].replace("crop_size: 20", "mirror: true")  # mirror alone may differ
    assert make_plan(TrainOptions(spec=_write(tmp_path, "".join(lines)))).batch_size == 64


def test_memory_data_keeps_its_stated_shape_which_the_data_must_fit(tmp_path: Path) -> None:
    memory = TRAIN_VAL.replace("type: Data", "type: MemoryData").replace(
        "data_param: {source: examples/mnist/mnist_train_lmdb, batch_size: 64, backend: LMDB}",
        "memory_data_param: {batch_size: 64, channels: 1, height: 24, width: 24}").replace(
        "data_param: {source: examples/mnist/mnist_test_lmdb, batch_size: 100, backend: LMDB}",
        "memory_data_param: {batch_size: 100, channels: 1, height: 24, width: 24}")
    with pytest.raises(NetspecError, match=r"the train images are 1x28x28 \(C x H x W\) but input 'data' takes "
                                           r"1x24x24"):
        make_plan(TrainOptions(spec=_write(tmp_path, memory)))


def test_a_train_val_file_trains_and_tests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(tmp_path, TRAIN_VAL)
    run = tmp_path / "run"
    assert main(["train", str(spec), "-o", str(run), "--max-iter", "30", *OFF]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_test"]["accuracy"] > 0.5  # a linear classifier after 30 steps (chance: 0.1)
    capsys.readouterr()
    assert main(["test", str(spec), "--weights", str(run), "--quiet"]) == 0
    assert "on 200 samples (2 batches of 100)" in capsys.readouterr().out


@pytest.mark.skipif(not ZOO.is_dir(), reason=f"{ZOO} is absent (the shared model zoo)")
def test_the_imported_caffe_lenet_train_val_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "lenet.yaml"
    assert main(["import-caffe", str(ZOO / "lenet" / "lenet_train_test.prototxt"), "--solver",
                 str(ZOO / "lenet" / "lenet_solver.prototxt"), "-o", str(spec)]) == 0
    spec.write_text(spec.read_text() + "data: {source: mnist}\n")  # the one line a user adds
    run = tmp_path / "run"
    code = main(["train", str(spec), "-o", str(run), "--max-iter", "20", "--test-iter", "2", *OFF])
    assert code == 0, capsys.readouterr().err
    assert json.loads((run / "summary.json").read_text())["final_test"]["accuracy"] > 0.3
