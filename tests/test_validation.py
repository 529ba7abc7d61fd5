"""Input validation: every bad score matrix / label vector raises InputError naming its source."""

import numpy as np
import pytest

from l2h.errors import InputError
from l2h.validation import check_labels, check_scores


def test_valid_inputs_pass(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(100, 5)).astype(np.float32)
    check_scores(logits, source="logits.npy")
    check_scores(logits.tolist())
    check_scores(rng.integers(-3, 3, size=(4, 3)))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    check_scores(p, input="probs", block_rows=7)
    check_scores(p + 9e-4 / 5, input="probs")  # within the 1e-3 tolerance
    np.save(tmp_path / "p.npy", p)
    check_scores(np.load(tmp_path / "p.npy", mmap_mode="r"), input="probs", block_rows=10)


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
@pytest.mark.parametrize("block_rows", [1, 5, 65536])
def test_non_finite(value, word, block_rows):
    x = np.zeros((30, 4), dtype=np.float32)
    x[17, 2] = value
    with pytest.raises(InputError, match=rf"^logits.npy: row 17 contains {word}$"):
        check_scores(x, source="logits.npy", block_rows=block_rows)


def test_finite_overflowing_rows_are_fine():
    x = np.full((3, 4), 3e38, dtype=np.float32)  # row sums overflow float32, values are finite
    check_scores(x)


def test_first_bad_row_is_reported():
    x = np.zeros((50, 3))
    x[[12, 40], 0] = np.nan
    with pytest.raises(InputError, match="row 12 contains NaN"):
        check_scores(x, block_rows=16)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros(5), "expected a 2-D"),
        (np.zeros((2, 3, 4)), "expected a 2-D"),
        (np.zeros((0, 3)), "no rows"),
        (np.zeros((5, 1)), "at least 2 columns"),
        (np.array([["a", "b"]]), "real-valued numeric"),
        (np.zeros((2, 2), dtype=complex), "real-valued numeric"),
    ],
)
def test_shape_and_dtype(x, message):
    with pytest.raises(InputError, match=f"^scores.pt: .*{message}"):
        check_scores(x, source="scores.pt")


def test_probs_negative():
    p = np.full((6, 4), 0.25)
    p[3] = [0.5, 0.6, -0.1, 0.0]
    with pytest.raises(InputError, match="^probs.npy: row 3 has a negative probability"):
        check_scores(p, input="probs", source="probs.npy")


def test_probs_not_summing_to_one():
    p = np.full((6, 4), 0.25)
    p[4, 0] += 2e-3
    with pytest.raises(InputError, match=r"^probs.npy: row 4 sums to 1.002, not 1 \(tolerance 0.001\)"):
        check_scores(p, input="probs", source="probs.npy")
    with pytest.raises(InputError, match="row 0 sums to"):
        check_scores(np.random.default_rng(0).normal(size=(3, 3)) ** 2, input="probs")


def test_bad_input_kind():
    with pytest.raises(InputError, match="input must be one of"):
        check_scores(np.zeros((2, 2)), input="probabilities")


def test_labels_ok():
    out = check_labels([3, 0, 2], 3, source="labels.npy")
    assert out.dtype == np.int64 and out.tolist() == [3, 0, 2]
    assert check_labels(np.array([1.0, 2.0]), 2, source="y").tolist() == [1, 2]
    assert check_labels(np.array([5], dtype=np.uint8), None, source="y").tolist() == [5]


@pytest.mark.parametrize(
    "labels, n, message",
    [
        (np.zeros((2, 2), dtype=int), 4, "expected a 1-D"),
        ([0, 1, 2], 4, "3 labels given for 4 points"),
        ([0.5, 1.0], 2, "label 0 is not an integer"),
        ([0.0, np.nan], 2, "label 1 is not an integer"),
        ([0, -1], 2, "label 1 is negative"),
        ([True, False], 2, "must be integers"),
        (["a", "b"], 2, "must be integers"),
    ],
)
def test_labels_bad(labels, n, message):
    with pytest.raises(InputError, match=f"^labels.csv: .*{message}"):
        check_labels(labels, n, source="labels.csv")
