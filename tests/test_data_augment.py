"""The `data:` section's `augment: {shift: k}` (a netspec extension): random whole-pixel translations of
TRAIN images with zero fill, applied before Caffe's transform_param, deterministic and resumable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.data import (
    ArrayDataset,
    AugmentSpec,
    BatchIterator,
    DataError,
    DataSpec,
    Draws,
    load_mnist,
    make_iterator,
    make_transformer,
)
from netspec.layers.data import TransformationParameter
from netspec.message import MessageError
from netspec.spec import load_spec


def shifted_by_hand(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """out[c, y, x] = image[c, y - down, x - right] where that pixel exists, else 0."""
    _, h, w = image.shape
    out = np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            if 0 <= y - down < h and 0 <= x - right < w:
                out[:, y, x] = image[:, y - down, x - right]
    return out


def toy(n: int = 24, shape: tuple[int, int, int] = (2, 6, 7)) -> ArrayDataset:
    images = np.random.default_rng(7).integers(1, 256, (n, *shape), dtype=np.uint8)
    return ArrayDataset(images, (np.arange(n) % 3).astype(np.int32), 3, "toy")


def take(it: BatchIterator, n: int) -> list[dict[str, np.ndarray]]:
    return [next(it) for _ in range(n)]


def same(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


def test_shift_by_hand() -> None:
    image = np.arange(1, 13, dtype=np.uint8).reshape(1, 1, 3, 4)
    t = make_transformer(TransformationParameter(scale=0.5), (1, 3, 4), augment=AugmentSpec(shift=2))
    moves = [((1, 2), [[0, 0, 0, 0], [0, 0, 1, 2], [0, 0, 5, 6]]),
             ((-2, -1), [[10, 11, 12, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
             ((0, 0), [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])]
    for (down, right), expected in moves:
        draws = Draws(np.zeros(1, int), np.zeros(1, int), np.zeros(1, bool), np.array([[down, right]]))
        out = t.apply(image, draws)
        assert out.dtype == np.float32
        assert np.array_equal(out[0, 0], np.array(expected, np.float32) * np.float32(0.5)), (down, right)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(0, 8), st.integers(0, 2**31 - 1))
def test_shift_matches_the_reference(c: int, h: int, w: int, k: int, seed: int) -> None:
    k = min(k, h - 1, w - 1)
    images = np.random.default_rng(seed).integers(0, 256, (5, c, h, w), dtype=np.uint8)
    t = make_transformer(None, (c, h, w), augment=AugmentSpec(shift=k))
    draws = t.draw(np.random.default_rng(seed), 5, train=True)
    out = t.apply(images, draws)
    if k == 0:
        assert draws.shift is None and np.array_equal(out, images.astype(np.float32))
        return
    assert draws.shift is not None and draws.shift.shape == (5, 2) and np.abs(draws.shift).max() <= k
    for i in range(5):
        assert np.array_equal(out[i], shifted_by_hand(images[i], *draws.shift[i]).astype(np.float32))


def test_offsets_cover_minus_k_to_k_on_both_axes_independently() -> None:
    t = make_transformer(None, (1, 28, 28), augment=AugmentSpec(shift=2))
    moves = t.draw(np.random.default_rng(0), 5000, train=True).shift
    assert moves is not None
    for axis in (0, 1):
        values, counts = np.unique(moves[:, axis], return_counts=True)
        assert values.tolist() == [-2, -1, 0, 1, 2]
        assert counts.min() > 0.8 * 1000 and counts.max() < 1.2 * 1000  # uniform: 1,000 each
    assert len({tuple(m) for m in moves.tolist()}) == 25  # every (down, right) pair occurs


def test_caffe_fields_keep_their_meaning_after_the_shift() -> None:
    # crop, mirror, mean image and scale act on the shifted image exactly as on a stored one: the mean
    # stays put (it describes the dataset's frame), and the crop/flip draws are the unaugmented ones.
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 3, 9, 10), dtype=np.uint8)
    mean = rng.uniform(0, 255, (3, 9, 10)).astype(np.float32)
    param = TransformationParameter(crop_size=6, mirror=True, scale=0.25, mean_value=(1.0, 2.0, 3.0))
    plain = make_transformer(param, (3, 9, 10))
    shifted = make_transformer(param, (3, 9, 10), augment=AugmentSpec(shift=3))
    object.__setattr__(plain, "mean", mean)  # a mean image, as a mean_file gives
    object.__setattr__(shifted, "mean", mean)
    d0 = plain.draw(np.random.default_rng(11), 8, train=True)
    d1 = shifted.draw(np.random.default_rng(11), 8, train=True)
    for name in ("h_off", "w_off", "flip"):
        assert np.array_equal(getattr(d0, name), getattr(d1, name))  # shift drawn after Caffe's draws
    assert d0.shift is None and d1.shift is not None and d1.shift.any()
    stored = np.stack([shifted_by_hand(im, *m) for im, m in zip(images, d1.shift)])
    assert np.array_equal(shifted.apply(images, d1), plain.apply(stored, d0))


def test_test_phase_never_shifts() -> None:
    data = toy()
    t = make_transformer(TransformationParameter(scale=2.0), (2, 6, 7), augment=AugmentSpec(shift=2))
    draws = t.draw(np.random.default_rng(0), 4, train=False)
    assert draws.shift is None
    assert np.array_equal(t.apply(data.images[:4], draws), data.images[:4].astype(np.float32) * 2)
    with BatchIterator(data, 6, train=False, transform=t, epochs=1, prefetch=0) as test:
        got = np.concatenate([b["data"] for b in test])
    assert np.array_equal(got, data.images.astype(np.float32) * 2)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_shifted_batches_are_fixed_by_the_seed_and_resume_exactly(prefetch: int) -> None:
    data = toy(23)
    crop_mirror = TransformationParameter(crop_size=5, mirror=True)
    t = make_transformer(crop_mirror, (2, 6, 7), augment=AugmentSpec(shift=2))
    kwargs = dict(transform=t, seed=3, prefetch=prefetch)
    with BatchIterator(data, 5, **kwargs) as full:
        reference = take(full, 14)  # 4 batches per epoch: three epoch boundaries
    with BatchIterator(data, 5, **kwargs) as again:
        assert same(take(again, 14), reference)
    with BatchIterator(data, 5, **{**kwargs, "seed": 4}) as other:
        assert not same(take(other, 14), reference)
    with BatchIterator(data, 5, **kwargs) as first:
        take(first, 6)
        state = first.state_dict()
    with BatchIterator(data, 5, state=state, **kwargs) as resumed:
        assert same(take(resumed, 8), reference[6:])
    # the same sample is shifted differently when it comes round again
    unshifted = BatchIterator(data, 5, transform=make_transformer(crop_mirror, (2, 6, 7)), seed=3, prefetch=0)
    assert not same(reference, take(unshifted, 14))


def test_shards_reassemble_the_shifted_global_batch() -> None:
    data = toy(24)
    t = make_transformer(None, (2, 6, 7), augment=AugmentSpec(shift=1))
    whole = take(BatchIterator(data, 8, transform=t, seed=5, prefetch=0), 4)
    parts = [take(BatchIterator(data, 8, transform=t, seed=5, prefetch=0, process_index=i, process_count=2),
                  4) for i in range(2)]
    for step in range(4):
        for key in ("data", "label"):
            assert np.array_equal(np.concatenate([p[step][key] for p in parts]), whole[step][key])


def test_data_section_and_errors() -> None:
    spec = DataSpec(source="mnist", augment={"shift": 2})
    assert spec.augment == AugmentSpec(shift=2) and DataSpec(source="mnist").augment.shift == 0
    assert "augment" not in DataSpec(source="mnist").model_fields_set  # resolved specs omit it when unset
    with pytest.raises(MessageError, match="greater than or equal to 0"):
        DataSpec(source="mnist", augment={"shift": -1})
    with pytest.raises(MessageError, match="extra"):
        DataSpec(source="mnist", augment={"rotate": 10})
    with pytest.raises(DataError, match="augment shift 6 would move a 6x7 image out of its frame"):
        make_transformer(TransformationParameter(), (2, 6, 7), augment=AugmentSpec(shift=6))
    with pytest.raises(DataError) as info:  # reported together with transform_param's own problems
        make_transformer(TransformationParameter(crop_size=8), (2, 6, 7), augment=AugmentSpec(shift=9))
    assert "augment shift 9" in str(info.value) and "crop_size 8 is larger" in str(info.value)


def test_spec_yaml_to_iterators_shifts_train_batches_only() -> None:
    text = """
