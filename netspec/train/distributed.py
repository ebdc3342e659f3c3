"""Scale-out: which devices a run uses, how several processes join one run, and failing fast.

One process (the default): a 1-D `data` mesh over the local devices (all of them, or the first
`--devices N`). The train step is a plain `jax.jit` over it with the state replicated and every
batch sharded along its batch axis, so XLA inserts the all-reduces: gradients, and BatchNorm's
batch mean and variance, come out as over the global batch, as on one device.

Several processes (`--coordinator HOST:PORT --num-processes P --process-id I`, or a Slurm / Open MPI
/ TPU job that `jax.distributed.initialize` detects by itself): the mesh spans the first `--devices`
(default: all) devices of every process, process by process. Process i reads only its block of rows
of each global batch (BatchIterator's `process_index` slicing) and hands them to
`jax.make_array_from_process_local_data`. Process 0 writes the run folder and prints the log; all
processes take part in Orbax's checkpoint writes (Orbax coordinates shards and the final commit),
so every process must see the same run folder (a shared file system on several hosts).

Failing fast. JAX's distributed runtime notices a dead peer (the coordinator at once, any other
process after `--peer-timeout` seconds without a heartbeat) and then ends the survivors with an
absl FATAL: SIGABRT and a C++ stack trace. Without it a survivor blocked in a collective would wait
on its gloo/NCCL socket forever. So a multi-process `netspec train` trains in a child process and
supervises it: it passes the child's output through, drops the stack trace, and turns that ending
into one error that names the failure, the last checkpoint and the command to resume with. The child
ends itself when its supervisor disappears.
"""

from __future__ import annotations

import io
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

from netspec.errors import Diagnostic, NetspecError
from netspec.train.run_folder import MetricColumns, RunFolder

#: Set in the supervised child (to the supervisor's pid): that process trains instead of supervising.
WORKER_ENV = "NETSPEC_DISTRIBUTED_WORKER"
#: Prefix of the stderr lines a worker sends to its supervisor (not shown to the user).
MARK = "netspec-worker: "
DEFAULT_PEER_TIMEOUT = 60
DEFAULT_INIT_TIMEOUT = 300


def _err(message: str, hint: str | None = None) -> NetspecError:
    return NetspecError([Diagnostic("error", message, hint=hint)])


# ---------------------------------------------------------------------------------------------
# what the command line asked for (jax-free)


