"""Flat clusterers (k-means, TURTLE, TEMI): the logits contract, determinism, persistence, checkpoints, bad
input. Accuracy against k-means on real features is in test_clusterer_accuracy.py."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from scipy.special import log_softmax, softmax

from l2h import schema
from l2h.clusterers import Clusterer, build_clusterer, load_clusterer
from l2h.clusterers import _torch as torch_helpers
from l2h.clusterers import turtle as turtle_module
from l2h.errors import InputError

CONF = Path(__file__).resolve().parents[1] / "conf" / "clusterer"

# small, quick settings (the recipe's structure, few iterations)
QUICK = {
    "kmeans": {"n_init": 2},
    "turtle": {"outer_steps": 30, "progress": False},
    "temi": {"epochs": 4, "heads": 3, "batch_size": 64, "warmup_epochs": 1, "progress": False},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits: the 64 pixel grey values in [0, 1]; first 600 points train, next 300 test."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x[:600], y[:600], x[600:900], y[600:900]


def quick(name, **overrides):
    cfg = OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), QUICK[name], overrides)
    return build_clusterer(cfg)


def test_config_files_build_every_registered_clusterer():
    files = sorted(CONF.glob("*.yaml"))
    assert {f.stem for f in files} == set(schema.kinds("clusterer"))
    for f in files:
        cfg = OmegaConf.load(f)
        assert cfg.name == cfg.kind == f.stem
        model = build_clusterer(cfg)
        assert type(model) is schema.implementation("clusterer", f.stem) and model.name == f.stem
        assert model.k == cfg.k and model.seed == cfg.seed
        # every key of the file is a constructor parameter, reported back by params()
        assert set(model.params()) == set(cfg) - {"name", "kind"}


def test_official_defaults_in_config():
    turtle = OmegaConf.load(CONF / "turtle.yaml")
    assert (
        turtle.outer_steps,
        turtle.inner_steps,
        turtle.batch_size,
        turtle.inner_lr,
        turtle.outer_lr,
        turtle.gamma,
        turtle.seed,
        turtle.warm_start,
    ) == (6000, 10, 10000, 1e-3, 1e-3, 10.0, 42, False)
    temi = OmegaConf.load(CONF / "temi.yaml")
    assert (
        temi.heads,
        temi.knn,
        temi.hidden_dim,
        temi.bottleneck_dim,
        temi.beta,
        temi.epochs,
        temi.batch_size,
        temi.lr,
        temi.warmup_epochs,
        temi.weight_decay,
        temi.max_momentum_teacher,
        temi.student_temp,
        temi.teacher_temp,
    ) == (16, 50, 512, 256, 0.6, 100, 1024, 1e-4, 20, 1e-4, 0.996, 0.1, 0.1)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_logits_contract_and_determinism(name, digits):
    xtr, _, xte, _ = digits
    a = quick(name, k=10).fit([xtr])
    b = quick(name, k=10).fit([xtr])
    la, lb = a.logits([xte]), b.logits([xte])
    assert la.dtype == np.float32 and la.shape == (len(xte), 10)
    assert np.isfinite(la).all()
    np.testing.assert_array_equal(la, lb)  # same seed, CPU → identical
    np.testing.assert_array_equal(a.predict([xte]), la.argmax(1))
    other = quick(name, k=10, seed=a.seed + 1).fit([xtr]).logits([xte])
    assert not np.array_equal(la, other)
    info = a.info()
    train_argmax = a.logits([xtr]).argmax(1)
    assert info["empty_clusters"] == 10 - np.unique(train_argmax).size
    assert info["cluster_sizes"] == np.bincount(train_argmax, minlength=10).tolist()
    assert info["n_train"] == len(xtr) and info["dims"] == [64]


@pytest.mark.parametrize("name", sorted(QUICK))
def test_save_load_round_trip(name, digits, tmp_path):
    xtr, _, xte, _ = digits
    model = quick(name, k=7).fit([xtr])
    path = tmp_path / "model.npz"
    model.save(path)
    for loaded in (load_clusterer(path), type(model).load(path)):
        assert type(loaded) is type(model)
        assert result_params(loaded) == result_params(model)
        assert loaded.info() == model.info()
        np.testing.assert_array_equal(loaded.logits([xte]), model.logits([xte]))
    wrong = next(schema.implementation("clusterer", kind) for kind in schema.kinds("clusterer") if kind != model.name)
    with pytest.raises(InputError, match="cannot load it as"):
        wrong.load(path)


def result_params(model):
    return {key: val for key, val in model.params().items() if key not in model.runtime_keys}


def test_load_rejects_files_that_are_not_models(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(InputError, match="no header"):
        Clusterer.load(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="junk.npz"):
        Clusterer.load(tmp_path / "junk.npz")


def test_kmeans_logits_are_scaled_negative_squared_distances(digits):
    xtr, _, xte, _ = digits
    model = quick("kmeans", k=10, normalize=False).fit([xtr])
    info = model.info()
    centroids = model.centroids_
    d2 = ((xte[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1)
    np.testing.assert_allclose(model.logits([xte]), -d2 / info["temperature"], rtol=1e-4, atol=1e-4)
    # auto temperature = mean squared distance of the train points to their nearest centroid
    assert info["temperature"] == pytest.approx(info["inertia"] / len(xtr))
    # ... which makes the logits independent of the feature scale
    scaled = quick("kmeans", k=10, normalize=False).fit([xtr * 7.0])
    np.testing.assert_allclose(scaled.logits([xte * 7.0]), model.logits([xte]), rtol=1e-3, atol=1e-3)
    fixed = quick("kmeans", k=10, normalize=False, temperature=2.0).fit([xtr])
    np.testing.assert_allclose(fixed.logits([xte]) * 2.0, -d2, rtol=1e-4, atol=1e-3)


def test_kmeans_concatenates_normalised_spaces(digits):
    xtr, _, xte, _ = digits
    two = quick("kmeans", k=5).fit([xtr, xtr[:, :10] * 100.0])
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    one = quick("kmeans", k=5).fit([np.hstack([norm(xtr), norm(xtr[:, :10])])])
    np.testing.assert_allclose(
        two.logits([xte, xte[:, :10] * 100.0]),
        one.logits([np.hstack([norm(xte), norm(xte[:, :10])])]),
        rtol=1e-4,
        atol=1e-4,
    )


def test_empty_clusters_are_reported():
    """Three distinct points and k=5: k-means has duplicate centroids, two clusters get no point."""
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=np.float32), 10, axis=0)
    with pytest.warns(Warning):  # scikit-learn: fewer distinct clusters than n_clusters
        model = quick("kmeans", k=5, normalize=False).fit([x])
    info = model.info()
    assert info["empty_clusters"] == 2
    assert sorted(info["cluster_sizes"]) == [0, 0, 10, 10, 10]


def test_turtle_logits_are_log_mean_of_space_softmaxes(digits):
    xtr, _, xte, _ = digits
    spaces_tr, spaces_te = [xtr, xtr[:, ::2]], [xte, xte[:, ::2]]
    model = quick("turtle", k=6).fit(spaces_tr)
    per_space = model.space_logits(spaces_te)
    assert [s.shape for s in per_space] == [(len(xte), 6)] * 2 and all(s.dtype == np.float32 for s in per_space)
    expected = np.log(np.mean([softmax(s.astype(np.float64), axis=1) for s in per_space], axis=0))
    logits = model.logits(spaces_te)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(softmax(logits, axis=1).sum(1), 1.0, rtol=1e-5)  # already normalised
    np.testing.assert_allclose(log_softmax(logits, axis=1), logits, atol=1e-5)
    with pytest.raises(InputError, match="dimensions"):
        model.logits([xte])


def reference_turtle(spaces, *, k, steps, batch, seed, warm_start, inner_steps=10, lr=1e-3, gamma=10.0):
    """The official run_turtle.py loop written literally with autograd, nn.Linear, weight norm and
    torch.optim.Adam, drawing its random numbers in TurtleClusterer's order; returns the effective
    task-encoder weights and biases."""
    gen = torch.Generator().manual_seed(seed)
    zs = [torch.from_numpy(x) for x in spaces]

    def linear(d):
        layer = torch.nn.Linear(d, k)
        w, b = torch_helpers.linear_init(k, d, gen)
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        return layer

    def new_inner():
        heads = [linear(z.shape[1]) for z in zs]
        return heads, torch.optim.Adam([p for h in heads for p in h.parameters()], lr=lr)

    encoder = [torch.nn.utils.parametrizations.weight_norm(linear(z.shape[1])) for z in zs]
    outer = torch.optim.Adam([p for e in encoder for p in e.parameters()], lr=lr)
    heads, inner = new_inner()
    for _ in range(steps):
        idx = torch.randperm(len(zs[0]), generator=gen)[:batch]
        zb = [z[idx] for z in zs]
        probs = [torch.softmax(e(z), dim=1) for e, z in zip(encoder, zb)]
        labels = torch.stack(probs).mean(0)
        if not warm_start:
            heads, inner = new_inner()
        for _ in range(inner_steps):
            inner.zero_grad()
            sum(F.cross_entropy(h(z), labels.detach()) for h, z in zip(heads, zb)).backward()
            inner.step()
        outer.zero_grad()
        pred = sum(F.cross_entropy(h(z).detach(), labels) for h, z in zip(heads, zb))
        entr = sum(torch.special.entr(p.mean(0)).sum() for p in probs)
        (pred - gamma * entr).backward()
        outer.step()
    return [e.weight.detach().numpy() for e in encoder], [e.bias.detach().numpy() for e in encoder]


@pytest.mark.parametrize("products", ["compiled", "torch"])
@pytest.mark.parametrize("warm_start", [False, True])
def test_turtle_follows_the_official_training_loop(digits, warm_start, products):
    """The autograd-free loops (closed-form gradients, in-place Adam) reproduce the official loop step for
    step, on two spaces with a batch smaller than N, with the compiled products and with torch's matmul."""
    xtr = digits[0]
    spaces = [xtr, np.ascontiguousarray(xtr[:, ::3] * 5.0)]
    with turtle_module.torch_products() if products == "torch" else contextlib.nullcontext():
        model = quick("turtle", k=6, outer_steps=15, batch_size=250, warm_start=warm_start).fit(spaces)
    assert model.run_info_["products"] == (products if products == "torch" else turtle_module.compiled_path())
    weights, biases = reference_turtle(spaces, k=6, steps=15, batch=250, seed=model.seed, warm_start=warm_start)
    for got, want in zip(model.weights_ + model.biases_, weights + biases):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_saved_info_has_no_wall_clock_times(digits):
    xtr = digits[0]
    for name in sorted(QUICK):
        model = quick(name, k=5).fit([xtr])
        assert not [key for key in model.info() if key.endswith("_time_s")]
        assert any(key.endswith("_time_s") for key in model.run_info_)


