"""Data: vendored MNIST, downloads from a local HTTP server, CIFAR/npz/folder readers, transforms, batches."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from netspec.caffe.caffemodel import encode_blob
from netspec.data import (
    ArrayDataset,
    BatchIterator,
    DataError,
    DataSpec,
    load_cifar10,
    load_dataset,
    load_image_folder,
    load_mnist,
    load_npz,
    make_dataset,
    make_iterator,
    make_transformer,
    stratified_split,
)
from netspec.data.download import sha256_file
from netspec.layers.data import TransformationParameter
from netspec.message import MessageError

REPO = Path(__file__).resolve().parents[1]
MNIST_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


# --- vendored MNIST sample ---------------------------------------------------------------------------


def test_mnist_sample_loads_with_its_class_counts() -> None:
    splits = load_mnist()
    assert (len(splits.train), len(splits.test)) == (8000, 2000)
    counts = np.bincount(splits.train.labels, minlength=10) + np.bincount(splits.test.labels, minlength=10)
    assert counts.tolist() == MNIST_COUNTS
    assert splits.train.images.shape == (8000, 1, 28, 28) and splits.train.images.dtype == np.uint8
    assert splits.train.labels.dtype == np.int32 and splits.train.num_classes == 10
    # stratified: every digit gives 20% (largest-remainder rounded) of its samples to test
    assert np.bincount(splits.test.labels).tolist() == [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]


def test_mnist_sample_split_is_fixed_and_disjoint() -> None:
    a, b = load_mnist(), load_mnist()
    assert np.array_equal(a.test.images, b.test.images) and np.array_equal(a.train.labels, b.train.labels)
    train_rows = {r.tobytes() for r in a.train.images}
    assert not any(r.tobytes() in train_rows for r in a.test.images)  # the 10k digits are all distinct
    # pinned, so that a change of the split (which would move results between releases) is noticed
    digest = hashlib.sha256(a.test.images.tobytes() + a.test.labels.tobytes()).hexdigest()
    assert digest[:16] == "470dac91c8aac381"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.sampled_from([0.0, 0.1, 0.25, 0.5]),
       st.integers(0, 3))
def test_stratified_split_properties(labels: list[int], fraction: float, seed: int) -> None:
    y = np.asarray(labels)
    train, test = stratified_split(y, fraction, seed)
    assert len(test) == round(len(y) * fraction)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
    for c in np.unique(y):
        assert abs(np.sum(y[test] == c) - np.sum(y == c) * fraction) < 1
    again = stratified_split(y, fraction, seed)
    assert np.array_equal(test, again[1])


# --- batch iterator ----------------------------------------------------------------------------------


def toy(n: int = 23, shape: tuple[int, int, int] = (2, 5, 6)) -> ArrayDataset:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return make_dataset(images, np.arange(n) % 4, 4, "toy")


def take(it: Iterator[dict[str, np.ndarray]], k: int) -> list[dict[str, np.ndarray]]:
    return [next(it) for _ in range(k)]


def same(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_iterator_resumes_exactly_from_its_state(prefetch: int) -> None:
    data = toy()
    transform = make_transformer(TransformationParameter(crop_size=4, mirror=True, scale=0.5), (2, 5, 6))
    kwargs = dict(transform=transform, seed=3, prefetch=prefetch)
    with BatchIterator(data, 5, **kwargs) as full:
        reference = take(full, 14)  # 4 batches per epoch: crosses three epoch boundaries
    with BatchIterator(data, 5, **kwargs) as first:
        take(first, 6)
        state = first.state_dict()
    assert state == {"epoch": 1, "position": 2}
    with BatchIterator(data, 5, state=state, **kwargs) as resumed:
        assert same(take(resumed, 8), reference[6:])


def test_epochs_cover_every_sample_once_and_reshuffle() -> None:
    data = toy()
    with BatchIterator(data, 5, drop_remainder=False, seed=1, epochs=2) as it:
        batches = list(it)
    assert [len(b["label"]) for b in batches] == [5, 5, 5, 5, 3] * 2
    seen = [np.concatenate([b["data"].reshape(len(b["data"]), -1) for b in batches[i:i + 5]]) for i in (0, 5)]
    for epoch in seen:
        assert sorted(map(bytes, epoch.astype(np.uint8))) == sorted(map(bytes, data.images.reshape(23, -1)))
    assert not np.array_equal(seen[0], seen[1])  # each epoch has its own order
    with BatchIterator(data, 5, drop_remainder=False, seed=1, epochs=2) as again:
        assert same(list(again), batches)  # ... fixed by the seed


def test_train_drops_the_remainder_and_test_keeps_order() -> None:
    data = toy()
    with BatchIterator(data, 5, epochs=1) as train:
        assert train.steps_per_epoch == 4 and len(list(train)) == 4
    with BatchIterator(data, 5, train=False, epochs=1) as test:
        labels = np.concatenate([b["label"] for b in test])
    assert labels.tolist() == (np.arange(23) % 4).tolist()


def test_shards_reassemble_the_global_batch() -> None:
    data = toy(24)
    transform = make_transformer(TransformationParameter(crop_size=3, mirror=True), (2, 5, 6))
    whole = take(BatchIterator(data, 8, transform=transform, seed=5, prefetch=0), 5)
    parts = [take(BatchIterator(data, 8, transform=transform, seed=5, prefetch=0, process_index=i,
                                process_count=4), 5) for i in range(4)]
    for step in range(5):
        for key in ("data", "label"):
            assert np.array_equal(np.concatenate([p[step][key] for p in parts]), whole[step][key])
    assert parts[0][0]["data"].shape == (2, 2, 3, 3)


def test_iterator_argument_errors() -> None:
    with pytest.raises(ValueError, match="not divisible by process_count 3"):
        BatchIterator(toy(), 8, process_count=3)
    with pytest.raises(ValueError, match="make no full batch"):
        BatchIterator(toy(4), 8)
    with pytest.raises(ValueError, match="partial last batch"):
        BatchIterator(toy(23), 4, train=False, process_count=2)


def test_prefetch_thread_hands_over_errors() -> None:
    data = toy()
    bad = make_transformer(None, (2, 5, 6))
    object.__setattr__(bad, "image_shape", (2, 5))  # sabotage: draw() will fail in the thread
    it = BatchIterator(data, 5, transform=bad)
    with pytest.raises(ValueError):
        next(it)
    assert it._thread is None  # closed after the failure


def test_names_key_the_batch() -> None:
    with BatchIterator(toy(), 5, names=("pixels", "target"), prefetch=0) as it:
        assert set(next(it)) == {"pixels", "target"}
    with BatchIterator(toy(), 5, names=("pixels",), prefetch=0) as it:
        assert set(next(it)) == {"pixels"}


# --- transform_param --------------------------------------------------------------------------------


def test_transform_test_phase_by_hand() -> None:
    # 1 image, 2 channels, 4x5: centre crop 2 -> offsets ((4-2)//2, (5-2)//2) = (1, 1).
    image = np.arange(40, dtype=np.uint8).reshape(1, 2, 4, 5)
    t = make_transformer(TransformationParameter(crop_size=2, mean_value=(10.0, 20.0), scale=0.5), (2, 4, 5))
    out = t.apply(image, t.draw(np.random.default_rng(0), 1, train=False))
    expected = np.array([[[6, 7], [11, 12]], [[26, 27], [31, 32]]], np.float32)
    expected = (expected - np.array([10, 20], np.float32)[:, None, None]) * np.float32(0.5)
    assert out.dtype == np.float32 and np.array_equal(out[0], expected)


def test_transform_train_crop_mirror_and_mean_image_by_hand(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 3, 7, 8), dtype=np.uint8)
    mean = rng.uniform(0, 255, (3, 7, 8)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    param = TransformationParameter(crop_size=5, mirror=True, scale=0.125, mean_file="mean.npy")
    t = make_transformer(param, (3, 7, 8), base_dir=tmp_path)
    draws = t.draw(np.random.default_rng(2), 6, train=True)
    out = t.apply(images, draws)
    assert draws.flip.any() and not draws.flip.all() and len(set(draws.h_off.tolist())) > 1
    for i in range(6):
        h, w = draws.h_off[i], draws.w_off[i]
        # Caffe: (pixel - mean at the same source position) * scale, mirrored when written out
        window = (slice(None), slice(h, h + 5), slice(w, w + 5))
        crop = (images[i][window].astype(np.float32) - mean[window]) * np.float32(0.125)
        assert np.array_equal(out[i], crop[:, :, ::-1] if draws.flip[i] else crop)


def test_mean_files_npy_and_binaryproto(tmp_path: Path) -> None:
    mean = np.random.default_rng(0).uniform(0, 255, (3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean[None])
    (tmp_path / "mean.binaryproto").write_bytes(encode_blob(mean[None], legacy_shape=True))
    image = np.full((1, 3, 4, 4), 200, np.uint8)
    for name in ("mean.npy", "mean.binaryproto"):
        t = make_transformer(TransformationParameter(mean_file=name), (3, 4, 4), base_dir=tmp_path)
        out = t.apply(image, t.draw(np.random.default_rng(0), 1, train=False))
        assert np.array_equal(out[0], np.float32(200) - mean)
    with pytest.raises(DataError, match=r"mean.npy: mean image has shape \(3, 4, 4\)"):
        make_transformer(TransformationParameter(mean_file="mean.npy"), (3, 5, 5), base_dir=tmp_path)
    (tmp_path / "junk.binaryproto").write_bytes(b"\xff\xff\xff")
    with pytest.raises(DataError) as info:
        make_transformer(TransformationParameter(mean_file="junk.binaryproto"), (3, 4, 4), base_dir=tmp_path)
    junk = tmp_path / "junk.binaryproto"
    assert info.value.where == str(junk) and len(info.value.problems) == 1
    assert info.value.problems[0].startswith("not a Caffe BlobProto (.binaryproto): byte ")  # no nested file name


def test_transform_checks() -> None:
    with pytest.raises(DataError) as info:
        make_transformer(TransformationParameter(crop_size=9, mean_value=(1.0, 2.0)), (3, 8, 8))
    assert "crop_size 9 is larger" in str(info.value)
    assert "1 mean_value or one per channel (3)" in str(info.value)
    one = make_transformer(TransformationParameter(mean_value=(5.0,)), (3, 2, 2))
    out = one.apply(np.full((1, 3, 2, 2), 7, np.uint8), one.draw(np.random.default_rng(), 1, False))
    assert np.all(out == 2)


# --- data section ------------------------------------------------------------------------------------


def test_data_spec_validation() -> None:
    assert DataSpec(source="mnist").batch_size == 64
    with pytest.raises(MessageError) as info:
        DataSpec(source="mnist", path="x.npz", images_key="x",
                 transform_param={"mean_value": [1.0], "mean_file": "m.npy"})
    text = str(info.value)
    assert "'path' does nothing for source 'mnist'" in text and "'images_key' does nothing" in text
    assert "mean_file and mean_value" in text
    with pytest.raises(MessageError, match="needs 'path'"):
        DataSpec(source="npz")
    with pytest.raises(MessageError, match="extra"):
        DataSpec(source="mnist", batchsize=3)
    spec = DataSpec(source="folder", path="p", transform_param={"force_gray": True})
    assert spec.folder_color == "gray"


def test_data_modules_do_not_import_jax() -> None:
    code = (
        "import sys, netspec.data\n"
        "assert not {'jax', 'optax', 'flax'} & {m.split('.')[0] for m in sys.modules}"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_load_dataset_mnist_and_iterators() -> None:
    spec = DataSpec(source="mnist", batch_size=32, test_batch_size=100, transform_param={"scale": 0.00390625})
    splits = load_dataset(spec)
    with make_iterator(spec, splits.train, train=True) as train:
        batch = next(train)
    assert batch["data"].shape == (32, 1, 28, 28) and 0 <= batch["data"].min() and batch["data"].max() <= 1
    with make_iterator(spec, splits.test, train=False, epochs=1) as test:
        assert sum(len(b["label"]) for b in test) == 2000


# --- npz and image folders ---------------------------------------------------------------------------


def test_npz_keys_layout_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]))
    data = load_npz(tmp_path / "d.npz", images_key="x", labels_key="y", layout="NHWC")
    assert data.images.shape == (6, 3, 4, 4) and np.array_equal(data.images[2, 1], x[2, :, :, 1])
    assert data.num_classes == 3
    with pytest.raises(DataError, match=r"d.npz: missing key\(s\) \['images'\]"):
        load_npz(tmp_path / "d.npz", labels_key="y")
    with pytest.raises(DataError, match=r"d.npz: 2 labels outside \[0, 2\)"):
        load_npz(tmp_path / "d.npz", images_key="x", labels_key="y", layout="NHWC", num_classes=2)
    np.savez(tmp_path / "bad.npz", images=np.zeros((5, 2), np.uint8), labels=np.zeros((4, 2)))
    with pytest.raises(DataError) as info:
        load_npz(tmp_path / "bad.npz")
    assert str(info.value).count("bad.npz:") == 2  # bad image shape and bad label shape, together
    with pytest.raises(DataError, match="missing.npz: no such file"):
        load_npz(tmp_path / "missing.npz")


def test_npz_source_splits_and_test_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n, classes in (("a.npz", 40, 4), ("b.npz", 8, 5)):
        images = rng.integers(0, 9, (n, 1, 3, 3), dtype=np.uint8)
        np.savez(tmp_path / name, images=images, labels=np.arange(n) % classes)
    split = load_dataset(DataSpec(source="npz", path="a.npz", test_fraction=0.25), base_dir=tmp_path)
    assert (len(split.train), len(split.test)) == (30, 10)
    # the separate test set is checked against the training set's classes
    with pytest.raises(DataError, match=r"b.npz: 1 labels outside \[0, 4\)"):
        load_dataset(DataSpec(source="npz", path="a.npz", test_path="b.npz"), base_dir=tmp_path)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pics = {f"{cls}/{i}.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            for cls in ("cat", "ant") for i in range(2)}
    for name, array in pics.items():
        write_png(tmp_path / "train" / name, array)
    write_png(tmp_path / "train" / "bee" / "0.png", rng.integers(0, 256, (6, 5), dtype=np.uint8))  # grey file
    data = load_image_folder(tmp_path / "train")
    assert data.classes == ("ant", "bee", "cat") and data.labels.tolist() == [0, 0, 1, 2, 2]
    assert data.images.shape == (5, 3, 6, 5)
    assert np.array_equal(data.images[3], pics["cat/0.png"].transpose(2, 0, 1))
    bgr = load_image_folder(tmp_path / "train", color="BGR")
    assert np.array_equal(bgr.images[3], pics["cat/0.png"].transpose(2, 0, 1)[::-1])
    gray = load_image_folder(tmp_path / "train", color="gray", new_height=3, new_width=4)
    assert gray.images.shape == (5, 1, 3, 4)
    small = Image.fromarray(pics["ant/1.png"]).convert("L").resize((4, 3), Image.Resampling.BILINEAR)
    expected = np.asarray(small)
    assert np.array_equal(gray.images[1, 0], expected)
    # a test folder numbers its classes like the training folder and may lack some of them
    write_png(tmp_path / "val" / "cat" / "9.png", pics["cat/1.png"])
    split = load_dataset(DataSpec(source="folder", path="train", test_path="val"), base_dir=tmp_path)
    assert split.test.labels.tolist() == [2] and split.test.num_classes == 3


def test_image_folder_errors(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "b" / "0.png", np.zeros((5, 4, 3), np.uint8))
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as info:
        load_image_folder(tmp_path)
    assert "b/broken.png: cannot decode" in str(info.value) and "different sizes" in str(info.value)
    with pytest.raises(DataError, match="not among the training classes"):
        load_image_folder(tmp_path, classes=["a"], new_height=4, new_width=4)
    with pytest.raises(DataError, match="no such folder"):
        load_image_folder(tmp_path / "nope")


# --- downloads from a local HTTP server --------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}/", requests=requests)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def serve_mnist(root: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (12, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx_gz(np.arange(12) % 10),
        "t10k-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (5, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": idx_gz(np.arange(5)),
    }
    for name, blob in files.items():
        (root / name).write_bytes(blob)
    return {name: sha256_file(root / name) for name in files}


def test_mnist_full_download_then_cache_hit(server: SimpleNamespace, tmp_path: Path) -> None:
    sums = serve_mnist(server.root)
    splits = load_mnist(full=True, cache=tmp_path / "cache", base_url=server.url, checksums=sums)
    assert (len(splits.train), len(splits.test)) == (12, 5)
    assert splits.train.images.shape == (12, 1, 28, 28) and splits.test.labels.tolist() == [0, 1, 2, 3, 4]
    assert len(server.requests) == 4
    again = load_mnist(full=True, cache=tmp_path / "cache", base_url=server.url, checksums=sums)
    assert len(server.requests) == 4  # cache hit: no request at all
    assert np.array_equal(again.train.images, splits.train.images)


def test_checksum_mismatch_is_rejected_and_nothing_is_cached(server: SimpleNamespace, tmp_path: Path) -> None:
    sums = serve_mnist(server.root)
    sums["train-images-idx3-ubyte.gz"] = "0" * 64
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_mnist(full=True, cache=tmp_path / "cache", base_url=server.url, checksums=sums)
    assert not list((tmp_path / "cache" / "mnist").iterdir())  # no partial or unverified file left


def test_mirrors_are_tried_in_order(server: SimpleNamespace, tmp_path: Path) -> None:
    sums = serve_mnist(server.root)
    load_mnist(full=True, cache=tmp_path, base_url=[server.url + "missing/", server.url], checksums=sums)
    assert server.requests[:2] == ["/missing/train-images-idx3-ubyte.gz", "/train-images-idx3-ubyte.gz"]


def test_offline_error_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError) as info:
        load_mnist(full=True, cache=tmp_path, base_url=f"http://127.0.0.1:{port}/")
    text = str(info.value)
    assert "train-images-idx3-ubyte.gz" in text and "offline" in text and "NETSPEC_CACHE" in text


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netspec.data import cache_dir

    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NETSPEC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "netspec" and cache_dir(tmp_path) == tmp_path


# --- CIFAR-10 ----------------------------------------------------------------------------------------


def cifar_batch(rng: np.random.Generator, n: int, legacy_names: bool) -> tuple[bytes, np.ndarray, list[int]]:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    blob = pickle.dumps({b"batch_label": b"test", b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, protocol=2)
    if legacy_names:  # what the real (Python 2 era) files reference
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return blob, data, labels


def write_cifar_tarball(path: Path) -> tuple[np.ndarray, list[int], np.ndarray]:
    rng = np.random.default_rng(0)
    train_data, train_labels = [], []
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            blob, data, labels = cifar_batch(rng, 3, legacy_names=name == "data_batch_2")
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
            if name != "test_batch":
                train_data.append(data)
                train_labels += labels
    return np.concatenate(train_data), train_labels, data


def test_cifar10_download_extract_and_cache_hit(server: SimpleNamespace, tmp_path: Path) -> None:
    train_rows, train_labels, test_rows = write_cifar_tarball(server.root / "cifar-10-python.tar.gz")
    sha = sha256_file(server.root / "cifar-10-python.tar.gz")
    url = server.url + "cifar-10-python.tar.gz"
    splits = load_cifar10(cache=tmp_path, url=url, sha256=sha)
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.train.labels.tolist() == train_labels
    # a row is 1024 R, then G, then B values, each 32x32 row-major
    assert np.array_equal(splits.train.images[4, 1], train_rows[4, 1024:2048].reshape(32, 32))
    assert np.array_equal(splits.test.images.reshape(3, -1), test_rows)
    load_cifar10(cache=tmp_path, url=url, sha256=sha)
    assert len(server.requests) == 1
    cached = sorted(p.name for p in (tmp_path / "cifar10").iterdir())
    assert cached == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # no temporary leftovers


def test_cifar10_from_a_user_folder_and_bad_files(tmp_path: Path) -> None:
    write_cifar_tarball(tmp_path / "c.tar.gz")
    with tarfile.open(tmp_path / "c.tar.gz") as tar:
        tar.extractall(tmp_path / "user", filter="data")
    splits = load_cifar10(tmp_path / "user")  # finds cifar-10-batches-py/ inside
    assert len(splits.train) == 15 and len(splits.test) == 3
    evil = pickle.dumps({b"data": SimpleNamespace()})  # names a callable outside the allow-list
    (tmp_path / "user" / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    with pytest.raises(DataError, match="test_batch: cannot read the CIFAR batch: refusing to load types"):
        load_cifar10(tmp_path / "user")
    with pytest.raises(DataError, match="missing data_batch_1"):
        load_cifar10(tmp_path / "nothing-here")


def test_cifar10_without_download_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download is off"):
        load_cifar10(cache=tmp_path, download=False)