@dataclass(frozen=True)
class Cluster:
    """How this process joins a multi-process run. All three of coordinator / num_processes /
    process_id, or none of them (then a Slurm, Open MPI or TPU environment is detected by JAX)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    peer_timeout: int = DEFAULT_PEER_TIMEOUT  # seconds without a heartbeat before a peer counts as dead
    init_timeout: int = DEFAULT_INIT_TIMEOUT  # seconds to wait for every process to join

    @property
    def explicit(self) -> bool:
        return any(v is not None for v in (self.coordinator, self.num_processes, self.process_id))


def detected_launcher(environ: Mapping[str, str]) -> str | None:
    """The multi-process launcher this environment shows (one whose process count JAX can read), if any.

    Only launchers that start more than one process count: a one-task Slurm job trains alone.
    """
    def count(name: str) -> int:
        try:
            return int(environ.get(name, "1").split("(")[0])
        except ValueError:
            return 1

    if environ.get("JAX_COORDINATOR_ADDRESS") and environ.get("JAX_NUM_PROCESSES"):
        return "JAX_COORDINATOR_ADDRESS"
    if "SLURM_JOB_ID" in environ and max(count("SLURM_NTASKS"), count("SLURM_NPROCS")) > 1:
        return "Slurm"
    if count("OMPI_COMM_WORLD_SIZE") > 1:
        return "Open MPI"
    if "," in environ.get("TPU_WORKER_HOSTNAMES", "") or environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "TPU"
    return None


def wants_processes(cluster: Cluster | None, environ: Mapping[str, str]) -> bool:
    """Whether this run joins other processes (flags given, or a multi-process launcher detected)."""
    return (cluster is not None and cluster.explicit) or detected_launcher(environ) is not None


def check_cluster(cluster: Cluster) -> list[Diagnostic]:
    """Problems with the multi-process flags, all of them, before anything starts."""
    diags: list[Diagnostic] = []
    given = {"--coordinator": cluster.coordinator, "--num-processes": cluster.num_processes,
             "--process-id": cluster.process_id}
    missing = [k for k, v in given.items() if v is None]
    if cluster.explicit and missing:
        diags.append(Diagnostic(
            "error", f"{', '.join(missing)} missing: a multi-process run needs --coordinator, "
                     "--num-processes and --process-id together",
            hint="under Slurm, Open MPI or on a TPU pod give none of them; JAX reads them from the "
                 "environment"))
    if cluster.coordinator is not None:
        host, sep, port = cluster.coordinator.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            diags.append(Diagnostic("error", f"--coordinator {cluster.coordinator!r}: expected HOST:PORT "
                                             "(process 0's address and a free port, e.g. 10.0.0.1:12345)"))
    if cluster.num_processes is not None and cluster.num_processes < 1:
        diags.append(Diagnostic("error", f"--num-processes {cluster.num_processes}: must be at least 1"))
    if cluster.process_id is not None and cluster.num_processes is not None and \
            not 0 <= cluster.process_id < cluster.num_processes:
        last = cluster.num_processes - 1
        diags.append(Diagnostic("error", f"--process-id {cluster.process_id}: must be in 0..{last} for "
                                         f"--num-processes {cluster.num_processes}"))
    if cluster.peer_timeout < 1:
        diags.append(Diagnostic("error", f"--peer-timeout {cluster.peer_timeout}: must be at least 1 second"))
    return diags


def split_hint(batch: int, devices: int, processes: int, test: bool = False, also: int | None = None) -> str:
    """What to change when a global (train, or test) batch of `batch` does not split over `devices`
    (which `processes` processes hold equal shares of); a --devices it suggests splits `also` too."""
    per = devices // max(processes, 1)
    fits = [n for n in range(per, 0, -1) if all(b % (n * processes) == 0 for b in (batch, also or batch))]
    larger = math.ceil(batch / devices) * devices
    alt = f" or --devices {fits[0]}" + (" (per process)" if processes > 1 else "") if fits else ""
    size = f"test_batch_size: {larger} in the data section" if test else f"--batch-size {larger}"
    return f"use {size} (a multiple of {devices}){alt}"


# ---------------------------------------------------------------------------------------------
# the JAX side: joining, the mesh, global batches


@dataclass(frozen=True)
class Topology:
    """The devices a run computes on and this process's place among them.

    `data_index` is this process's block of every global batch (rows data_index * B/P ... ): the
    position of its devices in the mesh, which is normally (always on CPU and GPU) its process index.
    """

    mesh: Any
    process_index: int = 0
    process_count: int = 1
    data_index: int = 0

    @property
    def is_main(self) -> bool:
        return self.process_index == 0

    @property
    def multi(self) -> bool:
        return self.process_count > 1

    def global_shape(self, local: Sequence[int], axis: int = 0) -> tuple[int, ...]:
        """The global shape of a batch of which this process holds `local` (sharded along `axis`)."""
        return tuple(d * self.process_count if i == axis else d for i, d in enumerate(local))


def initialize(cluster: Cluster | None) -> None:
    """Join the other processes of this run (jax.distributed), with netspec's timeouts. Must come
    before anything touches a JAX backend."""
    import jax

    if jax.distributed.is_initialized():
        return
    cluster = cluster or Cluster()
    # gloo gives the CPU backend cross-process collectives (GPUs use NCCL, TPUs their own links); it
    # must be chosen before the backend starts, and is harmless where the CPU only hosts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator, num_processes=cluster.num_processes,
            process_id=cluster.process_id, initialization_timeout=cluster.init_timeout,
            heartbeat_timeout_seconds=cluster.peer_timeout, shutdown_timeout_seconds=cluster.peer_timeout)
    except Exception as e:  # XlaRuntimeError (unreachable coordinator, timeout), ValueError (no launcher)
        where = f" at {cluster.coordinator}" if cluster.coordinator else ""
        raise _err(f"could not join the run's other processes{where}: {_first_line(e)}",
                   hint="give --coordinator, --num-processes and --process-id, or run under Slurm, Open MPI "
                        "or on a TPU pod") from None


def shutdown() -> None:
    """Leave the run (a barrier: returns once every process has finished, or after the peer timeout)."""
    import jax

    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def make_mesh(devices_per_process: int | None = None) -> Any:
    """The 1-D `data` mesh: the first `devices_per_process` (default all) devices of every process,
    process 0's first, so that process i's devices hold block i of every batch."""
    import jax

    count = jax.process_count()
    by_process = [sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
                  for p in range(count)]
    local = len(by_process[jax.process_index()])
    n = local if devices_per_process is None else devices_per_process
    if not 1 <= n <= min(len(ds) for ds in by_process):
        per = " per process" if count > 1 else ""
        raise _err(f"--devices {n}: this machine has {local} {jax.default_backend()} device(s){per}",
                   hint=f"use --devices {local}{per} or fewer" if local else None)
    chosen = [d for ds in by_process for d in ds[:n]]
    return jax.make_mesh((len(chosen),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=chosen)


def data_block(mesh: Any) -> int:
    """Which block of a global batch this process's devices hold along the `data` axis."""
    import jax

    me = jax.process_index()
    positions = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == me]
    n = len(positions)
    if not positions or positions != list(range(positions[0], positions[0] + n)) or positions[0] % n:
        raise _err(f"the device mesh interleaves this process's devices with other processes' ({positions}); "
                   "netspec feeds each process one contiguous block of every batch")
    return positions[0] // n


