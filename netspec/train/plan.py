"""Everything a run needs decided before any compute: spec, solver, data, batch sizes, and their fit.

jax-free. Every problem that can be found without running the net is found here and reported as a
NetspecError (exit 1, no traceback): a missing data file, images that do not fit the Input layer,
labels outside the classifier's classes, a batch the devices cannot split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec.check import check
from netspec.errors import Diagnostic, NetspecError, SourceLoc
from netspec.layers.loss import AccuracyParameter
from netspec.shapes import ShapeReport
from netspec.solver_spec import SolverSpec, ignored_settings, resolve_epochs
from netspec.spec import LayerSpec, NetSpec, NetStateRule, load_spec
from netspec.train.config import TrainOptions, resolve_solver

TOP5 = "top-5"
TOP1 = "top-1"


@dataclass(frozen=True)
class Feed:
    """Which input blobs the data fills: the image blob and (optionally) the label blob."""

    image: str
    label: str | None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.image,) if self.label is None else (self.image, self.label)


@dataclass(frozen=True)
class TrainPlan:
    spec: NetSpec  # the TRAIN/TEST spec, with top-1/top-5 Accuracy layers added to TEST if missing
    spec_sha256: str
    solver: SolverSpec  # epochs resolved into max_iter
    data: Any  # netspec.data.DataSpec with batch sizes resolved
    splits: Any  # netspec.data.Splits
    feed: Feed
    batch_size: int
    test_batch_size: int
    test_iter: int  # 0: no test passes
    iters_per_epoch: float
    num_classes: int | None
    top1: str | None  # the test output that is top-1 accuracy
    base_dir: Path
    notes: tuple[str, ...]


def _err(message: str, loc: SourceLoc | None = None, hint: str | None = None) -> NetspecError:
    return NetspecError([Diagnostic("error", message, loc, hint=hint)])


def spec_hash(spec_path: Path) -> str:
    return hashlib.sha256(spec_path.read_bytes()).hexdigest()


def input_batch(report: ShapeReport, feed: Feed) -> int:
    return report.shapes[_blob_id(report, feed.image)][0]


def _blob_id(report: ShapeReport, name: str) -> str:
    """The SSA id of the input blob the user calls `name` (inputs are never renamed, but be exact)."""
    return next(b for b in report.graph.inputs if report.graph.blob_names[b] == name)


def choose_feed(report: ShapeReport) -> Feed:
    """The image input (most axes) and the label input (the other one), from the TRAIN net's inputs."""
    names = [report.graph.blob_names[b] for b in report.graph.inputs]
    shapes = {report.graph.blob_names[b]: report.shapes[b] for b in report.graph.inputs}
    if not names or len(names) > 2:
        raise _err(f"the TRAIN net has inputs {names}; `netspec train` feeds one image blob and one label blob",
                   report.graph.spec.layers[0].loc if report.graph.spec.layers else None)
    ordered = sorted(names, key=lambda n: -len(shapes[n]))
    return Feed(ordered[0], ordered[1] if len(ordered) == 2 else None)


def classifier(report: ShapeReport) -> tuple[LayerSpec, int] | None:
    """(the layer whose bottoms are (scores, labels), the number of classes): the first Accuracy layer,
    else the first SoftmaxWithLoss."""
    for kind in ("Accuracy", "SoftmaxWithLoss"):
        for node in report.graph.nodes:
            if node.kind.type_name == kind and len(node.bottoms) == 2:
                p = node.layer.messages.get("accuracy_param") or node.layer.messages.get("softmax_param")
                shape = report.shapes[node.bottoms[0]]
                axis = p.axis % len(shape) if shape else 1
                return node.layer, shape[axis]
    return None


