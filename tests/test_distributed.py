"""Scale-out on one host: 1 device vs 8 (forced host devices), BatchNorm and Dropout under sharding, bf16.

The device count is fixed when JAX's backend starts, so the 8-device work happens in one subprocess
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`) that runs this file as a script: it trains each
spec with `netspec train` on all 8 devices, replays the 1-device run step by step on both device
counts, and probes BatchNorm and Dropout directly.

Tolerance. 1 and 8 devices compute the same function of the same parameters, batch and keys; only
the order of float32 additions differs (each device sums over its slice of the batch, then an
all-reduce sums the 8 partial results), which moves a result by a few ulps (eps = 2^-23 ~ 1.2e-7
relative). So every step of the 1-device run, recomputed on 8 devices from the same state, must give
the same loss and the same new parameters to 1e-5 relative (measured: <= 5e-7), over 50 steps. Real
sharding bugs are 1e-2 or more from the first step: per-device BatchNorm statistics, per-device
dropout masks, a missing gradient all-reduce (the probes below show the first two at that size).

Two free-running runs are another matter. Their 1e-7 differences in the parameters can decide a
near-tie in a max-pool window (or a ReLU at 0) differently, which routes a gradient elsewhere: the
curves then differ by ~1e-4 in one step and drift apart chaotically, as any two float orders do
(measured: LeNet, batch 16, seed 1 jumps from 1e-7 to 4.5e-5 at step 19 and reaches 1.6e-2 by step
50; seed 2 stays below 4e-7 for 50 steps). For `netspec train` end to end we therefore assert the
first step to 1e-6, every step within 10%, and the same learning (the last 10 losses' mean to 5%).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from netspec.train.distributed import (
    Cluster, PeerRunFolder, Topology, check_cluster, detected_launcher, explain, failure_message, split_hint,
    wants_processes)
from netspec.train.run_folder import MetricColumns

ROOT = Path(__file__).parents[1]
LENET = ROOT / "specs" / "lenet.yaml"
BN_DROPOUT = Path(__file__).parent / "fixtures" / "distributed" / "bn_dropout.yaml"
DEVICES = 8
STEPS = 50
STEP_RTOL = 1e-5  # one step from the same state: float32 reassociation only
CHAOS_RTOL = 0.1  # two free-running runs, after a near-tie has been decided differently
COMMON = ["--progress", "none", "--compile-cache", "off", "--max-iter", str(STEPS), "--display", "1",
          "--test-interval", "0", "--test-iter", "0", "--snapshot", "0", "--seed", "1"]
# name -> (spec, extra flags): LeNet at a small global batch (2 rows per device), the BN/Dropout net at 16.
NETS = {"lenet": (LENET, ["--batch-size", "16"]), "bn_dropout": (BN_DROPOUT, [])}


# ------------------------------------------------------------------------------------------------
# the 8-device subprocess


def _probe(out: Path) -> dict[str, Any]:
    """BatchNorm and Dropout on a batch sharded over 8 devices vs the same batch on one device."""
    import jax

    import netspec
    from netspec.data import BatchIterator, load_dataset
    from netspec.spec import load_spec
    from netspec.train.distributed import make_mesh

    spec = load_spec(BN_DROPOUT)
    model = netspec.compile(spec, "TRAIN", batch=16)
    variables = model.init(0)
    rows = BatchIterator(load_dataset(spec.data).train, 16, prefetch=0, seed=3).batch(0, 0)
    batch = {"data": rows["data"] / 255.0, "label": rows["label"]}
    key = jax.random.key(11)

    def run(mesh: Any, inputs: Any, rng: Any) -> tuple[Any, Any, Any]:
        """(loss, new BatchNorm statistics, dropout output) with `inputs` split over `mesh`'s devices."""
        v = jax.device_put(variables, jax.NamedSharding(mesh, jax.P()))
        x = jax.device_put(inputs, jax.NamedSharding(mesh, jax.P("data")))
        outs, stats = model.apply_train(v, x, rng)
        return outs["loss"], stats, model.apply(v, x, train=True, rng=rng, blobs=("drop1",))["drop1"]

    eight, one = make_mesh(DEVICES), make_mesh(1)
    loss8, stats8, drop8 = run(eight, batch, key)
    loss1, stats1, drop1 = run(one, batch, key)
    _, _, drop_other = run(one, batch, jax.random.key(12))
    # What per-device statistics would be: BatchNorm over one device's 2 rows alone.
    _, stats_shard, _ = run(one, {k: v[:2] for k, v in batch.items()}, key)
    mean = lambda s: np.asarray(s["bn1"]["0"])  # noqa: E731 - the running mean (factor 1 after one step)
    result = {
        "threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "device_count": jax.device_count(),
        "computed_on": len(drop8.sharding.device_set),
        "shards": [list(x.data.shape) for x in jax.device_put(
            batch["data"], jax.NamedSharding(eight, jax.P("data"))).addressable_shards],
        "loss_1": float(loss1), "loss_8": float(loss8),
        "bn_mean_diff": float(np.abs(mean(stats8) - mean(stats1)).max()),
        "bn_var_diff": float(np.abs(np.asarray(stats8["bn1"]["1"]) - np.asarray(stats1["bn1"]["1"])).max()),
        "bn_per_device_mean_diff": float(np.abs(mean(stats_shard) - mean(stats1)).max()),
        "dropout_masks_equal": bool(np.array_equal(np.asarray(drop8) == 0, np.asarray(drop1) == 0)),
        "dropout_values_diff": float(np.abs(np.asarray(drop8) - np.asarray(drop1)).max()),
        "dropout_other_key_differs": float(np.mean((np.asarray(drop_other) == 0)
                                                   != (np.asarray(drop1) == 0))),
    }
    (out / "probe.json").write_text(json.dumps(result))
    return result


