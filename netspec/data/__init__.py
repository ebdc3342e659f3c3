"""Training data for netspec: datasets as NumPy arrays, Caffe's transform_param, resumable batches.

NumPy only (no JAX): the train loop turns batches into device arrays itself.

    splits = load_dataset(DataSpec(source="mnist"))             # 8,000 / 2,000 vendored digits
    batches = make_iterator(spec, splits.train, train=True)      # {"data": f32 NCHW, "label": i32}
    state = batches.state_dict()                                 # {"epoch": e, "position": p}
"""

from netspec.data.arrays import ArrayDataset, DataError, Splits, make_dataset, split_dataset, stratified_split
from netspec.data.cifar import load_cifar10
from netspec.data.download import cache_dir, fetch
from netspec.data.files import load_image_folder, load_npz
from netspec.data.iterator import BatchIterator
from netspec.data.loader import data_transformer, load_dataset, make_iterator
from netspec.data.mnist import load_mnist, read_idx
from netspec.data.spec import AugmentSpec, DataSpec
from netspec.data.transform import Draws, Transformer, load_mean_file, make_transformer

__all__ = [
    "ArrayDataset",
    "AugmentSpec",
    "BatchIterator",
    "DataError",
    "DataSpec",
    "Draws",
    "Splits",
    "Transformer",
    "cache_dir",
    "data_transformer",
    "fetch",
    "load_cifar10",
    "load_dataset",
    "load_image_folder",
    "load_mean_file",
    "load_mnist",
    "load_npz",
    "make_dataset",
    "make_iterator",
    "make_transformer",
    "read_idx",
    "split_dataset",
    "stratified_split",
]
