"""Training schedule of TreeVAE (the official ``train/train_tree.py``): initial tree, growing, pruning, finetuning.

1. Root + two leaves trained ``num_epochs`` epochs.
2. Growing, at most 150 steps. Every third step (when ``num_epochs_intermediate_fulltrain`` > 0) the whole tree
   is trained again. The effective leaves are those holding ≥ 1 % of the total leaf probability; with
   ``k`` of them growing stops. Each leaf's points are those with P(leaf | x) ≥ min(1/effective, 0.5); leaves
   with fewer than ``batch_size`` points are skipped, the leaf with most points is split, and if it is at
   ``max_depth`` growing stops. The split trains a depth-one subtree on the leaf's points for
   ``num_epochs_smalltree`` epochs with the rest of the tree frozen (evaluation mode), then attaches it.
3. Pruning: while the leaf with fewest points (argmax of P(leaf | x)) has < 1 % of them, remove it.
4. The whole tree is trained ``num_epochs_finetuning`` epochs.

Every training phase uses a fresh Adam (``lr``, L2 ``weight_decay``) with the rate multiplied by ``decay_lr``
every ``decay_stepsize`` epochs, and KL annealing: weight min(1, ``kl_start`` + epoch · ``decay_kl``) (in the
finetuning phase the step is max(0.01, 1/(epochs − 1))). Loss = reconstruction + weight · (KL root + KL nodes +
KL decisions) + ``aug_decisions_weight`` · contrastive terms. Batches are reshuffled every epoch and the last
incomplete one dropped; with ``augment`` a batch holds ``batch_size``/2 images, each as two random views.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from l2h.baselines.treevae.augment import augment as random_view
from l2h.baselines.treevae.model import ModelConfig, SmallTree, TreeVAE
from l2h.clusterers._torch import Checkpointer
from l2h.progress import progress_bar

MAX_GROWING_STEPS = 150  # the official cap on growing iterations
EFFECTIVE = 0.01  # a leaf is effective with ≥ 1 % of the probability mass; pruned below 1 % of points
EVAL_BATCH = 1024
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """The training schedule (official config names)."""

    k: int
    num_epochs: int
    num_epochs_smalltree: int
    num_epochs_intermediate_fulltrain: int
    num_epochs_finetuning: int
    batch_size: int
    lr: float
    weight_decay: float
    decay_lr: float
    decay_stepsize: int
    decay_kl: float
    kl_start: float
    grow: bool
    prune: bool
    augment: bool
    aug_decisions_weight: float
    aug_strength: float
    max_depth: int


def model_seed(seed: int, *path: int) -> int:
    """The seed that initialises the networks created at ``path`` (0: the initial tree; 1, s: split s)."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` with PyTorch's default initialisation drawn from ``seed`` (the global CPU RNG is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def run_epoch(
    x: torch.Tensor,
    rows: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    opt: torch.optim.Optimizer,
    *,
    batch: int,
    augment: bool,
    strength: float,
    gen: torch.Generator,
    max_batches: int | None = None,
) -> float:
    """One epoch over ``x[rows]`` in a random order; returns the mean loss. With ``augment`` each batch is two
    random views of ``batch`` images (view 1 of all, then view 2). ``max_batches`` stops early (benchmarks)."""
    n = rows.numel()
    batch = min(batch, n)
    order = rows[torch.randperm(n, generator=gen, device=rows.device)]
    iters = n // batch if max_batches is None else min(n // batch, max_batches)
    total = torch.zeros((), device=x.device)
    for it in range(iters):
        xb = x[order[it * batch : (it + 1) * batch]]
        if augment:
            xb = torch.cat([random_view(xb, gen, strength), random_view(xb, gen, strength)])
        loss = loss_fn(xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.detach()
    mean = float(total) / max(iters, 1)
    if not math.isfinite(mean):
        raise FloatingPointError("TreeVAE: non-finite loss (training diverged)")
    return mean


def total_loss(terms: dict[str, torch.Tensor], alpha: float, aug_weight: float) -> torch.Tensor:
    return (
        terms["rec"]
        + alpha * (terms["kl_root"] + terms["kl_decisions"] + terms["kl_nodes"])
        + aug_weight * terms["aug"]
    )


def effective_leaves(probs: np.ndarray) -> int:
    """Leaves holding ≥ 1 % of the total probability mass (``probs``: n × leaves)."""
    mass = probs.sum(0)
    return int((mass / mass.sum() >= EFFECTIVE).sum())


def choose_leaf(
    probs: np.ndarray, depths: list[int], *, k: int, batch_size: int, max_depth: int
) -> tuple[int | None, int, str]:
    """(column of the leaf to split or None, effective leaves, reason) for leaves in breadth-first order."""
    n_eff = effective_leaves(probs)
    if n_eff >= k:
        return None, n_eff, f"{n_eff} effective leaves ≥ k"
    counts = (probs >= min(1 / max(n_eff, 1), 0.5)).sum(0)
    for j in np.argsort(counts, kind="stable")[::-1]:  # most points first (ties: later leaf first)
        if counts[j] < batch_size:
            continue
        if depths[j] >= max_depth:
            return None, n_eff, "the largest leaf is at max_depth"
        return int(j), n_eff, ""
    return None, n_eff, "no leaf has batch_size points"


class Trainer:
    """Runs the schedule on ``x`` (n, C, H, W) on ``device``; resumable through ``checkpointer``."""

    def __init__(
        self,
        x: torch.Tensor,
        cfg: ModelConfig,
        recipe: Recipe,
        *,
        seed: int,
        progress: bool,
        checkpointer: Checkpointer,
        checkpoint_every: int,
    ):
        self.x, self.cfg, self.r, self.seed = x, cfg, recipe, seed
        self.progress, self.ckpt, self.every = progress, checkpointer, checkpoint_every
        self.device = x.device
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        self.all_rows = torch.arange(x.shape[0], device=self.device)
        self.model = seeded(model_seed(seed, 0), lambda: TreeVAE.initial(cfg)).to(self.device)
        self.small: SmallTree | None = None
        self.pending_opt: dict | None = None
        self.state: dict[str, Any] = {
            "phase": "initial",
            "epoch": 0,
            "step": 0,
            "sub": "select",
            "leaf": None,
            "n_eff": None,
            "subset": None,
            "growth": [],
            "pruned": [],
        }
        self.resumed_from: str | None = None
        self.epochs_run = 0
        self.saves = 0  # checkpoints written (the Checkpointer's units: TreeVAE decides itself when to save)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _save(self, opt: torch.optim.Optimizer) -> None:
        def cpu(state):
            return {key: value.detach().cpu() for key, value in state.items()}

        self.saves += 1
        self.ckpt.done(
            self.saves,
            lambda: {
                "version": CHECKPOINT_VERSION,
                "state": dict(self.state),
                "structure": self.model.structure(),
                "model": cpu(self.model.state_dict()),
                "small": None if self.small is None else cpu(self.small.state_dict()),
                "opt": opt.state_dict(),
                "rng": self.gen.get_state(),
            },
        )

    def resume(self) -> None:
        """Continue from the checkpoint when one matches (else start afresh)."""
        saves, saved = self.ckpt.resume()
        if saved is None or saved.get("version") != CHECKPOINT_VERSION:
            return
        self.saves = saves
        self.model = TreeVAE.from_structure(self.cfg, saved["structure"]).to(self.device)
        self.model.load_state_dict(saved["model"])
        self.state = saved["state"]
        if saved["small"] is not None:
            leaf_depth = self.model.depth[self.state["leaf"]]
            self.small = SmallTree(self.cfg, leaf_depth).to(self.device)
            self.small.load_state_dict(saved["small"])
        self.pending_opt = saved["opt"]
        self.gen.set_state(saved["rng"])
        self.resumed_from = (
            f"{self.state['phase']} (step {self.state['step']}, {self.state['sub']}, epoch {self.state['epoch']})"
        )

    # -- training phases ------------------------------------------------------------------------------------
    def _train(
        self,
        module: torch.nn.Module,
        epochs: int,
        decay_kl: float,
        label: str,
        loss_terms: Callable[[torch.Tensor], dict[str, torch.Tensor]],
        rows: torch.Tensor,
    ) -> None:
        opt = torch.optim.Adam(module.parameters(), lr=self.r.lr, weight_decay=self.r.weight_decay)
        if self.pending_opt is not None:
            opt.load_state_dict(self.pending_opt)
            self.pending_opt = None
        batch = self.r.batch_size // 2 if self.r.augment else self.r.batch_size
        start = self.state["epoch"]
        bar = progress_bar(
            range(start, epochs),
            initial=start,
            total=epochs,
            desc=f"TreeVAE {label}",
            disable=not self.progress,
            leave=False,
        )
        for epoch in bar:
            for group in opt.param_groups:
                group["lr"] = self.r.lr * self.r.decay_lr ** (epoch // self.r.decay_stepsize)
            alpha = min(1.0, self.r.kl_start + epoch * decay_kl)
            loss = run_epoch(
                self.x,
                rows,
                lambda xb, alpha=alpha: total_loss(loss_terms(xb), alpha, self.r.aug_decisions_weight),
                opt,
                batch=batch,
                augment=self.r.augment,
                strength=self.r.aug_strength,
                gen=self.gen,
            )
            bar.set_postfix(loss=f"{loss:.2f}")
            self.state["epoch"] = epoch + 1
            self.epochs_run += 1
            if (epoch + 1) % self.every == 0 or epoch + 1 == epochs:
                self._save(opt)
        bar.close()
        self.state["epoch"] = 0

    def _train_full(self, epochs: int, label: str, decay_kl: float | None = None) -> None:
        self.model.train()
        self._train(
            self.model,
            epochs,
            self.r.decay_kl if decay_kl is None else decay_kl,
            label,
            lambda xb: self.model.terms(xb, self.gen, self.r.augment),
            self.all_rows,
        )

    def _train_small(self, leaf: int, rows: torch.Tensor, label: str) -> None:
        self.model.eval()
        self.small.train()

        def terms(xb):
            with torch.no_grad():
                feats, z, prob = self.model.leaf_sample(xb, leaf, self.gen)
            return self.small.terms(xb, feats, z, prob, self.gen, self.r.augment)

        self._train(self.small, self.r.num_epochs_smalltree, self.r.decay_kl, label, terms, rows)

    @torch.no_grad()
    def leaf_probs(self, leaves: list[int]) -> np.ndarray:
        """(n, len(leaves)) P(leaf | x) of every point, float64 on the CPU."""
        self.model.eval()
        return torch.cat(
            [
                self.model.leaf_probs(self.x[lo : lo + EVAL_BATCH], leaves).double().cpu()
                for lo in range(0, self.x.shape[0], EVAL_BATCH)
            ]
        ).numpy()

    # -- the schedule ---------------------------------------------------------------------------------------
    def run(self) -> TreeVAE:
        phases = {"initial": self._initial, "grow": self._grow, "prune": self._prune, "finetune": self._finetune}
        while self.state["phase"] != "done":
            phases[self.state["phase"]]()
        return self.model

    def _initial(self) -> None:
        self._train_full(self.r.num_epochs, "initial tree")
        self.state["phase"] = "grow" if self.r.grow and self.r.max_depth > 1 else "prune"

    def _next_sub(self, step: int) -> str:
        return "intermediate" if self.r.num_epochs_intermediate_fulltrain > 0 and step % 3 == 0 else "select"

    def _grow(self) -> None:
        st = self.state
        if st["step"] >= MAX_GROWING_STEPS:
            st["phase"] = "prune"
            return
        if st["sub"] == "intermediate":
            self._train_full(self.r.num_epochs_intermediate_fulltrain, f"full tree before split {st['step'] + 1}")
            st["sub"] = "select"
        if st["sub"] == "select":
            leaves = self.model.leaves_bfs()
            probs = self.leaf_probs(leaves)
            j, n_eff, reason = choose_leaf(
                probs,
                [self.model.depth[leaf] for leaf in leaves],
                k=self.r.k,
                batch_size=self.r.batch_size,
                max_depth=self.r.max_depth,
            )
            if j is None:
                st.update(phase="prune", stop_reason=reason, n_eff=n_eff)
                return
            subset = np.flatnonzero(probs[:, j] >= min(1 / max(n_eff, 1), 0.5))
            leaf = leaves[j]
            st.update(sub="small", leaf=leaf, n_eff=n_eff, subset=torch.from_numpy(subset), epoch=0)
            self.small = seeded(
                model_seed(self.seed, 1, st["step"]), lambda: SmallTree(self.cfg, self.model.depth[leaf])
            ).to(self.device)
        leaf = st["leaf"]
        self._train_small(leaf, st["subset"].to(self.device), f"split {st['step'] + 1}")
        kids = self.model.attach(leaf, self.small, st["step"] + 1)
        st["growth"].append(
            {
                "step": st["step"] + 1,
                "leaf": leaf,
                "depth": self.model.depth[leaf],
                "children": list(kids),
                "points": int(st["subset"].numel()),
                "effective_leaves_before": st["n_eff"],
            }
        )
        self.small = None
        reached = False
        if st["n_eff"] + 1 == self.r.k:  # the official early check, before any intermediate training
            n_eff = effective_leaves(self.leaf_probs(self.model.leaves_bfs()))
            reached = n_eff >= self.r.k
            if reached:
                st.update(stop_reason=f"{n_eff} effective leaves ≥ k", n_eff=n_eff)
        st.update(step=st["step"] + 1, sub=self._next_sub(st["step"] + 1), leaf=None, subset=None)
        if reached:
            st["phase"] = "prune"

    def _prune(self) -> None:
        st = self.state
        while self.r.prune:
            leaves = self.model.leaves_bfs()
            counts = np.bincount(self.leaf_probs(leaves).argmax(1), minlength=len(leaves))
            j = int(np.argmin(counts))
            if counts[j] >= EFFECTIVE * self.x.shape[0]:
                break
            st["pruned"].append(
                {"leaf": leaves[j], "points": int(counts[j]), "removed": self.model.prune_leaf(leaves[j])}
            )
        st["phase"] = "finetune"

    def _finetune(self) -> None:
        epochs = self.r.num_epochs_finetuning
        self._train_full(epochs, "finetuning", decay_kl=max(0.01, 1 / max(1, epochs - 1)))
        self.state["phase"] = "done"


_NO_LIMIT = 2**62  # the Checkpointer's unit count: TreeVAE's schedule has no fixed number of units


def fit(
    x: np.ndarray,
    cfg: ModelConfig,
    recipe: Recipe,
    *,
    seed: int,
    device: torch.device,
    progress: bool,
    checkpoint_dir: str | None,
    checkpoint_every: int,
) -> tuple[TreeVAE, dict[str, Any], dict[str, Any]]:
    """Train TreeVAE on ``x`` (n, C, H, W float32 in [0, 1]). Returns (model in evaluation mode, the schedule's
    record: growth steps, pruned leaves, why growing stopped; run info: timings, resumption)."""
    params = {
        "model": asdict(cfg),
        "recipe": asdict(recipe),
        "seed": seed,
        "device": device.type,
        "checkpoint_version": CHECKPOINT_VERSION,
    }
    # saved whenever the schedule says (every checkpoint_every epochs and at the end of each phase)
    ckpt = Checkpointer(checkpoint_dir, f"treevae_k{recipe.k}_s{seed}", [x], params, every=1, total=_NO_LIMIT)
    start = time.perf_counter()
    trainer = Trainer(
        torch.from_numpy(np.ascontiguousarray(x)).to(device),
        cfg,
        recipe,
        seed=seed,
        progress=progress,
        checkpointer=ckpt,
        checkpoint_every=checkpoint_every,
    )
    trainer.resume()
    model = trainer.run().eval()
    st = trainer.state
    record = {"growth": st["growth"], "pruned": st["pruned"], "stop_reason": st.get("stop_reason", "")}
    run_info = {
        "train_time_s": time.perf_counter() - start,
        "epochs_run": trainer.epochs_run,
        "resumed_from": trainer.resumed_from,
    }
    return model, record, run_info


@torch.no_grad()
def assign(model: TreeVAE, x: np.ndarray, device: torch.device) -> tuple[list[int], np.ndarray]:
    """(leaf ids in depth-first order, float64 n × leaves P(leaf | x)) of a trained model."""
    leaves = model.leaves_dfs()
    model.eval()
    probs = [
        model.leaf_probs(torch.from_numpy(np.ascontiguousarray(x[lo : lo + EVAL_BATCH])).to(device), leaves)
        .double()
        .cpu()
        for lo in range(0, x.shape[0], EVAL_BATCH)
    ]
    return leaves, torch.cat(probs).numpy()
