"""In-memory datasets: N,C,H,W images with int32 labels, their checks, and deterministic splits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


class DataError(Exception):
    """A data file (or folder, or URL) is missing or malformed. Lists every problem found in it."""

    def __init__(self, where: str | Path, *problems: str) -> None:
        self.where = str(where)
        self.problems = problems
        super().__init__("\n".join(f"{self.where}: {p}" for p in problems))


@dataclass(frozen=True)
class ArrayDataset:
    """Images N,C,H,W (uint8 or float32: raw values, as Caffe's data layers see them), labels (N,) int32."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    source: str
    classes: tuple[str, ...] = ()  # class names by label, where the source has them (folder)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.images.shape
        return (c, h, w)

    def subset(self, index: np.ndarray) -> ArrayDataset:
        return replace(self, images=self.images[index], labels=self.labels[index])


@dataclass(frozen=True)
class Splits:
    train: ArrayDataset
    test: ArrayDataset


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int | None,
    source: str | Path,
    classes: tuple[str, ...] = (),
) -> ArrayDataset:
    """Check shapes and label range (every problem at once) and build the dataset.

    2-D-per-sample images (N,H,W) gain a channel axis. Labels may be (N,) or (N,1) integers (or floats
    holding integers). num_classes None means max(label) + 1.
    """
    problems: list[str] = []
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        problems.append(f"images must be N,C,H,W (or N,H,W), got shape {images.shape}")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        problems.append(f"images must be uint8 or float, got {images.dtype}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        problems.append(f"labels must be a vector (N,), got shape {labels.shape}")
    elif images.ndim >= 1 and labels.shape[0] != images.shape[0]:
        problems.append(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.mod(labels, 1) == 0):
            problems.append(f"labels must be integers, got {labels.dtype}")
    if labels.size == 0:
        problems.append("the dataset is empty")
    if problems:
        raise DataError(source, *problems)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise DataError(source, f"{int(bad.sum())} labels outside [0, {num_classes}) (e.g. at index {first}: "
                        f"{labels[first].tolist()})")
    if images.dtype != np.uint8:
        images = images.astype(np.float32, copy=False)
    return ArrayDataset(images, labels.astype(np.int32), num_classes, str(source), classes)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, test_index), both sorted; each class gives test_fraction of its samples to test.

    Per-class test counts are rounded by largest remainder so the total is round(N * test_fraction).
    Which samples go to test is a seeded shuffle within each class, so the split depends on the seed
    and the labels only.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * test_fraction
    take = np.floor(exact).astype(int)
    short = int(round(len(labels) * test_fraction)) - int(take.sum())
    take[np.argsort(-(exact - take), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    test = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    test_index = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    return train_index, test_index


# Train/test splits use a fixed seed, so changing the shuffle seed never moves samples between them.
SPLIT_SEED = 0


def split_dataset(data: ArrayDataset, test_fraction: float, seed: int = SPLIT_SEED) -> Splits:
    train_index, test_index = stratified_split(data.labels, test_fraction, seed)
    return Splits(data.subset(train_index), data.subset(test_index))
