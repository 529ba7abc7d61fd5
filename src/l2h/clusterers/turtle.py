"""TURTLE (Gadetsky et al., ICML 2024): unsupervised transfer by searching for the labeling that linear
classifiers in every representation space learn best; recipe of the official mlbio-epfl/turtle code.

Model: per space s a weight-normalised linear task encoder θ_s (d_s→K, with bias, initialised like
``nn.Linear``); the labeling of a point is the mean over spaces of softmax(θ_s z_s). Features are used as
given (the official code feeds the raw embeddings, without normalisation). Each outer step draws a batch
(without replacement; all points when N ≤ batch size), trains freshly initialised linear heads w_s (one per
space, ``nn.Linear`` initialisation; kept across steps with ``warm_start``) for ``inner_steps`` Adam steps on
the cross-entropy to the detached labeling, then takes one Adam step of the task encoders on

    Σ_s CE(w_s(z_s), labeling) − γ · Σ_s H(batch mean of softmax(θ_s z_s))

(the official first-order hypergradient: the inner heads' outputs are constants of the outer step; the
entropy term is that of each space's batch-mean prediction, summed over spaces).

The inner loop runs without autograd: the cross-entropy gradient of a linear head is (softmax − target)ᵀ z / B,
and Adam is PyTorch's update rule, applied in place. Logits for L2H: ``log(mean_s softmax(θ_s z_s))``, so that
L2H's softmax reproduces TURTLE's probabilities exactly; ``space_logits`` gives the per-space logits θ_s z_s.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from l2h.clusterers._torch import Checkpointer, linear_init, resolve_device, weight_normed
from l2h.clusterers.base import Clusterer, check_spaces, l2_normalize
from l2h.errors import InputError
from l2h.progress import progress_bar

#: Bumped when the checkpoint layout changes, so that an older checkpoint is ignored instead of misread.
_CHECKPOINT_VERSION = 2


def adam_(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """One in-place Adam step of ``param`` (PyTorch's update rule, no weight decay); ``step`` counts from 1."""
    m.lerp_(grad, 1 - betas[0])
    v.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
    denom = (v.sqrt() / math.sqrt(1 - betas[1] ** step)).add_(eps)
    param.addcdiv_(m, denom, value=-lr / (1 - betas[0] ** step))


def with_ones(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """float32 (N, d + 1) tensor [x | 1] on ``device``: a linear layer with bias is then one product.
    ``x`` is read once (a memory-mapped array in place)."""
    out = torch.empty((x.shape[0], x.shape[1] + 1), dtype=torch.float32)
    out.numpy()[:, :-1] = x
    out[:, -1] = 1.0
    return out.to(device)


class _InnerHeads:
    """The inner linear heads [w_s | b_s] (K, d_s + 1) and their Adam state."""

    def __init__(self, dims: list[int], k: int, gen: torch.Generator, device: torch.device):
        self.heads = [torch.cat([w, b[:, None]], 1).to(device) for w, b in (linear_init(k, d, gen) for d in dims)]
        self.m = [torch.zeros_like(a) for a in self.heads]
        self.v = [torch.zeros_like(a) for a in self.heads]
        self.step = 0

    def fit(self, zs: list[torch.Tensor], targets_t: torch.Tensor, steps: int, lr: float) -> None:
        """``steps`` Adam steps on the mean cross-entropy to the soft targets (``targets_t``: (K, B))."""
        batch = targets_t.shape[1]
        for _ in range(steps):
            self.step += 1
            for z, a, m, v in zip(zs, self.heads, self.m, self.v):
                residual_t = torch.softmax(a @ z.T, dim=0).sub_(targets_t).div_(batch)  # dCE/dlogits, (K, B)
                adam_(a, residual_t @ z, m, v, self.step, lr)

    def logits_t(self, zs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [a @ z.T for z, a in zip(zs, self.heads)]

    def tensors(self) -> list[torch.Tensor]:
        return [*self.heads, *self.m, *self.v]

    def load(self, tensors: Sequence[torch.Tensor], step: int) -> None:
        for own, saved in zip(self.tensors(), tensors):
            own.copy_(saved)
        self.step = int(step)


class TurtleClusterer(Clusterer):
    name = "turtle"

    def __init__(self, *, k: int, seed: int = 42, outer_steps: int = 6000, inner_steps: int = 10,
                 batch_size: int = 10000, inner_lr: float = 1e-3, outer_lr: float = 1e-3, gamma: float = 10.0,
                 warm_start: bool = False, normalize: bool = False, device: str = "auto",
                 checkpoint_dir: str | None = None, checkpoint_every: int = 500, progress: bool = True):
        super().__init__(k=k, seed=seed)
        for key, val in (("outer_steps", outer_steps), ("inner_steps", inner_steps), ("batch_size", batch_size),
                         ("checkpoint_every", checkpoint_every)):
            if int(val) != val or val < 1:
                raise InputError(f"turtle.{key} must be an integer >= 1, got {val!r}")
        for key, val in (("inner_lr", inner_lr), ("outer_lr", outer_lr)):
            if not val > 0:
                raise InputError(f"turtle.{key} must be > 0, got {val!r}")
        if gamma < 0:
            raise InputError(f"turtle.gamma must be >= 0, got {gamma!r}")
        self.outer_steps, self.inner_steps, self.batch_size = int(outer_steps), int(inner_steps), int(batch_size)
        self.inner_lr, self.outer_lr, self.gamma = float(inner_lr), float(outer_lr), float(gamma)
        self.warm_start, self.normalize, self.device = bool(warm_start), bool(normalize), str(device)
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, int(checkpoint_every)
        self.progress = bool(progress)
        resolve_device(self.device)
        self.weights_: list[np.ndarray] | None = None  # effective (K, d_s) weights of the task encoders
        self.biases_: list[np.ndarray] | None = None

    def _trajectory_params(self) -> dict[str, Any]:
        """Parameters that fix the training trajectory (``outer_steps`` only says where it stops: no
        schedule depends on it, so a checkpoint of a shorter run is a valid start for a longer one)."""
        return {"k": self.k, "seed": self.seed, "inner_steps": self.inner_steps, "batch_size": self.batch_size,
                "inner_lr": self.inner_lr, "outer_lr": self.outer_lr, "gamma": self.gamma,
                "warm_start": self.warm_start, "normalize": self.normalize}

    def _params(self) -> dict[str, Any]:
        params = self._trajectory_params()
        del params["k"], params["seed"]
        return {**params, "outer_steps": self.outer_steps, "device": self.device,
                "checkpoint_dir": self.checkpoint_dir, "checkpoint_every": self.checkpoint_every,
                "progress": self.progress}

    def _prepare(self, spaces: list[np.ndarray]) -> list[np.ndarray]:
        return [l2_normalize(x) for x in spaces] if self.normalize else spaces

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, spaces: list[np.ndarray]) -> dict[str, Any]:
        spaces = self._prepare(spaces)
        device = resolve_device(self.device)
        gen = torch.Generator().manual_seed(self.seed)
        n, dims, k = spaces[0].shape[0], [x.shape[1] for x in spaces], self.k
        batch = min(self.batch_size, n)
        zs = [with_ones(x, device) for x in spaces]

        # task encoders: weight-normalised linear layers, initialised like nn.Linear (g = ||v|| row-wise)
        enc_v, enc_g, enc_b = [], [], []
        for d in dims:
            w, b = linear_init(k, d, gen)
            enc_g.append(w.norm(dim=1, keepdim=True).to(device).requires_grad_())
            enc_v.append(w.to(device).requires_grad_())
            enc_b.append(b.to(device).requires_grad_())
        encoder = [*enc_v, *enc_g, *enc_b]
        outer_opt = torch.optim.Adam(encoder, lr=self.outer_lr, betas=(0.9, 0.999))
        inner = _InnerHeads(dims, k, gen, device)

        ckpt = Checkpointer(self.checkpoint_dir, "turtle", spaces,
                            {**self._trajectory_params(), "checkpoint_version": _CHECKPOINT_VERSION})
        start, resumed_from = 0, None
        state = ckpt.load()
        if state is not None and int(state["step"]) > self.outer_steps:
            warnings.warn(f"{ckpt.path}: checkpoint is at step {int(state['step'])}, beyond outer_steps="
                          f"{self.outer_steps}; starting from scratch", stacklevel=3)
            state = None
        if state is not None:
            with torch.no_grad():
                for p, saved in zip(encoder, state["encoder"]):
                    p.copy_(saved)
            inner.load(state["inner"], state["inner_step"])
            outer_opt.load_state_dict(state["outer_opt"])
            gen.set_state(state["rng"])
            start = resumed_from = int(state["step"])

        def snapshot(step: int) -> dict[str, Any]:
            return {"step": step, "encoder": [p.detach().cpu() for p in encoder],
                    "inner": [t.cpu() for t in inner.tensors()], "inner_step": inner.step,
                    "outer_opt": outer_opt.state_dict(), "rng": gen.get_state()}

        t0 = time.perf_counter()
        pred_error = entropy = float("nan")
        bar = progress_bar(range(start, self.outer_steps), initial=start, total=self.outer_steps, desc="TURTLE",
                           disable=not self.progress, leave=False)
        for step in bar:
            if batch < n:
                idx = torch.randperm(n, generator=gen)[:batch].to(device)
                zb = [z.index_select(0, idx) for z in zs]
            else:  # the whole train set: a permutation would change nothing
                zb = zs
            # (K, B) layout throughout: the products a @ zᵀ and r @ z are the fast ones for thin K
            probs_t = [torch.softmax(torch.cat([weight_normed(v, g), b[:, None]], 1) @ z.T, dim=0)
                       for z, v, g, b in zip(zb, enc_v, enc_g, enc_b)]
            labels_t = torch.stack(probs_t).mean(0)

            if not self.warm_start:
                inner = _InnerHeads(dims, k, gen, device)
            inner.fit(zb, labels_t.detach(), self.inner_steps, self.inner_lr)

            with torch.no_grad():
                log_q = [torch.log_softmax(out, dim=0) for out in inner.logits_t(zb)]
            pred = -sum((labels_t * lq).sum() for lq in log_q) / batch
            entr = sum(torch.special.entr(p.mean(1)).sum() for p in probs_t)
            outer_opt.zero_grad()
            (pred - self.gamma * entr).backward()
            outer_opt.step()

            if (step + 1) % 20 == 0 or step + 1 == self.outer_steps:
                pred_error, entropy = pred.item(), entr.item()
                bar.set_postfix(loss=f"{pred_error:.3f}", entropy=f"{entropy:.3f}")
            if (step + 1) % self.checkpoint_every == 0 or step + 1 == self.outer_steps:
                ckpt.save(snapshot(step + 1))
        bar.close()

        with torch.no_grad():
            self.weights_ = [weight_normed(v, g).cpu().numpy().astype(np.float32) for v, g in zip(enc_v, enc_g)]
            self.biases_ = [b.detach().cpu().numpy().astype(np.float32) for b in enc_b]
        self.run_info_ = {"train_time_s": time.perf_counter() - t0, "steps_run": self.outer_steps - start,
                          "resumed_from_step": resumed_from}
        return {"device": str(device), "batch_size": batch, "final_pred_error": pred_error,
                "final_entropy": entropy}

    # -- prediction -------------------------------------------------------------------------------
    def _space_logits(self, spaces: list[np.ndarray]) -> list[np.ndarray]:
        spaces = self._prepare(spaces)
        return [(x @ w.T + b).astype(np.float32) for x, w, b in zip(spaces, self.weights_, self.biases_)]

    def space_logits(self, spaces: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-space logits θ_s z_s, float32 (N, K) each."""
        self._check_fitted()
        return self._space_logits(check_spaces(spaces, dims=self.dims_, source="turtle.space_logits spaces"))

    def _logits(self, spaces: list[np.ndarray], block_rows: int = 65536) -> np.ndarray:
        out = np.empty((spaces[0].shape[0], self.k), dtype=np.float32)
        for lo in range(0, out.shape[0], block_rows):
            block = [x[lo:lo + block_rows] for x in spaces]
            per_space = torch.from_numpy(np.stack(self._space_logits(block))).double()
            log_mean = torch.logsumexp(F.log_softmax(per_space, dim=2), dim=0) - np.log(len(spaces))
            out[lo:lo + block_rows] = log_mean.numpy()
        return out

    def _state(self) -> dict[str, np.ndarray]:
        state = {f"weight_{s}": w for s, w in enumerate(self.weights_)}
        state.update({f"bias_{s}": b for s, b in enumerate(self.biases_)})
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n_spaces = len(self.dims_)
        self.weights_ = [arrays[f"weight_{s}"] for s in range(n_spaces)]
        self.biases_ = [arrays[f"bias_{s}"] for s in range(n_spaces)]
