"""TreeVAE baseline: loss terms against hand computations, views, growing and pruning, the tree it writes,
determinism and checkpoint resumption (tiny models on CPU), and a demo-scale run on digits."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.cluster.hierarchy import is_monotonic, is_valid_linkage
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from l2h.baselines import run_baseline
from l2h.baselines.treevae import augment as aug
from l2h.baselines.treevae import infer_image_shape, losses, tree_linkage, treevae
from l2h.baselines.treevae import train as train_module
from l2h.baselines.treevae.model import ModelConfig, SmallTree, TreeVAE
from l2h.clusterers._torch import Checkpointer
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.metrics import evaluate

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "baseline" / "treevae.yaml"
TINY = dict(
    encoder="mlp",
    activation="sigmoid",
    latent_dim=[4, 4, 4],
    mlp_layers=[32, 32, 32],
    batch_size=32,
    augment=False,
    device="cpu",
    progress=False,
)


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def three_groups(n_per: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8×8 grey images of three patterns (left half, top half, both diagonals) plus noise, flat in [0, 1]."""
    rng = np.random.default_rng(seed)
    proto = np.zeros((3, 8, 8), np.float32)
    proto[0, :, :4] = proto[1, :4, :] = 1
    proto[2][np.eye(8, dtype=bool) | np.eye(8, dtype=bool)[::-1]] = 1
    y = np.repeat(np.arange(3), n_per)
    x = np.clip(proto[y] + 0.15 * rng.standard_normal((y.size, 8, 8)), 0, 1)
    return x.reshape(y.size, 64).astype(np.float32), y


# ---------------------------------------------------------------- loss terms by hand
def test_posterior_and_gaussian_kl_by_hand():
    mu, var = losses.posterior(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0]))
    # precisions 1 and 1/3: variance 1 / (4/3) = 0.75, mean (0·1 + 2·(1/3)) · 0.75 = 0.5
    assert mu.item() == pytest.approx(0.5, abs=1e-6) and var.item() == pytest.approx(0.75, abs=1e-6)
    # KL(N(1, 1) ‖ N(0, 1)) = ½ (1 + 1 − 1) = 0.5; KL(N(1, 0.5) ‖ N(0, 2)) = ½ (ln 4 + 1.5/2 − 1)
    kl = losses.kl_gaussian(
        torch.tensor([[1.0], [1.0]]), torch.tensor([[1.0], [0.5]]), torch.zeros(2, 1), torch.tensor([[1.0], [2.0]])
    )
    assert kl.tolist() == pytest.approx([0.5, 0.5 * (math.log(4) + 0.75 - 1)], abs=1e-6)
    # sums over dimensions: two identical dimensions double it
    two = losses.kl_gaussian(torch.ones(1, 2), torch.ones(1, 2), torch.zeros(1, 2), torch.ones(1, 2))
    assert two.item() == pytest.approx(1.0, abs=1e-6)


def test_decision_kl_by_hand():
    kl = losses.kl_decision(torch.tensor([0.5, 0.9, 0.2]), torch.tensor([0.5, 0.5, 0.6]))
    expected = [0.0, 0.9 * math.log(1.8) + 0.1 * math.log(0.2), 0.2 * math.log(0.2 / 0.6) + 0.8 * math.log(0.8 / 0.4)]
    assert kl.tolist() == pytest.approx(expected, abs=1e-5)


def test_leaf_weighted_reconstruction_by_hand():
    x = torch.tensor([[0.0, 1.0]])
    recons = [torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 1.0]])]
    probs = [torch.tensor([0.25]), torch.tensor([0.75])]
    mse = losses.reconstruction(x, recons, probs, "mse")
    assert mse.item() == pytest.approx(0.25 * (0.25 + 0.25) + 0.75 * 0.0625, abs=1e-6)
    bce = losses.reconstruction(x, recons, probs, "sigmoid")
    assert bce.item() == pytest.approx(0.25 * 2 * math.log(2) + 0.75 * -math.log(0.75), abs=1e-5)


