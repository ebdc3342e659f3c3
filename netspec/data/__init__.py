"""Training data for netspec: datasets as NumPy arrays, Caffe's transform_param, resumable batches.

NumPy only (no JAX): the train loop turns batches into device arrays itself.

    splits = load_dataset(DataSpec(source="mnist"))             # 8,000 / 2,000 vendored digits
    batches = make_iterator(spec, splits.train, train=True)      # {"data": f32 NCHW, "label": i32}
    state = batches.state_dict()                                 # {"epoch": e, "position": p}
"""

import importlib
from typing import TYPE_CHECKING, Any

# Attributes load their module on first use (PEP 562): `netspec check` validates a spec's `data:`
# section through netspec.data.spec alone and must not pay for NumPy and the loaders.
_WHERE = {
    "ArrayDataset": "netspec.data.arrays",
    "DataError": "netspec.data.arrays",
    "Splits": "netspec.data.arrays",
    "make_dataset": "netspec.data.arrays",
    "split_dataset": "netspec.data.arrays",
    "stratified_split": "netspec.data.arrays",
    "load_cifar10": "netspec.data.cifar",
    "cache_dir": "netspec.data.download",
    "fetch": "netspec.data.download",
    "load_image_folder": "netspec.data.files",
    "load_npz": "netspec.data.files",
    "BatchIterator": "netspec.data.iterator",
    "data_transformer": "netspec.data.loader",
    "load_dataset": "netspec.data.loader",
    "make_iterator": "netspec.data.loader",
    "load_mnist": "netspec.data.mnist",
    "read_idx": "netspec.data.mnist",
    "AugmentSpec": "netspec.data.spec",
    "DataSpec": "netspec.data.spec",
    "Draws": "netspec.data.transform",
    "Transformer": "netspec.data.transform",
    "load_mean_file": "netspec.data.transform",
    "make_transformer": "netspec.data.transform",
}

if TYPE_CHECKING:
    from netspec.data.arrays import ArrayDataset, DataError, Splits, make_dataset, split_dataset, stratified_split
    from netspec.data.cifar import load_cifar10
    from netspec.data.download import cache_dir, fetch
    from netspec.data.files import load_image_folder, load_npz
    from netspec.data.iterator import BatchIterator
    from netspec.data.loader import data_transformer, load_dataset, make_iterator
    from netspec.data.mnist import load_mnist, read_idx
    from netspec.data.spec import AugmentSpec, DataSpec
    from netspec.data.transform import Draws, Transformer, load_mean_file, make_transformer


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'netspec.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


__all__ = sorted(_WHERE)