def test_turtle_warm_start_changes_the_trajectory(digits):
    xtr, _, xte, _ = digits
    cold = quick("turtle", k=5).fit([xtr]).logits([xte])
    warm = quick("turtle", k=5, warm_start=True).fit([xtr]).logits([xte])
    assert not np.array_equal(cold, warm)


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("name, length, every", [("turtle", "outer_steps", 10), ("temi", "epochs", 2)])
def test_checkpoint_resume_reproduces_an_uninterrupted_run(name, length, every, digits, tmp_path, monkeypatch):
    xtr, _, xte, _ = digits
    reference = quick(name, k=5).fit([xtr])
    total = reference.params()[length]

    # crash right after the first checkpoint has been written
    original_done = torch_helpers.Checkpointer.done

    def done_then_crash(self, units, snapshot):
        original_done(self, units, snapshot)
        if self.path.is_file():
            raise _Crash

    monkeypatch.setattr(torch_helpers.Checkpointer, "done", done_then_crash)
    with pytest.raises(_Crash):
        quick(name, k=5, checkpoint_dir=str(tmp_path), checkpoint_every=every).fit([xtr])
    monkeypatch.setattr(torch_helpers.Checkpointer, "done", original_done)
    assert len(list(tmp_path.glob("*.ckpt.pt"))) == 1

    resumed = quick(name, k=5, checkpoint_dir=str(tmp_path), checkpoint_every=every).fit([xtr])
    run = resumed.run_info_
    key = "resumed_from_step" if name == "turtle" else "resumed_from_epoch"
    assert run[key] == every
    assert run["steps_run" if name == "turtle" else "epochs_run"] == total - every
    np.testing.assert_array_equal(resumed.logits([xte]), reference.logits([xte]))
    assert resumed.info() == reference.info()  # the saved fit info does not depend on the resumption

    # a checkpoint of other data is not resumed (warned, training starts afresh)
    with pytest.warns(UserWarning, match="other data or parameters"):
        fresh = quick(name, k=5, checkpoint_dir=str(tmp_path), checkpoint_every=every).fit([xtr[:500]])
    assert fresh.run_info_[key] is None


