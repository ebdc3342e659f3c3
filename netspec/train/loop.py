"""`netspec train`: Caffe's Solver::Solve loop on a jitted JAX step.

Per iteration (docs/caffe-semantics.md §6), with `it` the number of updates done:

1. before the first update, test if `test_initialization` (and `test_interval` > 0);
2. one jitted step: `iter_size` forward/backward passes, gradients summed, the optimizer update;
3. on display iterations: the loss smoothed over `average_loss` iterations, the net outputs, the lr;
4. `it += 1`; on `test_interval` multiples: test; on `snapshot` multiples: checkpoint;
5. at `max_iter`: a last test (even off the interval, for the summary) and a last checkpoint.

Caffe tests at the start of iteration `it`; testing at the end of iteration `it - 1` sees the same
parameters, and lets the checkpoint at `it` carry that test's score (for keep-the-best).

Dispatch stays asynchronous: nothing reads a device value except display, test, checkpoint and
`check_every` iterations, so the next batch is prepared (prefetch thread) and dispatched while the
device still computes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from netspec.errors import Diagnostic, NetspecError
from netspec.train.config import TrainOptions, cache_disabled, matmul_precision
from netspec.train.progress import Display, EvalStatus, NullDisplay, PlainDisplay, Tee, TrainStatus
from netspec.train.run_folder import MetricColumns, choose_run_dir, plot_curves


TEST_ORDER_SEED = 0


@dataclass
class RunResult:
    ok: bool
    summary_line: str
    exit_code: int
    run_dir: Path
    iterations: int
    final_test: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _spec_name(options: TrainOptions) -> str:
    from netspec.spec import load_spec

    spec = load_spec(options.spec)
    return spec.name or options.spec.stem


def _resumed_seed(run_dir: Path) -> int | None:
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    seed = info.get("seed")
    return int(seed) if isinstance(seed, int) else None


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


def resolved_spec_yaml(plan: Any, options: TrainOptions) -> str:
    """The spec as trained: the expanded layers, and the solver and data sections with every value."""
    import yaml

    raw = _plain(plan.spec.raw) if plan.spec.raw is not None else {}
    raw.pop("blocks", None)
    raw["solver"] = plan.solver.model_dump(mode="json", exclude_none=True)
    # Only the data fields that apply to this source (the others are errors when set), with the
    # batch sizes and the seed the run resolved.
    keep = plan.data.model_fields_set | {"batch_size", "test_batch_size", "seed", "shuffle", "transform_param"}
    raw["data"] = {k: v for k, v in plan.data.model_dump(mode="json", exclude_none=True).items() if k in keep}
    header = (f"# Resolved by `netspec train` from {options.spec}: blocks expanded, solver and data with every\n"
              f"# value (flags applied). Layers added for evaluation (top-1/top-5) are not listed.\n")
    return header + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=110)


def train(options: TrainOptions, display: Display) -> RunResult:
    """Run (or resume) one training run; returns its result. Raises NetspecError for bad input."""
    from netspec.train import compile_cache

    name = _spec_name(options)
    run_dir = choose_run_dir(name, options.runs_root, options.output, options.resume) if options.resume else None
    overrides = dict(options.solver_overrides)
    if run_dir is not None and "seed" not in overrides:
        seed = _resumed_seed(run_dir)
        if seed is not None:
            overrides["seed"] = seed
    options = TrainOptions(**{**options.__dict__, "solver_overrides": overrides})
    cache_problem = None
    if cache_disabled(options.compile_cache):
        compile_cache.disable()  # an earlier run in this process may have turned it on
    else:
        assert options.compile_cache is not None
        cache_problem = compile_cache.enable(options.compile_cache)
        if cache_problem:
            options = TrainOptions(**{**options.__dict__, "compile_cache": None})
    import jax

    from netspec.train import distributed
    from netspec.train.plan import make_plan

    topology = distributed.start(options.cluster, options.devices)
    if topology.multi:  # each process chose a run folder and seed by itself; process 0's count
        run_dir = Path(distributed.agree(topology, str(run_dir))) if run_dir is not None else None
        options = TrainOptions(**{**options.__dict__, "solver_overrides": distributed.agree_seed(
            topology, options.spec, options.solver_file, options.solver_overrides)})
    plan = make_plan(options, devices=topology.mesh.size, processes=topology.process_count)
    if cache_problem:
        plan = dataclasses.replace(plan, notes=plan.notes + (cache_problem,))
    if run_dir is None:
        run_dir = Path(distributed.agree(topology, str(choose_run_dir(name, options.runs_root, options.output,
                                                                         resume=False))))
    distributed.announce_run_dir(run_dir)
    with matmul_precision(options.matmul_precision):
        return _Trainer(options, plan, topology.mesh, run_dir, display, jax.default_backend(), topology).run()


class _Trainer:
    def __init__(self, options: TrainOptions, plan: Any, mesh: Any, run_dir: Path, display: Display,
                 backend: str, topology: Any = None) -> None:
        from netspec.train.distributed import Topology

        self.options, self.plan, self.mesh, self.run_dir, self.backend = options, plan, mesh, run_dir, backend
        self.topology = topology or Topology(mesh)
        self.solver = plan.solver
        self.terminal = display if self.topology.is_main else NullDisplay()  # process 0 logs for the run
        self.notes: list[str] = list(plan.notes)

    # ------------------------------------------------------------------ setup

    def _compile_models(self) -> None:
        import jax

        from netspec.lowering import compile as lower

        p, dtype = self.plan, self.options.dtype
        impl = self.options.conv_impl
        # A batch-minor net (netspec.lowering.base) folds the image axis into the rows of every convolution
        # matmul, which a step sharded over the batch could only compute by gathering it: several devices keep
        # channels-last, whose batch axis is the major one.
        layout = "nhwc" if self.mesh.size > 1 else None
        if self.mesh.size > 1 and impl in ("auto", "onednn"):
            # oneDNN's kernels run as opaque custom calls, which a step sharded over several devices would gather
            # onto each of them: netspec's own plan shards like any XLA op.
            if impl == "onednn":
                self.notes.append("oneDNN's convolutions run on one device only: with several, netspec's own "
                                  "plan (--conv-impl planned) runs them")
            impl = "planned"
        self.model = lower(p.spec, "TRAIN", dtype=dtype, batch=p.batch_size, conv_impl=impl, spatial_layout=layout)
        self.test_model = (lower(p.spec, "TEST", dtype=dtype, batch=p.test_batch_size, conv_impl=impl)
                           if p.test_iter else None)
        if self.test_model is not None:
            train_shapes = jax.eval_shape(lambda: self.model.init(0))
            test_shapes = jax.eval_shape(lambda: self.test_model.init(0))  # type: ignore[union-attr]
            missing = [f"{layer}/{i}" for coll in ("params", "batch_stats")
                       for layer, blobs in test_shapes[coll].items() for i, s in blobs.items()
                       if getattr(train_shapes[coll].get(layer, {}).get(i), "shape", None) != s.shape]
            if missing:
                raise NetspecError([Diagnostic(
                    "error", f"the TEST net has blobs the TRAIN net does not train (or with other shapes): "
                    f"{', '.join(missing)}", hint="Caffe shares parameters between the phases by layer name")])

    def _initial_state(self) -> Any:
        import jax

        from netspec.solver import build_optimizer
        from netspec.train.step import init_state, replicated

        seed = self.solver.random_seed
        # One jitted init instead of an eager dispatch (and compile) per filler op.
        variables = jax.jit(self.model.init)(jax.random.PRNGKey(seed))
        self.transfer = None
        if self.options.weights is not None:
            from netspec.train.weights import load_weights

            variables, self.transfer = load_weights(self.model, variables, self.options.weights)
        self.tx = build_optimizer(self.solver, self.model.lr_mults(), self.model.decay_mults())
        state = init_state(variables, self.tx, seed)
        return jax.device_put(state, replicated(self.mesh))

    def _data_iterator(self, train: bool, state: Mapping[str, int] | None = None) -> Any:
        from netspec.data import BatchIterator, data_transformer

        p = self.plan
        ds = p.splits.train if train else p.splits.test
        transform = data_transformer(p.data, ds.images.shape[1:], p.base_dir)
        # Test passes read the test set in one fixed shuffled order (seed 0): a pass over part of it
        # then still samples every class (stored test sets are often sorted by label).
        return BatchIterator(ds, p.batch_size if train else p.test_batch_size, names=p.feed.names, train=train,
                             shuffle=p.data.shuffle if train else True, drop_remainder=True, transform=transform,
                             seed=p.data.seed if train else TEST_ORDER_SEED, prefetch=2, state=state,
                             process_index=self.topology.data_index, process_count=self.topology.process_count)

    def _compile_steps(self, state: Any) -> None:
        import jax

        from netspec.train import compile_cache, host_memory
        from netspec.train.distributed import one_at_a_time
        from netspec.train.step import batch_sharding, make_eval_step, make_train_step, replicated, zero_sums

        k = self.solver.iter_size
        stacked = k > 1
        self.batch_sharding = batch_sharding(self.mesh, stacked)
        rep = replicated(self.mesh)
        sample = self._data_iterator(True).batch(0, 0)
        shape = {n: ((k,) if stacked else ()) + self.topology.global_shape(a.shape) for n, a in sample.items()}
        abstract_batch = {n: jax.ShapeDtypeStruct(shape[n], sample[n].dtype, sharding=self.batch_sharding)
                          for n in sample}
        step = jax.jit(make_train_step(self.model, self.tx, k), in_shardings=(rep, self.batch_sharding),
                       out_shardings=(rep, rep), donate_argnums=(0,),
                       compiler_options=self.model.compiler_options)
        self.compile_stats = compile_cache.CompileStats()
        self.step = compile_cache.compile_ahead(self.compile_stats, "train_step", step, state, abstract_batch)
        memory = self.step.memory_analysis()
        self.host_malloc = host_memory.tune_for_step(self.backend, memory.temp_size_in_bytes if memory else 0)
        self.step = one_at_a_time(self.step, self.topology)
        self.eval_step = None
        if self.test_model is not None:
            test_sharding = batch_sharding(self.mesh, False)
            tsample = self._data_iterator(False).batch(0, 0)
            tbatch = {n: jax.ShapeDtypeStruct(self.topology.global_shape(a.shape), a.dtype, sharding=test_sharding)
                      for n, a in tsample.items()}
            test_vars = jax.eval_shape(lambda: self.test_model.init(0))  # type: ignore[union-attr]
            keys = {c: {layer: list(b) for layer, b in test_vars[c].items()} for c in ("params", "batch_stats")}

            def select(params: Any, stats: Any) -> dict[str, Any]:
                return {"params": {lay: {i: params[lay][i] for i in ix} for lay, ix in keys["params"].items()},
                        "batch_stats": {lay: {i: stats[lay][i] for i in ix} for lay, ix in keys["batch_stats"].items()}}

            inner = make_eval_step(self.test_model)

            def evaluate(params: Any, stats: Any, inputs: Any, sums: Any) -> Any:
                return inner(select(params, stats), inputs, sums)

            abstract_vars = select(state.params, state.batch_stats)
            sums = zero_sums(inner, abstract_vars, tbatch)
            self.zero_sums = jax.device_put(sums, rep)
            fn = jax.jit(evaluate, in_shardings=(rep, rep, test_sharding, rep), out_shardings=rep,
                         compiler_options=self.test_model.compiler_options)  # type: ignore[union-attr]
            self.eval_step = compile_cache.compile_ahead(
                self.compile_stats, "eval_step", fn, state.params, state.batch_stats, tbatch, self.zero_sums)
            self.eval_step = one_at_a_time(self.eval_step, self.topology)
            self.test_sharding = test_sharding

    # ------------------------------------------------------------------ pieces of the loop

    def _place(self, batches: list[Mapping[str, Any]]) -> Any:
        from netspec.train.distributed import global_batch
        from netspec.train.step import stack_micro_batches

        host = stack_micro_batches(batches) if len(batches) > 1 else batches[0]
        return global_batch(host, self.batch_sharding)

    def _test(self, state: Any, it: int) -> dict[str, float]:
        import jax

        from netspec.train.distributed import global_batch

        assert self.eval_step is not None and self.test_model is not None
        sums = self.zero_sums
        batches = self._data_iterator(False)
        try:
            for _ in range(self.plan.test_iter):
                sums = self.eval_step(state.params, state.batch_stats, global_batch(next(batches), self.test_sharding),
                                      sums)
        finally:
            batches.close()
        got = jax.device_get(sums)
        n = self.plan.test_iter
        values = {k: float(got[k]) / n for k in self.test_names if k in got}
        self.display.test(EvalStatus(it, values, self.test_model.loss_weights))
        self.folder.record({"kind": "test", "iter": it, "epoch": round(it / self.plan.iters_per_epoch, 4),
                            "seconds": round(self._elapsed(), 3), "outputs": values})
        self.last_test = values
        return values

    def _score(self, values: Mapping[str, float]) -> float | None:
        if self.plan.top1 and self.plan.top1 in values:
            return values[self.plan.top1]
        losses = [v for k, v in values.items() if k in (self.test_model.loss_weights if self.test_model else {})]
        return -sum(losses) if losses else None

    def _meta(self, it: int, data_state: Mapping[str, int]) -> dict[str, Any]:
        return {"iteration": it, "data": dict(data_state), "spec_sha256": self.plan.spec_sha256,
                "seed": self.solver.random_seed, "dtype": self.options.dtype, "best": self.best}

    def _save(self, state: Any, it: int, data_state: Mapping[str, int], score: float | None) -> None:
        self.checkpointer.save(it, state, self._meta(it, data_state), score=score)
        self.last_saved = it

    def _data_state(self, it: int) -> dict[str, int]:
        """The train iterator's state after `it` iterations: batches are a pure function of their index."""
        epoch, position = divmod(it * self.solver.iter_size, self._steps_per_epoch)
        return {"epoch": epoch, "position": position}

    def _elapsed(self) -> float:
        return time.perf_counter() - self.t0

    # ------------------------------------------------------------------ the run

    def run(self) -> RunResult:
        from netspec.train.checkpoint import Checkpointer

        self._compile_models()
        from netspec.train.evaluate import scalar_names

        self.train_names = scalar_names(self.model)
        self.test_names = scalar_names(self.test_model) if self.test_model is not None else []
        from netspec.train.distributed import folder_class

        self.folder = folder_class(self.topology)(self.run_dir, MetricColumns(tuple(self.train_names),
                                                                               tuple(self.test_names)))
        self.display = Tee(self.terminal, PlainDisplay(self.folder.log))
        try:
            return self._run(Checkpointer)
        finally:
            self.display.close()
            self.folder.close()

    def _run(self, checkpointer_cls: Any) -> RunResult:
        state = self._initial_state()
        self.checkpointer = checkpointer_cls(self.folder.checkpoints, keep_last=self.options.keep_last)
        try:
            return self._run_with(state)
        finally:
            self.checkpointer.close()

    def _restore(self, state: Any) -> tuple[Any, int, dict[str, int]]:
        step = self.checkpointer.latest_step()
        if step is None:
            raise NetspecError([Diagnostic("error", f"--resume: no checkpoint in {self.folder.checkpoints}")])
        meta = self.checkpointer.read_meta(step)
        if meta.get("spec_sha256") != self.plan.spec_sha256:
            raise NetspecError([Diagnostic(
                "error", f"--resume: {self.options.spec} changed since the checkpoint at iteration {step} was "
                "written", hint="resume with the spec the run started with, or fine-tune with --weights")])
        if meta.get("dtype", "float32") != self.options.dtype:
            raise NetspecError([Diagnostic("error", f"--resume: the run trained in {meta.get('dtype')}; "
                                                    f"pass --dtype {meta.get('dtype')}")])
        restored, meta = self.checkpointer.restore(step, state)
        self.best = meta.get("best")
        return restored, step, dict(meta["data"])

    def _write_run_info(self, start: int) -> None:
        import jax

        from netspec import __version__

        info_path = self.run_dir / "run.json"
        previous = json.loads(info_path.read_text()) if self.options.resume and info_path.is_file() else {}
        info = {
            **previous,
            "format": "netspec-run/1",
            "spec": str(self.options.spec),
            "spec_sha256": self.plan.spec_sha256,
            "seed": self.solver.random_seed,
            "precision": self.options.dtype,
            "matmul_precision": self.options.matmul_precision,
            "conv_impl": self.options.conv_impl,
            "conv_library": self.model.conv_library,  # e.g. "oneDNN 3.2.0": what runs the convolutions, if not XLA
            "compiler_options": self.model.compiler_options,
            "spatial_layout": self.model.spatial_layout,  # netspec.lowering.base: "nhwc" or batch-minor "chwn"
            "host_malloc": None,  # known once the step is compiled: _note_host_malloc
            "backend": jax.default_backend(),
            "devices": [str(d) for d in self.mesh.devices.flat],
            "batch_size": self.plan.batch_size,
            "test_batch_size": self.plan.test_batch_size,
            "test_iter": self.plan.test_iter,
            "max_iter": self.solver.max_iter,
            "train_samples": len(self.plan.splits.train),
            "test_samples": len(self.plan.splits.test),
            "versions": {"netspec": __version__, "jax": jax.__version__, "python": platform.python_version()},
            "command": list(self.options.argv),
        }
        if self.transfer is not None:
            info["weights"] = self.transfer.as_json()
        if start:
            info.setdefault("resumed", []).append({"from_iteration": start, "command": list(self.options.argv)})
        self.folder.write_json("run.json", info)
        self.run_info = info

    def _note_host_malloc(self) -> None:
        if self.host_malloc is not None:
            self.run_info["host_malloc"] = self.host_malloc
            self.folder.write_json("run.json", self.run_info)

    def _run_with(self, state: Any) -> RunResult:
        import jax
        import numpy as np

        from netspec.solver_spec import learning_rate

        solver, plan = self.solver, self.plan
        self.best: dict[str, Any] | None = None
        start, data_state = 0, {"epoch": 0, "position": 0}
        if self.options.resume:
            state, start, data_state = self._restore(state)
        self.folder.write_text("spec.yaml", resolved_spec_yaml(plan, self.options))
        self._write_run_info(start)
        self.folder.start_metrics(start if self.options.resume else None)
        max_iter = solver.max_iter
        title = (f"{plan.spec.name or self.options.spec.stem}: {max_iter} iterations, batch {plan.batch_size}"
                 f"{f' x iter_size {solver.iter_size}' if solver.iter_size > 1 else ''}, "
                 f"{len(plan.splits.train)} train / {len(plan.splits.test)} test samples, "
                 f"{self.options.dtype} on {self.backend} x{self.mesh.size} -> {self.run_dir}")
        self.display.start(start, max_iter, title)
        if start:
            self.display.note(f"resumed from iteration {start} ({self.folder.checkpoints / str(start)})")
            if start >= max_iter:
                self.display.note(f"the run is already complete ({start} of {max_iter} iterations); raise "
                                  "--max-iter to train on")
        if self.transfer is not None:
            for line in self.transfer.lines():
                self.display.note(line)
        for note in self.notes:
            self.display.note(f"note: {note}")
        if self.model.conv_library:
            self.display.note(f"convolutions: {self.model.conv_library}")
        self._compile_steps(state)
        self._note_host_malloc()
        self.display.note(f"compiled in {self.compile_stats.describe()}")
        lr_at = learning_rate(solver)
        iterator = self._data_iterator(True, data_state)
        self._steps_per_epoch = iterator.steps_per_epoch
        if data_state != self._data_state(start):
            raise NetspecError([Diagnostic("error", f"--resume: the checkpoint's data position {data_state} does not "
                                                    f"match iteration {start} (was the batch size changed?)")])
        self.t0 = time.perf_counter()
        self.last_saved, self.last_test = -1, {}
        losses: collections.deque[Any] = collections.deque(maxlen=solver.average_loss)
        images_per_iter = plan.batch_size * solver.iter_size
        mark_t, mark_it = time.perf_counter(), start
        it = start
        stop: str | None = None

        def test_due(i: int) -> bool:
            return bool(solver.test_interval) and i % solver.test_interval == 0 and plan.test_iter > 0

        self._first_iter = start
        from netspec.train.interrupt import StopRequest

        stop_request = StopRequest().__enter__()
        try:
            if it == 0 and test_due(0) and solver.test_initialization:
                self._test(state, 0)
            while it < max_iter:
                if stop_request.requested:
                    stop = "interrupted"
                    break
                batch = self._place([next(iterator) for _ in range(solver.iter_size)])
                state, metrics = self.step(state, batch)
                losses.append(metrics["loss"])
                if solver.display and it % solver.display == 0:
                    got = jax.device_get({"losses": list(losses), "outputs": metrics["outputs"],
                                          "bad": state.bad_step})
                    now = time.perf_counter()
                    # No speed before a whole display interval has run (the first includes warm-up).
                    rate = (it + 1 - mark_it) / max(now - mark_t, 1e-9) if it > start else None
                    mark_t, mark_it = now, it + 1
                    outputs = {k: float(got["outputs"][k]) for k in self.train_names if k in got["outputs"]}
                    status = TrainStatus(it, max_iter, it / plan.iters_per_epoch,
                                         float(np.mean(got["losses"])), outputs, self.model.loss_weights,
                                         lr_at(it), rate * images_per_iter if rate else None,
                                         (max_iter - it - 1) / rate if rate else None)
                    self.display.train(status)
                    self.folder.record({"kind": "train", "iter": it, "epoch": round(status.epoch, 4),
                                        "seconds": round(self._elapsed(), 3), "lr": float(f"{status.lr:.7g}"),
                                        "loss": status.loss,
                                        "images_per_s": round(status.images_per_s, 1) if status.images_per_s else None,
                                        "outputs": outputs})
                    if int(got["bad"]) >= 0:
                        stop = "nonfinite"
                        break
                else:
                    self.display.step(it + 1)
                it += 1
                final = it == max_iter
                snapshot_due = (bool(solver.snapshot) and it % solver.snapshot == 0) or \
                    (final and solver.snapshot_after_train)
                if it % self.options.check_every == 0 or test_due(it) or snapshot_due or final:
                    if int(jax.device_get(state.bad_step)) >= 0:
                        stop = "nonfinite"
                        break
                score, new_best = None, False
                if plan.test_iter > 0 and (test_due(it) or final):
                    score = self._score(self._test(state, it))
                    new_best = score is not None and (self.best is None or score > self.best["score"])
                    if new_best:
                        self.best = {"iteration": it, "score": score}
                if snapshot_due or new_best:
                    self._save(state, it, self._data_state(it), score)
        except KeyboardInterrupt:
            stop = "interrupted"
        finally:
            stop_request.__exit__()
            iterator.close()
        if stop == "nonfinite":
            return self._nonfinite(state)
        if stop == "interrupted":
            return self._interrupted(state)
        return self._finish(it, ok=True)

    # ------------------------------------------------------------------ endings

    def _interrupted(self, state: Any) -> RunResult:
        """Ctrl-C: checkpoint where the state is (as Caffe snapshots on SIGINT), so --resume continues."""
        import jax

        try:
            it = int(jax.device_get(state.step))
            if int(jax.device_get(state.bad_step)) < 0 and self.last_saved != it:
                self._save(state, it, self._data_state(it), None)
            why = f"interrupted at iteration {it}; continue with --resume"
        except Exception:  # a second Ctrl-C cut a step off mid-dispatch and its state is gone
            it = max(self.last_saved, 0)
            why = (f"interrupted; the last checkpoint is at iteration {it}; continue with --resume"
                   if self.last_saved >= 0 else "interrupted before the first checkpoint")
        return self._finish(it, ok=False, why=why, interrupted=True)

    def _nonfinite(self, state: Any) -> RunResult:
        import jax

        from netspec.train.probe import first_nonfinite

        bad = int(jax.device_get(state.bad_step))
        variables = {"params": jax.device_get(state.params), "batch_stats": jax.device_get(state.batch_stats)}
        iterator = self._data_iterator(True)
        per_epoch = iterator.steps_per_epoch
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), bad)
        found = None
        for j in range(self.solver.iter_size):
            g = bad * self.solver.iter_size + j
            inputs = iterator.batch(g // per_epoch, g % per_epoch)
            rng = jax.random.fold_in(key, j) if self.solver.iter_size > 1 else key
            found, stats = first_nonfinite(self.model, variables, inputs, True, rng)
            if found is not None:
                break
            variables = {**variables, "batch_stats": stats}
        where = found.describe() if found is not None else \
            "no layer output is non-finite when the batch is re-run eagerly (the jitted and eager runs differ)"
        last = self.checkpointer.latest_step()
        kept = f"; the last good checkpoint is {self.folder.checkpoints / str(last)}" if last is not None else \
            "; no checkpoint was written before it"
        message = f"stopped: the loss went non-finite at iteration {bad}: {where}{kept}"
        self.folder.write_json("nonfinite.json", {
            "iteration": bad, "layer": found.layer if found else None, "type": found.type if found else None,
            "blob": found.blob if found else None, "nan": found.nan if found else None,
            "inf": found.inf if found else None, "bad_params": list(found.bad_params) if found else [],
            "last_checkpoint": last})
        return self._finish(bad, ok=False, why=message)

    def _finish(self, it: int, ok: bool, why: str | None = None, interrupted: bool = False) -> RunResult:
        elapsed = self._elapsed()
        rows = self.folder.read_metrics()
        if not self.last_test:  # a resumed run that had nothing left to do: its last test pass
            self.last_test = next((r["outputs"] for r in reversed(rows) if r.get("kind") == "test"), {})
        try:
            if self.topology.is_main:
                plot_curves(rows, self.run_dir / "curves.png", f"{self.plan.spec.name} ({self.options.dtype})")
        except Exception as e:  # a plot must never cost the run its summary
            self.display.note(f"note: could not draw curves.png: {e}")
        test = self.last_test
        top1 = self.plan.top1
        if ok and top1 and top1 in test:
            extra = "".join(f", {test[k]:.1%} ({k})" for k in test if k != top1 and "top" in k and "loss" not in k)
            line = (f"test accuracy {test[top1]:.1%} (top-1){extra} after {it} iterations, {elapsed:.0f} s; "
                    f"compile {self.compile_stats.describe()}; {self.options.dtype} on {self.backend}")
        elif ok:
            shown = ", ".join(f"{k} = {v:.4g}" for k, v in test.items())
            line = (f"trained {it} iterations in {elapsed:.0f} s{f'; test {shown}' if shown else ''}; "
                    f"compile {self.compile_stats.describe()}; {self.options.dtype} on {self.backend}")
        else:
            line = why or "stopped"
        summary = {
            "ok": ok, "iterations": it, "seconds": round(elapsed, 2),
            "compile_seconds": round(self.compile_stats.seconds, 3),
            "compile_cache": {"hits": self.compile_stats.hits, "misses": self.compile_stats.misses,
                              "dir": None if cache_disabled(self.options.compile_cache) else str(self.options.compile_cache)},
            "precision": self.options.dtype, "backend": self.backend, "devices": self.mesh.size,
            "processes": self.topology.process_count,
            "final_test": test, "best": self.best, "checkpoints": self.checkpointer.all_steps(),
            "images_per_s": round((it - (self._first_iter if hasattr(self, "_first_iter") else 0))
                                  * self.plan.batch_size * self.solver.iter_size / max(elapsed, 1e-9), 1),
            "summary": line,
        }
        self.folder.write_json("summary.json", summary)
        self.folder.log(line)
        code = 0 if ok else (130 if interrupted else 1)
        return RunResult(ok, line, code, self.run_dir, it, dict(test), summary)
