"""The train/test/time commands through the CLI: fine-tuning, frozen blobs, data errors, reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from netspec.caffe import write_caffemodel
from netspec.cli import main
from netspec.lowering import caffe_blobs, compile as lower
from netspec.train.checkpoint import read_variables

FIXTURES = Path(__file__).parent / "fixtures" / "train"
TINY = FIXTURES / "tiny.yaml"
OFF = ["--compile-cache", "off"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.yaml trained for 10 iterations (shared by the tests that need weights)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", str(TINY), "-o", str(run), "--max-iter", "10", "--progress", "none", *OFF]) == 0
    return run


def _blobs(variables: dict, layer: str) -> list[bytes]:
    return [np.asarray(variables["params"][layer][k]).tobytes() for k in sorted(variables["params"][layer])]


@pytest.mark.parametrize("source", ["checkpoint", "caffemodel"])
def test_finetune_reports_matches_and_keeps_frozen_blobs_bit_identical(
        trained: Path, tmp_path: Path, source: str, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = read_variables(trained)
    weights = trained
    if source == "caffemodel":
        model = lower(TINY, "TRAIN")
        weights = tmp_path / "tiny.caffemodel"
        write_caffemodel(weights, "tiny", {name: ("Layer", blobs) for name, blobs in caffe_blobs(model, src).items()})
    capsys.readouterr()
    run = tmp_path / "ft"
    code = main(["train", str(FIXTURES / "finetune.yaml"), "--weights", str(weights), "-o", str(run),
                 "--progress", "plain", *OFF])
    out = capsys.readouterr().out
    assert code == 0
    assert "  loaded (1): conv1" in out
    assert re.search(r"  initialised, shape mismatch \(1\): ip1 \(net 12x10, 10, source \d+x10, 10\)", out) or \
        re.search(r"  initialised, shape mismatch \(1\): ip1 \(net 10x12, 10, source 10x\d+, 10\)", out), out
    assert "  initialised, not in the source (1): hidden" in out
    report = json.loads((run / "run.json").read_text())["weights"]
    assert report["loaded"] == ["conv1"] and report["initialised"] == ["hidden"] and list(report["mismatched"]) == ["ip1"]
    final, _ = read_variables(run)
    # lr_mult 0 (with momentum and weight decay on): not one bit of conv1 moved.
    assert _blobs(final, "conv1") == _blobs(src, "conv1")
    assert _blobs(final, "ip1") != _blobs(src, "ip1")


def _spec_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = TINY.read_text()
    assert old in text
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old,new,message", [
    ("dim: [16, 1, 28, 28]", "dim: [16, 1, 32, 32]",
     "error: the train images are 1x28x28 (C x H x W) but input 'data' takes 1x32x32"),
    ("inner_product_param: {num_output: 10,", "inner_product_param: {num_output: 5,",
     "are >= 5, the number of classes the net scores (labels go up to 9)"),
    ("data: {source: mnist,", "data: {source: npz, path: missing.npz,", "missing.npz: no such file"),
])
def test_bad_data_is_a_clear_error_before_any_compute(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      old: str, new: str, message: str) -> None:
    spec = _spec_variant(tmp_path, old, new)
    code = main(["train", str(spec), "-o", str(tmp_path / "run"), *OFF])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and err.startswith("error: ") or err.startswith(str(spec))
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize("new,value,message", [
    ("data: {source: npz, path: missing.npz, transform_param: {scale: 0.00390625}}", "missing.npz",
     "no such file"),
    # read for the train and the test split alike, and said once
    ("data: {source: mnist, transform_param: {scale: 0.00390625, mean_file: none.binaryproto}}",
     "none.binaryproto",
     "mean file not found"),
])
def test_a_data_file_error_points_at_the_spec_field_that_names_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], new: str, value: str, message: str) -> None:
    spec = _spec_variant(tmp_path, "data: {source: mnist, transform_param: {scale: 0.00390625}}", new)
    line = next(i for i, x in enumerate(spec.read_text().splitlines(), 1) if x.startswith("data:"))
    assert main(["train", str(spec), "-o", str(tmp_path / "run"), *OFF]) == 1
    where = f"{spec}:{line}:{new.index(value) + 1}"
    assert capsys.readouterr().err == f"{where}: error: data: {tmp_path / value}: {message}\n"


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", str(TINY), "--resume", "--weights", str(tmp_path), *OFF]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["train", str(TINY), "-o", str(tmp_path / "none"), "--resume", *OFF]) == 1
    assert "holds no checkpoint" in capsys.readouterr().err


def test_a_run_folder_that_cannot_be_written_is_an_error(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    for extra in ([], ["--resume"]):
        assert main(["train", str(TINY), "-o", str(afile), *extra, *OFF]) == 1
        err = capsys.readouterr().err
        assert f"error: --output {afile}: a file, not a folder" in err, err
    run = afile / "run"
    assert main(["train", str(TINY), "-o", str(run), "--max-iter", "1", "--progress", "none", *OFF]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot write the run folder {run}: Not a directory" in err, err
    assert "internal error" not in err and afile.read_text() == ""


def test_netspec_test_prints_batches_and_averages(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["test", str(TINY), "--weights", str(trained), "--iterations", "2", *OFF]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("weights from ") and lines[1] == "  loaded (2): conv1, ip1"
    assert [x.split(",")[0] for x in lines if x.startswith("Batch")] == ["Batch 0"] * 3 + ["Batch 1"] * 3
    batches = {x.split(", ")[1].split(" = ")[0] for x in lines if x.startswith("Batch")}
    assert batches == {"accuracy", "loss", "top-5"}
    acc = [float(x.split(" = ")[1]) for x in lines if x.startswith("Batch") and "accuracy" in x]
    mean = next(float(x.split(" = ")[1]) for x in lines if x.startswith("accuracy = "))
    assert mean == pytest.approx(np.mean(acc), abs=1e-6)
    assert re.fullmatch(r"loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", next(x for x in lines if x.startswith("loss = ")))
    assert re.fullmatch(r"test accuracy \d+\.\d% \(top-1\), \d+\.\d% \(top-5\) on 32 samples \(2 batches of 16\), "
                        r"float32", lines[-1])


def test_netspec_test_rejects_weights_of_another_net(tmp_path: Path, trained: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec_variant(tmp_path, "num_output: 4,", "num_output: 6,")
    assert main(["test", str(spec), "--weights", str(trained), "--iterations", "1", *OFF]) == 1
    assert "cannot load layer 'conv1'" in capsys.readouterr().err


def test_netspec_test_runs_under_the_asked_matmul_precision(trained: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import netspec.train.config as config

    asked = []
    real = config.matmul_precision
    monkeypatch.setattr(config, "matmul_precision", lambda name: asked.append(name) or real(name))
    argv = ["test", str(TINY), "--weights", str(trained), "--iterations", "1", "--quiet",
            "--matmul-precision", "high", *OFF]
    assert main(argv) == 0
    assert asked == ["high"] and capsys.readouterr().out.splitlines()[-1].startswith("test accuracy ")


def test_netspec_time_runs_under_the_asked_matmul_precision(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import netspec.train.config as config

    asked = []
    real = config.matmul_precision
    monkeypatch.setattr(config, "matmul_precision", lambda name: asked.append(name) or real(name))
    argv = ["time", str(FIXTURES / "plain.yaml"), "--iterations", "1", "--matmul-precision", "highest", *OFF]
    assert main(argv) == 0
    assert asked == ["highest"] and capsys.readouterr().out.startswith("netspec time plain:")


def test_netspec_time_reports_every_layer_and_the_whole_net(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["time", str(FIXTURES / "plain.yaml"), "--iterations", "2", *OFF]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"netspec time plain: TRAIN net, batch 16, float32 on {jax.default_backend()}, 2 iterations")
    rows = {x.split()[0]: x.split() for x in lines[2:] if x and not x.startswith(("sum", "Average", "Total"))}
    assert list(rows) == ["conv1", "pool1", "relu1", "ip1", "loss"]
    assert rows["conv1"][1] == "Convolution" and all(float(v) > 0 for v in rows["conv1"][2:])
    for prefix in ("Average Forward pass: ", "Average Backward pass: ", "Average Forward-Backward: ",
                   "Total Time: "):
        assert any(x.startswith(prefix) for x in lines), prefix


def test_conv_impl_xla_and_auto_train_the_same_net(tmp_path: Path) -> None:
    """`--conv-impl xla` keeps the plain XLA lowering for comparison; both reach the same parameters
    (same data, seed and maths: only the summation order of the gradients differs) and run.json says
    which ran."""
    finals = {}
    for impl in ("xla", "auto"):
        run = tmp_path / impl
        assert main(["train", str(TINY), "-o", str(run), "--max-iter", "10", "--progress", "none",
                     "--conv-impl", impl, *OFF]) == 0
        assert json.loads((run / "run.json").read_text())["conv_impl"] == impl
        finals[impl], _ = read_variables(run)
    for layer in ("conv1", "ip1"):
        for key in finals["xla"]["params"][layer]:
            np.testing.assert_allclose(np.asarray(finals["auto"]["params"][layer][key]),
                                       np.asarray(finals["xla"]["params"][layer][key]), rtol=1e-4, atol=1e-5)


def test_conv_impl_takes_only_known_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", str(TINY), "--conv-impl", "fast"])
    assert info.value.code == 2
    assert "argument --conv-impl: invalid choice: 'fast' (choose from 'auto', 'planned', 'onednn', 'xla')" in capsys.readouterr().err