def with_topk(spec: NetSpec, test_report: ShapeReport) -> tuple[NetSpec, str | None, list[str]]:
    """The spec with TEST-phase Accuracy layers `top-1` / `top-5` added where the net lacks them (top-5
    only with at least 5 classes), and the name of the top-1 output."""
    found = classifier(test_report)
    if found is None:
        return spec, None, []
    layer, classes = found
    accs = [(n.layer.messages["accuracy_param"].top_k, test_report.graph.blob_names[n.tops[0]])
            for n in test_report.graph.nodes if n.kind.type_name == "Accuracy"]
    add: list[LayerSpec] = []
    top1 = next((name for k, name in accs if k == 1), None)
    base = layer.messages.get("accuracy_param") or AccuracyParameter()
    index = max((lay.index for lay in spec.layers), default=0)

    def accuracy(name: str, k: int) -> LayerSpec:
        param = AccuracyParameter(top_k=k, axis=base.axis, ignore_label=getattr(base, "ignore_label", None))
        return LayerSpec(name=name, type="Accuracy", bottom=tuple(layer.bottom[:2]), top=(name,),
                         include=(NetStateRule(phase="TEST"),), messages={"accuracy_param": param},
                         index=index + 1 + len(add), loc=layer.loc)

    taken = {lay.name for lay in spec.layers} | {t for lay in spec.layers for t in lay.top}
    if top1 is None and TOP1 not in taken:
        add.append(accuracy(TOP1, 1))
        top1 = TOP1
    if classes >= 5 and not any(k == 5 for k, _ in accs) and TOP5 not in taken:
        add.append(accuracy(TOP5, 5))
    notes = [f"test outputs {', '.join(a.name for a in add)} added (Accuracy on '{layer.bottom[0]}')"] if add else []
    return spec.model_copy(update={"layers": spec.layers + tuple(add)}), top1, notes


def _data_spec(spec: NetSpec) -> Any:
    from netspec.data import DataSpec

    if isinstance(spec.data, DataSpec):
        return spec.data
    raise _err("the spec has no `data:` section; add one, e.g. `data: {source: mnist}`", SourceLoc(spec.file, 1, 1))


def _feed_data_layers(spec: NetSpec) -> tuple[NetSpec, Any, Any, list[str]]:
    """(spec, data section, splits or None, notes): Caffe data layers become Input layers fed from the
    `data:` section (netspec.train.data_layers); their images are loaded here, since their shape is
    the data's. Other specs come back as they are, their data not loaded yet."""
    from netspec.train.data_layers import data_layers, missing_data_section, resolve_data_layers

    layers = data_layers(spec)
    if not layers:
        return spec, _data_spec(spec), None, []
    if spec.data is None:
        raise missing_data_section(layers)
    data = _data_spec(spec)
    splits = load_splits(data, Path(spec.file).parent, spec.raw)
    spec, data, notes = resolve_data_layers(spec, data, splits.train.images.shape[1:])
    return spec, data, splits, notes


def load_splits(data: Any, base_dir: Path, raw: Any = None) -> Any:
    """The train and test splits `data` names; `raw`, the spec's positioned YAML, places errors in it."""
    from netspec.data import DataError, load_dataset

    try:
        return load_dataset(data, base_dir)
    except DataError as e:
        raise NetspecError(_data_diagnostics(e, raw)) from None


def _data_diagnostics(e: Any, raw: Any) -> list[Diagnostic]:
    loc = _data_field_loc(raw, e.where)
    return [Diagnostic("error", f"data: {e.where}: {p}", loc) for p in e.problems]


def _data_field_loc(raw: Any, where: str) -> SourceLoc | None:
    """Where in the spec the `data:` field is that names `where` (a file or folder it gives, or a field
    such as `augment`); else the `data:` section itself."""
    from netspec.source import locate

    section = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        return None

    def fields(node: dict[str, Any], path: tuple[str, ...]) -> Any:
        for key, value in node.items():
            if isinstance(value, dict):
                yield from fields(value, (*path, key))
            yield (*path, key), value

    parts = Path(where).parts
    for path, value in fields(section, ("data",)):
        named = Path(value).expanduser().parts if isinstance(value, str) and value else None
        if path[-1] == where or (named and parts[-len(named):] == named):
            return locate(raw, path)
    return locate(raw, ("data",))


