"""The exp cache's per-row kernel (l2h.kernels): the compiled build is installed, and it keeps the contract
that the numpy build and the exact definition give on hard rows (ties, zeros, subnormals, any K)."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from l2h import kernels

ALPHA = {np.float32: 8.08 * 2.0**-24, np.float64: 8.08 * 2.0**-53}
TINY, FLOOR = 2.0**-120, math.exp(-40)


def run(exp, positions, members):
    n = positions.size
    hm, gm, doubt = np.empty(n, dtype=np.int64), np.empty(n), np.empty(n, dtype=bool)
    keep = kernels.keep_bits(exp.shape[1], members, exp.dtype)
    kernels.masked_estimates(exp, positions, keep, ALPHA[exp.dtype.type], TINY, FLOOR, hm, gm, doubt)
    return hm, gm, doubt


def hard_cache(rng, n, k, dtype):
    """exp(z − max z) of logits with wide spreads, exact ties, duplicated maxima and underflow."""
    z = rng.normal(size=(n, k)) * rng.choice([0.5, 5.0, 60.0], size=(n, 1))
    z[: n // 5] = np.round(z[: n // 5])  # exact ties
    z[n // 5 : n // 3, : k // 2] = z[n // 5 : n // 3, k // 2 : 2 * (k // 2)]  # duplicated halves
    z[n // 3 : n // 2] -= 150 * (rng.random((n // 2 - n // 3, k)) < 0.5)  # zeros / subnormals
    z = z.astype(dtype)
    return np.exp(z - z.max(axis=1, keepdims=True))


def test_the_compiled_kernel_is_built():
    assert kernels.build() == "compiled", (
        "l2h._kernels is missing: the C extension was not built at install (is a C compiler available?)"
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 3, 15, 16, 17, 40, 301, 1000])
def test_compiled_matches_the_numpy_build_and_the_definition(dtype, k):
    rng = np.random.default_rng(k)
    exp = hard_cache(rng, 600, k, dtype)
    positions = rng.integers(exp.shape[0], size=900)  # any order, repeats
    for m in sorted({1, 2, k // 3, k - 1} & set(range(1, k))):
        members = rng.choice(k, size=m, replace=False)
        hm, gm, doubt = run(exp, positions, members)
        with kernels.numpy_build():
            hm_np, gm_np, doubt_np = run(exp, positions, members)
        assert np.array_equal(doubt, doubt_np)
        e = exp[positions].astype(np.float64)
        e[:, members] = 0
        sure = ~doubt
        assert sure.any() and doubt.any()
        assert np.array_equal(hm[sure], e[sure].argmax(axis=1))
        assert np.array_equal(hm, hm_np)
        exact = e[sure].max(axis=1) / e[sure].sum(axis=1)
        u = float(np.finfo(dtype).eps) / 2
        assert np.all(np.abs(gm[sure] - exact) <= 2 * k * u * exact)
        assert np.all(np.abs(gm_np[sure] - exact) <= 2 * k * u * exact)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_near_ties_and_underflow_are_doubtful(dtype):
    """A kept value within exp's error of the largest, or a largest kept value below e⁻⁴⁰, needs the
    exact definition; a clear gap does not."""
    k = 50
    exp = np.full((4, k), 0.25, dtype=dtype)
    exp[:, 0] = 1.0
    exp[0, 7] = exp[0, 9] = 0.5  # exact tie for the masked max
    exp[1, 7], exp[1, 9] = 0.5, np.nextafter(dtype(0.5), dtype(0))  # within exp's error
    exp[2, 1:] = 0
    exp[2, 5] = 1e-30 if dtype == np.float32 else 1e-300  # masked max far below the max
    exp[3, 7] = 0.5  # clear gap: certain
    hm, gm, doubt = run(exp, np.arange(4), [0])
    assert doubt.tolist() == [True, True, True, False]
    assert hm[3] == 7 and gm[3] == pytest.approx(0.5 / (0.5 + 0.25 * (k - 2)), rel=1e-6)


def test_the_numpy_build_is_used_without_the_extension():
    with kernels.numpy_build():
        assert kernels.build() == "numpy"
        hm, gm, doubt = run(np.array([[1.0, 0.5, 0.25]], dtype=np.float32), np.array([0]), [0])
    assert kernels.build() == "compiled"
    assert hm.tolist() == [1] and gm[0] == pytest.approx(0.5 / 0.75) and not doubt[0]


def test_the_compiled_kernel_rejects_inconsistent_arguments():
    exp = np.ones((3, 4), dtype=np.float32)
    keep = kernels.keep_bits(4, [0], exp.dtype)
    out = np.empty(2, dtype=np.int64), np.empty(2), np.empty(2, dtype=bool)
    with pytest.raises(ValueError, match="out of range"):
        kernels.masked_estimates(exp, np.array([0, 3]), keep, 1e-6, TINY, FLOOR, *out)
    with pytest.raises(ValueError, match="keep_bits"):
        kernels.masked_estimates(exp, np.array([0, 1]), keep.astype(np.int64), 1e-6, TINY, FLOOR, *out)
    for bad in (exp.astype(np.float16), exp.view(np.int32), exp.astype(">f4"), exp[:, :2]):
        with pytest.raises((ValueError, BufferError), match="2-D float32 or float64|contiguous"):
            kernels.masked_estimates(bad, np.array([0, 1]), keep, 1e-6, TINY, FLOOR, *out)


def hard_logits(rng, n, k, dtype):
    """Logits with exact ties (for the first and second place), signed zeros, and rows with NaN or ±inf."""
    z = np.round(rng.normal(size=(n, k)) * rng.choice([0.3, 3.0], size=(n, 1)))
    z[: n // 4, : k // 2] = z[: n // 4, k // 2 : 2 * (k // 2)]  # duplicated halves: tied maxima
    zeros = rng.random((n, k)) < 0.3
    z[zeros] = rng.choice([0.0, -0.0], size=int(zeros.sum()))  # ±0 ties, sometimes the maximum
    z = z.astype(dtype)
    for r, value in zip(rng.choice(n, size=6, replace=False), [np.nan, np.inf, -np.inf] * 2):
        z[r, rng.integers(k)] = value
    return z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 3, 7, 8, 9, 33, 1000])
def test_first_maxima_builds_agree_with_numpy_argmax(dtype, k):
    rng = np.random.default_rng(k + 1)
    z = hard_logits(rng, 500, k, dtype)
    out = {}
    for build in ("compiled", "numpy"):
        h, second, bad = np.empty(500, dtype=np.int64), np.empty(500, dtype=np.int64), np.empty(500, dtype=bool)
        with kernels.numpy_build() if build == "numpy" else contextlib.nullcontext():
            kernels.first_maxima(z, h, second, bad)
        out[build] = h, second, bad
    h, second, bad = out["compiled"]
    assert np.array_equal(bad, ~np.isfinite(z).all(axis=1)) and bad.sum() == 6
    ok = ~bad
    assert np.array_equal(h[ok], z[ok].argmax(axis=1))
    rest = z.copy()
    rest[np.arange(500), z.argmax(axis=1)] = -np.inf
    assert np.array_equal(second[ok], rest[ok].argmax(axis=1))
    assert all(np.array_equal(a[ok], b[ok]) for a, b in zip(out["compiled"], out["numpy"]))
    assert np.array_equal(out["numpy"][2], bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_shifted_builds_agree_exactly(dtype):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(300, 37)) * 30).astype(dtype)
    rows = rng.integers(300, size=120)
    top = x[rows].argmax(axis=1)
    expected = x[rows] - x[rows, top][:, None]
    for build in ("compiled", "numpy"):
        out = np.empty((120, 37), dtype=dtype)
        with kernels.numpy_build() if build == "numpy" else contextlib.nullcontext():
            kernels.gather_shifted(x, rows, top, out)
        assert np.array_equal(out, expected)
    out = np.empty((120, 37), dtype=np.float32)  # other input dtypes: numpy build
    kernels.gather_shifted(x.astype(np.float16), rows, top, out)
    assert np.array_equal(
        out, x.astype(np.float16)[rows].astype(np.float32) - x.astype(np.float16)[rows, top].astype(np.float32)[:, None]
    )


# ----------------------------------------------------------------------------- compact cache (16-bit codes)
CODE_ALPHA = 8.08 * 2.0**-24 + 1.01 * 2.0**-11
CODE_TINY, CODE_FLOOR = 2.0**-120 + 2.0**-72, 2.0**-45


def encode(e):
    out = {}
    for build in ("compiled", "numpy"):
        codes = np.empty(e.shape, dtype=np.uint16)
        with kernels.numpy_build() if build == "numpy" else contextlib.nullcontext():
            kernels.encode_compact(e, codes)
        out[build] = codes
    assert np.array_equal(out["compiled"], out["numpy"])
    return out["compiled"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compact_codes_round_to_nearest_and_keep_the_order(dtype):
    rng = np.random.default_rng(5)
    e = np.exp(-rng.uniform(0, 110, size=(400, 37))).astype(dtype)  # down to e⁻¹¹⁰: subnormal codes
    e[0, :8] = [0.0, 1.0, 2.0**-62, 2.0**-45, 1 - 2.0**-12, 1 - 2.0**-11, 2.0**-72, 2.0**-73]
    codes = encode(e)
    back = kernels.decode_compact(codes).astype(np.float64) * 2.0**64
    assert codes[0, :8].tolist() == [0, 63 << 10, 1 << 10, 18 << 10, 63 << 10, (62 << 10) + 1023, 1, 0]
    normal = e >= 2.0**-62
    assert np.all(np.abs(back - e)[normal] <= 2.0**-11 * e[normal])
    assert np.all(np.abs(back - e)[~normal] <= 2.0**-72) and (~normal).sum() > 1000
    order = np.argsort(e, axis=None, kind="stable")
    assert np.all(np.diff(codes.ravel()[order].astype(np.int64)) >= 0)  # monotone: codes compare as e
    assert np.array_equal(encode(back.astype(dtype)), codes)  # decoding is exact


@pytest.mark.parametrize("k", [2, 15, 16, 17, 301, 1000])
def test_compact_estimates_builds_agree_and_follow_the_codes(k):
    rng = np.random.default_rng(k + 7)
    codes = encode(hard_cache(rng, 600, k, np.float32))
    positions = rng.integers(codes.shape[0], size=900)
    for m in sorted({1, 2, k // 3, k - 1} & set(range(1, k))):
        members = rng.choice(k, size=m, replace=False)
        out = {}
        for build in ("compiled", "numpy"):
            hm, gm, doubt = (np.empty(900, dtype=np.int64), np.empty(900), np.empty(900, dtype=bool))
            keep = kernels.keep_bits(k, members, np.uint16)
            with kernels.numpy_build() if build == "numpy" else contextlib.nullcontext():
                kernels.masked_estimates(codes, positions, keep, CODE_ALPHA, CODE_TINY, CODE_FLOOR, hm, gm, doubt)
            out[build] = hm, gm, doubt
        (hm, gm, doubt), (hm_np, gm_np, doubt_np) = out["compiled"], out["numpy"]
        assert np.array_equal(doubt, doubt_np) and np.array_equal(hm, hm_np)
        d = kernels.decode_compact(codes[positions]).astype(np.float64) * 2.0**64
        d[:, members] = 0
        sure = ~doubt
        assert sure.any() and doubt.any()
        assert np.array_equal(hm[sure], d[sure].argmax(axis=1))
        top = d.max(axis=1)
        runner = np.sort(d, axis=1)[:, -2]
        assert np.all(top[sure] * (1 - CODE_ALPHA) > runner[sure] * (1 + CODE_ALPHA) + CODE_TINY)
        assert np.all(top[sure] >= CODE_FLOOR)
        exact = top[sure] / d[sure].sum(axis=1)
        for got in (gm, gm_np):
            assert np.all(np.abs(got[sure] - exact) <= 2 * k * 2.0**-24 * exact)


def test_compact_near_ties_and_floor_are_doubtful():
    k = 20
    e = np.full((4, k), 0.25, dtype=np.float32)
    e[:, 0] = 1.0
    e[0, 7], e[0, 9] = 0.5, 0.5 * (1 - 2.0**-12)  # equal codes
    e[1, 7], e[1, 9] = 0.5, 0.5 * (1 - 2.0**-10)  # one code apart: within the codes' error
    e[2, 1:] = 2.0**-46  # masked maximum below the floor
    e[3, 7] = 0.5  # clear gap: certain
    codes = encode(e)
    hm, gm, doubt = np.empty(4, dtype=np.int64), np.empty(4), np.empty(4, dtype=bool)
    kernels.masked_estimates(
        codes, np.arange(4), kernels.keep_bits(k, [0], np.uint16), CODE_ALPHA, CODE_TINY, CODE_FLOOR, hm, gm, doubt
    )
    assert doubt.tolist() == [True, True, True, False]
    assert hm[3] == 7 and gm[3] == pytest.approx(0.5 / (0.5 + 0.25 * (k - 2)), rel=1e-3)


def test_compact_kernels_reject_inconsistent_arguments():
    codes = np.ones((3, 4), dtype=np.uint16)
    out = np.empty(2, dtype=np.int64), np.empty(2), np.empty(2, dtype=bool)
    with pytest.raises(ValueError, match="keep_bits"):
        kernels.masked_estimates(
            codes, np.array([0, 1]), kernels.keep_bits(4, [0], np.float32), 1e-3, CODE_TINY, CODE_FLOOR, *out
        )
    with pytest.raises(ValueError, match="uint16"):
        kernels.masked_estimates(
            codes.view(np.int16),
            np.array([0, 1]),
            kernels.keep_bits(4, [0], np.uint16),
            1e-3,
            CODE_TINY,
            CODE_FLOOR,
            *out,
        )
    with pytest.raises(ValueError, match="same shape"):
        kernels.encode_compact(np.ones((3, 4), dtype=np.float32), np.empty((3, 5), dtype=np.uint16))
    with pytest.raises(ValueError, match="2-byte items"):
        kernels.encode_compact(np.ones((3, 4), dtype=np.float32), np.empty((3, 4), dtype=np.float32))
