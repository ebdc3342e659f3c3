"""Caffe's `transform_param` (data_transformer.cpp) on N,C,H,W batches: crop, mirror, subtract mean, scale.

Per element Caffe computes (pixel - mean[c, h_off + h, w_off + w]) * scale, with the mean image
indexed at the *source* position of the crop and the mirror applied when writing the output. So here:
crop the image and the mean at the same window, subtract, scale, then flip; all in float32.

Randomness is drawn (`draw`) separately from its use (`apply`), so a batch iterator can draw for a
whole global batch and apply the draws to the rows one process owns.

One deliberate difference: Caffe flips at random whenever `mirror` is set, TEST phase included; here
the TEST phase never flips, so evaluation is deterministic (zoo models set mirror: false for TEST).

A netspec extension, the `data:` section's `augment: {shift: k}`, translates each TRAIN image by
whole pixels in [-k, k] (zero fill) before any of the above: the transform then sees the shifted image
as if the dataset held it, so Caffe's fields keep their meaning. Its offsets are drawn after Caffe's
(crop, then flip), so a batch without augmentation has exactly the draws it had before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from netspec.data.arrays import DataError

Shape3 = tuple[int, int, int]


class AugmentFields(Protocol):
    """What augmentation needs: netspec.data.spec.AugmentSpec has these fields."""

    shift: int


class TransformFields(Protocol):
    """What a transform needs: Caffe's TransformationParameter (netspec.layers.data) has these fields."""

    scale: float
    mirror: bool
    crop_size: int
    mean_file: str | None
    mean_value: tuple[float, ...]


@dataclass(frozen=True)
class Draws:
    """Per-sample random choices of one batch: crop offsets, horizontal flips and translations.

    `shift` is (n, 2) whole-pixel moves (down, right) of the image content, or None when not shifting.
    """

    h_off: np.ndarray
    w_off: np.ndarray
    flip: np.ndarray
    shift: np.ndarray | None = None

    def take(self, rows: slice) -> Draws:
        shift = None if self.shift is None else self.shift[rows]
        return Draws(self.h_off[rows], self.w_off[rows], self.flip[rows], shift)


@dataclass(frozen=True)
class Transformer:
    """A validated transform_param for one image shape (C,H,W); `mean` is (C,H,W) or (C,1,1) float32.

    `shift`: the netspec augmentation's largest TRAIN translation in pixels (0: none).
    """

    image_shape: Shape3
    scale: np.float32
    mirror: bool
    crop_size: int
    mean: np.ndarray | None
    shift: int = 0

    @property
    def output_shape(self) -> Shape3:
        c, h, w = self.image_shape
        return (c, self.crop_size, self.crop_size) if self.crop_size else (c, h, w)

    def draw(self, rng: np.random.Generator, n: int, train: bool) -> Draws:
        """TRAIN: random crop offsets in [0, H - crop], coin-flip mirrors and shifts in [-shift, shift];
        TEST: centre crop, no flip, no shift."""
        _, h, w = self.image_shape
        crop = self.crop_size
        if crop and train:
            h_off, w_off = rng.integers(0, h - crop + 1, n), rng.integers(0, w - crop + 1, n)
        else:
            h_off = np.full(n, (h - crop) // 2 if crop else 0)
            w_off = np.full(n, (w - crop) // 2 if crop else 0)
        flip = rng.integers(0, 2, n).astype(bool) if self.mirror and train else np.zeros(n, bool)
        shift = rng.integers(-self.shift, self.shift + 1, (n, 2)) if self.shift and train else None
        return Draws(h_off, w_off, flip, shift)

    def apply(self, images: np.ndarray, draws: Draws) -> np.ndarray:
        """float32 (n, C, h, w) from raw (n, C, H, W) images."""
        mean = self.mean
        if draws.shift is not None:
            images = _translate(images, draws.shift, self.shift)
        if self.crop_size:
            images = _crop(images, draws.h_off, draws.w_off, self.crop_size)  # raw values: less to copy
            if mean is not None and mean.shape[1:] != (1, 1):  # a mean image, not per-channel values
                full = np.broadcast_to(mean, (len(images), *mean.shape))
                mean = _crop(full, draws.h_off, draws.w_off, self.crop_size)
        x = images.astype(np.float32, order="C")  # a fresh array, so the steps below work in place
        if mean is not None:
            x -= mean
        if self.scale != 1:
            x *= self.scale
        if draws.flip.any():
            x[draws.flip] = x[draws.flip, :, :, ::-1]
        return x


def _crop(x: np.ndarray, h_off: np.ndarray, w_off: np.ndarray, size: int) -> np.ndarray:
    # Picking one window per sample from a strided view copies only the crops (10x faster than
    # gathering with broadcast index arrays).
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(2, 3))
    return windows[np.arange(len(x)), :, h_off, w_off]


def _translate(x: np.ndarray, moves: np.ndarray, most: int) -> np.ndarray:
    """Each image's content moved by its (down, right) pixels, uncovered pixels 0 (in x's dtype)."""
    _, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (most, most), (most, most)))
    # out[y, x] = in[y - dy, x - dx] = padded[y - dy + most, x - dx + most]: one window per image.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    return windows[np.arange(len(x)), :, most - moves[:, 0], most - moves[:, 1]]


