"""DataSpec -> datasets -> batch iterators: the one entry point the train loop needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from netspec.data.arrays import ArrayDataset, Splits, split_dataset
from netspec.data.cifar import load_cifar10
from netspec.data.files import load_image_folder, load_npz
from netspec.data.iterator import BatchIterator
from netspec.data.mnist import load_mnist
from netspec.data.spec import DataSpec
from netspec.data.transform import Transformer, make_transformer

def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def load_dataset(spec: DataSpec, base_dir: Path | None = None) -> Splits:
    """The train and test sets `spec` describes; relative paths start at `base_dir` (the spec's folder)."""
    if spec.source == "mnist":
        return load_mnist(spec.full, cache=spec.cache_dir, base_url=spec.url)
    if spec.source == "cifar10":
        root = None if spec.root is None else _resolve(spec.root, base_dir)
        return load_cifar10(root, download=spec.download, cache=spec.cache_dir, url=spec.url)
    assert spec.path is not None  # DataSpec requires it for npz and folder

    def load(path: str, like: ArrayDataset | None = None) -> ArrayDataset:
        """`like`: the training set, whose classes a separate test set must use."""
        where = _resolve(path, base_dir)
        if spec.source == "npz":
            num_classes = spec.num_classes or (like.num_classes if like else None)
            return load_npz(where, images_key=spec.images_key, labels_key=spec.labels_key,
                            layout=spec.layout, num_classes=num_classes)
        classes = list(like.classes) if like else None
        return load_image_folder(where, classes=classes, new_height=spec.new_height, new_width=spec.new_width,
                                 color=spec.folder_color)

    train = load(spec.path)
    if spec.test_path is None:
        return split_dataset(train, spec.test_fraction)
    return Splits(train, load(spec.test_path, like=train))


def data_transformer(spec: DataSpec, image_shape: tuple[int, int, int], base_dir: Path | None = None
                     ) -> Transformer:
    """The transform a `data:` section asks for (transform_param and the augment extension): the one
    place every iterator (training, testing, `netspec test`) and the plan's shape check get it from."""
    return make_transformer(spec.transform_param, image_shape, base_dir, spec.augment)


def make_iterator(
    spec: DataSpec,
    dataset: ArrayDataset,
    *,
    train: bool,
    names: Sequence[str] = ("data", "label"),
    base_dir: Path | None = None,
    process_index: int = 0,
    process_count: int = 1,
    epochs: int | None = None,
    state: Mapping[str, int] | None = None,
    prefetch: int = 2,
) -> BatchIterator:
    """A TRAIN (shuffled, random crop/mirror/shift, full batches) or TEST (in order, all samples) iterator.

    Both cycle forever unless `epochs` is given: a test pass takes `test_iter` batches (the cursor
    carrying on across passes, as Caffe's test data layers do) or uses epochs=1 for exactly one pass.
    """
    transform = data_transformer(spec, dataset.image_shape, base_dir)
    batch_size = spec.batch_size if train else (spec.test_batch_size or spec.batch_size)
    return BatchIterator(
        dataset, batch_size, names=names, train=train, shuffle=spec.shuffle if train else False,
        transform=transform, seed=spec.seed, process_index=process_index, process_count=process_count,
        prefetch=prefetch, epochs=epochs, state=state,
    )
