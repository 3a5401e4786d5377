"""Contrastive losses on a batch of N (image, profile) pairs with L2-normalised embeddings.

InfoNCE (CLIP): logits = s I P^T, learnable temperature s (clamped to 100), symmetric
cross-entropy with the diagonal as targets. Sigmoid (SigLIP): logits = s I P^T + b (b starts
at -10), each pair an independent binary problem; works with small batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class InfoNCE(nn.Module):
    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_log = math.log(max_scale)

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log).exp() * a @ b.T

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = self.logits(a, b)
        targets = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (nn.functional.cross_entropy(logits, targets)
                      + nn.functional.cross_entropy(logits.T, targets))


class SigmoidLoss(nn.Module):
    def __init__(self, init_scale: float = 10.0, init_bias: float = -10.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(init_bias))

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * a @ b.T + self.bias

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = self.logits(a, b)
        signs = 2.0 * torch.eye(a.shape[0], device=a.device) - 1.0
        return -nn.functional.logsigmoid(signs * logits).sum() / a.shape[0]


def build_loss(kind: str) -> nn.Module:
    return InfoNCE() if kind == "infonce" else SigmoidLoss()


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss on (2N, D) embeddings of N pairs (i, i + N): each finds its twin
    among the other 2N - 1."""
    n = z.shape[0] // 2
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return nn.functional.cross_entropy(sim, targets)
