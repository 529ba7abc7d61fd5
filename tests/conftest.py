"""Shared fixtures. Real test material lives in ../shared/data beside the repository (never copied in)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files under tests/data/golden from this run instead of comparing "
        "them (tests/test_golden.py; see docs/testing.md)",
    )


def planned_jobs(summary: str) -> dict[str, int]:
    """{rule: jobs that would run} from the tab-separated table of ``snakemake --summary`` (its ``plan`` column),
    not from Snakemake's console text: every job writes exactly one ``<record>.provenance.json``, so a job is
    planned when its provenance record is. ``{}``: nothing to do."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    header = lines[start].split("\t")
    rule, plan = header.index("rule"), header.index("plan")
    jobs: dict[str, int] = {}
    for line in lines[start + 1 :]:
        row = line.split("\t")
        if len(row) == len(header) and row[plan] == "update pending" and row[0].endswith(".provenance.json"):
            jobs[row[rule]] = jobs.get(row[rule], 0) + 1
    return jobs


@pytest.fixture(scope="session")
def dry_run(tmp_path_factory):
    """``dry_run(experiment)`` → (working directory, completed process) of ``snakemake --summary --config
    experiment=NAME`` (the table of every output and whether it would be made) with the repository's root
    Snakefile in an empty directory; run once per experiment and session (several test modules use it)."""
    import subprocess
    import sys

    runs = {}

    def run(experiment: str):
        if experiment not in runs:
            workdir = tmp_path_factory.mktemp(f"dry_run_{experiment}")
            snakemake = Path(sys.executable).with_name("snakemake")
            runs[experiment] = (
                workdir,
                subprocess.run(
                    [
                        str(snakemake),
                        "-s",
                        str(REPO / "Snakefile"),
                        "--directory",
                        str(workdir),
                        "--cores",
                        "2",
                        "--summary",
                        "--config",
                        f"experiment={experiment}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                ),
            )
        return runs[experiment]

    return run


def shared_logits_args(npz: Path) -> list[str]:
    """The ``l2h tree`` options that read a shared logits file (../shared/data/logits/*.npz): its softmax outputs
    as probabilities, and its true classes as labels."""
    return ["--key", "predictions", "--input", "probs", "--labels", str(npz), "--labels-key", "ground_truth"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; a missing folder is a failure, never a silent skip."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(f"test material not found at {SHARED_DATA}: clone the repository beside ../shared")
    return SHARED_DATA


# --- shared image / feature fixtures (features helper) ------------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_COARSE = ["vehicles", "animals"]
CIFAR10_VEHICLES = {"airplane", "automobile", "ship", "truck"}
BACKBONE_CONF = REPO / "conf" / "backbone"


def read_cifar10_jpg_tar(path: Path, per_class: int):
    """ImageSet of the first ``per_class`` JPEGs (by file name) of every class in the CIFAR-10 JPEG tarball,
    class-major order (all airplanes, then automobiles, ...), read straight from the archive."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    from l2h.data.imageset import ImageSet

    wanted = {f"test/{c}/{i:04d}.jpg": (k, i) for k, c in enumerate(CIFAR10_CLASSES) for i in range(per_class)}
    pixels = np.zeros((len(CIFAR10_CLASSES) * per_class, 32, 32, 3), dtype=np.uint8)
    found = 0
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                k, i = wanted[member.name]
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
                    pixels[k * per_class + i] = np.asarray(img.convert("RGB"))
                found += 1
    if found != len(wanted):
        pytest.fail(f"{path}: found {found} of the {len(wanted)} expected CIFAR-10 JPEGs")
    labels = np.repeat(np.arange(len(CIFAR10_CLASSES)), per_class)
    coarse = np.array([0 if CIFAR10_CLASSES[y] in CIFAR10_VEHICLES else 1 for y in labels])
    return ImageSet(
        labels=labels,
        class_names=list(CIFAR10_CLASSES),
        pixels=pixels,
        coarse_labels=coarse,
        coarse_names=list(CIFAR10_COARSE),
        info={"source": path.name, "per_class": per_class},
    )


def backbone_config(name: str, **overrides):
    """The repository's conf/backbone/<name>.yaml as a plain dict (interpolations resolved), with overrides."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(OmegaConf.load(BACKBONE_CONF / f"{name}.yaml"), overrides)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="session")
def cifar10_images(shared_data):
    """1,000 real CIFAR-10 test images (files 0000–0099 of each class; class-major), with fine labels in the
    standard CIFAR-10 order and coarse labels vehicles(0)/animals(1)."""
    return read_cifar10_jpg_tar(shared_data / "images" / "cifar10-test-jpg.tar.gz", per_class=100)


@pytest.fixture(scope="session")
def cifar10_effnet_features(cifar10_images, tmp_path_factory):
    """(features float32 (1000, 1280), labels) of efficientnet_lite0 (conf/backbone) on ``cifar10_images``,
    computed once per session through l2h.features.extract_to_cache."""
    import torch

    from l2h.features import extract_to_cache

    torch.set_num_threads(min(2, torch.get_num_threads()))
    cached = extract_to_cache(
        backbone_config("efficientnet_lite0", num_workers=0),
        cifar10_images,
        tmp_path_factory.mktemp("effnet_cifar10"),
        "test",
        device="cpu",
        progress=False,
        dataset={"name": "cifar10-test-jpg", "per_class": 100},
    )
    return cached.load(mmap=False), cifar10_images.labels


@pytest.fixture(scope="session")
def digits_features(tmp_path_factory):
    """{"pixels": (Xtr, ytr, Xte, yte), "efficientnet_lite0": (...)} on scikit-learn digits through the real
    `digits` dataset (conf/dataset/digits.yaml: stratified split, test fraction 0.3, seed 0); features float32,
    labels int64. Pixels: the 64 grey values in [0, 1]. efficientnet_lite0: conf/backbone with image_size 96
    instead of 224 (4× cheaper on CPU; k-means on it clusters the 8×8 digits better than at 224)."""
    import torch
    from omegaconf import OmegaConf

    from l2h.data import get_dataset
    from l2h.features import extract_to_cache

    torch.set_num_threads(min(2, torch.get_num_threads()))
    source = get_dataset(OmegaConf.load(REPO / "conf" / "dataset" / "digits.yaml"))
    root = tmp_path_factory.mktemp("digits_data")
    train, test = (source.load(root, split, progress=False) for split in ("train", "test"))
    out = {}
    for name, cfg in (
        ("pixels", backbone_config("pixels", mode="L")),
        ("efficientnet_lite0", backbone_config("efficientnet_lite0", num_workers=0, image_size=96)),
    ):
        cache = tmp_path_factory.mktemp(f"digits_{name}")
        feats = [
            extract_to_cache(
                cfg, images, cache, split, device="cpu", progress=False, dataset={"name": "digits", "split": split}
            ).load(mmap=False)
            for split, images in (("train", train), ("test", test))
        ]
        out[name] = (feats[0], train.labels, feats[1], test.labels)
    return out


@pytest.fixture
def one_torch_thread():
    """Small problems: one torch thread is fastest and immune to CPU oversubscription; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