def test_turtle_checkpoint_extends_a_shorter_run(digits, tmp_path):
    xtr, _, xte, _ = digits
    quick("turtle", k=5, outer_steps=20, checkpoint_dir=str(tmp_path)).fit([xtr])
    longer = quick("turtle", k=5, outer_steps=30, checkpoint_dir=str(tmp_path)).fit([xtr])
    assert longer.run_info_["resumed_from_step"] == 20
    np.testing.assert_array_equal(longer.logits([xte]), quick("turtle", k=5).fit([xtr]).logits([xte]))
    # a checkpoint beyond the run's end is not used (warned, training starts afresh)
    with pytest.warns(UserWarning, match="beyond this run"):
        shorter = quick("turtle", k=5, outer_steps=10, checkpoint_dir=str(tmp_path)).fit([xtr])
    assert shorter.run_info_["resumed_from_step"] is None
    np.testing.assert_array_equal(shorter.logits([xte]), quick("turtle", k=5, outer_steps=10).fit([xtr]).logits([xte]))


@pytest.mark.parametrize("name", ["turtle", "temi"])
def test_runtime_keys_do_not_change_the_saved_model(name, digits, tmp_path):
    xtr = digits[0]
    quick(name, k=5).fit([xtr]).save(tmp_path / "plain.npz")
    quick(name, k=5, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=1, progress=True).fit([xtr]).save(
        tmp_path / "knobs.npz"
    )
    assert (tmp_path / "plain.npz").read_bytes() == (tmp_path / "knobs.npz").read_bytes()


