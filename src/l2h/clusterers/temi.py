"""TEMI (Adaloglou et al., BMVC 2023): clustering heads on frozen embeddings trained with a teacher–student
pointwise-mutual-information objective over k-nearest-neighbour pairs; recipe of the official
HHU-MMBS/TEMI-official-BMVC2023 code for precomputed embeddings.

* Pairs: each point is paired with one of its ``knn`` nearest neighbours (cosine similarity, self excluded),
  drawn afresh every time it is visited. As in the official pipeline (neighbour lists of length N/K, of which
  the first ``knn`` are used) the number of neighbours is min(knn, N // K, N − 1).
* Heads: ``heads`` DINO-style projection heads on the raw embeddings: Linear(d, hidden) → GELU →
  Linear(hidden, bottleneck) → L2 normalisation → weight-normalised Linear(bottleneck, K, no bias) with its
  norm initialised to 1 and trained; the first layers start from N(0, 0.02²) weights and zero biases.
* Loss of head h on a pair (a, b), student probabilities q = softmax(s/τ_s), teacher p = softmax(t/τ_t):
  ½ Σ_{(v,w) ∈ {(a,b),(b,a)}} −w_ab · log Σ_k (q_v,k p_w,k)^β / π_h,k, averaged over the batch, with
  w_ab = mean over heads of Σ_k p_a,k p_b,k (teacher) and π_h an EMA (momentum ``probs_momentum``) of the
  teacher's batch-mean probabilities, updated with the current batch before the loss. Total = mean over heads.
* Optimisation: AdamW on the student, lr = ``lr``·batch/256 after a linear warm-up of ``warmup_epochs`` and a
  cosine decay to ``min_lr``·batch/256; weight decay (cosine ``weight_decay``→``weight_decay_end``) on the
  weight matrices only; the last layer is frozen during the first ``freeze_last_layer`` epochs; teacher =
  EMA of the student with a cosine momentum schedule ``momentum_teacher``→``max_momentum_teacher``.
  Batches are drawn without replacement, the last incomplete one is dropped.
* Best head: the one with the lowest mean loss over the last epoch (the official code sets it every epoch).

Logits for L2H: the teacher's best head output divided by ``teacher_temp`` (the softmax that TEMI trains).
Several spaces are concatenated (kNN on the concatenation of the L2-normalised spaces).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from l2h.clusterers._torch import Checkpointer, resolve_device, to_device, weight_normed
from l2h.clusterers.base import Clusterer, l2_normalize
from l2h.errors import InputError
from l2h.progress import progress_bar


def cosine_schedule(base: float, final: float, epochs: int, iters_per_epoch: int, warmup_epochs: int = 0) -> np.ndarray:
    """Per-iteration values: linear warm-up from 0 to ``base``, then half-cosine from ``base`` to ``final``."""
    warmup = np.linspace(0.0, base, warmup_epochs * iters_per_epoch)
    rest = np.arange(epochs * iters_per_epoch - warmup.size)
    return np.concatenate([warmup, final + 0.5 * (base - final) * (1 + np.cos(np.pi * rest / max(rest.size, 1)))])


def knn_indices(x: np.ndarray, k: int, *, device: torch.device, block_rows: int | None = None) -> torch.Tensor:
    """int64 (N, k): the k most cosine-similar other rows of ``x`` for each row (self excluded).

    Similarities are computed ``block_rows`` rows at a time (default: blocks of ~2^27 entries, 512 MiB)."""
    z = torch.from_numpy(l2_normalize(x)).to(device)
    block_rows = block_rows or max(1, 2**27 // z.shape[0])
    out = torch.empty((z.shape[0], k), dtype=torch.int64)
    for lo in range(0, z.shape[0], block_rows):
        sim = z[lo : lo + block_rows] @ z.T
        rows = torch.arange(sim.shape[0], device=device)
        sim[rows, rows + lo] = -math.inf
        out[lo : lo + block_rows] = sim.topk(k, dim=1).indices.cpu()
    return out


class _Heads:
    """``H`` parallel DINO heads as stacked tensors (one matmul per layer for all heads)."""

    NAMES = ("w1", "b1", "w2", "b2", "v", "g")

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.t = tensors

    @classmethod
    def init(
        cls, n_heads: int, d: int, hidden: int, bottleneck: int, k: int, gen: torch.Generator, device: torch.device
    ) -> "_Heads":
        def trunc_normal(*shape):
            return torch.nn.init.trunc_normal_(torch.empty(*shape), std=0.02, a=-2.0, b=2.0, generator=gen)

        bound = 1.0 / math.sqrt(bottleneck)  # nn.Linear default init of the last layer's direction v
        tensors = {
            "w1": trunc_normal(n_heads, d, hidden),
            "b1": torch.zeros(n_heads, 1, hidden),
            "w2": trunc_normal(n_heads, hidden, bottleneck),
            "b2": torch.zeros(n_heads, 1, bottleneck),
            "v": (torch.rand(n_heads, k, bottleneck, generator=gen) * 2 - 1) * bound,
            "g": torch.ones(n_heads, k, 1),
        }
        return cls({name: t.to(device) for name, t in tensors.items()})

    def __call__(self, x: torch.Tensor, heads: slice = slice(None)) -> torch.Tensor:
        """(H, N, K) outputs for x (N, d)."""
        t = {name: val[heads] for name, val in self.t.items()}
        h = F.gelu(torch.baddbmm(t["b1"], x.expand(t["w1"].shape[0], *x.shape), t["w1"]))
        h = F.normalize(torch.baddbmm(t["b2"], h, t["w2"]), dim=-1)
        return h @ weight_normed(t["v"], t["g"]).transpose(1, 2)

    def params(self) -> list[torch.Tensor]:
        return [self.t[name] for name in self.NAMES]


class TemiClusterer(Clusterer):
    name = "temi"
    runtime_keys = ("checkpoint_dir", "checkpoint_every", "progress")

    def __init__(
        self,
        *,
        k: int,
        seed: int = 0,
        heads: int = 16,
        knn: int = 50,
        hidden_dim: int = 512,
        bottleneck_dim: int = 256,
        beta: float = 0.6,
        epochs: int = 100,
        batch_size: int = 1024,
        lr: float = 1e-4,
        min_lr: float = 1e-4,
        warmup_epochs: int = 20,
        weight_decay: float = 1e-4,
        weight_decay_end: float = 1e-4,
        momentum_teacher: float = 0.996,
        max_momentum_teacher: float = 0.996,
        student_temp: float = 0.1,
        teacher_temp: float = 0.1,
        probs_momentum: float = 0.9,
        freeze_last_layer: int = 1,
        device: str = "auto",
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 10,
        progress: bool = True,
    ):
        super().__init__(
            k=k,
            seed=seed,
            heads=heads,
            knn=knn,
            hidden_dim=hidden_dim,
            bottleneck_dim=bottleneck_dim,
            beta=beta,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_lr=min_lr,
            warmup_epochs=warmup_epochs,
            weight_decay=weight_decay,
            weight_decay_end=weight_decay_end,
            momentum_teacher=momentum_teacher,
            max_momentum_teacher=max_momentum_teacher,
            student_temp=student_temp,
            teacher_temp=teacher_temp,
            probs_momentum=probs_momentum,
            freeze_last_layer=freeze_last_layer,
            device=device,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )
        self.heads, self.knn, self.hidden_dim, self.bottleneck_dim = (
            int(heads),
            int(knn),
            int(hidden_dim),
            int(bottleneck_dim),
        )
        self.beta, self.epochs, self.batch_size = float(beta), int(epochs), int(batch_size)
        self.lr, self.min_lr, self.warmup_epochs = float(lr), float(min_lr), int(warmup_epochs)
        self.weight_decay, self.weight_decay_end = float(weight_decay), float(weight_decay_end)
        self.momentum_teacher, self.max_momentum_teacher = float(momentum_teacher), float(max_momentum_teacher)
        self.student_temp, self.teacher_temp = float(student_temp), float(teacher_temp)
        self.probs_momentum, self.freeze_last_layer = float(probs_momentum), int(freeze_last_layer)
        self.device, self.progress = str(device), bool(progress)
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, int(checkpoint_every)
        resolve_device(self.device)
        self.head_: dict[str, np.ndarray] | None = None  # the teacher's best head

    def _trajectory_params(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "seed": self.seed,
            "heads": self.heads,
            "knn": self.knn,
            "hidden_dim": self.hidden_dim,
            "bottleneck_dim": self.bottleneck_dim,
            "beta": self.beta,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "min_lr": self.min_lr,
            "warmup_epochs": self.warmup_epochs,
            "weight_decay": self.weight_decay,
            "weight_decay_end": self.weight_decay_end,
            "momentum_teacher": self.momentum_teacher,
            "max_momentum_teacher": self.max_momentum_teacher,
            "student_temp": self.student_temp,
            "teacher_temp": self.teacher_temp,
            "probs_momentum": self.probs_momentum,
            "freeze_last_layer": self.freeze_last_layer,
        }

    def _params(self) -> dict[str, Any]:
        params = self._trajectory_params()
        del params["k"], params["seed"]
        return {
            **params,
            "device": self.device,
            "checkpoint_dir": self.checkpoint_dir,
            "checkpoint_every": self.checkpoint_every,
            "progress": self.progress,
        }

    @staticmethod
    def _features(spaces: list[np.ndarray]) -> np.ndarray:
        return spaces[0] if len(spaces) == 1 else np.concatenate(spaces, axis=1)

    # -- training ---------------------------------------------------------------------------------
    def _loss(self, student_out: torch.Tensor, teacher_out: torch.Tensor, prior: torch.Tensor):
        """Per-head TEMI losses (H,) and the updated teacher prior π (H, K); outputs are (H, 2B, K)."""
        with torch.no_grad():
            pt = F.softmax(teacher_out / self.teacher_temp, dim=-1)
            prior = self.probs_momentum * prior + (1 - self.probs_momentum) * pt.mean(dim=1)
            pt_a, pt_b = pt.chunk(2, dim=1)
            weight = (pt_a * pt_b).sum(-1).mean(0)  # (B,): mean over heads of the teachers' agreement
        qs_a, qs_b = F.softmax(student_out / self.student_temp, dim=-1).chunk(2, dim=1)

        def pmi(q, p):  # (H, B)
            return torch.log((((q * p) ** self.beta) / prior[:, None, :]).sum(-1))

        losses = -0.5 * ((weight * pmi(qs_b, pt_a)).mean(1) + (weight * pmi(qs_a, pt_b)).mean(1))
        return losses, prior

    def _fit(self, spaces: list[np.ndarray]) -> dict[str, Any]:
        device = resolve_device(self.device)
        gen = torch.Generator().manual_seed(self.seed)
        x_np = self._features(spaces)
        n = x_np.shape[0]
        knn = min(self.knn, n // self.k, n - 1)
        if knn < 1:
            raise InputError(f"temi: {n} points are too few for k={self.k} clusters (no neighbour pairs)")
        batch = min(self.batch_size, n)
        iters = n // batch
        t0 = time.perf_counter()
        neighbours = knn_indices(x_np, knn, device=device).to(device)
        knn_time = time.perf_counter() - t0
        x = to_device(x_np, device)

        student = _Heads.init(self.heads, x.shape[1], self.hidden_dim, self.bottleneck_dim, self.k, gen, device)
        for p in student.params():
            p.requires_grad_()
        teacher = _Heads({name: t.detach().clone() for name, t in student.t.items()})
        decayed = [student.t[name] for name in ("w1", "w2", "v", "g")]
        # fused: one kernel per step instead of ~10 passes over the weights (same update rule)
        opt = torch.optim.AdamW(
            [{"params": decayed}, {"params": [student.t["b1"], student.t["b2"]], "weight_decay": 0.0}], fused=True
        )
        scale = batch / 256.0  # the official linear scaling rule
        lr_sched = cosine_schedule(
            self.lr * scale, self.min_lr * scale, self.epochs, iters, min(self.warmup_epochs, self.epochs)
        )
        wd_sched = cosine_schedule(self.weight_decay, self.weight_decay_end, self.epochs, iters)
        mom_sched = cosine_schedule(self.momentum_teacher, self.max_momentum_teacher, self.epochs, iters)
        prior = torch.full((self.heads, self.k), 1.0 / self.k, device=device)
        head_losses = torch.full((self.heads,), math.nan)

        ckpt = Checkpointer(
            self.checkpoint_dir,
            "temi",
            spaces,
            self._trajectory_params(),
            every=self.checkpoint_every,
            total=self.epochs,
        )
        start, state = ckpt.resume()
        if state is not None:
            with torch.no_grad():
                for name in _Heads.NAMES:
                    student.t[name].copy_(state["student"][name])
                    teacher.t[name].copy_(state["teacher"][name])
                prior.copy_(state["prior"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["rng"])
            head_losses = state["head_losses"]

        def snapshot() -> dict[str, Any]:
            return {
                "opt": opt.state_dict(),
                "rng": gen.get_state(),
                "prior": prior.cpu(),
                "head_losses": head_losses,
                "student": {k: v.detach().cpu() for k, v in student.t.items()},
                "teacher": {k: v.detach().cpu() for k, v in teacher.t.items()},
            }

        t1 = time.perf_counter()
        bar = progress_bar(
            range(start, self.epochs),
            initial=start,
            total=self.epochs,
            desc="TEMI",
            disable=not self.progress,
            leave=False,
        )
        for epoch in bar:
            order = torch.randperm(n, generator=gen)
            pick = torch.randint(0, knn, (n,), generator=gen)
            epoch_losses = torch.zeros(self.heads, dtype=torch.float64)
            for it in range(iters):
                step = epoch * iters + it
                idx = order[it * batch : (it + 1) * batch].to(device)
                pair = neighbours[idx, pick[it * batch : (it + 1) * batch].to(device)]
                xb = torch.cat([x[idx], x[pair]])
                for i, group in enumerate(opt.param_groups):
                    group["lr"] = float(lr_sched[step])
                    if i == 0:
                        group["weight_decay"] = float(wd_sched[step])
                with torch.no_grad():
                    teacher_out = teacher(xb)
                losses, prior = self._loss(student(xb), teacher_out, prior)
                opt.zero_grad()
                losses.mean().backward()
                if epoch < self.freeze_last_layer:
                    student.t["v"].grad = student.t["g"].grad = None
                opt.step()
                with torch.no_grad():
                    m = float(mom_sched[step])
                    for name in _Heads.NAMES:
                        teacher.t[name].mul_(m).add_(student.t[name].detach(), alpha=1 - m)
                epoch_losses += losses.detach().cpu().double()
            if not torch.isfinite(epoch_losses).all():
                raise FloatingPointError(f"TEMI: non-finite loss in epoch {epoch} (training diverged)")
            head_losses = (epoch_losses / iters).float()
            bar.set_postfix(loss=f"{head_losses.min().item():.4f}")
            ckpt.done(epoch + 1, snapshot)
        bar.close()

        best = int(torch.argmin(head_losses))
        self.head_ = {name: teacher.t[name][best].detach().cpu().numpy() for name in _Heads.NAMES}
        self.run_info_ = {
            "knn_time_s": knn_time,
            "train_time_s": time.perf_counter() - t1,
            "epochs_run": self.epochs - start,
            "resumed_from_epoch": start or None,
        }
        return {
            "device": str(device),
            "batch_size": batch,
            "iters_per_epoch": iters,
            "knn": knn,
            "best_head": best,
            "head_losses": head_losses.tolist(),
        }

    # -- prediction -------------------------------------------------------------------------------
    def _logits(self, spaces: list[np.ndarray], block_rows: int = 65536) -> np.ndarray:
        x = self._features(spaces)
        head = _Heads({name: torch.from_numpy(val)[None] for name, val in self.head_.items()})
        out = np.empty((x.shape[0], self.k), dtype=np.float32)
        with torch.no_grad():
            for lo in range(0, x.shape[0], block_rows):
                out[lo : lo + block_rows] = (
                    head(to_device(x[lo : lo + block_rows], torch.device("cpu")))[0] / self.teacher_temp
                ).numpy()
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return dict(self.head_)

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.head_ = {name: arrays[name] for name in _Heads.NAMES}
