"""TURTLE (Gadetsky et al., ICML 2024): unsupervised transfer by searching for the labeling that linear
classifiers in every representation space learn best; recipe of the official mlbio-epfl/turtle code.

Model: per space s a weight-normalised linear task encoder θ_s (d_s→K); the labeling of a point is the mean
over spaces of softmax(θ_s z_s). Each outer step draws a batch (without replacement), trains freshly
initialised linear heads w_s (one per space; kept across steps with ``warm_start``) for ``inner_steps``
Adam steps on the detached labeling, then takes one Adam step of the task encoders on

    Σ_s CE(w_s(z_s), labeling) − γ · Σ_s H(batch mean of softmax(θ_s z_s))

(the official code's entropy term: the entropy of each space's batch-mean prediction, summed over spaces).

Logits for L2H: ``log(mean_s softmax(θ_s z_s))``, so that L2H's softmax reproduces TURTLE's probabilities
exactly; ``space_logits`` gives the per-space logits θ_s z_s.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from l2h.clusterers._torch import Checkpointer, linear_init, resolve_device, to_device, weight_normed
from l2h.clusterers.base import Clusterer, check_spaces, l2_normalize
from l2h.errors import InputError


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
        zs = [to_device(x, device) for x in spaces]

        # task encoders: weight-normalised linear layers, initialised like nn.Linear (g = ||v|| row-wise)
        enc_v, enc_g, enc_b = [], [], []
        for d in dims:
            w, b = linear_init(k, d, gen)
            enc_g.append(w.norm(dim=1, keepdim=True).to(device).requires_grad_())
            enc_v.append(w.to(device).requires_grad_())
            enc_b.append(b.to(device).requires_grad_())
        encoder = [*enc_v, *enc_g, *enc_b]
        outer_opt = torch.optim.Adam(encoder, lr=self.outer_lr, betas=(0.9, 0.999))

        def new_inner():
            params = []
            for d in dims:
                w, b = linear_init(k, d, gen)
                params += [w.to(device).requires_grad_(), b.to(device).requires_grad_()]
            return params, torch.optim.Adam(params, lr=self.inner_lr, betas=(0.9, 0.999))

        inner, inner_opt = new_inner()
        ckpt = Checkpointer(self.checkpoint_dir, "turtle", spaces, self._trajectory_params())
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
                for p, saved in zip(inner, state["inner"]):
                    p.copy_(saved)
            outer_opt.load_state_dict(state["outer_opt"])
            inner_opt.load_state_dict(state["inner_opt"])
            gen.set_state(state["rng"])
            start = resumed_from = int(state["step"])

        def snapshot(step: int) -> dict[str, Any]:
            return {"step": step, "encoder": [p.detach().cpu() for p in encoder],
                    "inner": [p.detach().cpu() for p in inner], "outer_opt": outer_opt.state_dict(),
                    "inner_opt": inner_opt.state_dict(), "rng": gen.get_state()}

        t0 = time.perf_counter()
        pred_error = entropy = float("nan")
        bar = tqdm(range(start, self.outer_steps), initial=start, total=self.outer_steps, desc="TURTLE",
                   disable=not self.progress, leave=False)
        for step in bar:
            idx = torch.randperm(n, generator=gen)[:batch].to(device)
            zb = [z[idx] for z in zs]
            probs = [F.softmax(F.linear(z, weight_normed(v, g), b), dim=1)
                     for z, v, g, b in zip(zb, enc_v, enc_g, enc_b)]
            labels = torch.stack(probs).mean(0)

            if not self.warm_start:
                inner, inner_opt = new_inner()
            target = labels.detach()
            for _ in range(self.inner_steps):
                inner_opt.zero_grad()
                loss = sum(F.cross_entropy(F.linear(z, inner[2 * s], inner[2 * s + 1]), target)
                           for s, z in enumerate(zb))
                loss.backward()
                inner_opt.step()

            with torch.no_grad():
                inner_out = [F.linear(z, inner[2 * s], inner[2 * s + 1]) for s, z in enumerate(zb)]
            pred = sum(F.cross_entropy(out, labels) for out in inner_out)
            entr = sum(torch.special.entr(p.mean(0)).sum() for p in probs)
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
        return {"fit_time_s": time.perf_counter() - t0, "device": str(device), "batch_size": batch,
                "steps_run": self.outer_steps - start, "resumed_from_step": resumed_from,
                "final_pred_error": pred_error, "final_entropy": entropy}

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
