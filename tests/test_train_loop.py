"""`netspec train` end to end, in process: run folder, log format, iter_size, non-finite stops, bf16."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from netspec.cli import main
from netspec.spec import load_spec
from netspec.train.checkpoint import read_variables

FIXTURES = Path(__file__).parent / "fixtures" / "train"
OFF = ["--compile-cache", "off", "--progress", "plain"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["train", *map(str, argv), *OFF])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_folder_and_caffe_style_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, out, err = _run(capsys, FIXTURES / "tiny.yaml", "-o", run)
    assert code == 0, err
    lines = out.splitlines()
    # Caffe's shapes, which tools/extra/parse_log.py reads.
    assert re.fullmatch(r"Iteration 5 \(epoch 0\.01, \d+ img/s, ETA \d+:\d\d\), loss = [\d.e+-]+", lines[lines.index(
        next(x for x in lines if x.startswith("Iteration 5 (")))])
    assert any(re.fullmatch(r"    Train net output #0: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", x) for x in lines)
    assert "Iteration 5, lr = 0.05" in lines
    i = lines.index("Iteration 10, Testing net (#0)")
    assert re.fullmatch(r"    Test net output #0: accuracy = [\d.e+-]+", lines[i + 1])
    assert re.fullmatch(r"    Test net output #1: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", lines[i + 2])
    assert re.fullmatch(r"    Test net output #2: top-5 = [\d.e+-]+", lines[i + 3])
    assert re.fullmatch(r"test accuracy \d+\.\d% \(top-1\), \d+\.\d% \(top-5\) after 20 iterations, \d+ s; "
                        rf"compile \d+\.\d s \(no persistent cache\); float32 on {jax.default_backend()}", lines[-1])
    assert {p.name for p in run.iterdir()} == {"spec.yaml", "run.json", "train.log", "metrics.jsonl", "metrics.csv",
                                               "curves.png", "checkpoints", "summary.json"}
    assert (run / "train.log").read_text().splitlines()[1:] == lines[1:]  # the same lines, minus the title
    resolved = load_spec(run / "spec.yaml")  # the resolved spec is itself a valid spec
    assert resolved.solver.max_iter == 20 and resolved.solver.random_seed == 1 and resolved.data.batch_size == 16
    info = json.loads((run / "run.json").read_text())
    assert (info["precision"], info["seed"], info["train_samples"], info["test_samples"]) == ("float32", 1, 8000, 2000)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["iter"]) for r in rows] == [("test", 0), ("train", 0), ("train", 5), ("test", 10),
                                                      ("train", 10), ("train", 15), ("test", 20)]
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "kind,iter,epoch,seconds,lr,loss,images_per_s,train/loss,test/accuracy,test/loss,test/top-5"
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ok"] and summary["precision"] == "float32" and summary["iterations"] == 20
    assert summary["checkpoints"] == [10, 20] and summary["best"]["iteration"] in (10, 20)
    assert summary["final_test"]["accuracy"] == pytest.approx(rows[-1]["outputs"]["accuracy"])


def test_iter_size_sums_gradients_like_one_bigger_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = FIXTURES / "plain.yaml"
    assert _run(capsys, spec, "-o", tmp_path / "big")[0] == 0
    assert _run(capsys, spec, "-o", tmp_path / "acc", "--batch-size", "8", "--iter-size", "2")[0] == 0
    big, _ = read_variables(tmp_path / "big")
    acc, _ = read_variables(tmp_path / "acc")
    moved = False
    for layer in big["params"]:
        for i in big["params"][layer]:
            np.testing.assert_allclose(acc["params"][layer][i], big["params"][layer][i], rtol=2e-5, atol=2e-6)
    init, _ = read_variables(tmp_path / "big" / "checkpoints" / "10")
    moved = not np.array_equal(init["params"]["ip1"]["0"], np.zeros_like(init["params"]["ip1"]["0"]))
    assert moved
    info = json.loads((tmp_path / "acc" / "run.json").read_text())
    assert info["batch_size"] == 8


def test_nonfinite_loss_names_the_first_bad_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, FIXTURES / "nan.yaml", "-o", tmp_path / "run")
    assert code == 1
    last = out.splitlines()[-1]
    assert last.startswith("stopped: the loss went non-finite at iteration 0: layer 'sqrt' (Power) is the first "
                           "whose output went non-finite: top 'sqrt' has 80 NaN of 80 values")
    assert "no checkpoint was written before it" in last
    record = json.loads((tmp_path / "run" / "nonfinite.json").read_text())
    assert (record["iteration"], record["layer"], record["type"]) == (0, "sqrt", "Power")
    assert (tmp_path / "run" / "curves.png").is_file() and "could not draw" not in out
    assert "Traceback" not in err


def test_divergence_keeps_the_last_good_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The rate jumps by 1e30 at iteration 6: the weights overflow and the loss goes non-finite soon after.
    spec = tmp_path / "diverge.yaml"
    spec.write_text((FIXTURES / "plain.yaml").read_text().replace(
        "lr_policy: fixed, max_iter: 10, display: 5", "lr_policy: step, stepsize: 6, gamma: 1e30, max_iter: 40, "
        "display: 0, snapshot: 3"))
    code, out, _ = _run(capsys, spec, "-o", tmp_path / "run")
    assert code == 1
    m = re.search(r"non-finite at iteration (\d+): layer '(\w+)' \((\w+)\).*the last good checkpoint is (\S+)$",
                  out.splitlines()[-1])
    assert m, out.splitlines()[-1]
    bad, layer, last = int(m.group(1)), m.group(2), Path(m.group(4))
    assert bad >= 6 and layer in ("conv1", "pool1", "relu1", "ip1", "loss")
    assert int(last.name) <= bad and int(last.name) % 3 == 0
    good, _ = read_variables(last)
    assert all(np.isfinite(a).all() for blobs in good["params"].values() for a in blobs.values())


def test_bfloat16_compute_keeps_float32_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, FIXTURES / "plain.yaml", "-o", tmp_path / "run", "--dtype", "bfloat16",
                        "--max-iter", "30", "--display", "1")
    assert code == 0
    assert out.splitlines()[-1].endswith(f"bfloat16 on {jax.default_backend()}")
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["kind"] == "train"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # it learns
    variables, _ = read_variables(tmp_path / "run")
    assert {a.dtype for blobs in variables["params"].values() for a in blobs.values()} == {np.dtype("float32")}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["precision"] == "bfloat16"


@pytest.mark.slow
def test_lenet_learns_the_bundled_mnist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The one real training run of the suite: specs/lenet.yaml, 300 of its 2,500 iterations."""
    spec = Path(__file__).parents[1] / "specs" / "lenet.yaml"
    code, out, _ = _run(capsys, spec, "-o", tmp_path / "run", "--max-iter", "300", "--seed", "1",
                        "--test-interval", "300")
    assert code == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in rows if r["kind"] == "train"]
    tests = [r["outputs"] for r in rows if r["kind"] == "test"]
    assert train[0] > 2.0 and train[-1] < 0.3
    assert tests[0]["accuracy"] < 0.3 and tests[-1]["accuracy"] >= 0.94  # 20 x 100 held-out digits
    assert tests[-1]["top-5"] >= 0.99
    assert re.match(r"test accuracy (9\d\.\d)% \(top-1\)", out.splitlines()[-1])


