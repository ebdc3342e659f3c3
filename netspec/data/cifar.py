"""CIFAR-10 from its python-pickle batches (cifar-10-python.tar.gz), downloaded once or from a folder."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data.arrays import ArrayDataset, DataError, Splits, make_dataset
from netspec.data.download import cache_dir, fetch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"


def load_cifar10(
    root: str | Path | None = None,
    *,
    download: bool = True,
    cache: str | Path | None = None,
    url: str | None = None,
    sha256: str = CIFAR10_SHA256,
) -> Splits:
    """CIFAR-10 as uint8 (N,3,32,32) RGB images (channel order as in the batches) and int32 labels.

    `root`: a folder holding the batches (data_batch_1..5, test_batch), directly or in
    cifar-10-batches-py/; nothing is downloaded. Without `root`, the batches are looked up in
    `cache_dir(cache)/cifar10` and, if absent and `download`, the tarball is fetched from `url`
    (default CIFAR10_URL), checked against `sha256`, and its batches extracted there (atomically).
    """
    if root is not None:
        return _from_folder(_batch_folder(Path(root).expanduser()))
    folder = cache_dir(cache) / "cifar10"
    batches = folder / BATCH_DIR
    if not _complete(batches):
        if not download:
            raise DataError(batches, "CIFAR-10 batches not found and download is off")
        archive = fetch(url or CIFAR10_URL, folder / "cifar-10-python.tar.gz", sha256)
        _extract(archive, batches)
    return _from_folder(batches)


def _batch_folder(root: Path) -> Path:
    for candidate in (root, root / BATCH_DIR):
        if _complete(candidate):
            return candidate
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (root / n).is_file()]
    raise DataError(root, f"not a CIFAR-10 batch folder: missing {', '.join(missing)} "
                          f"(looked here and in {BATCH_DIR}/)")


def _complete(folder: Path) -> bool:
    return all((folder / n).is_file() for n in (*TRAIN_BATCHES, TEST_BATCH))


def _extract(archive: Path, batches: Path) -> None:
    """Extract only the batch files, into a temporary folder renamed into place when complete."""
    wanted = {f"{BATCH_DIR}/{n}" for n in (*TRAIN_BATCHES, TEST_BATCH, META)}
    tmp = Path(tempfile.mkdtemp(prefix=".cifar10.", dir=batches.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            found = {m.name for m in members}
            missing = sorted(n for n in wanted if n not in found and not n.endswith(META))
            if missing:
                raise DataError(archive, f"archive lacks {', '.join(missing)}")
            for member in members:
                source = tar.extractfile(member)
                assert source is not None  # isfile() members always have data
                with source, open(tmp / Path(member.name).name, "wb") as out:
                    shutil.copyfileobj(source, out)
        if batches.exists():
            shutil.rmtree(batches)
        os.replace(tmp, batches)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(archive, f"cannot extract: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_folder(folder: Path) -> Splits:
    train = [_read_batch(folder / n) for n in TRAIN_BATCHES]
    images = np.concatenate([b.images for b in train])
    labels = np.concatenate([b.labels for b in train])
    return Splits(make_dataset(images, labels, 10, folder), _read_batch(folder / TEST_BATCH))


def _read_batch(path: Path) -> ArrayDataset:
    try:
        with path.open("rb") as f:
            batch = _SafeUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(path, f"cannot read the CIFAR batch: {e}") from None
    if not isinstance(batch, dict):
        raise DataError(path, f"a CIFAR batch is a pickled dict, got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise DataError(path, f"a CIFAR batch needs 'data' and 'labels', got keys {sorted(map(str, batch))}")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DataError(path, f"'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    # Each row is the 1024 red, then green, then blue values of a 32x32 image, row-major: N,C,H,W.
    return make_dataset(data.reshape(-1, 3, 32, 32), np.asarray(labels), 10, path)


def _get(batch: dict[Any, Any], key: str) -> Any:
    return batch.get(key.encode(), batch.get(key))


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold (dicts, lists, bytes, NumPy arrays): a pickle names any
    callable it likes, so an unrestricted load of a downloaded or user-supplied file could run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
        ("_codecs", "encode"): ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR batch)")
        # numpy.core is numpy._core's deprecated alias; going to the new name avoids its warning.
        return super().find_class(*target)
