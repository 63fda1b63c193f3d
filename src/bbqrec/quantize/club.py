"""CLUB: contrastive log-ratio upper bound of mutual information (Cheng et al., ICML 2020).

A variational q(s | b) = N(μ(b), diag σ²(b)) is fitted by maximum likelihood (`fit_loss`, its own optimiser);
the encoders then minimise

    I_CLUB = mean_i log q(s_i | b_i) − mean_{i,j} log q(s_j | b_i).

The Gaussian normaliser log σ is the same in both terms of row i and cancels, so it is left out of the bound.
"""

from __future__ import annotations

import torch
from torch import nn


class CLUB(nn.Module):
    def __init__(self, condition_dim: int, target_dim: int, hidden_dim: int):
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(condition_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, target_dim))
        # tanh keeps log σ² in [−1, 1]·scale: the fit stays stable while the encoders move.
        self.log_var = nn.Sequential(
            nn.Linear(condition_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, target_dim), nn.Tanh()
        )

    def fit_loss(self, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (up to a constant) of s under q(· | b); minimise it to fit q."""
        mu, log_var = self.mean(b), self.log_var(b)
        return ((s - mu).pow(2) / log_var.exp() + log_var).sum(-1).mean() / 2.0

    def upper_bound(self, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """I_CLUB over the batch: paired log-likelihood minus the mean over all (i, j) pairs."""
        mu, log_var = self.mean(b), self.log_var(b)  # [N, d_s]
        precision = (-log_var).exp()
        positive = -((s - mu).pow(2) * precision).sum(-1) / 2.0  # [N]
        # mean_j (s_j − μ_i)² = mean_j s_j² − 2 μ_i mean_j s_j + μ_i²: O(N·d) instead of an [N, N, d] tensor.
        mean_sq_dist = s.pow(2).mean(0) - 2.0 * mu * s.mean(0) + mu.pow(2)  # [N, d_s]
        negative = -(mean_sq_dist * precision).sum(-1) / 2.0  # [N]
        return (positive - negative).mean()