def test_average_loss_smooths_the_displayed_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def displayed(run: str, average: str) -> list[float]:
        spec = tmp_path / f"{run}.yaml"
        spec.write_text((FIXTURES / "plain.yaml").read_text().replace("display: 5", f"display: 1, average_loss: {average}"))
        assert _run(capsys, spec, "-o", tmp_path / run, "--max-iter", "6")[0] == 0
        rows = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["kind"] == "train"]

    raw, smooth = displayed("raw", "1"), displayed("smooth", "3")
    assert len(raw) == len(smooth) == 6
    expected = [np.mean(raw[max(0, i - 2): i + 1]) for i in range(6)]  # Caffe: the mean of the last 3
    np.testing.assert_allclose(smooth, expected, rtol=1e-6)


def test_a_wide_convolution_trains_under_the_chosen_compiler_options(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # The train and test steps compile with Model.compiler_options (sharded, donated); run.json records them.
    from netspec.kernels import onednn

    runs, outs = {}, {}
    for impl in ("auto", "xla"):
        code, outs[impl], err = _run(capsys, FIXTURES / "wide.yaml", "-o", tmp_path / impl, "--conv-impl", impl)
        assert code == 0, err
        runs[impl] = json.loads((tmp_path / impl / "run.json").read_text())
        rows = [json.loads(x) for x in (tmp_path / impl / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["kind"] == "test" and rows[-1]["iter"] == 20
        assert np.isfinite(rows[-1]["outputs"]["loss"])
    assert runs["xla"]["compiler_options"] == {}
    assert runs["auto"]["spatial_layout"] == runs["xla"]["spatial_layout"] == "nhwc"  # a wide net: channels-last
    assert runs["auto"]["host_malloc"] is None  # its step's scratch is far below glibc's mmap threshold
    if runs["auto"]["backend"] == "cpu":
        assert runs["auto"]["compiler_options"] == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
    # Where oneDNN is installed its kernels run conv2 (conv1's 2 MFLOP stay on XLA), and the run says so.
    library = f"oneDNN {onednn.version()}" if onednn.available() and runs["auto"]["backend"] == "cpu" else None
    assert (runs["auto"]["conv_library"], runs["xla"]["conv_library"]) == (library, None)
    assert (f"convolutions: {library}" in outs["auto"]) is (library is not None)
    assert "convolutions:" not in outs["xla"]


def test_matmul_precision_reaches_the_compiled_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The same run under --matmul-precision highest is another program (a cache miss after the default run),
    # and the same one again on a second highest run (a hit); run.json records the setting.
    cache = tmp_path / "cache"

    def train(name: str, precision: str) -> str:
        code = main(["train", str(FIXTURES / "tiny.yaml"), "-o", str(tmp_path / name), "--max-iter", "2",
                     "--test-iter", "1", "--progress", "plain", "--compile-cache", str(cache),
                     "--matmul-precision", precision])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads((tmp_path / name / "run.json").read_text())["matmul_precision"] == precision
        return out.splitlines()[-1]

    assert "(cache miss)" in train("default", "default")
    assert "(cache miss)" in train("highest", "highest")
    assert "(from the compilation cache)" in train("again", "highest")


def test_matmul_precision_covers_the_custom_gradients() -> None:
    # Every product of a LeNet train step, the convolutions' custom VJPs included, is traced at the asked
    # precision (it matters on GPUs, whose float32 default is TensorFloat-32). netspec's own plan: oneDNN's
    # kernels, CPU only, compute in full float32 whatever the setting.
    from netspec.lowering import compile as lower
    from netspec.train.config import matmul_precision

    model = lower(load_spec(Path(__file__).parents[1] / "specs" / "lenet.yaml"), "TRAIN", batch=2, conv_impl="planned")
    variables = model.init(0)
    feed = {"data": np.zeros((2, 1, 28, 28), np.float32), "label": np.zeros(2, np.int32)}

    def loss(params: object) -> object:
        out, _ = model.apply_train({"params": params, "batch_stats": variables.get("batch_stats", {})}, feed)
        return model.loss(out)

    def products(precision: str) -> list[str]:
        with matmul_precision(precision):  # type: ignore[arg-type]
            text = jax.jit(jax.grad(loss)).lower(variables["params"]).as_text()
        return [x for x in text.splitlines() if "stablehlo.convolution" in x or "stablehlo.dot_general" in x]

    highest, default = products("highest"), products("default")
    assert len(highest) == len(default) >= 10  # 2 convs x 3 passes, 2 inner products x 3, minus conv1's input grad
    assert all("HIGHEST" in x for x in highest) and not any("HIGHEST" in x for x in default)
