"""Deterministic, resumable, sharded batches over an in-memory dataset, prefetched on a background thread.

Batch `step` of `epoch` is a pure function of (seed, epoch, step): the epoch's order is
`default_rng([seed, 0, epoch]).permutation(N)` and the batch's crop/mirror/shift draws come from
`default_rng([seed, 1, epoch, step])`. So the state is just {"epoch", "position"} (the next batch
to hand out), and an iterator rebuilt from it continues with exactly the batches the first would
have produced. Draws are made for the whole global batch and then sliced, so the union of all
processes' shards equals the single-process batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from netspec.data.arrays import ArrayDataset
from netspec.data.transform import Transformer, make_transformer

Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_END = object()


class BatchIterator:
    """Batches of `dataset` as {names[0]: float32 (b,C,h,w), names[1]: int32 (b,)}.

    Args:
      batch_size: the global batch; each of `process_count` processes gets batch_size / process_count
        rows (the `process_index`-th slice of every global batch).
      train: TRAIN phase (random crop/mirror; by default shuffled and dropping the last partial batch)
        or TEST (centre crop, no mirror, in order, keeping the partial batch).
      transform: the checked transform_param, or None for raw values as float32.
      prefetch: batches prepared ahead on a background thread (0: build each batch on demand).
      epochs: stop after this many passes; None runs forever (the train loop counts iterations).
      state: a `state_dict()` to resume from.
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int,
        *,
        names: Sequence[str] = ("data", "label"),
        train: bool = True,
        shuffle: bool | None = None,
        drop_remainder: bool | None = None,
        transform: Transformer | None = None,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        prefetch: int = 2,
        epochs: int | None = None,
        state: Mapping[str, int] | None = None,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.names = tuple(names)
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.drop_remainder = train if drop_remainder is None else drop_remainder
        self.transform = transform or make_transformer(None, dataset.image_shape)
        self.seed, self.epochs, self.prefetch = seed, epochs, prefetch
        self.process_index, self.process_count = process_index, process_count
        self._check()
        self._position = (0, 0)
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._order: tuple[int, np.ndarray] | None = None  # the last epoch's permutation
        if state is not None:
            self.load_state_dict(state)

    def _check(self) -> None:
        n, b, p = len(self.dataset), self.batch_size, self.process_count
        problems = []
        if b <= 0:
            problems.append(f"batch_size must be positive, got {b}")
        elif b % p:
            problems.append(f"batch_size {b} is not divisible by process_count {p}")
        elif p > 1 and not self.drop_remainder and n % b:
            problems.append(f"{n} samples leave a partial last batch that {p} processes cannot share; "
                            "use drop_remainder")
        if not 0 <= self.process_index < p:
            problems.append(f"process_index {self.process_index} is not in [0, {p})")
        if not problems and self.steps_per_epoch == 0:
            problems.append(f"{self.dataset.source}: {n} samples make no full batch of {b}")
        if self.prefetch < 0:
            problems.append(f"prefetch must be >= 0, got {self.prefetch}")
        if len(self.names) not in (1, 2):
            problems.append(f"names must be (data,) or (data, label), got {self.names}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def steps_per_epoch(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    # --- the pure part ----------------------------------------------------------------------------

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of `epoch` (kept for the epoch's batches: a permutation costs O(N))."""
        cached = self._order
        if cached is not None and cached[0] == epoch:
            return cached[1]
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, 0, epoch]).permutation(n) if self.shuffle else np.arange(n)
        self._order = (epoch, order)
        return order

    def batch(self, epoch: int, step: int) -> Batch:
        """Batch `step` of `epoch` for this process."""
        rows = self.order(epoch)[step * self.batch_size: (step + 1) * self.batch_size]
        draws = self.transform.draw(np.random.default_rng([self.seed, 1, epoch, step]), len(rows), self.train)
        share = len(rows) // self.process_count
        mine = slice(self.process_index * share, (self.process_index + 1) * share)
        rows = rows[mine]
        out = {self.names[0]: self.transform.apply(self.dataset.images[rows], draws.take(mine))}
        if len(self.names) == 2:
            out[self.names[1]] = self.dataset.labels[rows]
        return out

    def _next_position(self, epoch: int, step: int) -> tuple[int, int]:
        return (epoch, step + 1) if step + 1 < self.steps_per_epoch else (epoch + 1, 0)

    def _exhausted(self, epoch: int) -> bool:
        return self.epochs is not None and epoch >= self.epochs

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Where the next batch comes from; small enough to live in a checkpoint."""
        epoch, step = self._position
        return {"epoch": epoch, "position": step}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        epoch, step = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= step < self.steps_per_epoch:
            raise ValueError(
                f"iterator state {dict(state)} is outside 0 <= position < {self.steps_per_epoch}"
            )
        self.close()
        self._position = (epoch, step)

    # --- iteration with prefetch ------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self.prefetch == 0:
            if self._exhausted(self._position[0]):
                raise StopIteration
            out = self.batch(*self._position)
            self._position = self._next_position(*self._position)
            return out
        if self._thread is None:
            self._start()
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)  # later calls stop too
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        epoch, step, out = item  # type: ignore[misc]
        self._position = self._next_position(epoch, step)
        return out  # type: ignore[no-any-return]

    def _start(self) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(
            target=self._produce, args=(self._position, self._queue, self._stop), daemon=True,
            name="netspec-prefetch",
        )
        self._thread.start()

    def _produce(self, start: tuple[int, int], out: queue.Queue[object], stop: threading.Event) -> None:
        epoch, step = start
        while not stop.is_set():
            try:
                item: object = _END if self._exhausted(epoch) else (epoch, step, self.batch(epoch, step))
            except BaseException as e:  # handed to the consumer, which re-raises it
                item = _Failure(e)
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if item is _END or isinstance(item, _Failure):
                return
            epoch, step = self._next_position(epoch, step)

    def close(self) -> None:
        """Stop the prefetch thread; batches it prepared but nobody took are dropped (state is unaffected)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
