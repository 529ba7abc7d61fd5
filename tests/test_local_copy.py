"""The user's own copy of a dataset (``dataset.local``): archives and extracted folders in each family's real
layout, read in place or verified and extracted, never modified; non-official copies only with
``dataset.unofficial=true``; the copy's identity in the provenance; and the refusal before any job runs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from archive_helpers import CIFAR10_CLASSES, build_cifar10, cifar_jpegs, digest, write_tar
from omegaconf import OmegaConf

from l2h.data import DownloadError, check_dataset_config, get_dataset, verify_local_copy
from l2h.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def dataset_cfg(name: str, **overrides):
    """conf/dataset/<name>.yaml with overrides merged in, as Hydra would compose it."""
    return OmegaConf.merge(OmegaConf.load(REPO / "conf" / "dataset" / f"{name}.yaml"), OmegaConf.create(overrides))


def snapshot(path: Path) -> dict[str, tuple]:
    """Every file under ``path`` (or ``path`` itself): (SHA-256, size, modification time)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


@pytest.fixture(scope="module")
def jpegs(shared_data):
    return cifar_jpegs(shared_data / "images" / "cifar10-test-jpg.tar.gz", 7)


@pytest.fixture(scope="module")
def cifar10_copy(jpegs, tmp_path_factory):
    """A read-only small CIFAR-10 archive (50 train / 20 test) in the official format, and the config that
    treats it as the official one (its md5 and sizes), as the real 170 MB archive would be treated."""
    archive, expect = build_cifar10(jpegs, tmp_path_factory.mktemp("shared"))
    archive.chmod(0o444)
    official = {"archives": {"cifar-10-python": {"md5": digest(archive)}}, "sizes": {"train": 50, "test": 20}}
    return archive, expect, official


# ---------------------------------------------------------------------------------------------- archives
def test_local_archive_is_verified_extracted_and_untouched(cifar10_copy, tmp_path):
    archive, expect, official = cifar10_copy
    before = snapshot(archive.parent)
    for local in (archive, archive.parent):  # the archive itself, or the folder holding it
        cfg = dataset_cfg("cifar10", local=str(local), offline=True, **official)
        check_dataset_config(cfg)
        verify_local_copy(cfg, tmp_path / "data")
        source = get_dataset(cfg)
        source.prepare(tmp_path / "data", progress=False)
        test = source.load(tmp_path / "data", "test")
        np.testing.assert_array_equal(test.pixels, np.stack(expect["test"][0]))
        assert test.info["copy"] == {
            "form": "archive",
            "path": str(archive),
            "checksum": f"md5:{digest(archive)}",
            "matches_official": True,
        }
    assert sorted(p.name for p in (tmp_path / "data" / "cifar10").iterdir()) == [
        ".local-checksums.json",
        "cifar-10-python",
    ]
    assert snapshot(archive.parent) == before


def test_tampered_archive_is_refused_in_one_line_and_untouched(cifar10_copy, tmp_path):
    archive, _, official = cifar10_copy
    tampered = tmp_path / "copy" / "cifar-10-python.tar.gz"
    tampered.parent.mkdir()
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    before = snapshot(tampered.parent)
    cfg = dataset_cfg("cifar10", local=str(tampered.parent), **official)
    check_dataset_config(cfg)  # the config itself is fine: the contents are checked next
    for call in (
        lambda: verify_local_copy(cfg, tmp_path / "data"),
        lambda: get_dataset(cfg).prepare(tmp_path / "data", progress=False),
    ):
        with pytest.raises(DownloadError) as exc:
            call()
        assert one_line(exc) == (
            f"{tampered}: md5 is {digest(bytes(data))}, the official cifar-10-python.tar.gz has "
            f"{digest(archive)} (dataset cifar10); the file was left untouched: if it is a copy "
            f"you made on purpose (a subset, re-encoded, other split sizes), accept it with "
            f"dataset.unofficial=true"
        )
    assert snapshot(tampered.parent) == before
    assert not [p for p in (tmp_path / "data" / "cifar10").iterdir() if p.name != ".local-checksums.json"]