def _step_by_step(spec: Path, batch_size: int | None) -> dict[str, list[float]]:
    """The 1-device run of `netspec train` (same plan, init, optimizer, batches and step as the loop),
    with every step also computed on 8 devices from the same state."""
    import jax

    import netspec
    from netspec.data import BatchIterator, data_transformer
    from netspec.solver import build_optimizer
    from netspec.train.config import TrainOptions
    from netspec.train.distributed import make_mesh
    from netspec.train.plan import make_plan
    from netspec.train.step import batch_sharding, init_state, make_train_step, replicated

    overrides = {"seed": 1, "test_interval": 0, "test_iter": 0, "max_iter": STEPS}
    options = TrainOptions(spec=spec, batch_size=batch_size, solver_overrides=overrides)
    plan = make_plan(options, devices=DEVICES)
    # Channels-last and without oneDNN, as `netspec train` compiles the net for several devices (a single device
    # may train LeNet batch-minor or on oneDNN, which round differently): the 8-device replay must be the
    # 8-device run to the bit.
    model = netspec.compile(plan.spec, "TRAIN", batch=plan.batch_size, spatial_layout="nhwc", conv_impl="planned")
    tx = build_optimizer(plan.solver, model.lr_mults(), model.decay_mults())
    seed = plan.solver.random_seed
    state = init_state(jax.jit(model.init)(jax.random.PRNGKey(seed)), tx, seed)
    ds = plan.splits.train
    transform = data_transformer(plan.data, ds.images.shape[1:], plan.base_dir)  # augment included, as train
    batches = BatchIterator(ds, plan.batch_size, names=plan.feed.names, shuffle=plan.data.shuffle,
                            transform=transform, seed=plan.data.seed, prefetch=0)
    steps = {}
    for n in (1, DEVICES):
        mesh = make_mesh(n)
        rep, rows = replicated(mesh), batch_sharding(mesh, False)
        step = jax.jit(make_train_step(model, tx, 1), in_shardings=(rep, rows), out_shardings=(rep, rep))
        steps[n] = (step, rep, rows)

    def rel(a: Any, b: Any) -> float:
        """The largest difference of two pytrees, relative to each leaf's largest magnitude."""
        pairs = [(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
        return max((float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-12)) for x, y in pairs),
                   default=0.0)

    out: dict[str, list[float]] = {"loss_1": [], "loss_8": [], "params": [], "batch_stats": []}
    for _ in range(STEPS):
        batch = next(batches)
        (s1, m1), (s8, m8) = (f(jax.device_put(state, rep), jax.device_put(batch, rows))
                              for f, rep, rows in steps.values())
        out["loss_1"].append(float(m1["loss"]))
        out["loss_8"].append(float(m8["loss"]))
        out["params"].append(rel(s1.params, s8.params))
        out["batch_stats"].append(rel(s1.batch_stats, s8.batch_stats))
        state = s1  # follow the 1-device run
    return out