def start(cluster: Cluster | None, devices: int | None) -> Topology:
    """Join the other processes (when asked to) and build the mesh."""
    if wants_processes(cluster, os.environ):
        initialize(cluster)
    import jax

    mesh = make_mesh(devices)
    return Topology(mesh, jax.process_index(), jax.process_count(), data_block(mesh))


class PeerRunFolder(RunFolder):
    """The run folder as a process other than 0 sees it: the same paths (checkpoints are written by all),
    but the log, metrics and JSON files are process 0's to write."""

    def __init__(self, path: Path, columns: MetricColumns) -> None:
        self.path, self.columns = path, columns

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        pass

    def write_text(self, name: str, text: str) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def start_metrics(self, resume_from: int | None) -> None:
        pass

    def record(self, record: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def folder_class(topology: Topology) -> type[RunFolder]:
    return RunFolder if topology.is_main else PeerRunFolder


def one_at_a_time(fn: Any, topology: Topology) -> Any:
    """`fn` (a jitted step), waiting for its result where XLA:CPU runs collectives over several devices.

    XLA:CPU runs every device's program on one shared thread pool, where its collectives meet. With
    several steps in flight (JAX dispatches asynchronously) on an oversubscribed CPU, we saw those
    meetings stall until XLA's 40 s rendezvous timeout aborted the process (jaxlib 0.10.2, LeNet on 8
    forced host devices, 3 runs at a time on 2 cores: 8 of 15 runs; 0 of 12 with this). So on the CPU
    with more than one device each step finishes before the next is dispatched. GPUs and TPUs keep
    the asynchronous dispatch.
    """
    mesh = topology.mesh
    if mesh is None or mesh.size == 1 or mesh.devices.flat[0].platform != "cpu":
        return fn
    import jax

    def step(*args: Any) -> Any:
        return jax.block_until_ready(fn(*args))

    return step


def global_batch(host: Mapping[str, Any], sharding: Any) -> dict[str, Any]:
    """One global array per input from this process's rows (all rows when it is the only process)."""
    import jax
    import numpy as np

    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in host.items()}