# A TURTLE fit in its own process: features from <dir>/train.npy and test.npy, the config as JSON in argv[2];
# writes model.npz and logits.npy to argv[3].
FIT_SCRIPT = """
import json, sys
import numpy as np, torch
from l2h.clusterers import build_clusterer
torch.set_num_threads(1)
data, cfg, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
model = build_clusterer(cfg).fit([np.load(f"{data}/train.npy")])
model.save(f"{out}/model.npz")
np.save(f"{out}/logits.npy", model.logits([np.load(f"{data}/test.npy")]))
print(json.dumps(model.run_info_))
"""


def test_turtle_killed_mid_run_resumes_to_the_same_bytes(digits, tmp_path):
    """SIGKILL a TURTLE fit once a checkpoint exists, run it again: it resumes from the checkpoint and writes
    the same model.npz and logits.npy bytes as a run that was never interrupted (and never checkpointed)."""
    import json

    xtr, _, xte, _ = digits
    np.save(tmp_path / "train.npy", xtr)
    np.save(tmp_path / "test.npy", xte)
    cfg = {"kind": "turtle", "k": 5, "outer_steps": 800, "progress": False}
    ckpt_cfg = {**cfg, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 20}

    def fit(config, out):
        (tmp_path / out).mkdir()
        return [sys.executable, "-c", FIT_SCRIPT, str(tmp_path), json.dumps(config), str(tmp_path / out)]

    killed = subprocess.Popen(fit(ckpt_cfg, "killed"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (tmp_path / "ckpt" / "turtle.ckpt.pt").is_file():
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "model.npz").exists()

    resumed = subprocess.run(fit(ckpt_cfg, "resumed"), capture_output=True, text=True, check=True)
    run_info = json.loads(resumed.stdout.splitlines()[-1])
    assert 20 <= run_info["resumed_from_step"] < 800 and run_info["resumed_from_step"] % 20 == 0
    subprocess.run(fit(cfg, "straight"), capture_output=True, check=True)
    for name in ("model.npz", "logits.npy"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


def test_thin_matmul_code_paths_agree_bit_for_bit():
    """The compiled products: every code path this CPU runs (AVX-512, AVX2, plain C) and every split of the
    panels give the same bits (sequential fused multiply-adds), close to the float64 product; the remainders
    of the row blocks (K up to 13) and of the last panel (C not a multiple of 32) are covered."""
    from l2h.clusterers import _matmul

    assert turtle_module.compiled_path() is not None, (
        "l2h.clusterers._matmul is missing: the C extension was not built at install (is a C compiler available?)"
    )
    assert _matmul.paths()[-1] == "plain" and _matmul.PANEL == 32
    rng = np.random.default_rng(0)
    for j, k, c in [(1, 1, 1), (7, 3, 5), (40, 6, 17), (65, 10, 33), (130, 13, 100), (300, 12, 64)]:
        a_t = rng.standard_normal((j, k), dtype=np.float32)
        m = rng.standard_normal((j, c), dtype=np.float32)
        exact = a_t.T.astype(np.float64) @ m.astype(np.float64)
        panels = np.full((-(-c // 32), j, 32), np.nan, dtype=np.float32)
        _matmul.pack(m, panels)
        assert np.array_equal(panels.transpose(1, 0, 2).reshape(j, -1)[:, :c], m)
        assert not panels.transpose(1, 0, 2).reshape(j, -1)[:, c:].any()  # zero padding
        outs = []
        for path in _matmul.paths():
            out = np.full((k, c), np.nan, dtype=np.float32)
            _matmul.matmul_tn(a_t, panels, out, 0, len(panels), path)
            outs.append(out)
        split = np.full((k, c), np.nan, dtype=np.float32)
        for lo, hi in [(0, len(panels) // 2), (len(panels) // 2, len(panels))]:
            _matmul.matmul_tn(a_t, panels, split, lo, hi)
        for out in outs[1:] + [split]:
            np.testing.assert_array_equal(out, outs[0])
        np.testing.assert_allclose(outs[0], exact, rtol=1e-5, atol=1e-5 * np.sqrt(j))
        product = turtle_module.thin_matmul(torch.from_numpy(a_t), turtle_module.Columns(torch.from_numpy(m)))
        np.testing.assert_array_equal(product.numpy(), outs[0])
    panels, out = np.zeros((1, 4, 32), np.float32), np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        _matmul.matmul_tn(np.zeros((5, 2), np.float32), panels, out, 0, 1)
    with pytest.raises(TypeError, match="float32"):
        _matmul.matmul_tn(np.zeros((4, 2)), panels, out, 0, 1)
    with pytest.raises(ValueError, match="p0"):
        _matmul.matmul_tn(np.zeros((4, 2), np.float32), panels, out, 0, 2)
    with pytest.raises(ValueError, match="not available"):
        _matmul.matmul_tn(np.zeros((4, 2), np.float32), panels, out, 0, 1, "sse9")
    with pytest.raises(ValueError, match="pack"):
        _matmul.pack(np.zeros((4, 40), np.float32), panels)


def test_turtle_fit_does_not_depend_on_the_thread_count():
    """Products split over threads (≥ 2^24 multiply-adds), softmaxes along the last dimension, reported
    losses summed by numpy: the fitted model is the same bits with 1 and 3 torch threads."""
    rng = np.random.default_rng(2)
    spaces = [rng.standard_normal((2000, d), dtype=np.float32) for d in (40, 900)]
    one = quick("turtle", k=10, outer_steps=4).fit(spaces)  # the one_torch_thread fixture
    torch.set_num_threads(3)  # restored by the fixture
    three = quick("turtle", k=10, outer_steps=4).fit(spaces)
    for a, b in zip(one.weights_ + one.biases_, three.weights_ + three.biases_):
        np.testing.assert_array_equal(a, b)
    assert one.info() == three.info()


def test_thin_matmul_threads_do_not_change_a_bit():
    rng = np.random.default_rng(1)
    a_t = torch.from_numpy(rng.standard_normal((600, 10), dtype=np.float32))
    m = turtle_module.Columns(torch.from_numpy(rng.standard_normal((600, 3000), dtype=np.float32)))
    one = turtle_module.thin_matmul(a_t, m)  # the one_torch_thread fixture: one part
    torch.set_num_threads(3)  # restored by the fixture
    np.testing.assert_array_equal(turtle_module.thin_matmul(a_t, m).numpy(), one.numpy())


def test_temi_logits_are_best_teacher_head_over_temperature(digits):
    xtr, _, xte, _ = digits
    model = quick("temi", k=6).fit([xtr])
    info = model.info()
    assert info["best_head"] == int(np.argmin(info["head_losses"]))
    assert len(info["head_losses"]) == 3
    assert info["knn"] == min(50, len(xtr) // 6)
    # head output = cosine-type similarity scaled by the last layer's norms g; logits = output / 0.1
    g = model.head_["g"][:, 0]
    logits = model.logits([xte])
    assert np.all(np.abs(logits) <= g[None, :] / 0.1 + 1e-3)


def test_temi_knn_excludes_self_and_finds_nearest():
    from l2h.clusterers.temi import knn_indices

    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], dtype=np.float32)
    nn = knn_indices(x, 2, device=torch.device("cpu"), block_rows=2).numpy()
    assert (nn != np.arange(5)[:, None]).all()
    assert nn[0, 0] == 1 and nn[2, 0] == 3 and nn[3, 0] == 2


def test_cosine_schedule_matches_the_official_shape():
    from l2h.clusterers.temi import cosine_schedule

    s = cosine_schedule(1.0, 0.0, epochs=4, iters_per_epoch=5, warmup_epochs=2)
    assert s.shape == (20,)
    np.testing.assert_allclose(s[:10], np.linspace(0, 1, 10))
    assert s[10] == pytest.approx(1.0) and np.all(np.diff(s[10:]) < 0)
    np.testing.assert_allclose(cosine_schedule(0.996, 0.996, 3, 4), 0.996)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_bad_input_raises_input_error(name, digits):
    xtr, _, xte, _ = digits
    model = quick(name, k=4)
    with pytest.raises(InputError, match="list of arrays"):
        model.fit(xtr)
    with pytest.raises(InputError, match="2-D"):
        model.fit([xtr[:, 0]])
    bad = xtr.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        model.fit([bad])
    with pytest.raises(InputError, match="different numbers of rows"):
        model.fit([xtr, xtr[:-1]])
    with pytest.raises(InputError, match="fewer than k"):
        model.fit([xtr[:3]])
    with pytest.raises(RuntimeError, match="fit"):
        model.logits([xte])
    model.fit([xtr])
    with pytest.raises(InputError, match="dimensions"):
        model.logits([xte[:, :10]])


def test_bad_config_raises_input_error():
    with pytest.raises(InputError, match="clusterer.kind = 'dbscan': must be one of kmeans, temi, turtle"):
        build_clusterer({"kind": "dbscan", "k": 3})
    with pytest.raises(InputError, match=r"clusterer.n_clusters: unknown key"):
        build_clusterer({"kind": "kmeans", "k": 3, "n_clusters": 4})
    with pytest.raises(InputError, match="clusterer.k = 1: must be >= 2"):
        build_clusterer({"kind": "turtle", "k": 1})
    with pytest.raises(InputError, match="outer_steps"):
        build_clusterer({"kind": "turtle", "k": 3, "outer_steps": 0})
    with pytest.raises(InputError, match="beta"):
        build_clusterer({"kind": "temi", "k": 3, "beta": 0})
    with pytest.raises(InputError, match="temperature"):
        build_clusterer({"kind": "kmeans", "k": 3, "temperature": -1})
    with pytest.raises(InputError, match="device"):
        build_clusterer({"kind": "temi", "k": 3, "device": "no-such-device"})


@pytest.mark.parametrize("name", sorted(QUICK))
def test_memory_mapped_features(name, digits, tmp_path):
    """The pipeline passes read-only memory-mapped .npy files: same results, no warning."""
    import warnings

    xtr, _, xte, _ = digits
    np.save(tmp_path / "train.npy", xtr)
    np.save(tmp_path / "test.npy", xte)
    mtr, mte = np.load(tmp_path / "train.npy", mmap_mode="r"), np.load(tmp_path / "test.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = quick(name, k=5).fit([mtr]).logits([mte])
    np.testing.assert_array_equal(logits, quick(name, k=5).fit([xtr]).logits([xte]))
