"""Reward heads on frozen features, batched over K ensemble members, and the single-model parameter format.

Parameter layout of ONE member (the serialisation format of ``reward.safetensors``), for input dim d, hidden H:

* linear (Insights, ``θᵀh + b``): ``base.w [d]``, ``base.b []``
* mlp (FA-IRL, two-layer ReLU): ``base.w1 [d, H]``, ``base.b1 [H]``, ``base.w2 [H]``, ``base.b2 []``
  so ``R(h) = relu(h @ w1 + b1) @ w2 + b2``
* FA-IRL dual path adds the same set under ``fail.*`` (R = R_D + R_F, FA-IRL §4.1).

An ensemble stores every name stacked on a leading K dim. Initialisation is Kaiming-uniform with a = √5, i.e.
PyTorch's ``nn.Linear`` default: weights and biases ~ U(−1/√fan_in, 1/√fan_in) (FA-IRL §4.1), drawn per member
from that member's own CPU generator in the order w1, b1, w2, b2. The failure path (FA-IRL and placebos) draws its
hidden layer from a generator of its own and starts with a ZERO readout (``fail.w``/``fail.b``, ``fail.w2``/
``fail.b2``): R_F ≡ 0 until a failure trains it (§4.1: "keep early estimates near zero, preventing spurious margins
before failures have been identified"), and the base path's initialisation and the minibatch order of a member are
those of its base method with the same seed — so a placebo differs from its base method only in what trains R_F.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

PATHS = ("base", "fail")


def param_names(head: str, dual: bool) -> list[str]:
    leaf = ["w", "b"] if head == "linear" else ["w1", "b1", "w2", "b2"]
    paths = PATHS if dual else PATHS[:1]
    return [f"{p}.{n}" for p in paths for n in leaf]


def _uniform(shape, bound: float, generator: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * bound


#: The failure path's generator is seeded with the member's seed plus this (its own stream; see the module doc).
FAIL_PATH_SEED_OFFSET = 1_000_003


def failure_path_generator(seed: int) -> torch.Generator:
    """The CPU generator a member's failure path is initialised from."""
    return torch.Generator().manual_seed(int(seed) + FAIL_PATH_SEED_OFFSET)


def init_member_params(
    head: str,
    input_dim: int,
    hidden_dim: int,
    dual: bool,
    generator: torch.Generator,
    fail_generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Initial parameters of one member, on CPU: the base path Kaiming-uniform (nn.Linear default) from
    ``generator``; with ``dual``, the failure path's hidden layer from ``fail_generator`` (default: a fresh one
    seeded from ``generator``'s next draw) and its readout at zero."""
    if head not in ("linear", "mlp"):
        raise ValueError(f"unknown head {head!r}")
    out: dict[str, Tensor] = {}
    bound_in = 1.0 / math.sqrt(input_dim)
    if head == "linear":
        out["base.w"] = _uniform((input_dim,), bound_in, generator)
        out["base.b"] = _uniform((), bound_in, generator)
    else:
        b2 = 1.0 / math.sqrt(hidden_dim)
        out["base.w1"] = _uniform((input_dim, hidden_dim), bound_in, generator)
        out["base.b1"] = _uniform((hidden_dim,), bound_in, generator)
        out["base.w2"] = _uniform((hidden_dim,), b2, generator)
        out["base.b2"] = _uniform((), b2, generator)
    if dual:
        if fail_generator is None:
            fail_generator = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=generator)))
        if head == "linear":
            out["fail.w"] = torch.zeros(input_dim)
            out["fail.b"] = torch.zeros(())
        else:
            out["fail.w1"] = _uniform((input_dim, hidden_dim), bound_in, fail_generator)
            out["fail.b1"] = _uniform((hidden_dim,), bound_in, fail_generator)
            out["fail.w2"] = torch.zeros(hidden_dim)
            out["fail.b2"] = torch.zeros(())
    return out


