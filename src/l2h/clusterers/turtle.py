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

Both loops run without autograd: the gradients are written out (the cross-entropy gradient of a linear head
is (softmax − target)ᵀ z / B; the outer one is derived in :meth:`_TaskEncoders.gradients`), and Adam is
PyTorch's update rule, applied in place. Every matrix product multiplies the features by K columns
(:func:`thin_matmul`); on CPU they run in a compiled kernel whose outputs are sequential fused multiply-add
sums (the same bits on every code path and however the products are split over threads), and the rest of a
step then runs on one torch thread: the fit gives the same bits at any thread count. Logits for L2H:
``log(mean_s softmax(θ_s z_s))``, so that L2H's softmax reproduces TURTLE's probabilities exactly;
``space_logits`` gives the per-space logits θ_s z_s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from l2h.clusterers._torch import Checkpointer, linear_init, resolve_device, weight_normed
from l2h.clusterers.base import Clusterer, check_spaces, l2_normalize
from l2h.progress import progress_bar

try:
    from l2h.clusterers import _matmul as _compiled
except ImportError:  # no C compiler at install time: torch's matmul
    _compiled = None

#: Bumped when the checkpoint layout changes, so that an older checkpoint is ignored instead of misread.
_CHECKPOINT_VERSION = 3


def compiled_path() -> str | None:
    """The code path of the compiled CPU products (``"avx512"``, ``"avx2"``, ``"plain"``), or None when
    TURTLE uses torch's matmul on CPU (extension not built, or an x86 CPU without AVX2 and FMA, where the
    plain path would be slower than torch)."""
    if _compiled is None:
        return None
    path = _compiled.paths()[0]
    return None if path == "plain" and _compiled.X86 else path