name: tiny
data: {source: mnist, batch_size: 16, transform_param: {scale: 0.00390625}, augment: {shift: 2}}
layer:
  - {name: in, type: Input, top: [data, label], input_param: {shape: [{dim: [16, 1, 28, 28]}, {dim: [16]}]}}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {num_output: 10}}
"""
    spec = load_spec("tiny.yaml", text)
    assert isinstance(spec.data, DataSpec) and spec.data.augment.shift == 2
    splits = load_mnist()
    plain_spec = spec.data.model_copy(update={"augment": AugmentSpec()})
    with make_iterator(spec.data, splits.train, train=True, prefetch=0) as aug, \
            make_iterator(plain_spec, splits.train, train=True, prefetch=0) as plain:
        a, p = next(aug), next(plain)
    assert np.array_equal(a["label"], p["label"])  # same samples in the same order
    moves = [[(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
              if np.array_equal(shifted_by_hand(q, dy, dx), x)] for x, q in zip(a["data"], p["data"])]
    assert all(moves)  # each image is its unaugmented self moved by at most 2 pixels ...
    assert sum((0, 0) not in m for m in moves) >= 8  # ... and most of them did move (24 of 25 moves do)
    with make_iterator(spec.data, splits.test, train=False, prefetch=0) as aug, \
            make_iterator(plain_spec, splits.test, train=False, prefetch=0) as plain:
        assert same([next(aug)], [next(plain)])


@pytest.mark.parametrize("train", [True, False])
def test_the_train_loop_reads_the_augment_field(tmp_path, train: bool) -> None:
    """`netspec train`'s own iterators (not only make_iterator) shift TRAIN batches and never TEST ones;
    a loop that rebuilt the transform from transform_param alone once silently trained unaugmented."""
    from pathlib import Path

    from netspec.train.config import TrainOptions
    from netspec.train.distributed import make_mesh
    from netspec.train.loop import _Trainer
    from netspec.train.plan import make_plan
    from netspec.train.progress import NullDisplay

    spec = Path(__file__).parents[1] / "specs" / "lenet.yaml"
    plan = make_plan(TrainOptions(spec=spec), devices=1)
    assert plan.data.augment.shift == 2  # the shipped LeNet recipe relies on it
    trainer = _Trainer(TrainOptions(spec=spec), plan, make_mesh(1), tmp_path, NullDisplay(), "cpu")
    with trainer._data_iterator(train) as it:
        assert it.transform.shift == 2  # the TEST phase's draw() ignores it
        draws = it.transform.draw(np.random.default_rng(0), 64, train)
    assert (draws.shift is not None) == train
