"""The `data:` section of a spec: where the training data comes from and how it is batched.

    data: {source: mnist}                               # vendored 10k sample, offline
    data: {source: mnist, full: true}                   # official 60k/10k, downloaded once
    data: {source: cifar10, root: ~/datasets/cifar}     # batches already on disk (else downloaded)
    data: {source: npz, path: digits.npz, images_key: x, labels_key: y}
    data: {source: folder, path: photos/train, test_path: photos/val, new_height: 64, new_width: 64}
    data: {source: mnist, augment: {shift: 2}}          # netspec extension: random TRAIN translations

jax-free (the spec loader validates it during `netspec check`).
"""

from __future__ import annotations

from typing import Literal

from netspec.layers.data import TransformationParameter
from netspec.message import Field, Message, NonNegativeInt, PositiveInt, model_validator

Source = Literal["mnist", "cifar10", "npz", "folder"]


class AugmentSpec(Message):
    """Augmentation beyond Caffe's transform_param (a netspec extension; Caffe has no such field).

    It acts on the raw images before transform_param, as if the dataset stored the altered image, so
    crop_size, mirror, mean_file/mean_value and scale keep exactly their Caffe meaning. TRAIN only.
    """

    shift: NonNegativeInt = Field(
        0,
        description="Translate each TRAIN image by a random whole number of pixels in [-shift, shift] "
        "along each of H and W (drawn independently); uncovered pixels become raw 0. 0: off.",
    )

# Optional fields that mean something only for some sources; setting one elsewhere is an error.
SOURCE_FIELDS: dict[str, frozenset[Source]] = {
    "path": frozenset({"npz", "folder"}),
    "test_path": frozenset({"npz", "folder"}),
    "test_fraction": frozenset({"npz", "folder"}),
    "root": frozenset({"cifar10"}),
    "full": frozenset({"mnist"}),
    "url": frozenset({"mnist", "cifar10"}),
    "download": frozenset({"mnist", "cifar10"}),
    "images_key": frozenset({"npz"}),
    "labels_key": frozenset({"npz"}),
    "layout": frozenset({"npz"}),
    "num_classes": frozenset({"npz"}),
    "new_height": frozenset({"folder"}),
    "new_width": frozenset({"folder"}),
    "color": frozenset({"folder"}),
}


class DataSpec(Message):
    """Training and test data for `netspec train`."""

    source: Source = Field(description="mnist, cifar10, npz (arrays in a .npz file) or folder (images).")
    path: str | None = Field(None, description="npz: the .npz file; folder: the folder of class subfolders.")
    test_path: str | None = Field(
        None, description="A separate test set (same format as path). Without it the data is split."
    )
    test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0,
        description="Share of each class held out for testing when there is no test_path (fixed seed).",
    )
    root: str | None = Field(None, description="cifar10: folder already holding the python batches.")
    full: bool = Field(False, description="mnist: the official 60k/10k files, not the vendored 10k sample.")
    url: str | None = Field(None, description="Download URL (mnist: base URL; cifar10: the tarball's URL).")
    download: bool = Field(True, description="Allow downloading when the files are not cached.")
    cache_dir: str | None = Field(None, description="Download cache (default: $NETSPEC_CACHE, XDG cache).")
    images_key: str = Field("images", description="npz: key of the N,C,H,W (or N,H,W) image array.")
    labels_key: str = Field("labels", description="npz: key of the (N,) label array.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="npz: axis order of the image array.")
    num_classes: PositiveInt | None = Field(
        None, description="npz: labels must lie in [0, num_classes) (default: the largest label + 1)."
    )
    new_height: NonNegativeInt = Field(0, description="folder: resize images to this height (0 = keep).")
    new_width: NonNegativeInt = Field(0, description="folder: resize images to this width (0 = keep).")
    color: Literal["RGB", "BGR", "gray"] = Field(
        "RGB", description="folder: channel order (BGR as Caffe's OpenCV readers) or 1-channel gray."
    )
    batch_size: PositiveInt = Field(64, description="Global training batch size.")
    test_batch_size: PositiveInt | None = Field(None, description="Test batch size (default batch_size).")
    shuffle: bool = Field(True, description="Reshuffle the training set every epoch.")
    seed: NonNegativeInt = Field(0, description="Seed of the shuffling and of the random crop/mirror.")
    transform_param: TransformationParameter = Field(
        default_factory=TransformationParameter,
        description="Caffe's transform_param: crop_size, mirror, mean_file | mean_value, scale.",
    )
    augment: AugmentSpec = Field(
        default_factory=AugmentSpec,
        description="netspec extension: TRAIN-only augmentation applied before transform_param (shift).",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> DataSpec:
        problems = [
            f"'{name}' does nothing for source '{self.source}' (it applies to {', '.join(sorted(sources))})"
            for name, sources in SOURCE_FIELDS.items()
            if name in self.model_fields_set and self.source not in sources
        ]
        if self.source in ("npz", "folder") and not self.path:
            problems.append(f"source '{self.source}' needs 'path'")
        t = self.transform_param
        if t.mean_file and t.mean_value:
            problems.append("transform_param: cannot specify mean_file and mean_value at the same time")
        if t.force_color and t.force_gray:
            problems.append("transform_param: cannot set both force_color and force_gray")
        if (t.force_color or t.force_gray) and self.source != "folder":
            problems.append("transform_param: force_color/force_gray apply to decoded images (source folder)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def folder_color(self) -> Literal["RGB", "BGR", "gray"]:
        """The folder decode mode after Caffe's force_gray / force_color."""
        t = self.transform_param
        if t.force_gray:
            return "gray"
        if t.force_color and self.color == "gray":
            return "RGB"
        return self.color