def _check_fit(splits: Any, data: Any, feed: Feed, report: ShapeReport, classes: int | None, base_dir: Path,
               phase: str, raw: Any = None) -> list[Diagnostic]:
    """Images must have the Input layer's C,H,W after the transform; labels must be valid classes."""
    from netspec.data import DataError, data_transformer

    diags: list[Diagnostic] = []
    graph = report.graph
    where = next((n.layer.loc for n in graph.nodes if feed.image in
                  [graph.blob_names[t] for t in n.tops]), None)
    for split_name, ds in (("train", splits.train), ("test", splits.test)):
        if phase == "TEST" and split_name == "train":
            continue
        try:
            transform = data_transformer(data, ds.images.shape[1:], base_dir)
        except DataError as e:
            diags.extend(_data_diagnostics(e, raw))
            continue
        want = tuple(report.shapes[_blob_id(report, feed.image)][1:])
        got = tuple(transform.output_shape)
        if want != got:
            crop = f" (after crop_size {transform.crop_size})" if transform.crop_size else ""
            diags.append(Diagnostic(
                "error", f"the {split_name} images are {'x'.join(map(str, got))} (C x H x W){crop} but input "
                f"'{feed.image}' takes {'x'.join(map(str, want))}", where,
                hint="change the Input layer's shape, or transform_param crop_size, to match the data"))
        if classes is not None and len(ds) and int(ds.labels.max()) >= classes:
            bad = int((ds.labels >= classes).sum())
            diags.append(Diagnostic(
                "error", f"{bad} {split_name} labels are >= {classes}, the number of classes the net scores "
                f"(labels go up to {int(ds.labels.max())})", where,
                hint=f"set the classifier's num_output to at least {int(ds.labels.max()) + 1}"))
    return diags


