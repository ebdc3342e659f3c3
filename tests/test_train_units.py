"""The jax-free parts of `netspec train`: options -> solver, run folders, metrics files, log lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from netspec.errors import NetspecError
from netspec.solver_spec import SolverSpec
from netspec.spec import load_spec
from netspec.train.config import resolve_solver
from netspec.train.progress import EvalStatus, TrainStatus, fmt_duration, eval_lines, train_lines
from netspec.train.run_folder import MetricColumns, RunFolder, choose_run_dir, plot_curves

SPEC = """
name: tiny
layer:
  - {name: data, type: Input, top: [data, label], input_param: {shape: [{dim: [4, 1, 4, 4]}, {dim: [4]}]}}
  - {name: ip, type: InnerProduct, bottom: data, inner_product_param: {num_output: 3}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label]}
solver: {base_lr: 0.1, lr_policy: fixed, max_iter: 10, random_seed: 5, display: 2}
"""


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


# --- log lines ------------------------------------------------------------------------------------


def test_plain_lines_keep_caffes_shapes() -> None:
    status = TrainStatus(iteration=100, max_iter=1000, epoch=0.8, loss=0.1234567, outputs={"loss": 0.125},
                         loss_weights={"loss": 1.0}, lr=0.00992565, images_per_s=5321.4, eta_s=42.0)
    assert train_lines(status) == [
        "Iteration 100 (epoch 0.80, 5321 img/s, ETA 0:42), loss = 0.123457",
        "    Train net output #0: loss = 0.125 (* 1 = 0.125 loss)",
        "Iteration 100, lr = 0.00992565",
    ]
    first = TrainStatus(iteration=0, max_iter=1000, epoch=0.0, loss=2.3, outputs={}, loss_weights={}, lr=0.01,
                        images_per_s=None, eta_s=None)  # nothing timed yet
    assert train_lines(first) == ["Iteration 0 (epoch 0.00), loss = 2.3", "Iteration 0, lr = 0.01"]
    test = EvalStatus(iteration=500, outputs={"accuracy": 0.9856, "loss": 0.0456, "top-5": 1.0},
                      loss_weights={"loss": 1.0})
    assert eval_lines(test) == [
        "Iteration 500, Testing net (#0)",
        "    Test net output #0: accuracy = 0.9856",
        "    Test net output #1: loss = 0.0456 (* 1 = 0.0456 loss)",
        "    Test net output #2: top-5 = 1",
    ]
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "?"


# --- solver resolution ----------------------------------------------------------------------------


def test_flags_override_the_spec_solver(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    solver = resolve_solver(spec, None, {"max_iter": 3, "seed": 9, "display": 1})
    assert (solver.max_iter, solver.random_seed, solver.display, solver.base_lr) == (3, 9, 1, 0.1)
    assert resolve_solver(spec, None, {"max_epochs": 2}).max_iter == 0  # epochs replace max_iter


def test_a_clock_seed_is_made_concrete(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, SPEC.replace("random_seed: 5", "random_seed: -1")))
    assert resolve_solver(spec, None, {}).random_seed >= 0


def test_solver_file_yaml_and_prototxt(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("solver: {base_lr: 0.5, lr_policy: step, stepsize: 3, gamma: 0.1, max_iter: 7}\n")
    assert resolve_solver(spec, yaml_file, {}).base_lr == 0.5
    proto = tmp_path / "lenet_solver.prototxt"
    proto.write_text('net: "x.prototxt"\ntest_iter: 100\ntest_interval: 500\nbase_lr: 0.01\nmomentum: 0.9\n'
                     'weight_decay: 0.0005\nlr_policy: "inv"\ngamma: 0.0001\npower: 0.75\ndisplay: 100\n'
                     'max_iter: 10000\nsnapshot: 5000\nsnapshot_prefix: "lenet"\nsolver_mode: CPU\n')
    s = resolve_solver(spec, proto, {"max_iter": 20})
    assert (s.lr_policy, s.test_iter, s.max_iter, s.momentum) == ("inv", [100], 20, 0.9)


def test_solver_problems_are_located_errors(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_lr: 0.1\nlr_policy: fixed\nmax_itr: 3\n")
    with pytest.raises(NetspecError) as e:
        resolve_solver(spec, bad, {})
    assert "bad.yaml:3:1" in str(e.value) and "max_itr" in str(e.value)
    with pytest.raises(NetspecError, match="solver file not found"):
        resolve_solver(spec, tmp_path / "missing.yaml", {})
    no_solver = load_spec(_spec(tmp_path, SPEC.split("solver:")[0]))
    with pytest.raises(NetspecError, match="no `solver:` section"):
        resolve_solver(no_solver, None, {})
    no_length = load_spec(_spec(tmp_path, SPEC.replace("max_iter: 10, ", "")))
    with pytest.raises(NetspecError, match="max_iter"):
        resolve_solver(no_length, None, {})


# --- run folders ----------------------------------------------------------------------------------


def test_run_folder_choice(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    assert choose_run_dir("lenet", root, None, resume=False) == root / "lenet"
    (root / "lenet" / "checkpoints" / "100").mkdir(parents=True)
    assert choose_run_dir("lenet", root, None, resume=False) == root / "lenet-2"
    assert choose_run_dir("lenet", root, None, resume=True) == root / "lenet"
    with pytest.raises(NetspecError, match="already holds a run"):
        choose_run_dir("lenet", root, root / "lenet", resume=False)
    with pytest.raises(NetspecError, match="no checkpoint"):
        choose_run_dir("lenet", root, tmp_path / "elsewhere", resume=True)
    with pytest.raises(NetspecError, match="no run of 'other'"):
        choose_run_dir("other", root, None, resume=True)


def test_metrics_files_and_resume_truncation(tmp_path: Path) -> None:
    cols = MetricColumns(train=("loss",), test=("accuracy", "loss"))
    folder = RunFolder(tmp_path / "run", cols)
    folder.start_metrics(None)
    rows = [{"kind": "test", "iter": 0, "outputs": {"accuracy": 0.1, "loss": 2.3}},
            {"kind": "train", "iter": 0, "loss": 2.3, "lr": 0.1, "outputs": {"loss": 2.3}},
            {"kind": "train", "iter": 5, "loss": 1.0, "lr": 0.1, "outputs": {"loss": 1.0}},
            {"kind": "test", "iter": 5, "outputs": {"accuracy": 0.5, "loss": 1.1}}]
    for r in rows:
        folder.record(r)
    folder.close()
    resumed = RunFolder(tmp_path / "run", cols)
    resumed.start_metrics(5)  # the resumed run redoes iteration 5's display and test
    resumed.close()
    kept = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert kept == rows[:2]
    with (tmp_path / "run" / "metrics.csv").open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["kind", "iter", "epoch", "seconds", "lr", "loss", "images_per_s", "train/loss",
                        "test/accuracy", "test/loss"]
    assert table[1][:2] == ["test", "0"] and table[1][-2:] == ["0.1", "2.3"]
    assert table[2][7] == "2.3" and len(table) == 3
    plot_curves(rows, tmp_path / "curves.png", "tiny")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_files_are_replaced_whole_with_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run", MetricColumns(train=("loss",), test=()))
    folder.write_json("summary.json", {"iters": 1})
    (tmp_path / "plain").write_text("x")
    folder.write_json("summary.json", {"iters": 2})
    folder.close()
    summary = tmp_path / "run" / "summary.json"
    assert json.loads(summary.read_text()) == {"iters": 2}
    # a run folder shared with a team stays readable by it: no owner-only temporary file mode
    assert summary.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    with pytest.raises(UnicodeEncodeError):
        folder.write_text("summary.json", "{\"iters\": \ud800}")  # a lone surrogate: fails mid-write
    assert json.loads(summary.read_text()) == {"iters": 2}  # the old file is kept whole
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["summary.json", "train.log"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(),
                    reason="needs Linux's /proc, under which no folder can be made")
def test_a_write_the_system_refuses_is_an_error_naming_the_file() -> None:
    from netspec.files import write_atomically

    with pytest.raises(NetspecError) as e:
        write_atomically("/proc/netspec-no-such/summary.json", "{}")
    assert [d.message for d in e.value.diagnostics] == [
        "cannot write /proc/netspec-no-such/summary.json: No such file or directory"]


def test_solver_spec_type_is_the_shared_one(tmp_path: Path) -> None:
    assert isinstance(load_spec(_spec(tmp_path)).solver, SolverSpec)


def test_plan_resolves_epochs_batches_and_the_top5_output() -> None:
    from netspec.train.config import TrainOptions
    from netspec.train.plan import make_plan

    tiny = Path(__file__).parent / "fixtures" / "train" / "tiny.yaml"
    plan = make_plan(TrainOptions(spec=tiny, solver_overrides={"max_epochs": 2}))
    assert plan.solver.max_iter == 2 * 8000 // 16 and plan.iters_per_epoch == 500
    assert (plan.batch_size, plan.test_batch_size, plan.test_iter) == (16, 16, 4)
    assert plan.feed.names == ("data", "label") and plan.num_classes == 10 and plan.top1 == "accuracy"
    assert [lay.name for lay in plan.spec.layers][-1] == "top-5"
    plan = make_plan(TrainOptions(spec=tiny, batch_size=32, solver_overrides={"iter_size": 2, "max_epochs": 1}))
    assert plan.solver.max_iter == 8000 // 64 and plan.data.batch_size == 32
