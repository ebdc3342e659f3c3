"""Datasets from the user's files: an .npz of arrays, or a folder of images with one subfolder per class."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from netspec.data.arrays import ArrayDataset, DataError, make_dataset

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def load_npz(
    path: str | Path,
    *,
    images_key: str = "images",
    labels_key: str = "labels",
    layout: Literal["NCHW", "NHWC"] = "NCHW",
    num_classes: int | None = None,
) -> ArrayDataset:
    """Images and labels stored under `images_key` / `labels_key` of an .npz file.

    Images are N,C,H,W (or N,H,W), or N,H,W,C with layout="NHWC"; uint8 or float, kept as stored.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (images_key, labels_key) if k not in npz.files]
            if missing:
                raise DataError(path, f"missing key(s) {missing}; the file has {sorted(npz.files)}")
            images, labels = npz[images_key], npz[labels_key]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(path, f"cannot read as .npz: {e}") from None
    if layout == "NHWC":
        if images.ndim != 4:
            raise DataError(path, f"layout NHWC needs 4-D images, got shape {images.shape}")
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return make_dataset(images, labels, num_classes, path)


def load_image_folder(
    path: str | Path,
    *,
    classes: list[str] | None = None,
    new_height: int = 0,
    new_width: int = 0,
    color: Literal["RGB", "BGR", "gray"] = "RGB",
) -> ArrayDataset:
    """`path/<class name>/<image>` files decoded with Pillow into uint8 N,C,H,W.

    Labels number the class folders in sorted order, or follow `classes` (the training set's
    `ArrayDataset.classes`, so that a separate test folder numbers its classes the same way; it may
    lack some of them, but not add new ones). `color`: RGB (3 channels, Pillow's
    order), BGR (3 channels, OpenCV's order as Caffe's ImageData layer reads them) or gray (1 channel).
    Images are resized (bilinear, like Caffe's cv::resize) when new_height and new_width are set;
    otherwise they must all have one size.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(root, "no such folder")
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = present if classes is None else list(classes)
    problems = [f"class folder '{p}' is not among the training classes {names}"
                for p in present if p not in names]
    if not names:
        raise DataError(root, "no class subfolders (expected path/<class>/<image files>)")
    files, labels = [], []
    for label, name in enumerate(names):
        if (root / name).is_dir():  # a test set may lack a class
            found = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [label] * len(found)
    if not files and not problems:
        problems.append(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folders")
    arrays = []
    for file in files:
        try:
            with Image.open(file) as img:
                img = img.convert("L" if color == "gray" else "RGB")
                if new_height and new_width:
                    img = img.resize((new_width, new_height), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(img))
        except (OSError, UnidentifiedImageError) as e:
            problems.append(f"{file.relative_to(root)}: cannot decode ({e})")
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        problems.append(f"images have different sizes {sorted(sizes)[:4]}; set new_height and new_width")
    if problems:
        raise DataError(root, *problems)
    images = np.stack(arrays)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    if color == "BGR":
        images = images[:, ::-1]
    return make_dataset(np.ascontiguousarray(images), np.asarray(labels), len(names), root, tuple(names))
