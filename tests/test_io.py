"""Readers of l2h.io: load_array / load_labels over .npy, .npz, .pt and .csv, and their errors."""

import numpy as np
import pytest
import torch

from l2h.errors import InputError
from l2h.io import load_array, load_labels

RNG = np.random.default_rng(0)
X = RNG.normal(size=(7, 3)).astype(np.float32)
Y = np.array([0, 2, 1, 1, 0, 2, 2])


def test_npy_is_memory_mapped(tmp_path):
    np.save(tmp_path / "x.npy", X)
    a = load_array(tmp_path / "x.npy")
    assert isinstance(a, np.memmap) and a.dtype == np.float32
    np.testing.assert_array_equal(a, X)
    b = load_array(tmp_path / "x.npy", mmap=False)
    assert not isinstance(b, np.memmap)
    np.testing.assert_array_equal(b, X)


def test_npz_single_and_keyed(tmp_path):
    np.savez(tmp_path / "one.npz", only=X)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), X)
    np.savez(tmp_path / "two.npz", logits=X, labels=Y)
    np.testing.assert_array_equal(load_array(tmp_path / "two.npz", key="labels"), Y)
    with pytest.raises(InputError, match=r"two\.npz.*choose one with a key: logits, labels"):
        load_array(tmp_path / "two.npz")
    with pytest.raises(InputError, match=r"two\.npz: no array named 'nope'; available keys: logits, labels"):
        load_array(tmp_path / "two.npz", key="nope")


def test_pt_tensor_and_dict(tmp_path):
    torch.save(torch.from_numpy(X), tmp_path / "t.pt")
    np.testing.assert_array_equal(load_array(tmp_path / "t.pt"), X)
    torch.save(
        {"logits": torch.from_numpy(X).to(torch.bfloat16), "y": torch.from_numpy(Y), "epoch": 3}, tmp_path / "d.pt"
    )
    a = load_array(tmp_path / "d.pt", key="logits")
    assert a.dtype == np.float32 and a.shape == X.shape
    np.testing.assert_allclose(a, X, rtol=1e-2)
    np.testing.assert_array_equal(load_labels(tmp_path / "d.pt", key="y"), Y)
    with pytest.raises(InputError, match=r"d\.pt.*choose one with a key: logits, y"):
        load_array(tmp_path / "d.pt")
    with pytest.raises(InputError, match=r"t\.pt: holds a single tensor"):
        load_array(tmp_path / "t.pt", key="logits")


class Thing:
    """An arbitrary pickled object: torch.load(weights_only=True) must refuse it."""


def test_pt_refuses_pickled_objects(tmp_path):
    torch.save({"x": Thing()}, tmp_path / "evil.pt")  # not loadable with weights_only=True
    with pytest.raises(InputError, match=r"evil\.pt: cannot read \.pt file"):
        load_array(tmp_path / "evil.pt")


def test_csv_with_and_without_header(tmp_path):
    np.savetxt(tmp_path / "plain.csv", X.astype(np.float64), delimiter=",", fmt="%.17g")
    np.testing.assert_array_equal(load_array(tmp_path / "plain.csv"), X.astype(np.float64))
    (tmp_path / "head.csv").write_text("a,b,c\n1,2,3\n4,5,6.5\n")
    np.testing.assert_array_equal(load_array(tmp_path / "head.csv"), [[1, 2, 3], [4, 5, 6.5]])
    (tmp_path / "labels.csv").write_text("label\n3\n1\n2\n")
    lab = load_labels(tmp_path / "labels.csv")
    assert lab.dtype == np.int64 and lab.tolist() == [3, 1, 2]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("1,2\n3,x\n", "not a numeric CSV table"),
        ("1,2\n3\n", "not a numeric CSV table"),
        ("", "empty CSV file"),
        ("a,b\n", "CSV file has a header but no rows"),
    ],
)
def test_bad_csv(tmp_path, text, problem):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(InputError, match=rf"bad\.csv: {problem}"):
        load_array(tmp_path / "bad.csv")


@pytest.mark.parametrize(
    "name, content",
    [
        ("x.npy", b"this is not numpy"),
        ("x.npz", b"PK\x03\x04 broken zip"),
        ("x.pt", b"\x80\x02garbage"),
        ("x.npy", b""),
    ],
)
def test_corrupt_files(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=rf"{name}: cannot read"):
        load_array(tmp_path / name)


def test_missing_file_unknown_suffix_and_stray_key(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.npy: no such file"):
        load_array(tmp_path / "nothere.npy")
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=r"x\.txt: unsupported file type '\.txt'"):
        load_array(tmp_path / "x.txt")
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(InputError, match=r"x\.npy: a \.npy file holds one array"):
        load_array(tmp_path / "x.npy", key="logits")
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(InputError, match=r"dir\.npy: not a regular file"):
        load_array(tmp_path / "dir.npy")


def test_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy: cannot read"):
        load_array(tmp_path / "obj.npy")


def test_load_labels_casts_and_checks(tmp_path):
    np.save(tmp_path / "f.npy", Y.astype(np.float32))
    lab = load_labels(tmp_path / "f.npy")
    assert lab.dtype == np.int64 and lab.tolist() == Y.tolist()
    np.save(tmp_path / "col.npy", Y[:, None].astype(np.int32))
    assert load_labels(tmp_path / "col.npy").tolist() == Y.tolist()
    np.save(tmp_path / "half.npy", Y + 0.5)
    with pytest.raises(InputError, match=r"half\.npy: labels must be integers"):
        load_labels(tmp_path / "half.npy")
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan]))
    with pytest.raises(InputError, match=r"nan\.npy: labels must be integers"):
        load_labels(tmp_path / "nan.npy")
    np.save(tmp_path / "mat.npy", X)
    with pytest.raises(InputError, match=r"mat\.npy: expected one label per point"):
        load_labels(tmp_path / "mat.npy")


def test_real_cifar100_npz(shared_data):
    path = shared_data / "logits" / "wideresnet-16-4-cifar-100.npz"
    probs = load_array(path, key="predictions")
    labels = load_labels(path, key="ground_truth")
    assert probs.shape == (10000, 100) and probs.dtype == np.float32
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [100] * 100
    assert (probs.argmax(1) == labels).mean() == pytest.approx(0.7543, abs=1e-4)