def test_unofficial_archive_sizes_from_the_copy_and_its_own_identity(cifar10_copy, tmp_path):
    """The real config (50,000 / 10,000 images, the published md5) with a 70-image copy: refused, then
    accepted with the switch; extracted apart from the official data, identified by its own checksum."""
    archive, expect, _ = cifar10_copy
    with pytest.raises(DownloadError, match="accept it with dataset.unofficial=true$"):
        get_dataset(dataset_cfg("cifar10", local=str(archive))).prepare(tmp_path, progress=False)
    source = get_dataset(dataset_cfg("cifar10", local=str(archive), unofficial=True))
    source.prepare(tmp_path, progress=False)
    assert (tmp_path / "cifar10" / f"copy-{digest(archive)[:12]}" / "cifar-10-python").is_dir()
    assert not (tmp_path / "cifar10" / "cifar-10-python").exists()
    train = source.load(tmp_path, "train")
    assert len(train) == 50 and train.info["copy"]["checksum"] == f"md5:{digest(archive)}"
    assert train.info["copy"]["matches_official"] is False


def test_a_file_placed_in_the_data_folder_is_never_deleted(cifar10_copy, tmp_path):
    """The old way (a copy placed where the download goes) with a wrong checksum, offline: kept, and the
    advice does not say to download it (offline), but how to replace or accept it."""
    archive, _, _ = cifar10_copy
    placed = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    placed.parent.mkdir()
    placed.write_bytes(archive.read_bytes())
    before = snapshot(placed)
    with pytest.raises(DownloadError) as exc:
        get_dataset(dataset_cfg("cifar10", offline=True)).prepare(tmp_path, progress=False)
    text = one_line(exc)
    assert "left untouched: replace it by the official file" in text and "afresh" not in text
    assert f"dataset.local={placed} dataset.unofficial=true" in text
    assert snapshot(placed) == before


# ---------------------------------------------------------------------------------------------- folders
FOOD = ["apple_pie", "baby_back_ribs", "baklava"]


def write_food101(jpegs, top: Path) -> dict[str, list[int]]:
    """An extracted Food-101 (``top`` = the archive's food-101/ folder): 3 classes, 3 train + 2 test each."""
    labels = {"train": [], "test": []}
    lines = {"train": [], "test": []}
    for c, cls in enumerate(FOOD):
        for k in range(5):
            path = top / "images" / cls / f"{100 + k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpegs[CIFAR10_CLASSES[c]][k][0])
            split = "train" if k < 3 else "test"
            lines[split].append(f"{cls}/{100 + k}")
            labels[split].append(c)
    (top / "meta").mkdir()
    (top / "meta" / "classes.txt").write_text("\n".join(FOOD) + "\n")
    for split in ("train", "test"):
        (top / "meta" / f"{split}.txt").write_text("\n".join(lines[split]) + "\n")
    return labels


def food_cfg(local: Path, **extra):
    return dataset_cfg("food101", local=str(local), num_classes=3, **extra)


def test_food101_extracted_folder_is_read_in_place(jpegs, tmp_path):
    top = tmp_path / "datasets" / "food-101"
    labels = write_food101(jpegs, top)
    before = snapshot(tmp_path / "datasets")
    with pytest.raises(InputError) as exc:  # the official sizes (75,750 / 25,250) do not match this copy
        get_dataset(food_cfg(top.parent)).load(tmp_path / "data", "train")
    assert one_line(exc).endswith(
        f"your copy {top.parent} is not the official one; to use it as it is (its sizes "
        f"then come from the copy), add dataset.unofficial=true"
    )
    identities = set()
    for local in (top.parent, top):  # the folder the archive extracts to, or the data folder itself
        source = get_dataset(food_cfg(local, unofficial=True))
        source.prepare(tmp_path / "data", progress=False)
        for split in ("train", "test"):
            images = source.load(tmp_path / "data", split)
            assert images.labels.tolist() == labels[split] and images.class_names == FOOD
            assert Path(images.paths[0]).parent.parent.parent == top and images[0].size == (32, 32)
            copy = images.info["copy"]
            assert copy["form"] == "folder" and copy["path"] == str(top) and copy["matches_official"] is None
            identities.add((split, copy["checksum"]))
    assert len(identities) == 2  # one per split, the same for both ways of pointing at the copy
    assert snapshot(tmp_path / "datasets") == before and not (tmp_path / "data").exists()

    replaced = top / "images" / "baklava" / "103.jpg"  # a re-encoded image: another size, another identity
    replaced.write_bytes(jpegs["cat"][6][0])
    changed = get_dataset(food_cfg(top, unofficial=True)).load(tmp_path / "data", "test").info["copy"]["checksum"]
    assert ("test", changed) not in identities


