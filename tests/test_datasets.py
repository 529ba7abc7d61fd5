"""Dataset loaders on tiny archives/folders in each dataset's real on-disk format, through the real download code."""

from __future__ import annotations

import io
import itertools
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from archive_helpers import CIFAR10_CLASSES, RangeServer, build_cifar10, cifar_jpegs, cifar_rows, digest, write_tar
from conftest import planned_jobs
from omegaconf import OmegaConf
from PIL import Image

from l2h.data import DownloadError, ImageSet, get_dataset
from l2h.errors import InputError

REPO = Path(__file__).resolve().parents[1]

# The standard CIFAR-100 superclass -> classes table published with the dataset (names as in its `meta` file).
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
CIFAR100_FINE = sorted(f for fs in CIFAR100_SUPERCLASSES.values() for f in fs)
CIFAR100_COARSE = sorted(CIFAR100_SUPERCLASSES)
CIFAR100_FINE_TO_COARSE = np.array(
    [next(CIFAR100_COARSE.index(c) for c, fs in CIFAR100_SUPERCLASSES.items() if f in fs) for f in CIFAR100_FINE]
)
QUIET = {"download": {"backoff_s": 0.0, "timeout_s": 10.0}}


def dataset_cfg(name: str, **overrides):
    """conf/dataset/<name>.yaml with overrides merged in, as Hydra would compose it."""
    return OmegaConf.merge(OmegaConf.load(REPO / "conf" / "dataset" / f"{name}.yaml"), OmegaConf.create(overrides))


@pytest.fixture(scope="module")
def jpegs(shared_data):
    return cifar_jpegs(shared_data / "images" / "cifar10-test-jpg.tar.gz", 7)


# ---------------------------------------------------------------------------------------------- CIFAR-10
@pytest.fixture(scope="module")
def cifar10_archive(jpegs, tmp_path_factory):
    return build_cifar10(jpegs, tmp_path_factory.mktemp("cifar10-src"))


def test_cifar10_file_url_prepare_and_load(cifar10_archive, tmp_path):
    archive, expect = cifar10_archive
    cfg = dataset_cfg(
        "cifar10",
        archives={"cifar-10-python": {"url": archive.as_uri(), "md5": digest(archive)}},
        sizes={"train": 50, "test": 20},
        **QUIET,
    )
    source = get_dataset(cfg)
    source.prepare(tmp_path, progress=False)
    vehicles = {"airplane", "automobile", "ship", "truck"}
    for split in ("train", "test"):
        images = source.load(tmp_path, split)
        assert isinstance(images, ImageSet) and len(images) == len(expect[split][1])
        np.testing.assert_array_equal(images.labels, expect[split][1])
        np.testing.assert_array_equal(images.pixels, np.stack(expect[split][0]))
        assert images.class_names == CIFAR10_CLASSES
        assert images.coarse_names == ["vehicles", "animals"]
        np.testing.assert_array_equal(
            images.coarse_labels, [0 if CIFAR10_CLASSES[y] in vehicles else 1 for y in images.labels]
        )
        first = images[3]
        assert first.mode == "RGB" and first.size == (32, 32)
        np.testing.assert_array_equal(np.asarray(first), expect[split][0][3])
        assert images.info["split"] == split and images.info["dataset"] == "cifar10"
    assert images.info["filenames"][0] == "t0.png"
    tree = source.hierarchy(tmp_path)
    assert tree.root == "cifar10" and len(tree.children["cifar10"]) == 2
    assert [leaf.split("/")[1] for leaf in tree.leaves] == CIFAR10_CLASSES
    labels, names = tree.coarse_labels(1)
    assert [names[g].split("/")[-1] for g in labels] == [
        "vehicles" if c in vehicles else "animals" for c in CIFAR10_CLASSES
    ]
    assert (tmp_path / "cifar10" / "cifar-10-python.tar.gz").is_file()  # keep_archives: true