def agree(topology: Topology, text: str) -> str:
    """Process 0's `text`, on every process (a run folder or seed each process chose on its own)."""
    if not topology.multi:
        return text
    import numpy as np
    from jax.experimental import multihost_utils

    raw = np.frombuffer(text.encode(), np.uint8)
    size = int(np.asarray(multihost_utils.broadcast_one_to_all(np.int32(raw.size))))
    mine = raw if topology.is_main else np.zeros(size, np.uint8)  # the shape must match process 0's
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(mine)).astype(np.uint8)).decode()


def agree_seed(topology: Topology, spec: Path, solver_file: Path | None,
               overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The flag overrides with process 0's random seed when the solver leaves it to the clock."""
    out = dict(overrides)
    if not topology.multi or out.get("seed") is not None:
        return out
    from netspec.spec import load_spec
    from netspec.train.config import resolve_solver

    seed = resolve_solver(load_spec(spec), solver_file, out).random_seed
    out["seed"] = int(agree(topology, str(seed)))
    return out


# ---------------------------------------------------------------------------------------------
# the supervisor (parent) and the worker (child) of a multi-process run


@dataclass(frozen=True)
class Failure:
    """Why a worker died, from what JAX (or gloo) wrote on its stderr as it ended."""

    kind: str  # "join", "peer" (no heartbeat), "coordinator", "collective" (a socket broke) or "other"
    detail: str  # their message, on one line (short)
    peers: tuple[int, ...] = ()  # the processes that stopped responding (kind "peer")


_FATAL = "Terminating process because the JAX distributed service detected fatal errors"
_SERVICE = "/xla.coordination.CoordinationService/"
# Log lines of JAX's distributed runtime as a run falls apart: held back, and dropped when the
# supervisor's one error explains the ending.
_RUNTIME = ("coordination_service", "CoordinationService", "Barrier result", "heartbeat", "preemption_sync",
            "BarrierError", "coordination service")


def _is_noise(line: str) -> bool:
    """C++ stack frames and gloo's connection chatter, which say nothing to a user."""
    s = line.strip()
    return (s.startswith("@ ") or s == "*** Check failure stack trace: ***" or s.startswith("[Gloo] Rank")
            or "gloo::" in s or "external/gloo/" in s)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(re.sub(r"\[type\.googleapis\.com/[^\]]*\]", "", text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def explain(lines: Sequence[str]) -> Failure | None:
    """The failure a dying worker reported on stderr, if it is one of a multi-process run's."""
    text = "\n".join(lines)
    peers = sorted({int(m) for m in re.findall(r"Task (\d+) heartbeat timeout", text)} |
                   {int(m) for block in re.findall(r"stopped sending heartbeats\):\n((?:\d+\n?)+)", text)
                    for m in block.split()})
    at = text.find(_FATAL)
    if at >= 0:
        body = text[at:].split("*** Check failure", 1)[0]
        rpc = body.split(_SERVICE, 1)[1].split()[0].rstrip(":") if _SERVICE in body else ""
        status = body.split("absl::Status:", 1)[1] if "absl::Status:" in body else body[len(_FATAL):]
        detail = _one_line(status.split("\nRPC:", 1)[0].split("\nAdditional GRPC", 1)[0])
        if rpc in ("RegisterTask", "Connect"):
            return Failure("join", detail)
        if peers:
            return Failure("peer", detail, tuple(peers))
        if "leader task" in detail or "Failed to send RPC to coordination service" in detail or \
                "Socket closed" in body:
            return Failure("coordinator", detail)
        return Failure("other", detail)
    # A peer that dies in the middle of a collective can break gloo's stream before the heartbeat
    # timeout: gloo then throws (EnforceNotMet, IoException) and the C++ runtime aborts.
    gloo = [x for x in lines if "gloo::" in x or "external/gloo/" in x]
    if gloo:
        what = next((x.split("what():", 1)[1] for x in lines if "what():" in x), gloo[-1])
        return Failure("collective", _one_line(what, 160))
    return None


def failure_message(failure: Failure | None, rc: int, process: str, run_dir: Path | None,
                    cluster: Cluster) -> str:
    """The one error a supervisor prints when its worker ended abnormally."""
    hint = None
    kind, detail = (failure.kind, failure.detail.strip()) if failure is not None else (None, "")
    if kind == "join":
        where = f" at {cluster.coordinator}" if cluster.coordinator else ""
        what = f"could not join the run: no answer from the coordinator{where} ({detail})"
        hint = (f"start all {cluster.num_processes or 'the'} processes within --join-timeout "
                f"({cluster.init_timeout} s) of each other, with --coordinator set to process 0's reachable "
                "address")
    elif kind == "peer":
        who = ", ".join(str(p) for p in failure.peers)  # type: ignore[union-attr]
        what = (f"process {who} of this run stopped responding (no heartbeat for {cluster.peer_timeout} s): "
                "it died or its host became unreachable")
    elif kind == "coordinator":
        what = f"lost the coordinator (process 0), which died or became unreachable ({detail})"
    elif kind == "collective":
        what = f"the connection to another process of this run broke during a collective (gloo: {detail})"
    elif kind == "other":
        what = f"the JAX distributed service stopped the run ({detail})"
    else:
        sig = -rc
        known = rc < 0 and sig in signal.Signals._value2member_map_
        what = f"the training process ended abruptly ({signal.Signals(sig).name if known else f'exit {rc}'})"
    if hint is None:
        last = latest_checkpoint(run_dir) if run_dir is not None else None
        if run_dir is not None and last is not None:
            hint = (f"the last checkpoint is iteration {last} ({run_dir / 'checkpoints' / str(last)}); start "
                    f"every process again with --resume -o {run_dir}")
        else:
            hint = "no checkpoint was written; start every process again"
    return f"error: {process}: {what}\n  hint: {hint}"


def latest_checkpoint(run_dir: Path) -> int | None:
    folder = run_dir / "checkpoints"
    try:
        steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir()]
    except OSError:
        return None
    return max(steps) if steps else None


def supervise(args: Any, cluster: Cluster, stderr: IO[str]) -> int:
    """Run `netspec train` (the parsed `args`) as a worker child; return the exit status to report.

    The child inherits stdout (and drops gloo's connection lines from it itself: _quiet_native_stdout);
    its stderr passes through here, minus stack traces and the worker's own notes to us. The child runs
    in a session of its own, so a terminal's Ctrl-C reaches only this supervisor, which ends the child at
    once: a single-process run's interrupt checkpoint would be a collective write here, which processes
    that were not interrupted (other hosts) never join, so it would wait forever. SIGTERM to the
    supervisor ends the child the same way.
    """
    import pickle

    env = {**os.environ, WORKER_ENV: str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-m", "netspec.train.distributed"], stdin=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, start_new_session=True)
    assert child.stdin is not None and child.stderr is not None
    child.stdin.write(pickle.dumps((args, list(sys.argv))))
    child.stdin.close()
    seen: list[str] = []
    held: list[str] = []
    run_dir: list[Path] = []

    def pump() -> None:
        assert child.stderr is not None
        for raw in child.stderr:
            line = raw.decode("utf-8", "replace")
            if line.startswith(MARK):
                key, _, value = line[len(MARK):].rstrip("\n").partition("=")
                if key == "run_dir":
                    run_dir.append(Path(value))
                continue
            seen.append(line.rstrip("\n"))
            del seen[:-400]
            if held or any(k in line for k in _RUNTIME) or _FATAL in line:
                held.append(line)  # the run is falling apart: the ending decides whether to show this
            elif not _is_noise(line):
                stderr.write(line)
                stderr.flush()

    reader = threading.Thread(target=pump, name="netspec-worker-stderr", daemon=True)
    reader.start()
    interrupted: list[bool] = []

    def interrupt(signum: int, frame: Any) -> None:
        # SIGKILL: JAX's preemption notifier catches SIGTERM in the child (and only takes note).
        interrupted.append(True)
        child.kill()

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        rc = child.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        reader.join(timeout=5)
    process = f"process {cluster.process_id}" if cluster.process_id is not None else "this process"
    if interrupted:
        last = latest_checkpoint(run_dir[0]) if run_dir else None
        where = f"iteration {last} ({run_dir[0] / 'checkpoints' / str(last)})" if last is not None else \
            "none yet"
        stderr.write(f"interrupted: {process} stopped; the others stop within --peer-timeout "
                     f"({cluster.peer_timeout} s); the last checkpoint: {where}; continue with --resume\n")
        stderr.flush()
        return 130
    failure = explain(seen)
    if failure is None:  # not an ending we can put in one line: show what the runtime said
        stderr.writelines(x for x in held if not _is_noise(x) and _FATAL not in x)
        stderr.flush()
    if rc == 0 or (rc > 0 and failure is None):
        return rc  # done, or a netspec error the worker already printed
    stderr.write(failure_message(failure, rc, process, run_dir[0] if run_dir else None, cluster) + "\n")
    stderr.flush()
    return 1


def announce_run_dir(path: Path) -> None:
    """Tell the supervisor (if any) where the run folder is, for its error messages."""
    if os.environ.get(WORKER_ENV):
        sys.stderr.write(f"{MARK}run_dir={path.absolute()}\n")
        sys.stderr.flush()


def _watch_supervisor(parent: int, poll: float = 0.5) -> None:
    """End this worker when its supervisor is gone (killed: nobody would report or stop us)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(poll)

    threading.Thread(target=watch, name="netspec-supervisor-watch", daemon=True).start()


def _is_native_chatter(line: bytes) -> bool:
    """gloo's "[Gloo] Rank 0 is connected to 1 peer ranks. ..." lines, printed at every new set of
    connections; several threads print them at once, which can join two of them and leave a blank line."""
    return line.startswith(b"[Gloo] ") or not line.strip()


def _quiet_native_stdout() -> None:
    """Drop the connection lines gloo writes to the C++ standard output (file descriptor 1).

    Python's sys.stdout moves to a duplicate of the original descriptor, so the log and the progress
    display still reach the terminal directly (and still see a terminal); descriptor 1, which only
    native code still writes to, becomes a pipe whose lines a thread passes on, minus gloo's."""
    sys.stdout.flush()
    original = os.dup(1)
    read, write = os.pipe()
    os.dup2(write, 1)
    os.close(write)
    # closefd=False: the descriptor outlives sys.stdout's wrapper, for the pump below, until the end.
    sys.stdout = io.TextIOWrapper(io.FileIO(original, "w", closefd=False), encoding=sys.stdout.encoding,
                                  errors=sys.stdout.errors, line_buffering=True)

    def pump() -> None:
        try:
            with io.FileIO(read, "r") as native:
                for line in io.BufferedReader(native):
                    if not _is_native_chatter(line):
                        view = memoryview(line)
                        while view:
                            view = view[os.write(original, view):]
        except OSError:  # the terminal went away: nothing left to show the lines to
            pass

    threading.Thread(target=pump, name="netspec-native-stdout", daemon=True).start()


def worker_main() -> int:
    """The child of `supervise`: read the parsed arguments from stdin and train, mapping errors as the
    CLI does."""
    import pickle

    parent = int(os.environ[WORKER_ENV])
    _watch_supervisor(parent)
    _quiet_native_stdout()
    args, sys.argv[:] = pickle.load(sys.stdin.buffer)  # the command as typed, for run.json
    from netspec.cli import EXIT_SPEC, _internal_error, print_diagnostics

    try:
        return int(args.func(args))
    except NetspecError as e:
        print_diagnostics(e.diagnostics)
        return EXIT_SPEC
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's promise: no traceback
        if os.environ.get("NETSPEC_TRACEBACK"):
            raise
        sys.stderr.write(_internal_error(e) + "\n")
        return EXIT_SPEC


if __name__ == "__main__":
    sys.exit(worker_main())