class Columns:
    """A float32 (J, C) matrix that :func:`thin_matmul` multiplies by many small (J, K) ones: on CPU with the
    compiled kernel it is packed once into contiguous panels of 32 columns, and large products with it are
    split over ``threads`` threads; elsewhere it is kept as is."""

    def __init__(self, m: torch.Tensor, threads: int = 1):
        self.shape, self.threads = tuple(m.shape), int(threads)
        self.tensor, self.panels = m, None
        if m.device.type == "cpu" and _PATH is not None:
            self.panels = torch.empty((-(-m.shape[1] // _compiled.PANEL), m.shape[0], _compiled.PANEL))
            _compiled.pack(m.contiguous().numpy(), self.panels.numpy())
            self.tensor = None


def thin_matmul(a_t: torch.Tensor, m: Columns) -> torch.Tensor:
    """``a_t.T @ m`` for a float32 (J, K) ``a_t`` with few columns and a (J, C) matrix ``m``: the (K, C) product.

    With packed columns (CPU, ``compiled_path()`` not None) every output is the sequential sum over j of one
    fused multiply-add per term, whatever the code path, and large products are split by panels over
    ``m.threads`` threads, which does not change a bit. Elsewhere (CUDA, no kernel) it is torch's matmul.

    Examples
    --------
    >>> a_t, m = torch.ones(3, 2), torch.arange(12.0).reshape(3, 4)
    >>> thin_matmul(a_t, Columns(m))
    tensor([[12., 15., 18., 21.],
            [12., 15., 18., 21.]])
    """
    if m.panels is None:
        return a_t.T @ m.tensor
    out = torch.empty((a_t.shape[1], m.shape[1]), dtype=torch.float32)
    args = (a_t.contiguous().numpy(), m.panels.numpy(), out.numpy())
    n_panels = m.panels.shape[0]
    parts = max(1, min(m.threads, a_t.numel() * m.shape[1] // _MIN_PART_WORK, n_panels))
    if parts == 1:
        _compiled.matmul_tn(*args, 0, n_panels)
        return out
    bounds = [n_panels * i // parts for i in range(parts + 1)]
    pool = _workers(parts - 1)  # the kernel releases the GIL
    others = [pool.submit(_compiled.matmul_tn, *args, lo, hi) for lo, hi in pairwise(bounds[1:])]
    _compiled.matmul_tn(*args, 0, bounds[1])
    for part in others:
        part.result()
    return out


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _workers(count: int) -> ThreadPoolExecutor:
    """A thread pool of at least ``count`` workers, kept for the next products."""
    global _POOL
    if _POOL is None or _POOL[0] < count:
        if _POOL is not None:
            _POOL[1].shutdown()
        _POOL = (count, ThreadPoolExecutor(count, thread_name_prefix="l2h-turtle"))
    return _POOL[1]


_PATH = compiled_path()
#: multiply-adds below which a product is not worth splitting between threads (~0.1 ms of one core)
_MIN_PART_WORK = 1 << 23


@contextmanager
def _torch_threads(count: int):
    """torch's intra-op threads set to ``count`` inside the ``with`` block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def torch_products():
    """Use torch's matmul for the CPU products inside the ``with`` block (to compare; not thread-safe)."""
    global _PATH
    saved, _PATH = _PATH, None
    try:
        yield
    finally:
        _PATH = saved


def adam_(
    param: torch.Tensor,
    grad: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
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
    """The inner linear heads, stored transposed as [w_s | b_s]ᵀ (d_s + 1, K), and their Adam state."""

    def __init__(self, dims: list[int], k: int, gen: torch.Generator, device: torch.device):
        self.heads_t = [
            torch.cat([w, b[:, None]], 1).T.contiguous().to(device) for w, b in (linear_init(k, d, gen) for d in dims)
        ]
        self.m = [torch.zeros_like(a) for a in self.heads_t]
        self.v = [torch.zeros_like(a) for a in self.heads_t]
        self.step = 0

    def fit(self, zs: list[Columns], zs_t: list[Columns], targets: torch.Tensor, steps: int, lr: float) -> None:
        """``steps`` Adam steps on the mean cross-entropy to the soft ``targets`` (K, B); ``zs`` are the batch
        features (B, d_s + 1), ``zs_t`` the same transposed."""
        batch = targets.shape[1]
        for _ in range(steps):
            self.step += 1
            for z, z_t, a_t, m, v in zip(zs, zs_t, self.heads_t, self.m, self.v):
                residual = torch.softmax(thin_matmul(a_t, z_t), dim=0).sub_(targets).div_(batch)  # dCE/dlogits
                adam_(a_t, thin_matmul(residual.T.contiguous(), z).T, m, v, self.step, lr)

    def logits(self, zs_t: list[Columns]) -> list[torch.Tensor]:
        """(K, B) logits of every space."""
        return [thin_matmul(a_t, z_t) for a_t, z_t in zip(self.heads_t, zs_t)]

    def tensors(self) -> list[torch.Tensor]:
        return [*self.heads_t, *self.m, *self.v]

    def load(self, tensors: Sequence[torch.Tensor], step: int) -> None:
        for own, saved in zip(self.tensors(), tensors):
            own.copy_(saved)
        self.step = int(step)


class _TaskEncoders:
    """The weight-normalised task encoders θ_s = (g_s v_s / ‖v_s‖, b_s) and their Adam state."""

    def __init__(self, dims: list[int], k: int, gen: torch.Generator, device: torch.device):
        self.v, self.g, self.b = [], [], []
        for d in dims:  # initialised like nn.Linear, then g = ‖v‖ row-wise (as torch's weight_norm does)
            w, b = linear_init(k, d, gen)
            self.v.append(w.to(device))
            self.g.append(w.norm(dim=1, keepdim=True).to(device))
            self.b.append(b.to(device))
        self.m = [torch.zeros_like(p) for p in self.params()]
        self.m2 = [torch.zeros_like(p) for p in self.params()]

    def params(self) -> list[torch.Tensor]:
        return [*self.v, *self.g, *self.b]

    def weights(self) -> list[torch.Tensor]:
        """The effective (K, d_s) weights g v / ‖v‖."""
        return [weight_normed(v, g) for v, g in zip(self.v, self.g)]

    def probs(self, zs_t: list[Columns]) -> list[torch.Tensor]:
        """(K, B) softmax(θ_s z_s) of every space."""
        return [
            torch.softmax(thin_matmul(torch.cat([w, b[:, None]], 1).T.contiguous(), z_t), dim=0)
            for w, b, z_t in zip(self.weights(), self.b, zs_t)
        ]

    def gradients(
        self, zs: list[Columns], probs: list[torch.Tensor], log_q: list[torch.Tensor], gamma: float
    ) -> list[torch.Tensor]:
        """Gradients (in ``params()`` order) of L = Σ_s CE(q_s, ȳ) − γ Σ_s H(p̄_s), with p_s = softmax(θ_s z_s),
        ȳ = mean_s p_s, log q_s the inner heads' log-probabilities (constants) and p̄_s = mean_b p_s.

        ∂L/∂p_s[k, b] = −Σ_t log q_t[k, b] / (S B) + γ (log p̄_s[k] + 1) / B; through the softmax,
        ∂L/∂ℓ_s = p_s ⊙ (∂L/∂p_s − Σ_k p_s ∂L/∂p_s); ∂L/∂[W_s | b_s] = (∂L/∂ℓ_s) [z_s | 1]; through the
        weight norm W = g v / ‖v‖: ∂L/∂g = ⟨∂L/∂W, v⟩ / ‖v‖ and ∂L/∂v = g / ‖v‖ (∂L/∂W − v ∂L/∂g / ‖v‖).
        """
        n_spaces, batch = len(probs), probs[0].shape[1]
        d_labels = torch.stack(log_q).sum(0).div_(-n_spaces * batch)
        d_v, d_g, d_b = [], [], []
        for z, p, v, g in zip(zs, probs, self.v, self.g):
            d_p = d_labels + gamma * (p.mean(1, keepdim=True).log() + 1) / batch
            d_logits = p * (d_p - (p * d_p).sum(0, keepdim=True))
            d_wb = thin_matmul(d_logits.T.contiguous(), z)  # (K, d_s + 1): [∂L/∂W | ∂L/∂b]
            d_w, norm = d_wb[:, :-1], v.norm(dim=1, keepdim=True)
            d_g.append((d_w * v).sum(1, keepdim=True) / norm)
            d_v.append(g / norm * (d_w - v * (d_g[-1] / norm)))
            d_b.append(d_wb[:, -1].contiguous())
        return [*d_v, *d_g, *d_b]

    def adam_step(self, grads: list[torch.Tensor], step: int, lr: float) -> None:
        for p, grad, m, m2 in zip(self.params(), grads, self.m, self.m2):
            adam_(p, grad, m, m2, step, lr)

    def tensors(self) -> list[torch.Tensor]:
        return [*self.params(), *self.m, *self.m2]

    def load(self, tensors: Sequence[torch.Tensor]) -> None:
        for own, saved in zip(self.tensors(), tensors):
            own.copy_(saved)


class TurtleClusterer(Clusterer):
    name = "turtle"
    runtime_keys = ("checkpoint_dir", "checkpoint_every", "progress")

    def __init__(
        self,
        *,
        k: int,
        seed: int = 42,
        outer_steps: int = 6000,
        inner_steps: int = 10,
        batch_size: int = 10000,
        inner_lr: float = 1e-3,
        outer_lr: float = 1e-3,
        gamma: float = 10.0,
        warm_start: bool = False,
        normalize: bool = False,
        device: str = "auto",
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 500,
        progress: bool = True,
    ):
        super().__init__(
            k=k,
            seed=seed,
            outer_steps=outer_steps,
            inner_steps=inner_steps,
            batch_size=batch_size,
            inner_lr=inner_lr,
            outer_lr=outer_lr,
            gamma=gamma,
            warm_start=warm_start,
            normalize=normalize,
            device=device,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )
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
        return {
            "k": self.k,
            "seed": self.seed,
            "inner_steps": self.inner_steps,
            "batch_size": self.batch_size,
            "inner_lr": self.inner_lr,
            "outer_lr": self.outer_lr,
            "gamma": self.gamma,
            "warm_start": self.warm_start,
            "normalize": self.normalize,
        }

    def _params(self) -> dict[str, Any]:
        params = self._trajectory_params()
        del params["k"], params["seed"]
        return {
            **params,
            "outer_steps": self.outer_steps,
            "device": self.device,
            "checkpoint_dir": self.checkpoint_dir,
            "checkpoint_every": self.checkpoint_every,
            "progress": self.progress,
        }

    def _prepare(self, spaces: list[np.ndarray]) -> list[np.ndarray]:
        return [l2_normalize(x) for x in spaces] if self.normalize else spaces

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, spaces: list[np.ndarray]) -> dict[str, Any]:
        device = resolve_device(self.device)
        threads = torch.get_num_threads()
        if device.type != "cpu" or _PATH is None:
            return self._train(self._prepare(spaces), device, threads)
        # the compiled products use the threads; the rest of the step runs on one torch thread, where every
        # torch operation gives the same bits whatever the thread count
        with _torch_threads(1):
            return self._train(self._prepare(spaces), device, threads)

    def _train(self, spaces: list[np.ndarray], device: torch.device, threads: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(self.seed)
        n, dims, k = spaces[0].shape[0], [x.shape[1] for x in spaces], self.k
        batch = min(self.batch_size, n)
        zs = [with_ones(x, device) for x in spaces]
        if batch == n:  # the whole train set every step: prepared once
            full = [Columns(z, threads) for z in zs], [Columns(z.T, threads) for z in zs]

        encoders = _TaskEncoders(dims, k, gen, device)
        inner = _InnerHeads(dims, k, gen, device)
        ckpt = Checkpointer(
            self.checkpoint_dir,
            "turtle",
            spaces,
            {**self._trajectory_params(), "checkpoint_version": _CHECKPOINT_VERSION},
            every=self.checkpoint_every,
            total=self.outer_steps,
        )
        start, state = ckpt.resume()
        if state is not None:
            encoders.load(state["encoders"])
            inner.load(state["inner"], state["inner_step"])
            gen.set_state(state["rng"])

        def snapshot() -> dict[str, Any]:
            return {
                "encoders": [t.cpu() for t in encoders.tensors()],
                "inner": [t.cpu() for t in inner.tensors()],
                "inner_step": inner.step,
                "rng": gen.get_state(),
            }

        t0 = time.perf_counter()
        pred_error = entropy = float("nan")
        bar = progress_bar(
            range(start, self.outer_steps),
            initial=start,
            total=self.outer_steps,
            desc="TURTLE",
            disable=not self.progress,
            leave=False,
        )
        for step in bar:
            if batch < n:
                idx = torch.randperm(n, generator=gen)[:batch].to(device)
                zb = [z.index_select(0, idx) for z in zs]
                zb, zb_t = [Columns(z, threads) for z in zb], [Columns(z.T, threads) for z in zb]
            else:  # the whole train set: a permutation would change nothing
                zb, zb_t = full
            probs = encoders.probs(zb_t)
            labels = torch.stack(probs).mean(0)

            if not self.warm_start:
                inner = _InnerHeads(dims, k, gen, device)
            inner.fit(zb, zb_t, labels, self.inner_steps, self.inner_lr)

            log_q = [torch.log_softmax(out, dim=0) for out in inner.logits(zb_t)]
            encoders.adam_step(encoders.gradients(zb, probs, log_q, self.gamma), step + 1, self.outer_lr)

            if (step + 1) % 20 == 0 or step + 1 == self.outer_steps:
                pred_error = (-(labels * torch.stack(log_q).sum(0)).sum() / batch).item()
                entropy = sum(torch.special.entr(p.mean(1)).sum() for p in probs).item()
                bar.set_postfix(loss=f"{pred_error:.3f}", entropy=f"{entropy:.3f}")
            ckpt.done(step + 1, snapshot)
        bar.close()

        self.weights_ = [w.cpu().numpy().astype(np.float32) for w in encoders.weights()]
        self.biases_ = [b.cpu().numpy().astype(np.float32) for b in encoders.b]
        self.run_info_ = {
            "train_time_s": time.perf_counter() - t0,
            "steps_run": self.outer_steps - start,
            "resumed_from_step": start or None,
            "products": _PATH if device.type == "cpu" and _PATH is not None else "torch",
        }
        return {"device": str(device), "batch_size": batch, "final_pred_error": pred_error, "final_entropy": entropy}

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
            block = [x[lo : lo + block_rows] for x in spaces]
            per_space = torch.from_numpy(np.stack(self._space_logits(block))).double()
            log_mean = torch.logsumexp(torch.log_softmax(per_space, dim=2), dim=0) - np.log(len(spaces))
            out[lo : lo + block_rows] = log_mean.numpy()
        return out

    def _state(self) -> dict[str, np.ndarray]:
        state = {f"weight_{s}": w for s, w in enumerate(self.weights_)}
        state.update({f"bias_{s}": b for s, b in enumerate(self.biases_)})
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n_spaces = len(self.dims_)
        self.weights_ = [arrays[f"weight_{s}"] for s in range(n_spaces)]
        self.biases_ = [arrays[f"bias_{s}"] for s in range(n_spaces)]