def test_cifar10_http_download_resumes_and_is_idempotent(cifar10_archive, tmp_path):
    archive, expect = cifar10_archive
    data = archive.read_bytes()
    with RangeServer({"cifar-10-python.tar.gz": data}) as server:
        server.drops["cifar-10-python.tar.gz"] = [len(data) // 3]
        cfg = dataset_cfg(
            "cifar10",
            archives={"cifar-10-python": {"url": server.url("cifar-10-python.tar.gz"), "md5": digest(data)}},
            sizes={"train": 50, "test": 20},
            **QUIET,
        )
        source = get_dataset(cfg)
        source.prepare(tmp_path, progress=False)
        assert [r for _, r, _, _ in server.log] == [None, f"bytes={len(data) // 3}-"]
        start = time.perf_counter()
        source.prepare(tmp_path, progress=False)
        assert time.perf_counter() - start < 0.1 and len(server.log) == 2
    np.testing.assert_array_equal(source.load(tmp_path, "test").labels, expect["test"][1])


def test_cifar10_wrong_checksum_leaves_nothing(cifar10_archive, tmp_path):
    archive, _ = cifar10_archive
    cfg = dataset_cfg("cifar10", archives={"cifar-10-python": {"url": archive.as_uri(), "md5": "f" * 32}}, **QUIET)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        get_dataset(cfg).prepare(tmp_path, progress=False)
    assert list((tmp_path / "cifar10").iterdir()) == []


def test_offline_with_missing_data_is_a_clear_error(cifar10_archive, tmp_path):
    archive, _ = cifar10_archive
    for cfg, offline in ((dataset_cfg("cifar10", offline=True), False), (dataset_cfg("cifar10"), True)):
        with pytest.raises(DownloadError, match="offline"):
            get_dataset(cfg).prepare(tmp_path, offline=offline, progress=False)
    with pytest.raises(InputError, match="run prepare"):
        get_dataset(dataset_cfg("cifar10")).load(tmp_path, "train")
    # a verified archive placed by hand is extracted offline
    (tmp_path / "cifar10").mkdir(exist_ok=True)
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes())
    cfg = dataset_cfg(
        "cifar10", offline=True, archives={"cifar-10-python": {"md5": digest(archive)}}, sizes={"train": 50, "test": 20}
    )
    get_dataset(cfg).prepare(tmp_path, progress=False)
    assert len(get_dataset(cfg).load(tmp_path, "train")) == 50


def test_config_sizes_and_splits_are_checked(cifar10_archive, tmp_path):
    archive, _ = cifar10_archive
    cfg = dataset_cfg(
        "cifar10", archives={"cifar-10-python": {"url": archive.as_uri(), "md5": digest(archive)}}, **QUIET
    )
    source = get_dataset(cfg)
    source.prepare(tmp_path, progress=False)
    with pytest.raises(InputError, match=r"has 50 images, the official dataset 50000 \(dataset.sizes.train\)"):
        source.load(tmp_path, "train")
    with pytest.raises(InputError, match="unknown split 'val'"):
        source.load(tmp_path, "val")
    with pytest.raises(InputError, match="num_classes=11"):
        get_dataset(OmegaConf.merge(cfg, {"num_classes": 11, "sizes": None})).load(tmp_path, "test")
    with pytest.raises(InputError, match="dataset.kind = 'nope': must be one of"):
        get_dataset(OmegaConf.merge(cfg, {"kind": "nope"}))


# ---------------------------------------------------------------------------------------------- CIFAR-100
def test_cifar100_constant_is_the_standard_mapping(shared_data):
    """Real CIFAR-100 test predictions put ~31% of their wrong-class mass on classes of the same superclass
    under this table, against ~5% for shuffled tables: it is not garbled (a single swapped pair would pass)."""
    with np.load(shared_data / "logits" / "wideresnet-16-4-cifar-100.npz") as f:
        probs, y = f["predictions"].astype(np.float64), f["ground_truth"]
    wrong = probs.copy()
    wrong[np.arange(len(y)), y] = 0
    same = CIFAR100_FINE_TO_COARSE[None, :] == CIFAR100_FINE_TO_COARSE[y][:, None]
    assert len(CIFAR100_FINE) == 100 and (wrong * same).sum() / wrong.sum() > 0.25