def path_forward(params: dict[str, Tensor], path: str, x: Tensor, bias: bool = True) -> Tensor:
    """Reward of one path for ONE member: x ``[..., d]`` → ``[...]`` (``bias=False``: without the output offset)."""
    if f"{path}.w" in params:
        r = x @ params[f"{path}.w"]
    else:
        h = torch.relu(x @ params[f"{path}.w1"] + params[f"{path}.b1"])
        r = h @ params[f"{path}.w2"]
    return r + final_bias(params, path) if bias else r


def final_bias(params: dict[str, Tensor], path: str) -> Tensor:
    """The output offset of a path (``b`` or ``b2``): it cancels in every Δ, so pair losses never train it."""
    return params[f"{path}.b"] if f"{path}.b" in params else params[f"{path}.b2"]


def batched_path_forward(params: dict[str, Tensor], path: str, x: Tensor, bias: bool = True) -> Tensor:
    """Reward of one path for K members at once.

    ``x``: ``[K, n, d]`` (each member its own rows) or ``[n, d]`` (rows shared by all members). Returns ``[K, n]``.
    ``bias=False`` leaves out the output offset (the trainer differentiates Δ without it, so its gradient is
    exactly 0 rather than rounding noise that Adam would normalise into lr-sized steps).
    """
    if f"{path}.w" in params:
        w = params[f"{path}.w"]
        if x.ndim == 2:
            r = torch.einsum("nd,kd->kn", x, w)
        else:
            r = torch.bmm(x, w.unsqueeze(-1)).squeeze(-1)
    else:
        w1, b1, w2 = (params[f"{path}.{n}"] for n in ("w1", "b1", "w2"))
        if x.ndim == 2:
            h = torch.relu(torch.einsum("nd,kdh->knh", x, w1) + b1[:, None, :])
        else:
            h = torch.relu(torch.baddbmm(b1[:, None, :], x, w1))
        r = torch.bmm(h, w2.unsqueeze(-1)).squeeze(-1)
    return r + final_bias(params, path)[:, None] if bias else r


def reward_from_params(params: dict[str, Tensor], features: Tensor) -> Tensor:
    """Reward R(h) of one member from its parameter dict (``member_params`` format): features ``[N, d]`` → ``[N]``,
    the sum of the base path and, when present, the failure path."""
    features = torch.as_tensor(features, dtype=torch.float32)
    r = path_forward(params, "base", features)
    if any(k.startswith("fail.") for k in params):
        r = r + path_forward(params, "fail", features)
    return r


@dataclass
class HeadEnsemble:
    """K members' parameters stacked on dim 0 (``params[name]: [K, ...]``), all of one head shape."""

    head: str
    input_dim: int
    hidden_dim: int
    dual: bool
    params: dict[str, Tensor] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @classmethod
    def from_members(
        cls,
        head: str,
        input_dim: int,
        hidden_dim: int,
        dual: bool,
        members: list[dict[str, Tensor]],
        device: str | torch.device = "cpu",
    ) -> HeadEnsemble:
        names = param_names(head, dual)
        params = {n: torch.stack([m[n] for m in members]).to(device) for n in names}
        return cls(head, input_dim, hidden_dim, dual, params)

    def path(self, path: str, x: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        return batched_path_forward(self.params if params is None else params, path, x)

    def reward(self, x: Tensor) -> Tensor:
        """Full reward R = R_D (+ R_F) of every member: ``[K, n]``."""
        r = self.path("base", x)
        if self.dual:
            r = r + self.path("fail", x)
        return r


def member_params(ensemble: HeadEnsemble | dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """Member k's parameters as a plain single-model dict (CPU, contiguous clones), the artifact format."""
    params = ensemble.params if isinstance(ensemble, HeadEnsemble) else ensemble
    return {n: t[k].detach().to("cpu").clone().contiguous() for n, t in params.items()}