def test_cifar10_extracted_folder_and_a_pickle_that_is_not_data(cifar10_copy, tmp_path):
    """torchvision's layout (a folder holding cifar-10-batches-py/) or the batch folder itself, read in place;
    a batch file that would run code when unpickled is refused."""
    import pickle
    import tarfile

    archive, expect, official = cifar10_copy
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "datasets", filter="data")
    batches = tmp_path / "datasets" / "cifar-10-batches-py"
    before = snapshot(batches)
    for local in (batches.parent, batches):
        train = get_dataset(dataset_cfg("cifar10", local=str(local), **official)).load(tmp_path / "data", "train")
        np.testing.assert_array_equal(train.pixels, np.stack(expect["train"][0]))
        assert train.info["copy"]["form"] == "folder" and train.info["copy"]["path"] == str(batches)
    assert snapshot(batches) == before and not (tmp_path / "data").exists()
    (batches / "test_batch").write_bytes(pickle.dumps({"data": os.system}, protocol=2))
    with pytest.raises(InputError, match="test_batch: not a CIFAR pickle .*posix.system"):
        get_dataset(dataset_cfg("cifar10", local=str(batches), unofficial=True)).load(tmp_path / "data", "test")


def test_inat21_one_split_extracted_the_other_archived(jpegs, tmp_path):
    """Per archive, the extracted folder or the archive under its published name: here val/ is extracted and
    train_mini.tar.gz is an archive, in the same folder."""
    folders = [
        "04000_Animalia_Chordata_Aves_Passeriformes_Corvidae_Corvus_corax",
        "09000_Plantae_Tracheophyta_Magnoliopsida_Asterales_Asteraceae_Bellis_perennis",
    ]
    local = tmp_path / "inat2021"
    for c, name in enumerate(folders):
        (local / "val" / name).mkdir(parents=True)
        (local / "val" / name / "a.jpg").write_bytes(jpegs["dog"][c][0])
    write_tar(
        local / "train_mini.tar.gz",
        {f"train_mini/{name}/{k}.jpg": jpegs["cat"][k][0] for name in folders for k in range(2)},
    )
    before = snapshot(local)
    cfg = dataset_cfg(
        "inat21", splits={"train": "train_mini", "test": "val"}, local=str(local), unofficial=True, num_classes=2
    )
    source = get_dataset(cfg)
    source.prepare(tmp_path / "data", progress=False)
    train, test = source.load(tmp_path / "data", "train"), source.load(tmp_path / "data", "test")
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [0, 1]
    assert train.info["copy"]["form"] == "archive" and test.info["copy"]["form"] == "folder"
    assert snapshot(local) == before
    with pytest.raises(InputError) as exc:  # one file cannot hold a dataset of two archives
        check_dataset_config(dataset_cfg("inat21", local=str(local / "train_mini.tar.gz")))
    assert "needs 2 archives (train.tar.gz, val.tar.gz)" in one_line(exc)