def build_cifar100(jpegs, folder: Path, *, break_mapping: bool = False) -> tuple[Path, dict]:
    """cifar-100-python.tar.gz: `train` holds one image of each of the 100 classes, `test` 20 images."""
    pool = [p for c in CIFAR10_CLASSES for _, p in jpegs[c]]
    expect = {}
    files = {}
    for split, fine in (("train", list(range(100))), ("test", [(7 * i) % 100 for i in range(20)])):
        coarse = [int(CIFAR100_FINE_TO_COARSE[f]) for f in fine]
        if break_mapping and split == "test":
            coarse[0] = (coarse[0] + 1) % 20
        pix = [pool[i % len(pool)] for i in range(len(fine))]
        expect[split] = (pix, fine, coarse)
        files[f"cifar-100-python/{split}"] = pickle.dumps(
            {
                "filenames": [f"{split}_{i}.png" for i in range(len(fine))],
                "batch_label": f"{split} batch",
                "fine_labels": fine,
                "coarse_labels": coarse,
                "data": cifar_rows(pix),
            },
            protocol=2,
        )
    files["cifar-100-python/meta"] = pickle.dumps(
        {"fine_label_names": CIFAR100_FINE, "coarse_label_names": CIFAR100_COARSE}, protocol=2
    )
    return write_tar(folder / "cifar-100-python.tar.gz", files), expect


def cifar100_cfg(archive: Path):
    return dataset_cfg(
        "cifar100",
        archives={"cifar-100-python": {"url": archive.as_uri(), "md5": None, "sha256": digest(archive, "sha256")}},
        sizes={"train": 100, "test": 20},
        **QUIET,
    )


def test_cifar100_fine_and_coarse_labels(jpegs, tmp_path):
    archive, expect = build_cifar100(jpegs, tmp_path / "src")
    source = get_dataset(cifar100_cfg(archive))
    source.prepare(tmp_path / "data", progress=False)
    for split in ("train", "test"):
        images = source.load(tmp_path / "data", split)
        np.testing.assert_array_equal(images.labels, expect[split][1])
        np.testing.assert_array_equal(images.coarse_labels, expect[split][2])
        np.testing.assert_array_equal(images.pixels, np.stack(expect[split][0]))
        assert images.class_names == CIFAR100_FINE and images.coarse_names == CIFAR100_COARSE
    np.testing.assert_array_equal(
        source.load(tmp_path / "data", "train").info["fine_to_coarse"], CIFAR100_FINE_TO_COARSE
    )
    tree = source.hierarchy(tmp_path / "data")
    assert len(tree.children["cifar100"]) == 20 and all(len(tree.children[c]) == 5 for c in tree.children["cifar100"])
    labels, names = tree.coarse_labels(1)
    assert [n.split("/")[-1] for n in names] == CIFAR100_COARSE
    np.testing.assert_array_equal(labels, CIFAR100_FINE_TO_COARSE)
    assert [leaf.split("/")[-1] for leaf in tree.leaves] == CIFAR100_FINE


def test_cifar100_inconsistent_superclass_is_rejected(jpegs, tmp_path):
    archive, _ = build_cifar100(jpegs, tmp_path / "src", break_mapping=True)
    source = get_dataset(cifar100_cfg(archive))
    source.prepare(tmp_path / "data", progress=False)
    with pytest.raises(InputError, match="two superclasses"):
        source.hierarchy(tmp_path / "data")
    assert len(source.load(tmp_path / "data", "test")) == 20  # a lone image per class is not a contradiction


# ---------------------------------------------------------------------------------------------- Food-101
FOOD_CLASSES = ["apple_pie", "baby_back_ribs", "baklava"]