def make_plan(options: TrainOptions, devices: int = 1, processes: int = 1) -> TrainPlan:
    """Load, resolve and cross-check everything; raise every problem found, before any compute."""
    spec = load_spec(options.spec)
    solver = resolve_solver(spec, options.solver_file, options.solver_overrides)
    spec, data, splits, notes = _feed_data_layers(spec)
    base_dir = Path(spec.file).parent
    notes += [f"solver field '{name}' is ignored: {why}" for name, why in ignored_settings(solver)]
    if solver.snapshot_prefix is not None:
        notes.append("solver field 'snapshot_prefix' is ignored: checkpoints go to the run folder's checkpoints/")
    probe = check(spec, phase="TRAIN")
    feed = choose_feed(probe)
    explicit = data.model_fields_set
    batch = options.batch_size or (data.batch_size if "batch_size" in explicit else input_batch(probe, feed))
    train_report = check(spec, phase="TRAIN", batch=batch)
    found = classifier(train_report)
    classes = found[1] if found else None
    diags: list[Diagnostic] = []
    if batch % devices:
        from netspec.train.distributed import split_hint

        diags.append(Diagnostic("error", f"the batch of {batch} does not split over {devices} devices",
                                hint=split_hint(batch, devices, processes)))
    test_iter_given = solver.test_iter[0] if solver.test_iter else None
    if len(solver.test_iter) > 1:
        notes.append(f"only the first test net is run: test_iter {solver.test_iter[0]} (of {solver.test_iter})")
    test_wanted = solver.test_interval > 0 or test_iter_given != 0
    test_batch = batch
    test_report = None
    if test_wanted:
        probe_test = check(spec, phase="TEST")
        in_test = [probe_test.graph.blob_names[b] for b in probe_test.graph.inputs]
        if feed.image not in in_test:
            diags.append(Diagnostic("error", f"the TEST net has no input '{feed.image}' (its inputs: {in_test})"))
        else:
            test_batch = options.batch_size or data.test_batch_size or (
                data.batch_size if "batch_size" in explicit else input_batch(probe_test, feed))
            if test_batch % devices:
                from netspec.train.distributed import split_hint

                diags.append(Diagnostic("error", f"the test batch of {test_batch} does not split over {devices} "
                                                 "devices", hint=split_hint(test_batch, devices, processes, test=True,
                                                                  also=batch)))
            test_report = check(spec, phase="TEST", batch=test_batch)
    if diags:
        raise NetspecError(diags)
    seed = data.seed if "seed" in explicit else solver.random_seed
    data = data.model_copy(update={"batch_size": batch, "test_batch_size": test_batch, "seed": seed})
    splits = splits or load_splits(data, base_dir, spec.raw)
    diags += _check_fit(splits, data, feed, train_report, classes, base_dir, "TRAIN", spec.raw)
    if test_report is not None:
        diags += _check_fit(splits, data, feed, test_report, classes, base_dir, "TEST", spec.raw)
    if len(splits.train) < batch:
        diags.append(Diagnostic("error", f"the training set has {len(splits.train)} samples, fewer than one "
                                         f"batch of {batch}"))
    test_iter = 0
    if test_report is not None:
        full = len(splits.test) // test_batch
        if test_iter_given is None:
            test_iter = full
            notes.append(f"test_iter not set: testing on {full} batches of {test_batch} "
                         f"({full * test_batch} of {len(splits.test)} test samples)")
        else:
            test_iter = test_iter_given
        if test_iter and full == 0:
            diags.append(Diagnostic("error", f"the test set has {len(splits.test)} samples, fewer than one test "
                                             f"batch of {test_batch}"))
        elif test_iter > full:
            notes.append(f"test_iter {test_iter} x batch {test_batch} exceeds the {len(splits.test)} test samples; "
                         "the test data wraps around, as in Caffe")
    if diags:
        raise NetspecError(diags)
    iters_per_epoch = len(splits.train) / (batch * solver.iter_size)
    solver = resolve_epochs(solver, max(1, len(splits.train) // (batch * solver.iter_size)))
    top1 = None
    if test_report is not None and test_iter:
        spec, top1, added = with_topk(spec, test_report)
        notes += added
    return TrainPlan(spec=spec, spec_sha256=spec_hash(options.spec), solver=solver, data=data, splits=splits,
                     feed=feed, batch_size=batch, test_batch_size=test_batch, test_iter=test_iter,
                     iters_per_epoch=iters_per_epoch, num_classes=classes, top1=top1, base_dir=base_dir,
                     notes=tuple(notes))


@dataclass(frozen=True)
class EvalPlan:
    spec: NetSpec
    data: Any
    splits: Any
    feed: Feed
    batch_size: int
    iterations: int
    top1: str | None
    base_dir: Path
    notes: tuple[str, ...]


def make_eval_plan(spec_path: Path, batch_size: int | None, iterations: int | None) -> EvalPlan:
    """What `netspec test` evaluates: the TEST net on the spec's test data, checked before any compute."""
    spec, data, splits, layer_notes = _feed_data_layers(load_spec(spec_path))
    base_dir = Path(spec.file).parent
    probe = check(spec, phase="TEST")
    feed = choose_feed(probe)
    explicit = data.model_fields_set
    batch = batch_size or data.test_batch_size or (data.batch_size if "batch_size" in explicit else
                                                   input_batch(probe, feed))
    report = check(spec, phase="TEST", batch=batch)
    found = classifier(report)
    data = data.model_copy(update={"batch_size": batch, "test_batch_size": batch})
    splits = splits or load_splits(data, base_dir, spec.raw)
    diags = _check_fit(splits, data, feed, report, found[1] if found else None, base_dir, "TEST", spec.raw)
    full = len(splits.test) // batch
    if full == 0:
        diags.append(Diagnostic("error", f"the test set has {len(splits.test)} samples, fewer than one batch of "
                                         f"{batch}", hint="use --batch-size"))
    if diags:
        raise NetspecError(diags)
    notes = layer_notes
    if iterations is None:
        solver = spec.solver if isinstance(spec.solver, SolverSpec) else None
        iterations = solver.test_iter[0] if solver is not None and solver.test_iter and solver.test_iter[0] else full
        notes.append(f"testing {iterations} batches of {batch} ({min(iterations * batch, len(splits.test))} of "
                     f"{len(splits.test)} test samples)")
    spec, top1, added = with_topk(spec, report)
    return EvalPlan(spec, data, splits, feed, batch, iterations, top1, base_dir, tuple(notes + added))
