"""The ``l2h tree`` output folder and the library's input checks: nothing of the user's is lost, every bad
input or failing disk is one line and exit status 2."""

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import l2h.algorithm
import l2h.expcache
import l2h.outdir
from l2h.algorithm import all_pairs_memory
from l2h.algorithm import l2h as build
from l2h.cli import main
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.io import load_array
from l2h.outdir import MARKER


def _logits(n=120, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(k, k))[rng.integers(0, k, n)] * 3 + rng.normal(size=(n, k))


def _tree(tmp_path, out, *extra, seed=0):
    np.save(tmp_path / f"x{seed}.npy", _logits(seed=seed))
    return main(["tree", str(tmp_path / f"x{seed}.npy"), "--no-plot", "--quiet", "--out", str(out), *extra])


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line_error(capsys, *words):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2h: error: "), captured.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- the output folder
def test_folder_that_is_not_an_output_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    np.save(tmp_path / "x.npy", _logits())
    before = _snapshot(tmp_path)
    assert main(["tree", str(tmp_path / "x.npy"), "--out", str(out)]) == 2
    _one_line_error(capsys, str(out), "not an l2h tree output")
    assert _snapshot(tmp_path) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("out", ["", " "])
def test_empty_out_is_an_error(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    assert _tree(tmp_path, out) == 2
    _one_line_error(capsys, "--out", "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x0.npy"]


def test_parent_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _tree(tmp_path, tmp_path / "file" / "sub" / "out") == 2
    _one_line_error(capsys, f"{tmp_path / 'file'}: is not a directory")


def test_empty_folder_and_marked_folder_are_accepted(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert _tree(tmp_path, out) == 0 and (out / MARKER).is_file()
    (out / "notes.txt").write_text("mine")
    (out / "comparison.json").write_text("{}")  # written by l2h compare for the old tree: now stale
    np.save(tmp_path / "y.npy", np.arange(120) % 5)
    assert _tree(tmp_path, out, "--labels", str(tmp_path / "y.npy"), seed=1) == 0
    assert {p.name for p in out.iterdir()} == {
        "tree.json",
        "linkage.npy",
        "tree.nwk",
        "levels.json",
        "metrics.json",
        "provenance.json",
        MARKER,
        "notes.txt",
    }
    assert (out / "notes.txt").read_text() == "mine"
    assert _tree(tmp_path, out) == 0  # no labels: the old metrics.json goes with the old set
    assert "metrics.json" not in {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_subfolder_in_an_output_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert _tree(tmp_path, out) == 0
    (out / "figures").mkdir()
    before = _snapshot(out)
    assert _tree(tmp_path, out, seed=1) == 2
    _one_line_error(capsys, "figures", "not a regular file")
    assert _snapshot(out) == before


def _fail_fsync_after(count, exc):
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) > count:
            raise exc
        return real(fd)

    return fsync


@pytest.mark.parametrize(
    "failure, words",
    [
        (
            OSError(errno.ENOSPC, "No space left on device"),
            ["No space left on device", "previous outputs are unchanged"],
        ),
        (OSError(errno.EROFS, "Read-only file system"), ["Read-only file system"]),
    ],
)
def test_disk_failure_mid_write_keeps_the_old_outputs(tmp_path, capsys, monkeypatch, failure, words):
    out = tmp_path / "out"
    assert _tree(tmp_path, out) == 0
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    monkeypatch.setattr(l2h.io.os, "fsync", _fail_fsync_after(2, failure))  # the third file written fails
    assert _tree(tmp_path, out, seed=1) == 2
    _one_line_error(capsys, str(out), *words)
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unwritable_parent(tmp_path, capsys, monkeypatch):
    # as root, chmod cannot make a folder read-only, so the refusal is simulated where the folder is made
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(l2h.outdir.tempfile, "mkdtemp", refuse)
    assert _tree(tmp_path, tmp_path / "out") == 2
    _one_line_error(capsys, "cannot create the output folder (Permission denied)")
    assert not (tmp_path / "out").exists()


def test_interrupted_run_leaves_the_old_set(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _tree(tmp_path, out) == 0
    before = _snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(l2h.outdir, "write_json", interrupted)  # the marker, written after every output
    with pytest.raises(KeyboardInterrupt):
        _tree(tmp_path, out, seed=1)
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("atomic", [True, False])
def test_exchange_swaps_two_folders(tmp_path, monkeypatch, atomic):
    if not atomic:  # libc without renameat2: the fallback of three renames

        class NoRenameat2:
            def __init__(self, *args, **kwargs):
                pass

        monkeypatch.setattr(l2h.outdir.ctypes, "CDLL", NoRenameat2)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "new").write_text("1")
    (tmp_path / "b" / "old").write_text("2")
    l2h.outdir._exchange(tmp_path / "a", tmp_path / "b")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["new"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


# ----------------------------------------------------------------------------- other inputs of l2h tree
def test_csv_with_byte_order_mark_keeps_its_first_row(tmp_path):
    x = _logits(n=6)
    plain = "\n".join(",".join(f"{v:.17g}" for v in row) for row in x) + "\n"
    for name, text in (("bom.csv", "\ufeff" + plain), ("bom_header.csv", "\ufeffa,b,c,d,e\n" + plain)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert np.array_equal(load_array(tmp_path / name), x), name


def test_duplicate_names_are_refused(tmp_path, capsys):
    np.save(tmp_path / "x.npy", _logits())
    (tmp_path / "names.txt").write_text("a\nb\nc\nb\ne\n")
    assert (
        main(["tree", str(tmp_path / "x.npy"), "--names", str(tmp_path / "names.txt"), "--out", str(tmp_path / "out")])
        == 2
    )
    _one_line_error(capsys, "names.txt", "'b' is given twice (lines 2 and 4)")
    assert not (tmp_path / "out").exists()


def test_all_pairs_refuses_what_does_not_fit(tmp_path, capsys, monkeypatch):
    assert all_pairs_memory(20_000) > 30 * 2**30 > all_pairs_memory(1_000) * 300
    np.save(tmp_path / "wide.npy", np.zeros((2, 20_000), dtype=np.float32))
    monkeypatch.setattr(l2h.expcache, "available_memory", lambda: 24 * 2**30)
    assert main(["tree", str(tmp_path / "wide.npy"), "--strategy", "all_pairs", "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "wide.npy", "'all_pairs' needs at least", "K = 20000", "24.0 GiB are available")
    monkeypatch.setattr(l2h.expcache, "available_memory", lambda: all_pairs_memory(5) - 1)
    with pytest.raises(InputError, match="all_pairs"):
        build(_logits(), strategy="all_pairs")
    monkeypatch.setattr(l2h.expcache, "available_memory", lambda: all_pairs_memory(5))
    assert build(_logits(), strategy="all_pairs").k == 5


def test_probabilities_read_as_logits_warn(tmp_path, capsys):
    z = _logits()
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.save(tmp_path / "p.npy", probs)
    assert main(["tree", str(tmp_path / "p.npy"), "--no-plot", "--quiet", "--out", str(tmp_path / "a")]) == 0
    assert "look like probabilities; if they are, pass --input probs" in capsys.readouterr().err
    for argv in (["--input", "probs"], []):
        source = "p.npy" if argv else "x.npy"
        np.save(tmp_path / "x.npy", z)
        assert (
            main(
                [
                    "tree",
                    str(tmp_path / source),
                    *argv,
                    "--no-plot",
                    "--quiet",
                    "--out",
                    str(tmp_path / f"b{len(argv)}"),
                ]
            )
            == 0
        )
        assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- library inputs
def test_tensors_are_accepted_like_the_command_accepts_them():
    x = torch.from_numpy(_logits().astype(np.float32))
    reference = build(x.numpy())
    for tensor in (
        x.clone().requires_grad_(True),
        x.to(torch.bfloat16),
        x.to(torch.float16),
        x.to(torch.bfloat16).requires_grad_(True),
    ):
        tree = build(tensor)
        expected = build(tensor.detach().float().numpy())
        assert tree.merges == expected.merges, tensor.dtype
    assert build(x.clone().requires_grad_(True)).merges == reference.merges


def test_masked_arrays_are_refused():
    x = np.ma.masked_array(_logits(), mask=np.zeros((120, 5), dtype=bool))
    with pytest.raises(InputError, match="masked array"):
        build(x)
    with pytest.raises(InputError, match="masked array"):
        l2h.algorithm.assign(x)


def test_torch_is_not_imported_for_numpy_input():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from l2h.algorithm import l2h; "
        "l2h(np.random.default_rng(0).normal(size=(50, 4))); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_tree_file_of_a_run_loads(tmp_path):
    assert _tree(tmp_path, tmp_path / "out") == 0
    assert Hierarchy.load(tmp_path / "out" / "tree.json").k == 5


def test_compare_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert _tree(tmp_path, out) == 0
    (tmp_path / "ref.csv").write_text("class,coarse\n0,x\n1,x\n2,y\n3,y\n4,y\n")
    before = _snapshot(out)
    monkeypatch.setattr(l2h.io.os, "fsync", _fail_fsync_after(0, OSError(errno.ENOSPC, "No space left on device")))
    assert main(["compare", str(out), "--reference", str(tmp_path / "ref.csv"), "--n-random", "5", "--quiet"]) == 2
    _one_line_error(capsys, "comparison.json: cannot write (No space left on device)")
    assert _snapshot(out) == before