def _info_nce_by_hand(vectors: list[list[float]], temperature: float) -> list[float]:
    """Row i's loss: −log(exp(s(i, partner)/t) / Σ_{j≠i} exp(s(i, j)/t)), partner = the other view."""
    unit = [np.asarray(v) / np.linalg.norm(v) for v in vectors]
    half = len(unit) // 2
    out = []
    for i, u in enumerate(unit):
        partner = unit[(i + half) % len(unit)]
        denominator = sum(math.exp(float(u @ w) / temperature) for j, w in enumerate(unit) if j != i)
        out.append(-math.log(math.exp(float(u @ partner) / temperature) / denominator))
    return out


def test_info_nce_by_hand():
    q = [0.9, 0.2, 0.7, 0.4]  # image 1 views: 0.9, 0.7; image 2: 0.2, 0.4
    weight = [1.0, 0.5, 0.25, 0.0]
    rows = _info_nce_by_hand([[p, 1 - p] for p in q], 1.0)
    expected = sum(w * r for w, r in zip(weight, rows)) / sum(weight)
    got = losses.info_nce_router(torch.tensor(q), torch.tensor(weight))
    assert got.item() == pytest.approx(expected, abs=1e-5)
    # consistent decisions: the doctest value, ln(1 + 2 e^{s−1}) with s = 2·0.9·0.1/0.82
    s = 2 * 0.9 * 0.1 / 0.82
    consistent = losses.info_nce_router(torch.tensor([0.9, 0.1, 0.9, 0.1]), torch.ones(4))
    assert consistent.item() == pytest.approx(math.log(1 + 2 * math.exp(s - 1)), abs=1e-5)
    emb1 = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.5, 1.0]]
    emb2 = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]  # views identical: ln(1 + 2e^{−2}) per row
    got = losses.info_nce_embeddings([torch.tensor(emb1), torch.tensor(emb2)])
    expected = (np.mean(_info_nce_by_hand(emb1, 0.5)) + math.log(1 + 2 * math.exp(-2))) / 2
    assert got.item() == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- views
