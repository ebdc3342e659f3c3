"""MNIST: the vendored 10k sample (offline default) or the official 60k/10k IDX files, downloaded once."""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from netspec.data.arrays import DataError, Splits, make_dataset, split_dataset
from netspec.data.download import cache_dir, fetch

# The official file names; SHA-256 of the .gz files as published by several independent mirrors'
# checksum tables (TensorFlow's and PyTorch's mirrors serve byte-identical files).
MNIST_SHA256: Mapping[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
# yann.lecun.com now often refuses downloads; the mirrors come first.
MNIST_URLS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
SAMPLE_TEST_FRACTION = 0.2

_IDX_TYPES = {0x08: np.uint8}


def load_mnist(
    full: bool = False,
    *,
    cache: str | Path | None = None,
    base_url: str | Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Splits:
    """MNIST as uint8 (N,1,28,28) images and int32 labels.

    `full=False`: the vendored 10,000-digit sample, split 8,000 train / 2,000 test, stratified by class
    (each digit gives 20% of its samples to test, largest-remainder rounding) with the fixed
    SPLIT_SEED, so the split never changes between runs or machines.
    `full=True`: the official 60,000 / 10,000 sets, downloaded once into `cache_dir(cache)/mnist` from
    `base_url` (a URL prefix or several, tried in order; default MNIST_URLS), checked against
    `checksums` (default MNIST_SHA256).
    """
    if not full:
        return _sample()
    folder = cache_dir(cache) / "mnist"
    sums = dict(MNIST_SHA256 if checksums is None else checksums)
    prefixes = [base_url] if isinstance(base_url, str) else list(base_url or MNIST_URLS)

    def get(name: str) -> np.ndarray:
        if name not in sums:
            raise DataError(folder / name, "no SHA-256 known for this file")
        urls = [p.rstrip("/") + "/" + name for p in prefixes]
        return read_idx(fetch(urls, folder / name, sums[name]))

    train = make_dataset(get("train-images-idx3-ubyte.gz"), get("train-labels-idx1-ubyte.gz"), 10, folder)
    test = make_dataset(get("t10k-images-idx3-ubyte.gz"), get("t10k-labels-idx1-ubyte.gz"), 10, folder)
    return Splits(train, test)


def _sample() -> Splits:
    path = resources.files("netspec.data") / "mnist-10k.npz"
    with resources.as_file(path) as file, np.load(file) as npz:
        data = make_dataset(npz["images"], npz["labels"], 10, "netspec/data/mnist-10k.npz")
    return split_dataset(data, SAMPLE_TEST_FRACTION)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; gzip-compressed if the name ends in .gz) as a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(path, f"cannot read: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(path, "not an IDX file (the magic number must start with two zero bytes)")
    kind, ndim = raw[2], raw[3]
    if kind not in _IDX_TYPES:
        raise DataError(path, f"unsupported IDX element type 0x{kind:02x} (only unsigned bytes, 0x08)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(path, "truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(path, f"IDX header says shape {shape} ({expected} bytes); the file has {len(raw)}")
    return np.frombuffer(raw, dtype=_IDX_TYPES[kind], offset=header).reshape(shape)
