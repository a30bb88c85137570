"""Several tasks on one model: shared-bottom towers and the Multi-gate Mixture-of-Experts.

Caruana 1997, "Multitask Learning" (hard parameter sharing); Ma et al. 2018, "Modeling Task Relationships in
Multi-task Learning with Multi-gate Mixture-of-Experts" (KDD, MMoE). Any registered model is the shared bottom:
it is built with ``width`` outputs instead of its label's, so its embedding tables, interactions and MLPs learn
one representation ``h`` for every task; each task then has its own tower::

    shared_bottom                             mmoe
    h = model(x)        (B, W)                h = model(x)                              (B, W)
    y_t = tower_t(h)    (B,)                  e_k = expert_k(h)                         (B, E_d) k = 1..K
                                              g_t = softmax(W_t h)                      (B, K)
                                              y_t = tower_t(sum_k g_t[:, k] * e_k)      (B,)

    out = [y_1, ..., y_T]  (B, T)

A binary task's output is its logit; a regression task's is its value in the label's units (``mean + std *
tower``, as :class:`~shoal.models.target.TargetScale` does for a single label), so every consumer of the model
(evaluation, serving, ONNX export) reads the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from shoal.config import HeadsConfig
from shoal.models.embeddings import mlp

__all__ = ["MultiTask"]


class MMoE(nn.Module):
    """``experts`` MLPs over the shared representation, mixed per task by a softmax gate: (B, W) -> (T, B, E_d)."""

    def __init__(self, width: int, experts: int, expert: Sequence[int], tasks: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(mlp([width, *expert]) for _ in range(experts))
        self.gates = nn.Linear(width, tasks * experts)
        self.tasks, self.k = tasks, experts

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        e = torch.stack([expert(h) for expert in self.experts], dim=1)  # (B, K, E_d)
        g = self.gates(h).view(-1, self.tasks, self.k).softmax(dim=-1)  # (B, T, K)
        return torch.bmm(g, e).transpose(0, 1)  # (B, T, E_d) -> (T, B, E_d)


class MultiTask(nn.Module):
    """``body`` (any registered model, built with ``heads.width`` outputs) and one tower per task -> (B, T)."""

    def __init__(self, body: nn.Module, heads: HeadsConfig, targets: Sequence[tuple[float, float] | None]) -> None:
        super().__init__()
        if len(targets) < 2:
            raise ValueError(f"a multitask model needs at least 2 tasks, not {len(targets)}")
        for t, target in enumerate(targets):
            if target is not None and not target[1] > 0:
                raise ValueError(f"task {t}: std must be > 0, not {target[1]!r}")
        self.body = body
        self.mmoe = MMoE(heads.width, heads.experts, heads.expert, len(targets)) if heads.kind == "mmoe" else None
        tower_in = heads.expert[-1] if self.mmoe is not None else heads.width
        self.towers = nn.ModuleList(mlp([tower_in, *heads.tower, 1], final_activation=False) for _ in targets)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor([0.0 if t is None else t[0] for t in targets]))  # (T,)
        self.register_buffer("std", torch.tensor([1.0 if t is None else t[1] for t in targets]))  # (T,)

    def forward(self, *inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        h = self.body(*inputs)  # (B, W): linear, as the body's output layer (a ReLU would kill a zero-initialised
        h = h.unsqueeze(1) if h.ndim == 1 else h  # logistic body); the towers and experts bring the non-linearity
        if self.mmoe is None:
            y = torch.cat([tower(h) for tower in self.towers], dim=1)  # (B, T)
        else:
            mixed = self.mmoe(h)  # (T, B, E_d)
            y = torch.cat([tower(mixed[t]) for t, tower in enumerate(self.towers)], dim=1)  # (B, T)
        return y * self.std + self.mean  # binary tasks: mean 0, std 1 (their logits)