def make_transformer(
    param: TransformFields | None,
    image_shape: Shape3,
    base_dir: Path | None = None,
    augment: AugmentFields | None = None,
) -> Transformer:
    """Check `param` (Caffe's DataTransformer CHECKs) and `augment` against the images, all problems
    reported together."""
    c, h, w = image_shape
    shift = augment.shift if augment is not None else 0
    problems: list[str] = []
    if shift >= min(h, w):
        problems.append(
            f"augment shift {shift} would move a {h}x{w} image out of its frame (at most {min(h, w) - 1})")
    if param is None:
        if problems:
            raise DataError("augment", *problems)
        return Transformer(image_shape, np.float32(1), False, 0, None, shift)
    where = "transform_param"
    if param.crop_size and (param.crop_size > h or param.crop_size > w):
        problems.append(f"crop_size {param.crop_size} is larger than the {h}x{w} images")
    mean = None
    if param.mean_file and param.mean_value:
        problems.append("cannot specify mean_file and mean_value at the same time")
    elif param.mean_value:
        values = np.asarray(param.mean_value, np.float32)
        if len(values) not in (1, c):
            problems.append(f"give 1 mean_value or one per channel ({c}), got {len(values)}")
        else:
            mean = np.broadcast_to(values, (c,)).reshape(c, 1, 1).copy()
    elif param.mean_file:
        path = Path(param.mean_file).expanduser()
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        mean = load_mean_file(path)
        where = str(path)
        if mean.shape != image_shape:
            problems.append(f"mean image has shape {mean.shape}, the images {image_shape} (before any crop)")
    if problems:
        raise DataError(where, *problems)
    return Transformer(image_shape, np.float32(param.scale), bool(param.mirror), int(param.crop_size), mean,
                       shift)


def load_mean_file(path: Path) -> np.ndarray:
    """A mean image as float32 (C,H,W): a NumPy .npy, or a Caffe BlobProto (compute_image_mean's output)."""
    if not path.is_file():
        raise DataError(path, "mean file not found")
    if path.suffix == ".npy":
        try:
            mean = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(path, f"cannot read as .npy: {e}") from None
    else:
        from netspec.caffe.caffemodel import decode_blob
        from netspec.errors import NetspecError

        try:
            mean = decode_blob(path.read_bytes(), str(path))
        except NetspecError as e:  # its messages name the file already, as the DataError will
            why = "; ".join(d.message.removeprefix(f"{path}: ") for d in e.diagnostics)
            raise DataError(path, f"not a Caffe BlobProto (.binaryproto): {why}") from None
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    elif mean.ndim == 2:
        mean = mean[None]
    if mean.ndim != 3:
        raise DataError(path, f"a mean image is C,H,W (or 1,C,H,W or H,W), got shape {mean.shape}")
    return mean.astype(np.float32)