def test_imagenet_official_archives(jpegs, tmp_path):
    """ILSVRC2012_img_train.tar holds one tar per class; ILSVRC2012_img_val.tar is flat: both verified (here
    against their own md5, standing in for the published ones) and extracted; the archives stay untouched."""
    import io
    import tarfile

    local = tmp_path / "ilsvrc"
    classes = {}
    for i, wnid in enumerate(("n01440764", "n01443537")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for k in range(2):
                info = tarfile.TarInfo(f"{wnid}_{k}.JPEG")
                info.size = len(jpegs["cat"][2 * i + k][0])
                tar.addfile(info, io.BytesIO(jpegs["cat"][2 * i + k][0]))
        classes[f"{wnid}.tar"] = buf.getvalue()
    write_tar(local / "ILSVRC2012_img_train.tar", classes, mode="w")
    write_tar(local / "ILSVRC2012_img_val.tar", {"ILSVRC2012_val_00000001.JPEG": jpegs["dog"][0][0]}, mode="w")
    before = snapshot(local)
    archives = {split: {"md5": digest(local / f"ILSVRC2012_img_{split}.tar")} for split in ("train", "val")}
    source = get_dataset(dataset_cfg("imagenet", local=str(local), archives=archives, sizes={"train": 4, "val": 1}))
    source.prepare(tmp_path / "data", progress=False)
    with pytest.warns(UserWarning, match="only 2 of the 1000"):
        train = source.load(tmp_path / "data", "train")
    assert train.labels.tolist() == [0, 0, 1, 1]
    assert Path(train.paths[0]).parent == tmp_path / "data" / "imagenet" / "train" / "train" / "n01440764"
    with pytest.warns(UserWarning):
        assert source.load(tmp_path / "data", "test").labels.tolist() == [65]  # ILSVRC2012_val_00000001
    assert snapshot(local) == before
    with pytest.raises(DownloadError, match="the official ILSVRC2012_img_train.tar has 1d675b47"):  # the real md5s
        verify_local_copy(dataset_cfg("imagenet", local=str(local)), tmp_path / "data")


# ---------------------------------------------------------------------------------------------- config checks
@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("cifar10", {"offline": "maybe"}, "dataset.offline = 'maybe': must be true or false"),
        ("cifar10", {"unofficial": "yes"}, "dataset.unofficial = 'yes': must be true or false"),
        ("cifar10", {"local": 5}, "dataset.local = 5: must be a string or null"),
        ("cifar10", {"local": ""}, "dataset.local = '': must not be empty"),
        ("cifar10", {"local": "/nonexistent/cifar"}, "dataset cifar10: dataset.local=/nonexistent/cifar: no such file"),
        ("food101", {"unofficial": True}, "dataset food101: dataset.unofficial=true accepts a local copy"),
        ("cifar100", {"sizes": {"train": -1}}, "dataset.sizes.train = -1: must be >= 1"),
        (
            "digits",
            {"local": "/tmp"},
            "dataset digits: the digits ship with scikit-learn, there is no copy to point at",
        ),
        (
            "imagenet",
            {"root": "/data/ilsvrc"},
            "dataset.root = '/data/ilsvrc': renamed: use dataset.local=PATH for your copy",
        ),
    ],
)
def test_check_dataset_config_refuses_bad_values_in_one_line(name, overrides, message):
    with pytest.raises(InputError) as exc:
        check_dataset_config(dataset_cfg(name, **overrides))
    assert one_line(exc).startswith(message)