def test_views_are_valid_and_follow_the_seed():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    full = torch.tensor([[0.0, 0.0, 8.0, 8.0]]).repeat(6, 1)
    no_flip, flip = torch.zeros(6, dtype=torch.bool), torch.ones(6, dtype=torch.bool)
    torch.testing.assert_close(aug.resized_crop(x, full, no_flip), x)  # the whole image: unchanged
    torch.testing.assert_close(aug.resized_crop(x, full, flip), x.flip(-1))  # mirrored
    ramp = (torch.arange(8.0) / 7).expand(1, 3, 8, 8)
    half = torch.tensor([[0.0, 4.0, 8.0, 4.0]])  # right half, stretched ×2
    out = aug.resized_crop(ramp, half, no_flip[:1])

    def cubic(t, a=-0.75):  # Keys' kernel, as grid_sample's bicubic
        t = abs(t)
        return (a + 2) * t**3 - (a + 3) * t**2 + 1 if t <= 1 else a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a

    expected = []
    for c in range(5):  # away from the border (clamped neighbours)
        pos = 4 + (c + 0.5) / 2 - 0.5  # output column c samples input x = pos
        expected.append(sum(cubic(pos - k) * k / 7 for k in range(math.floor(pos) - 1, math.floor(pos) + 3)))
    torch.testing.assert_close(out[0, :, :, :5], torch.tensor(expected).expand(3, 8, 5))
    torch.testing.assert_close(aug.hsv_to_rgb(aug.rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    boxes = aug.crop_boxes(1000, 32, 32, torch.Generator().manual_seed(1), "cpu")
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    assert ((h * w) / 1024).min() >= 0.2 - 0.05 and ((h * w) / 1024).max() <= 1.0
    a = aug.augment(x, torch.Generator().manual_seed(3))
    b = aug.augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x) and 0 <= a.min() and a.max() <= 1


# ---------------------------------------------------------------- tree structure
def test_tree_linkage_undoes_splits_latest_first_and_skips_pruned_nodes():
    # root 0 → (1, 2); 2 split at step 1 → (3, 4); 1 split at step 2 → (5, 6); 6 pruned → 1 keeps only 5
    kids = {0: [1, 2], 1: [5], 2: [3, 4], 3: [], 4: [], 5: []}
    steps = {0: 0, 2: 1}
    leaves = [5, 3, 4]
    z = tree_linkage(kids, steps, leaves)
    assert is_valid_linkage(z) and is_monotonic(z)
    assert z[:, :2].tolist() == [[1, 2], [0, 3]] and z[:, 3].tolist() == [2, 3]
    tree = Hierarchy.from_linkage(z)
    assert tree.cut(2).tolist() == [0, 1, 1]  # undoing the root split only


def test_prune_and_rebuild_from_structure(one_thread, monkeypatch):
    x, _ = three_groups(20)
    cfg = ModelConfig((1, 8, 8), "mlp", "sigmoid", (4, 4, 4), (32, 32, 32))
    recipe = train_module.Recipe(
        k=4,
        num_epochs=1,
        num_epochs_smalltree=1,
        num_epochs_intermediate_fulltrain=0,
        num_epochs_finetuning=0,
        batch_size=8,
        lr=1e-3,
        weight_decay=0.0,
        decay_lr=0.1,
        decay_stepsize=100,
        decay_kl=0.01,
        kl_start=0.01,
        grow=True,
        prune=True,
        augment=False,
        aug_decisions_weight=0.0,
        aug_strength=0.5,
        max_depth=2,
    )
    trainer = train_module.Trainer(
        torch.from_numpy(x.reshape(-1, 1, 8, 8)),
        cfg,
        recipe,
        seed=0,
        progress=False,
        checkpointer=Checkpointer(None, "t", [], {}, every=1, total=1),
        checkpoint_every=1,
    )
    model = trainer.model
    assert model.attach(2, SmallTree(cfg, 1), 1) == (3, 4)
    with torch.no_grad():  # node 2 sends every point left: leaf 4 is empty
        model.nodes["2"].router_q.layers[-1].bias.fill_(50.0)
    probs = trainer.leaf_probs(model.leaves_bfs())
    assert probs.shape == (60, 3) and np.allclose(probs.sum(1), 1) and probs[:, 2].max() < 1e-6

    def assigned(leaves):  # 59 points on leaf 1, 1 on leaf 3, none on 4
        winner = {1: np.arange(60) < 59, 3: np.arange(60) == 59, 4: np.zeros(60, bool)}
        return np.stack([winner[leaf].astype(float) for leaf in leaves], 1)

    monkeypatch.setattr(trainer, "leaf_probs", assigned)
    trainer._prune()  # 1 point ≥ 1 % of 60 stays; 0 points go
    monkeypatch.undo()
    assert [entry["leaf"] for entry in trainer.state["pruned"]] == [4]
    assert model.kids == {0: [1, 2], 1: [], 2: [3], 3: []} and model.split_step == {0: 0}
    assert model.nodes["2"].router is None and "4" not in model.nodes and model.leaves_dfs() == [1, 3]
    probs = trainer.leaf_probs([1, 3])
    assert np.allclose(probs.sum(1), 1)  # node 2's mass passes through to leaf 3
    rebuilt = TreeVAE.from_structure(cfg, model.structure())
    rebuilt.load_state_dict(model.state_dict())  # same modules in the same places
    assert rebuilt.kids == model.kids and rebuilt.depth == model.depth
    assert [n for n, _ in rebuilt.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_choose_leaf_rules():
    probs = np.zeros((300, 3))
    probs[:150, 0], probs[150:260, 1], probs[260:, 2] = 1, 1, 1
    kw = dict(batch_size=32, max_depth=3)
    assert train_module.choose_leaf(probs, [1, 1, 1], k=5, **kw) == (0, 3, "")
    assert train_module.choose_leaf(probs, [1, 1, 1], k=3, **kw)[:2] == (None, 3)  # k effective leaves
    assert train_module.choose_leaf(probs, [3, 1, 1], k=5, **kw) == (None, 3, "the largest leaf is at max_depth")
    assert train_module.choose_leaf(probs, [1, 1, 1], k=5, batch_size=200, max_depth=3)[0] is None
    tiny = probs.copy()
    tiny[:2, 0], tiny[:2, 2] = 0, 1  # leaf 2: 42 points but 42/300 ≥ 1 %: effective
    assert train_module.choose_leaf(tiny, [1, 1, 1], k=5, **kw)[1] == 3
    tiny[260:, 2], tiny[260:, 1] = 0, 1  # leaf 2: 2 points, < 1 % of the mass
    assert train_module.choose_leaf(tiny, [1, 1, 1], k=5, **kw)[:2] == (1, 2)


# ---------------------------------------------------------------- inputs and config
def test_image_shapes_options_and_lazy_torch():
    assert infer_image_shape(3072) == (32, 32, 3) and infer_image_shape(64) == (8, 8, 1)
    assert infer_image_shape(192) == (8, 8, 3) and infer_image_shape(12, [2, 2, 3]) == (2, 2, 3)
    with pytest.raises(InputError, match="cannot infer the image shape"):
        infer_image_shape(50)
    with pytest.raises(InputError, match="image_shape"):
        infer_image_shape(64, [4, 4, 3])
    x, _ = three_groups(10)
    with pytest.raises(InputError, match="mlp_layers\\[0\\] must be that"):
        treevae(x, k=3, **{**TINY, "encoder": "cnn2", "image_shape": None})
    with pytest.raises(InputError, match="one entry per level"):
        treevae(x, k=3, **{**TINY, "latent_dim": [4, 4]})
    with pytest.raises(InputError, match="augmentation_method"):
        treevae(x, k=3, **{**TINY, "augment": True, "augmentation_method": ["simple"]})
    cfg = OmegaConf.load(CONF)
    cfg.num_epochs_smalltre = 3
    with pytest.raises(InputError, match="num_epochs_smalltre"):
        run_baseline(cfg, x, k=3, seed=0)
    code = "import sys, l2h.baselines; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_experiments_plan_treevae_runs():
    from l2h.stages.plan import Plan

    table1 = Plan(REPO / "conf", experiment="table1")
    runs = {(r.dataset, r.backbone, r.k) for r in table1.runs if r.kind == "baseline" and r.method == "treevae"}
    assert runs == {("cifar10", "pixels", 10), ("cifar100", "pixels", 20), ("food101", "pixels", 101)}
    demo = Plan(REPO / "conf", experiment="demo_treevae")
    assert [(r.kind, r.method, r.dataset, r.backbone, r.k) for r in demo.runs] == [
        ("baseline", "treevae", "digits", "pixels", 10)
    ]
    cfg = demo.tracked(
        "run_baseline", {"dataset": "digits", "backbone": "pixels", "baseline": "treevae", "k": 10, "seed": 0}
    )["baseline"]
    assert (cfg["encoder"], cfg["augment"], cfg["num_epochs"], cfg["mlp_layers"]) == ("mlp", False, 40, [128] * 6)


# ---------------------------------------------------------------- growing, pruning, determinism, resumption
def test_grows_the_three_groups(one_thread, tmp_path):
    x, y = three_groups()
    result = treevae(x, k=3, seed=0, num_epochs=10, num_epochs_smalltree=10, **TINY)
    metrics = evaluate(result.hierarchy, result.leaves, y, clusters=result.clusters)
    assert metrics["acc"] >= 0.95 and metrics["dp"] >= 0.95
    info = result.info
    assert info["n_leaves"] == result.hierarchy.k == 3 and info["leaf_sizes"] == [100, 100, 100]
    assert [g["step"] for g in info["growth"]] == [1] and info["stop_reason"] == "3 effective leaves ≥ k"
    assert info["max_depth"] == 2 and info["image_shape"] == [8, 8, 1] and "train_time_s" in result.run_info
    np.testing.assert_array_equal(result.clusters, result.leaves)
    z = result.hierarchy.to_linkage()
    assert is_valid_linkage(z) and is_monotonic(z)
    result.write(tmp_path)
    assert Hierarchy.load(tmp_path / "tree.json").k == 3


def _files(result, folder: Path, probs: list[np.ndarray]) -> dict[str, bytes]:
    """The written files and the bytes of the model's leaf probabilities (any change in training shows)."""
    result.write(folder)
    return {"P(leaf | x)": probs.pop().tobytes(), **{p.name: p.read_bytes() for p in sorted(folder.iterdir())}}


@pytest.mark.parametrize("kill_at", [4, 15, 21])  # during the initial tree / the split / the finetuning
def test_same_seed_same_files_and_byte_identical_resume(one_thread, tmp_path, monkeypatch, kill_at):
    x, _ = three_groups(40)
    kw = dict(k=3, seed=0, num_epochs=10, num_epochs_smalltree=10, num_epochs_finetuning=1, **TINY)
    probs, assign = [], train_module.assign

    def keep_probs(*args):
        leaves, p = assign(*args)
        probs.append(p)
        return leaves, p

    monkeypatch.setattr(train_module, "assign", keep_probs)
    reference = _files(treevae(x, **kw), tmp_path / "reference", probs)
    assert _files(treevae(x, **kw), tmp_path / "again", probs) == reference

    calls, real = [], train_module.run_epoch

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == kill_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        treevae(x, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=1, **kw)
    monkeypatch.setattr(train_module, "run_epoch", real)
    resumed = treevae(x, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=1, **kw)
    assert resumed.run_info["resumed_from"] is not None
    assert resumed.run_info["epochs_run"] == 10 + 10 + 1 - (kill_at - 1)
    assert _files(resumed, tmp_path / "resumed", probs) == reference
    finished = treevae(x, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=1, **kw)
    assert finished.run_info["epochs_run"] == 0 and _files(finished, tmp_path / "finished", probs) == reference


def test_contrastive_views_with_the_cnn2_encoder(one_thread):
    rng = np.random.default_rng(0)
    x = rng.random((24, 8 * 8 * 3), dtype=np.float32)
    result = treevae(
        x,
        k=2,
        seed=0,
        encoder="cnn2",
        latent_dim=[4, 4],
        mlp_layers=[1024, 16],
        num_epochs=1,
        num_epochs_smalltree=1,
        batch_size=16,
        device="cpu",
        progress=False,
        prune=False,
    )
    assert result.info["augmentation_method"] == ["InfoNCE", "instancewise_full"]
    assert result.hierarchy.k == 2 and result.leaves.shape == (24,)


@pytest.mark.slow
def test_digits_demo_scale_beats_chance(one_thread):
    x, y = load_digits(return_X_y=True)
    _, x, _, y = train_test_split((x / 16).astype(np.float32), y, test_size=540, stratify=y, random_state=0)
    cfg = OmegaConf.load(CONF)  # the demo-scale setting of the config's notes (demo_treevae experiment)
    for key, value in dict(
        encoder="mlp",
        activation="sigmoid",
        latent_dim=[8] * 6,
        mlp_layers=[128] * 6,
        augment=False,
        batch_size=64,
        num_epochs=40,
        num_epochs_smalltree=20,
        device="cpu",
        progress=False,
    ).items():
        cfg[key] = value
    result = run_baseline(cfg, x, k=10, seed=0)
    metrics = evaluate(result.hierarchy, result.leaves, y, clusters=result.clusters)
    assert metrics["acc"] >= 0.4 and metrics["nmi"] >= 0.4  # chance: ACC ≈ 0.13, NMI ≈ 0.03
    assert 2 <= result.hierarchy.k <= 10 and result.info["image_shape"] == [8, 8, 1]
    z = result.hierarchy.to_linkage()
    assert is_valid_linkage(z) and is_monotonic(z)
    assert sum(result.info["leaf_sizes"]) == 540 and min(result.info["leaf_sizes"]) >= 0.01 * 540