def _device_worker(out: Path) -> int:
    from netspec.cli import main

    status = {name: main(["train", str(spec), "-o", str(out / name), *extra, *COMMON])
              for name, (spec, extra) in NETS.items()}
    (out / "status.json").write_text(json.dumps(status))
    for name, (spec, extra) in NETS.items():
        replay = _step_by_step(spec, int(extra[1]) if extra else None)
        (out / f"steps-{name}.json").write_text(json.dumps(replay))
    _probe(out)
    return 0


def _run_forced_devices(args: list[str], timeout: float, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The 8 devices are simulated CPU ones: on a machine with a GPU, JAX would otherwise pick that.
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}", "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def eight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("devices")
    done = _run_forced_devices([sys.executable, __file__, str(out)], timeout=420, cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _losses(run: Path) -> np.ndarray:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return np.array([r["loss"] for r in rows if r["kind"] == "train"])


def _state(run: Path) -> dict[str, Any]:
    from netspec.train.checkpoint import read_variables

    variables, _ = read_variables(run)  # onto this process's one device, whatever devices wrote it
    return variables


@pytest.mark.slow
@pytest.mark.parametrize("net", list(NETS))
def test_every_step_on_eight_devices_equals_one_device(eight: Path, net: str) -> None:
    """50 steps of the 1-device run, each also computed on 8 devices from the same state: the same loss
    curve, parameters and BatchNorm statistics to float32 tolerance."""
    steps = json.loads((eight / f"steps-{net}.json").read_text())
    # The replay is `netspec train` itself (same init, batches and step): from the same first state its
    # 8-device loss is the 8-device CLI run's, to the bit.
    assert steps["loss_8"][0] == _losses(eight / net)[0]
    np.testing.assert_allclose(steps["loss_8"], steps["loss_1"], rtol=STEP_RTOL)
    assert max(steps["params"]) < STEP_RTOL, steps["params"]
    assert max(steps["batch_stats"]) < STEP_RTOL, steps["batch_stats"]
    assert len(steps["loss_1"]) == STEPS and np.mean(steps["loss_1"][-10:]) < np.mean(steps["loss_1"][:10])


@pytest.mark.slow
@pytest.mark.parametrize("net", list(NETS))
def test_netspec_train_on_eight_devices_learns_as_on_one(eight: Path, net: str) -> None:
    """`netspec train` on all 8 devices, free-running, against the 1-device run (the replay's curve)."""
    assert json.loads((eight / "status.json").read_text()) == {n: 0 for n in NETS}
    many = eight / net
    info = json.loads((many / "run.json").read_text())
    assert len(info["devices"]) == DEVICES
    assert info["conv_library"] is None  # oneDNN's calls would not shard: netspec's own plan runs several devices
    assert json.loads((many / "summary.json").read_text())["devices"] == DEVICES
    a, b = np.array(json.loads((eight / f"steps-{net}.json").read_text())["loss_1"]), _losses(many)
    assert len(a) == len(b) == STEPS
    np.testing.assert_allclose(b[0], a[0], rtol=1e-6)  # the first loss: one forward pass of the same params
    np.testing.assert_allclose(b, a, rtol=CHAOS_RTOL)
    assert b[-10:].mean() == pytest.approx(a[-10:].mean(), rel=0.05) and a[-10:].mean() < 0.8 * a[:10].mean()
    variables = _state(many)  # a checkpoint written on 8 devices, read back on this process's one
    assert set(variables["batch_stats"]) == ({"bn1"} if net == "bn_dropout" else set())


@pytest.mark.slow
def test_batchnorm_statistics_are_over_the_global_batch(eight: Path) -> None:
    probe = json.loads((eight / "probe.json").read_text())
    assert probe["device_count"] == DEVICES and probe["computed_on"] == DEVICES
    assert probe["shards"] == [[2, 1, 28, 28]] * DEVICES
    # The 8-way sharded batch gives one device's statistics of all 16 rows ...
    assert probe["bn_mean_diff"] < 1e-6 and probe["bn_var_diff"] < 1e-5
    # ... not what a device's own 2 rows give (the bug this guards against), which is far off.
    assert probe["bn_per_device_mean_diff"] > max(1e-3, 1000 * probe["bn_mean_diff"])
    assert probe["loss_8"] == pytest.approx(probe["loss_1"], rel=1e-6)


@pytest.mark.slow
def test_dropout_masks_do_not_depend_on_the_device_count(eight: Path) -> None:
    probe = json.loads((eight / "probe.json").read_text())
    assert probe["threefry_partitionable"] is True  # JAX's default: sharded random bits equal unsharded ones
    assert probe["dropout_masks_equal"] and probe["dropout_values_diff"] < 1e-4
    assert probe["dropout_other_key_differs"] > 0.1  # another key moves ~42% of a 0.3 mask: this can fail


def test_a_batch_the_devices_cannot_split_is_a_clear_error(tmp_path: Path) -> None:
    spec = Path(__file__).parent / "fixtures" / "train" / "tiny.yaml"
    args = [sys.executable, "-m", "netspec.cli", "train", str(spec), "-o", str(tmp_path / "r"),
            "--compile-cache", "off", "--progress", "none"]
    done = _run_forced_devices([*args, "--batch-size", "12"], timeout=120, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: the batch of 12 does not split over 8 devices" in done.stderr
    assert "--batch-size 16" in done.stderr
    assert not (tmp_path / "r").exists()  # found before any compute or run folder
    done = _run_forced_devices([*args, "--devices", "9"], timeout=120, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--devices 9: this machine has 8 cpu device(s)" in done.stderr


# ------------------------------------------------------------------------------------------------
# bf16


def _float_dtypes(run: Path) -> dict[str, set[str]]:
    """The floating dtypes of the params, BatchNorm statistics and optimizer state in a run's last
    checkpoint."""
    import jax
    import orbax.checkpoint as ocp

    from netspec.train.checkpoint import resolve_checkpoint

    folder, step = resolve_checkpoint(run)
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    mgr = ocp.CheckpointManager(folder.absolute(), options=options)
    try:
        state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    finally:
        mgr.close()
    leaves = {k: [np.asarray(x) for x in jax.tree.leaves(state.get(k) or {})]
              for k in ("params", "batch_stats", "opt_state")}
    return {k: {str(x.dtype) for x in xs if x.dtype.kind == "f"} for k, xs in leaves.items()}


@pytest.mark.slow
def test_bfloat16_lenet_reaches_the_float32_accuracy_band(tmp_path: Path) -> None:
    """LeNet, 200 iterations at batch 32 on the bundled MNIST sample, in float32 and in bfloat16."""
    from conftest import run_cli

    acc = {}
    for dtype in ("float32", "bfloat16"):
        run = tmp_path / dtype
        done = run_cli(["train", str(LENET), "-o", str(run), "--dtype", dtype, "--max-iter", "200",
                        "--batch-size", "32", "--test-interval", "0", "--test-iter", "30", "--seed", "1",
                        "--devices", "1", "--progress", "none", "--compile-cache", "off"])
        assert done.rc == 0, done.err
        assert done.out.splitlines()[-1].endswith(f"{dtype} on {jax.default_backend()}")  # names the precision
        summary = json.loads((run / "summary.json").read_text())
        assert summary["precision"] == dtype
        assert json.loads((run / "run.json").read_text())["precision"] == dtype
        acc[dtype] = summary["final_test"]["accuracy"]  # 30 x 32 = 960 held-out digits
        # bf16 is the compute precision only: what is stored and updated stays float32.
        assert _float_dtypes(run) == {"params": {"float32"}, "batch_stats": set(), "opt_state": {"float32"}}
    assert acc["float32"] >= 0.9 and acc["bfloat16"] >= 0.9, acc
    assert abs(acc["bfloat16"] - acc["float32"]) <= 0.02, acc


def test_bfloat16_computes_batchnorm_statistics_in_float32() -> None:
    import jax
    import jax.numpy as jnp

    import netspec

    model = netspec.compile(BN_DROPOUT, "TRAIN", dtype="bfloat16", batch=4)
    variables = model.init(0)
    x = jax.random.normal(jax.random.key(0), (4, 1, 28, 28)) * 3 + 1
    outs, stats = model.apply_train(variables, {"data": x, "label": jnp.arange(4)}, jax.random.key(1))
    assert outs["loss"].dtype == jnp.float32  # (bf16 layer outputs: tests/test_lowering_nets.py)
    assert {a.dtype for a in stats["bn1"].values()} == {jnp.dtype("float32")}
    assert np.all(np.isfinite(np.asarray(stats["bn1"]["0"]))) and float(stats["bn1"]["2"][0]) == 1.0


# ------------------------------------------------------------------------------------------------
# jax-free pieces: flags, launchers, failure reports


def test_cluster_flags_are_checked_together() -> None:
    assert check_cluster(Cluster()) == []
    assert check_cluster(Cluster("127.0.0.1:1234", 2, 1)) == []
    msgs = [d.message for d in check_cluster(Cluster("nohost", 2, 2, peer_timeout=0))]
    assert msgs == ["--coordinator 'nohost': expected HOST:PORT (process 0's address and a free port, e.g. "
                    "10.0.0.1:12345)",
                    "--process-id 2: must be in 0..1 for --num-processes 2",
                    "--peer-timeout 0: must be at least 1 second"]
    (partial,) = check_cluster(Cluster(coordinator="h:1"))
    assert partial.message.startswith("--num-processes, --process-id missing")
    (port,) = check_cluster(Cluster("h:70000", 1, 0))
    assert port.message.startswith("--coordinator 'h:70000'")


@pytest.mark.parametrize("env, launcher", [
    ({}, None),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, "Slurm"),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
    ({"TPU_WORKER_HOSTNAMES": "a,b"}, "TPU"),
    ({"TPU_WORKER_HOSTNAMES": "a"}, None),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, "JAX_COORDINATOR_ADDRESS"),
])
def test_multi_process_launchers_are_detected(env: dict[str, str], launcher: str | None) -> None:
    assert detected_launcher(env) == launcher
    assert wants_processes(Cluster(), env) is (launcher is not None)
    assert wants_processes(Cluster("h:1", 2, 0), {}) is True


def test_split_hint_names_a_batch_and_a_device_count_that_work() -> None:
    assert split_hint(12, 8, 1) == "use --batch-size 16 (a multiple of 8) or --devices 6"
    assert split_hint(12, 8, 2) == "use --batch-size 16 (a multiple of 8) or --devices 3 (per process)"
    assert split_hint(7, 4, 4) == "use --batch-size 8 (a multiple of 4)"
    # LeNet's test batch of 100 on 8 devices: a --devices that also splits the train batch of 64
    assert split_hint(100, 8, 1, test=True, also=64) == (
        "use test_batch_size: 104 in the data section (a multiple of 8) or --devices 4")


# JAX's own words when a peer dies (captured from jaxlib 0.10.2 on this machine), minus the stack frames.
HEARTBEAT_FATAL = """\
F1125 14:11:53.123186    2545 client.h:80] Terminating process because the JAX distributed service detected \
fatal errors. This most likely indicates that another task died; see the other task logs for more details. \
Disable Python buffering, i.e. `python -u`, to be sure to see all the previous output. absl::Status: \
UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):
1
The tasks have crashed. Check the task logs for an earlier error, or scheduler events (e.g. preemption, \
eviction) to debug further.

RPC: /xla.coordination.CoordinationService/PollForError \
[type.googleapis.com/tensorflow.CoordinationServiceError='']
*** Check failure stack trace: ***
    @     0x7f67a9040634  absl::lts_20260107::log_internal::LogMessage::SendToLog()"""
LEADER_FATAL = """\
F1125 14:12:41.298232    2855 client.h:80] Terminating process because the JAX distributed service detected \
fatal errors. This most likely indicates that another task died; see the other task logs for more details. \
absl::Status: UNAVAILABLE: Failed to send RPC to coordination service. Either the leader task was \
preempted/died/restarted unexpectedly or this task is experiencing network issues.
Additional GRPC error information from remote target coordination_service while calling \
/xla.coordination.CoordinationService/PollForError:
*** Check failure stack trace: ***"""


GLOO_ABORT = """\
terminate called after throwing an instance of 'gloo::EnforceNotMet'
  what():  [enforce fail at external/gloo/gloo/transport/tcp/pair.cc:459] op.preamble.length <= op.nbytes. \
8 vs 4. \
Received data size doesn't match expected size. Is there a distributed collective mismatch in your code?"""
SHUTDOWN_FATAL = """\
E1125 15:45:50.586095   15719 coordination_service.cc:1520] [16943067096590593859] Shutdown barrier in \
coordination \
service has failed:
INTERNAL: Barrier failed because: task is set to ERROR: UNAVAILABLE: Task 1 heartbeat timeout. This \
indicates that \
the remote task has failed, got preempted, or crashed unexpectedly.
F1125 15:45:50.587000   15730 client.h:80] Terminating process because the JAX distributed service detected \
fatal errors. This most likely indicates that another task died; see the other task logs for more details. \
absl::Status: \
INTERNAL: Failed to disconnect from coordination service with status: INTERNAL: Shutdown barrier has failed.
RPC: /xla.coordination.CoordinationService/ShutdownTask"""
JOIN_FATAL = """\
F1125 14:41:36.534881   10977 client.h:80] Terminating process because the JAX distributed service detected \
fatal errors. This most likely indicates that another task died; see the other task logs for more details. \
Disable Python buffering, i.e. `python -u`, to be sure to see all the previous output. absl::Status: \
DEADLINE_EXCEEDED: Deadline Exceeded

RPC: /xla.coordination.CoordinationService/RegisterTask
*** Check failure stack trace: ***"""


def test_a_dead_peer_is_reported_in_one_error_with_the_resume_command(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "20").mkdir(parents=True)
    (tmp_path / "checkpoints" / "10").mkdir()
    (tmp_path / "checkpoints" / "30.orbax-checkpoint-tmp-1").mkdir()  # cut short: not a checkpoint
    cluster = Cluster("10.0.0.1:1234", 2, 0, peer_timeout=5, init_timeout=30)
    beat = explain(HEARTBEAT_FATAL.splitlines())
    assert beat is not None and (beat.kind, beat.peers) == ("peer", (1,))
    text = failure_message(beat, -6, "process 0", tmp_path, cluster)
    assert text.startswith("error: process 0: process 1 of this run stopped responding (no heartbeat for "
                           "5 s): it died or its host became unreachable\n")
    # The same death seen through the shutdown barrier JAX's agent attempts on its way down.
    shutdown = explain(SHUTDOWN_FATAL.splitlines())
    assert shutdown is not None and (shutdown.kind, shutdown.peers) == ("peer", (1,))
    assert text.endswith(f"hint: the last checkpoint is iteration 20 ({tmp_path / 'checkpoints' / '20'}); "
                         f"start every process again with --resume -o {tmp_path}")
    leader = failure_message(explain(LEADER_FATAL.splitlines()), -6, "process 1", None, cluster)
    assert leader.startswith("error: process 1: lost the coordinator (process 0), which died or became "
                             "unreachable")
    assert leader.endswith("hint: no checkpoint was written; start every process again")
    gloo = explain(GLOO_ABORT.splitlines())
    assert gloo is not None and gloo.kind == "collective" and gloo.detail.startswith("[enforce fail at")
    assert failure_message(gloo, -6, "process 0", None, cluster).startswith(
        "error: process 0: the connection to another process of this run broke during a collective "
        "(gloo: [enforce fail")
    join = explain(JOIN_FATAL.splitlines())
    assert join == type(join)("join", "DEADLINE_EXCEEDED: Deadline Exceeded")
    assert failure_message(join, -6, "process 1", None, cluster) == (
        "error: process 1: could not join the run: no answer from the coordinator at 10.0.0.1:1234 "
        "(DEADLINE_EXCEEDED: Deadline Exceeded)\n  hint: start all 2 processes within --join-timeout (30 s) "
        "of each other, with --coordinator set to process 0's reachable address")
    assert explain(["an ordinary line", "error: the batch of 12 does not split"]) is None
    assert "ended abruptly (SIGKILL)" in failure_message(None, -9, "process 1", None, cluster)


def test_processes_other_than_0_write_nothing_to_the_run_folder(tmp_path: Path) -> None:
    folder = PeerRunFolder(tmp_path / "run", MetricColumns(("loss",), ()))
    folder.write_json("summary.json", {"ok": True})
    folder.write_text("spec.yaml", "x")
    folder.log("line")
    folder.start_metrics(None)
    folder.record({"kind": "train", "iter": 0})
    folder.close()
    assert not (tmp_path / "run").exists() and folder.checkpoints == tmp_path / "run" / "checkpoints"


def test_topology_global_shapes() -> None:
    t = Topology(mesh=None, process_index=1, process_count=4, data_index=1)
    assert t.global_shape((4, 1, 28, 28)) == (16, 1, 28, 28) and t.multi and not t.is_main
    assert Topology(mesh=None).global_shape((4, 3)) == (4, 3)


def test_steps_wait_for_each_other_only_on_a_multi_device_cpu() -> None:
    from types import SimpleNamespace

    from netspec.train.distributed import one_at_a_time

    def mesh(n: int, platform: str) -> SimpleNamespace:
        return SimpleNamespace(size=n, devices=np.array([SimpleNamespace(platform=platform)] * n))

    def step(x: Any) -> Any:
        return x

    assert one_at_a_time(step, Topology(mesh(1, "cpu"))) is step
    assert one_at_a_time(step, Topology(mesh(8, "gpu"))) is step
    waiting = one_at_a_time(step, Topology(mesh(8, "cpu")))
    assert waiting is not step and waiting(np.float32(3)) == 3


if __name__ == "__main__":
    sys.exit(_device_worker(Path(sys.argv[1])))