def test_check_dataset_config_names_the_missing_layout(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()  # an incomplete extracted folder (no batches.meta)
    with pytest.raises(InputError) as exc:
        check_dataset_config(dataset_cfg("cifar10", local=str(tmp_path)))
    assert one_line(exc).endswith(
        "holds neither the extracted data nor the archive: expected cifar-10-batches-py/ "
        "(with batches.meta) or cifar-10-python.tar.gz in it"
    )
    for name in ("cifar10", "digits", "imagenet", "inat21"):
        check_dataset_config(dataset_cfg(name))  # every shipped config is valid as it is


def test_features_record_the_copy_and_are_never_reused_for_another(jpegs, tmp_path):
    """prepare_data records each split's copy in classes.json; extract_features refuses a copy that changed
    since, and once prepared again, computes the features afresh (their meta names the copy)."""
    from l2h.stages import extract_features, prepare_data
    from l2h.stages.app import Job

    top = tmp_path / "food-101"
    write_food101(jpegs, top)
    cfg = OmegaConf.create(
        {
            "dataset": food_cfg(top, unofficial=True),
            "backbone": OmegaConf.load(REPO / "conf" / "backbone" / "pixels.yaml"),
            "paths": {"data": str(tmp_path / "data")},
        }
    )
    data_dir, features_dir = tmp_path / "results" / "data", tmp_path / "results" / "features"
    data = Job("prepare_data", {}, data_dir, data_dir, {"dataset": "food101"})
    feats = Job(
        "extract_features",
        {"classes": str(data.output / "classes.json")},
        features_dir,
        features_dir,
        {"dataset": "food101", "backbone": "pixels"},
    )

    def recorded() -> dict:
        return json.loads((data.output / "classes.json").read_text())

    def meta() -> dict:
        return json.loads((feats.output / "test.meta.json").read_text())

    prepare_data.run(cfg, data)
    classes = recorded()
    assert classes["local"] == str(top) and classes["unofficial"] is True
    assert classes["splits"]["test"]["n"] == 6 and classes["splits"]["test"]["copy"]["form"] == "folder"
    extract_features.run(cfg, feats)
    first = meta()
    assert first["dataset"]["copy"] == classes["splits"]["test"]["copy"]["checksum"]

    (top / "images" / "baklava" / "103.jpg").write_bytes(jpegs["cat"][6][0])  # the copy changes
    with pytest.raises(InputError) as exc:
        extract_features.run(cfg, feats)
    assert one_line(exc).endswith(
        "the dataset copy changed; run prepare_data again (snakemake --forcerun prepare_data)"
    )
    prepare_data.run(cfg, data)
    extract_features.run(cfg, feats)
    assert meta()["dataset"]["copy"] == recorded()["splits"]["test"]["copy"]["checksum"] != first["dataset"]["copy"]
    assert meta()["sha256"] != first["sha256"]  # computed from the new copy, not reused


# ---------------------------------------------------------------------------------------------- the pipeline
LOCAL_EXPERIMENT = """\
name: local_cifar
description: CIFAR-10 from a local copy; k-means on raw pixels.
grid: {dataset: [cifar10], backbone: [pixels], clusterer: [kmeans], k: [null], aggregation: [sum_of_cluster_means],
       strategy: [lowest_score], seed: [0], baseline: []}
settings: {}
threads: {extract_features: 1, train_clusterer: 1}
figures: false
"""


def test_plan_checks_the_local_copy_from_an_experiment_file_or_the_command_line(cifar10_copy, tmp_path, monkeypatch):
    """The key works in an experiment's settings and as an override; the plan (built before any job runs)
    refuses a missing path or a copy whose checksum is not the official one."""
    import shutil

    from l2h.stages.plan import Plan

    archive, _, _ = cifar10_copy
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "experiment" / "local_cifar.yaml").write_text(
        LOCAL_EXPERIMENT.replace("settings: {}", f"settings: {{dataset: ['dataset.local={archive}']}}")
    )
    monkeypatch.chdir(tmp_path)  # the data root (paths.data) is relative to the working directory
    monkeypatch.delenv("L2H_DATA_DIR", raising=False)
    with pytest.raises(InputError) as exc:  # the shipped config publishes the real archive's md5
        Plan(conf, "local_cifar")
    assert one_line(exc).startswith(
        f"{archive}: md5 is {digest(archive)}, the official cifar-10-python.tar.gz has c58f30108f718f92721af3b95e74349a"
    )
    plan = Plan(conf, "local_cifar", overrides="dataset.unofficial=true")
    assert plan.group_config("dataset", "cifar10")["local"] == str(archive)
    with pytest.raises(InputError) as exc:
        Plan(conf, "local_cifar", overrides=f"dataset.local={tmp_path / 'nowhere'}")
    assert one_line(exc) == f"dataset cifar10: dataset.local={tmp_path / 'nowhere'}: no such file or folder"
    with pytest.raises(InputError) as exc:  # one path on the command line would apply to every dataset
        Plan(conf, "local_cifar", overrides=f"dataset=cifar10,cifar100 dataset.local={archive}")
    assert one_line(exc).startswith(
        f"dataset.local={archive} is set for 2 datasets (cifar10, cifar100): a copy "
        f"belongs to one dataset; give each its own in the experiment's settings"
    )