def build_food101(jpegs, folder: Path) -> tuple[Path, dict]:
    files, expect, lines = {}, {"train": [], "test": []}, {"train": [], "test": []}
    for c, cls in enumerate(FOOD_CLASSES):
        for k in range(5):
            raw, _ = jpegs[CIFAR10_CLASSES[c]][k]
            ident = f"{1000 + 37 * k + c}"
            files[f"food-101/images/{cls}/{ident}.jpg"] = raw
            split = "train" if k < 3 else "test"
            lines[split].append(f"{cls}/{ident}")
            expect[split].append((c, raw))
    files["food-101/meta/classes.txt"] = ("\n".join(FOOD_CLASSES) + "\n").encode()
    files["food-101/meta/labels.txt"] = b"Apple pie\nBaby back ribs\nBaklava\n"
    for split in ("train", "test"):
        files[f"food-101/meta/{split}.txt"] = ("\n".join(lines[split]) + "\n").encode()
    files["food-101/README.txt"] = b"Food-101"
    return write_tar(folder / "food-101.tar.gz", files), expect


def test_food101_load(jpegs, tmp_path):
    archive, expect = build_food101(jpegs, tmp_path / "src")
    cfg = dataset_cfg(
        "food101",
        num_classes=3,
        sizes={"train": 9, "test": 6},
        archives={"food-101": {"url": archive.as_uri(), "md5": digest(archive)}},
        **QUIET,
    )
    source = get_dataset(cfg)
    source.prepare(tmp_path / "data", progress=False)
    for split in ("train", "test"):
        images = source.load(tmp_path / "data", split)
        assert images.class_names == FOOD_CLASSES and images.coarse_labels is None
        np.testing.assert_array_equal(images.labels, [c for c, _ in expect[split]])
        for i, (_, raw) in enumerate(expect[split]):
            np.testing.assert_array_equal(np.asarray(images[i]), np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
    meta = tmp_path / "data" / "food101" / "food-101" / "food-101" / "meta" / "test.txt"
    meta.write_text(meta.read_text() + "sushi/1\n")
    with pytest.raises(InputError, match="test.txt:7"):
        source.load(tmp_path / "data", "test")
    meta.write_text("baklava/999\n")
    with pytest.raises(InputError, match="missing"):
        get_dataset(OmegaConf.merge(cfg, {"sizes": None})).load(tmp_path / "data", "test")


# ---------------------------------------------------------------------------------------------- iNat21
INAT_FOLDERS = [
    "00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris",
    "00001_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Eisenia_fetida",
    "04000_Animalia_Chordata_Aves_Passeriformes_Corvidae_Corvus_corax",
    "04001_Animalia_Chordata_Aves_Passeriformes_Corvidae_Pica_pica",
    "04002_Animalia_Chordata_Aves_Passeriformes_Paridae_Parus_major",
    "09000_Plantae_Tracheophyta_Magnoliopsida_Asterales_Asteraceae_Bellis_perennis",
]


def build_inat(jpegs, folder: Path, split: str, per_class: int, folders=INAT_FOLDERS) -> Path:
    files = {}
    for c, name in enumerate(folders):
        for k in range(per_class):
            files[f"{split}/{name}/{c:02d}{k:02d}-uuid.jpg"] = jpegs[CIFAR10_CLASSES[c % 10]][k][0]
    return write_tar(folder / f"{split}.tar.gz", files)


@pytest.fixture(scope="module")
def inat_data(jpegs, tmp_path_factory):
    """train_mini (3 images per class) and val (2 per class) prepared through the real download code."""
    src = tmp_path_factory.mktemp("inat-src")
    archives = {s: build_inat(jpegs, src, s, n) for s, n in (("train_mini", 3), ("val", 2))}
    root = tmp_path_factory.mktemp("inat-data")
    cfg = dataset_cfg(
        "inat21",
        splits={"train": "train_mini", "test": "val"},
        num_classes=4,
        sizes={"train_mini": 18, "val": 12},
        archives={s: {"url": p.as_uri(), "md5": digest(p)} for s, p in archives.items()},
        **QUIET,
    )
    get_dataset(cfg).prepare(root, progress=False)
    return cfg, root


def test_inat21_family_labels_and_order_coarse(inat_data):
    cfg, root = inat_data
    source = get_dataset(cfg)
    assert sorted(p.name for p in (root / "inat21").iterdir()) == ["train_mini", "val"]  # archives removed
    images = source.load(root, "train")
    assert images.class_names == ["Lumbricidae", "Corvidae", "Paridae", "Asteraceae"]
    np.testing.assert_array_equal(images.labels, np.repeat([0, 0, 1, 1, 2, 3], 3))
    assert images.coarse_names == ["Haplotaxida", "Passeriformes", "Asterales"]
    np.testing.assert_array_equal(images.coarse_labels, np.repeat([0, 0, 1, 1, 1, 2], 3))
    assert images.info["class_taxonomy"]["kingdom"] == ["Animalia", "Animalia", "Animalia", "Plantae"]
    assert images.info["class_taxonomy"]["order"] == ["Haplotaxida", "Passeriformes", "Passeriformes", "Asterales"]
    assert Path(images.paths[0]).parent.name == INAT_FOLDERS[0]
    test = source.load(root, "test")
    np.testing.assert_array_equal(test.labels, np.repeat([0, 0, 1, 1, 2, 3], 2))
    tree = source.hierarchy(root)
    assert [leaf.split("/")[-1] for leaf in tree.leaves] == images.class_names
    assert {tree.depth(leaf) for leaf in tree.leaves} == {5}
    kingdoms, names = tree.coarse_labels(1)
    assert names == ["Animalia", "Plantae"] and kingdoms.tolist() == [0, 0, 0, 1]


def test_inat21_species_and_genus_levels(inat_data):
    cfg, root = inat_data
    species = get_dataset(
        OmegaConf.merge(cfg, {"label_level": "species", "coarse_level": "family", "num_classes": None})
    ).load(root, "test")
    assert species.class_names == [
        "Eisenia fetida",
        "Lumbricus terrestris",
        "Corvus corax",
        "Pica pica",
        "Parus major",
        "Bellis perennis",
    ]
    assert species.coarse_names == ["Lumbricidae", "Corvidae", "Paridae", "Asteraceae"]
    genus = get_dataset(OmegaConf.merge(cfg, {"label_level": "genus", "coarse_level": None, "num_classes": 6}))
    assert genus.load(root, "test").coarse_labels is None
    with pytest.raises(InputError, match="must be above"):
        get_dataset(OmegaConf.merge(cfg, {"coarse_level": "genus"})).load(root, "test")
    with pytest.raises(InputError, match="dataset.label_level = 'tribe': must be one of kingdom"):
        get_dataset(OmegaConf.merge(cfg, {"label_level": "tribe"})).load(root, "test")


def test_inat21_num_classes_follows_label_level():
    cfg = dataset_cfg("inat21")
    assert cfg.num_classes == 1103
    assert OmegaConf.merge(cfg, {"label_level": "order"}).num_classes == 273


def test_inat21_class_indices_agree_across_splits(jpegs, tmp_path):
    """A class present only in one split still gets the same index in both."""
    src = tmp_path / "src"
    train = build_inat(jpegs, src, "train_mini", 1)
    val = build_inat(jpegs, src, "val", 1, folders=INAT_FOLDERS[2:])
    cfg = dataset_cfg(
        "inat21",
        splits={"train": "train_mini", "test": "val"},
        num_classes=4,
        sizes=None,
        archives={
            "train_mini": {"url": train.as_uri(), "md5": digest(train)},
            "val": {"url": val.as_uri(), "md5": digest(val)},
        },
        **QUIET,
    )
    source = get_dataset(cfg)
    source.prepare(tmp_path / "data", progress=False)
    assert source.load(tmp_path / "data", "test").labels.tolist() == [1, 1, 2, 3]


def test_inat21_bad_folder_name(jpegs, tmp_path):
    archive = build_inat(jpegs, tmp_path / "src", "val", 1, folders=["00000_Animalia_Chordata_Aves"])
    cfg = dataset_cfg(
        "inat21",
        splits={"train": "val", "test": "val"},
        sizes=None,
        archives={"val": {"url": archive.as_uri(), "md5": digest(archive)}},
        **QUIET,
    )
    source = get_dataset(cfg)
    source.prepare(tmp_path / "data", progress=False)
    with pytest.raises(InputError, match="00000_Animalia_Chordata_Aves"):
        source.load(tmp_path / "data", "test")


# ---------------------------------------------------------------------------------------------- ImageNet
IMAGENET_CLASSES = {0: "n01440764", 1: "n01443537", 999: "n15075141"}


def build_imagenet(jpegs, root: Path, *, flat_val: bool = False) -> dict:
    expect = {"train": [], "val": []}
    for k, (label, wnid) in enumerate(IMAGENET_CLASSES.items()):
        for j in range(2):
            path = root / "train" / wnid / f"{wnid}_{j}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpegs[CIFAR10_CLASSES[k]][j][0])
            expect["train"].append(label)
    if flat_val:  # real validation file names and their labels (imagenet-classes' table)
        names = {"ILSVRC2012_val_00000001.JPEG": 65, "ILSVRC2012_val_00000002.JPEG": 970}
        for i, (name, label) in enumerate(sorted(names.items())):
            (root / "val").mkdir(parents=True, exist_ok=True)
            (root / "val" / name).write_bytes(jpegs["cat"][i][0])
            expect["val"].append(label)
    else:
        for label, wnid in IMAGENET_CLASSES.items():
            (root / "val" / wnid).mkdir(parents=True)
            (root / "val" / wnid / f"ILSVRC2012_val_{label:08d}.JPEG").write_bytes(jpegs["dog"][0][0])
            expect["val"].append(label)
    return expect


def test_imagenet_local_folders(jpegs, tmp_path, shared_data):
    expect = build_imagenet(jpegs, tmp_path / "ilsvrc")
    cfg = dataset_cfg("imagenet", local=str(tmp_path / "ilsvrc"), sizes={"train": 6, "val": 3})
    source = get_dataset(cfg)
    source.prepare("/nonexistent", progress=False)
    with pytest.warns(UserWarning, match="only 3 of the 1000"):
        images = source.load("/nonexistent", "train")
    assert images.labels.tolist() == expect["train"] and len(images.class_names) == 1000
    assert images.class_names[0] == "tench" and images.info["wnids"][999] == "n15075141"
    assert images[0].size == (32, 32) and images.coarse_labels is None
    with pytest.warns(UserWarning):
        assert source.load("/nonexistent", "test").labels.tolist() == expect["val"]
    assert source.hierarchy("/x") is None
    with pytest.raises(InputError, match="coarse_depth needs a hierarchy"), pytest.warns(UserWarning):
        get_dataset(OmegaConf.merge(cfg, {"coarse_depth": 3})).load("/x", "train")
    isa = shared_data / "hierarchies" / "imagenet_isa.txt"
    deep = get_dataset(OmegaConf.merge(cfg, {"hierarchy_edges": str(isa), "coarse_depth": 4}))
    with pytest.warns(UserWarning):
        images = deep.load("/x", "train")
    tree = deep.hierarchy("/x")

    def ancestor(wnid: str) -> str:  # depth 4, or the class itself where it is shallower
        path = tree.path(wnid)
        return path[min(4, len(path) - 1)]

    assert images.coarse_names == sorted({ancestor(w) for w in tree.leaves})
    for label, coarse in zip(images.labels, images.coarse_labels):
        assert images.coarse_names[coarse] == ancestor(images.info["wnids"][label])


def test_imagenet_flat_val_and_names(jpegs, tmp_path):
    expect = build_imagenet(jpegs, tmp_path, flat_val=True)
    source = get_dataset(dataset_cfg("imagenet", local=str(tmp_path), sizes=None, class_names="wnid"))
    with pytest.warns(UserWarning):
        images = source.load("/x", "test")
    assert images.labels.tolist() == expect["val"] and images.class_names[65] == "n01751748"
    (tmp_path / "val" / "holiday.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="holiday.jpg"):
        source.load("/x", "test")
    clean = get_dataset(dataset_cfg("imagenet")).cfg
    assert clean["class_names"] == "clean"
    names = get_dataset(dataset_cfg("imagenet", local=str(tmp_path), sizes=None))
    with pytest.warns(UserWarning):
        assert len(set(names.load("/x", "train").class_names)) == 1000  # duplicate names disambiguated


def test_imagenet_missing_folder_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    source = get_dataset(dataset_cfg("imagenet", local=str(tmp_path)))
    with pytest.raises(InputError, match=f"local={tmp_path} holds neither .* expected val/ or ILSVRC2012_img_val.tar"):
        source.prepare("/x")
    (tmp_path / "val").mkdir()
    (tmp_path / "train" / "n99999999").mkdir()
    (tmp_path / "train" / "n99999999" / "a.JPEG").write_bytes(b"")
    with pytest.raises(InputError, match="n99999999: not one of the 1,000"):
        source.load("/x", "train")
    with pytest.raises(InputError, match="set dataset.local"):  # default: <data root>/imagenet
        get_dataset(dataset_cfg("imagenet")).prepare(tmp_path / "none")
    with pytest.raises(InputError, match="dataset.root = .*: renamed: use dataset.local=PATH for your copy"):
        get_dataset(dataset_cfg("imagenet", root=str(tmp_path)))


# ---------------------------------------------------------------------------------------------- digits
def test_digits_split_sizes_stratification_determinism(tmp_path):
    from sklearn.datasets import load_digits

    source = get_dataset(dataset_cfg("digits"))
    source.prepare(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing to download
    train, test = source.load(tmp_path, "train"), source.load(tmp_path, "test")
    assert (len(train), len(test)) == (1257, 540)
    rows_train, rows_test = np.array(train.info["indices"]), np.array(test.info["indices"])
    assert set(rows_train).isdisjoint(rows_test) and len(set(rows_train) | set(rows_test)) == 1797
    bunch = load_digits()
    per_class = np.bincount(bunch.target, minlength=10)
    assert np.all(np.abs(np.bincount(test.labels, minlength=10) - 0.3 * per_class) <= 1)
    np.testing.assert_array_equal(train.labels, bunch.target[rows_train])
    assert train.pixels.dtype == np.uint8 and train.pixels.max() == 255 and train.pixels.min() == 0
    np.testing.assert_array_equal(train.pixels, np.rint(bunch.images[rows_train] * 255 / 16))
    assert train.class_names == [str(d) for d in range(10)] and train[0].mode == "RGB"
    again = get_dataset(dataset_cfg("digits")).load(tmp_path, "test")
    np.testing.assert_array_equal(again.pixels, test.pixels)
    np.testing.assert_array_equal(again.labels, test.labels)
    other = get_dataset(dataset_cfg("digits", split_seed=1, sizes=None)).load(tmp_path, "test")
    assert not np.array_equal(other.info["indices"], test.info["indices"])


def test_every_dataset_config_is_complete():
    for path in sorted((REPO / "conf" / "dataset").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        assert cfg.name == path.stem and cfg.offline is False and cfg.local is None and cfg.unofficial is False
        assert set(cfg.splits) == {"train", "test"}
        source = get_dataset(cfg)
        for _, entry in getattr(source, "archive_entries", lambda: [])():
            assert entry.get("md5") or entry.get("sha256")
            assert entry["url"].startswith("http") if cfg.name != "imagenet" else entry["file"].startswith("ILSVRC2012")


# ---------------------------------------------------------------- the paper experiments' data jobs
# What each paper experiment must prepare and encode (docs/paper.md §4): the datasets, and the backbones whose
# features are extracted (TURTLE's two spaces CLIP ViT-L/14 + DINOv2 ViT-g/14; DeepECT trains on pixels;
# the weak-backbone runs use EfficientNet-Lite0 and pixels).
PAPER_SPACES = {"clip_vitl14", "dinov2_vitg14"}
PAPER_DATA_JOBS = {
    "table1": ({"cifar10", "cifar100", "food101"}, PAPER_SPACES | {"pixels"}),
    "ablation_aggregation": ({"cifar10", "cifar100"}, PAPER_SPACES),
    "ablation_strategy": ({"cifar10", "cifar100"}, PAPER_SPACES),
    "robustness_k": ({"cifar100"}, PAPER_SPACES),
    "inat21_levels": ({"inat21"}, PAPER_SPACES),
    "imagenet_case_study": ({"imagenet"}, PAPER_SPACES),
    "weak_backbone": ({"cifar10", "cifar100"}, {"efficientnet_lite0", "pixels"}),
}
DOWNLOADED = {"cifar10", "cifar100", "food101", "inat21"}  # imagenet: a local copy, never downloaded


def dry_run_jobs(experiment: str, proc) -> list[dict]:
    """The jobs Snakemake would run for ``experiment`` (its ``--summary`` table: every output of these jobs is
    planned), each with what the plan gives its rule: rule, wildcards, input, output, command."""
    from l2h.stages.plan import Plan

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split("\t") for line in proc.stdout.splitlines() if "\t" in line]
    planned = {row[0] for row in rows[1:] if row[-1] == "update pending"}
    plan = Plan(REPO / "conf", experiment=experiment)
    jobs = []
    for stage, fields in plan.jobs():
        inputs = plan.inputs(stage, fields)
        outputs = set(plan.outputs(stage, fields))
        assert outputs <= planned, (stage, fields, sorted(outputs - planned))
        jobs.append(
            {
                "rule": stage,
                "wildcards": {key: str(value) for key, value in fields.items()},
                "input": {p for v in inputs.values() for p in ([v] if isinstance(v, str) else v)},
                "output": outputs,
                "command": plan.command(stage, fields, inputs),
            }
        )
    assert len({j["rule"] for j in jobs}) > 1 and sum(planned_jobs(proc.stdout).values()) == len(jobs)
    return jobs


@pytest.mark.slow  # a Snakemake dry run per paper experiment: 5-20 s each
@pytest.mark.parametrize("experiment", sorted(PAPER_DATA_JOBS))
def test_paper_experiment_dry_run_prepares_its_datasets_and_backbones(experiment, dry_run):
    datasets, backbones = PAPER_DATA_JOBS[experiment]
    jobs = dry_run_jobs(experiment, dry_run(experiment)[1])
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)

    prepare = {job["wildcards"]["dataset"]: job for job in by_rule["prepare_data"]}
    assert sorted(prepare) == sorted(datasets) and len(by_rule["prepare_data"]) == len(datasets)
    for name, job in prepare.items():  # the download + verify + extract stage of that dataset config
        assert "-m l2h.stages.prepare_data" in job["command"] and f"dataset={name}" in job["command"]
        cfg = OmegaConf.load(REPO / "conf" / "dataset" / f"{name}.yaml")
        urls = [entry.url for entry in (cfg.get("archives") or {}).values() if entry.get("url")]  # ImageNet: none
        assert (name in DOWNLOADED) == bool(urls) and all(url.startswith("http") for url in urls)

    weights = {job["wildcards"]["backbone"]: job for job in by_rule["prefetch_weights"]}
    assert sorted(weights) == sorted(backbones)
    extract = {(job["wildcards"]["dataset"], job["wildcards"]["backbone"]): job for job in by_rule["extract_features"]}
    assert sorted(extract) == sorted(itertools.product(datasets, backbones))
    for (name, backbone), job in extract.items():  # after the dataset's and the backbone's jobs
        assert job["input"] & prepare[name]["output"] and job["input"] & weights[backbone]["output"]
        assert {f"results/features/{name}/{backbone}/{split}.npy" for split in ("train", "test")} <= job["output"]
        assert f"backbone={backbone}" in job["command"]
    features = set().union(*(job["output"] for job in extract.values()))
    consumers = by_rule.get("train_clusterer", []) + by_rule.get("run_baseline", [])
    assert consumers and all(job["input"] & features for job in consumers)  # ... → clusterers / baselines
    assert len(by_rule["report"]) == 1