def run_snakemake(workdir: Path, *config: str):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "L2H_DATA_DIR"}  # the data root: <workdir>/data
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("snakemake")),
            "-s",
            str(workdir / "Snakefile"),
            "--directory",
            str(workdir),
            "--cores",
            "2",
            "--config",
            "experiment=local_cifar",
            *config,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_pipeline_on_a_local_cifar10_archive(shared_data, tmp_path):
    """One key points the pipeline at a CIFAR-10 archive in the official format (80 train / 40 test real CIFAR-10
    images; the workflow's config publishes its md5 and sizes, as for the real archive): the chain runs to the
    table, the archive stays byte-identical, and no log holds a redrawn progress line. A tampered copy is refused
    in one line before any job runs, and neither the copy nor any result is touched."""
    from test_workflow import copy_workflow

    jpegs = cifar_jpegs(shared_data / "images" / "cifar10-test-jpg.tar.gz", 12)
    archive, _ = build_cifar10(jpegs, tmp_path / "shared", train_per_class=8, test_per_class=4)
    archive.chmod(0o444)
    work = copy_workflow(tmp_path)
    conf = work / "conf" / "dataset" / "cifar10.yaml"
    text = conf.read_text()
    conf.write_text(
        text.replace("c58f30108f718f92721af3b95e74349a", digest(archive)).replace(
            "sizes: {train: 50000, test: 10000}", "sizes: {train: 80, test: 40}"
        )
    )
    (work / "conf" / "experiment" / "local_cifar.yaml").write_text(LOCAL_EXPERIMENT)
    before = snapshot(archive)

    proc = run_snakemake(work, f"overrides=dataset.local={archive}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = (work / "results" / "tables" / "local_cifar.csv").read_text().splitlines()
    assert len(rows) == 2 and ",cifar10,pixels,10," in rows[1]
    assert snapshot(archive) == before
    classes = json.loads((work / "results" / "data" / "cifar10" / "classes.json").read_text())
    assert classes["splits"]["test"]["n"] == 40 and classes["local"] == str(archive)
    assert classes["splits"]["test"]["copy"]["checksum"] == f"md5:{digest(archive)}"
    logs = {p: p.read_text() for p in (work / "results" / "logs").rglob("*.log")}
    assert len(logs) == 7 and not [p for p, log in logs.items() if "\r" in log]
    features_log = logs[work / "results" / "logs" / "extract_features" / "features" / "cifar10" / "pixels.log"]
    assert any(line.startswith("features[pixels]: 100%") for line in features_log.splitlines())

    tampered = tmp_path / "other" / "cifar-10-python.tar.gz"
    tampered.parent.mkdir()
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    results, copy = snapshot(work / "results"), snapshot(tampered)
    proc = run_snakemake(work, f"overrides=dataset.local={tampered}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [line for line in out.splitlines() if line.startswith("l2h: error:")]
    assert len(lines) == 1, out[-3000:]
    assert lines[0] == (
        f"l2h: error: {tampered}: md5 is {digest(bytes(data))}, the official "
        f"cifar-10-python.tar.gz has {digest(archive)} (dataset cifar10); the file was left "
        f"untouched: if it is a copy you made on purpose (a subset, re-encoded, other split sizes), "
        f"accept it with dataset.unofficial=true"
    )
    assert "rule prepare_data" not in out and "localrule prepare_data" not in out
    assert snapshot(tampered) == copy and snapshot(work / "results") == results
