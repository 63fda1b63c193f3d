"""Residual vector quantizer: L levels of K codes, straight-through gradients, k-means init, dead-code re-seeding;
the balanced last level that spreads items with colliding codes over distinct last codes.

r⁰ = z;  c^l = argmin_k ‖r^{l-1} − C^l_k‖;  r^l = r^{l-1} − C^l_{c^l};  ẑ = Σ_l C^l_{c^l}.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn


@dataclass
class Quantized:
    """One pass of the quantizer over a batch of N vectors of dim d."""

    codes: torch.Tensor  # [N, L] int64
    residuals: torch.Tensor  # [N, L, d] the input r^{l-1} of each level (detached)
    quantized: torch.Tensor  # [N, d] ẑ; gradient reaches the codebook only
    straight_through: torch.Tensor  # [N, d] value ẑ, gradient copied to z (encoder only)
    loss: torch.Tensor  # [N] codebook + β·commitment, summed over levels


def nearest_codes(residual: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (squared Euclidean) for each row; ties go to the lowest index."""
    # ‖r − c‖² = ‖r‖² − 2 r·c + ‖c‖²; ‖r‖² is the same for every code of a row and is left out.
    scores = codebook.pow(2).sum(-1)[None, :] - 2.0 * residual @ codebook.T  # [N, K]
    return scores.argmin(dim=1)


class ResidualQuantizer(nn.Module):
    def __init__(self, levels: int, codebook_size: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.levels, self.codebook_size, self.dim, self.beta = levels, codebook_size, dim, beta
        self.codebooks = nn.Parameter(torch.zeros(levels, codebook_size, dim))  # [L, K, d]
        self.register_buffer("initialised", torch.tensor(False))

    def forward(self, z: torch.Tensor) -> Quantized:
        codes, residuals = [], []
        residual = z
        quantized = torch.zeros_like(z)
        loss = z.new_zeros(z.shape[0])
        for level in range(self.levels):
            codebook = self.codebooks[level]
            code = nearest_codes(residual.detach(), codebook.detach())
            chosen = codebook[code]  # [N, d]
            # Codebook term pulls the code to the (fixed) residual; commitment pulls the encoder to the code.
            loss = loss + (residual.detach() - chosen).pow(2).sum(-1)
            loss = loss + self.beta * (residual - chosen.detach()).pow(2).sum(-1)
            codes.append(code)
            residuals.append(residual.detach())
            quantized = quantized + chosen
            residual = residual - chosen.detach()
        return Quantized(
            codes=torch.stack(codes, dim=1),
            residuals=torch.stack(residuals, dim=1),
            quantized=quantized,
            straight_through=z + (quantized - z).detach(),
            loss=loss,
        )

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, seed: int, iterations: int = 20) -> None:
        """Set each level's codes to the faiss k-means centroids of that level's residuals of `z`."""
        if z.shape[0] < self.codebook_size:
            raise ValueError(
                f"k-means init needs at least codebook_size={self.codebook_size} vectors, got {z.shape[0]}"
            )
        residual = z.detach().to(torch.float32).cpu().numpy().copy()
        for level in range(self.levels):
            kmeans = faiss.Kmeans(
                self.dim,
                self.codebook_size,
                niter=iterations,
                seed=seed + level,
                verbose=False,
                min_points_per_centroid=1,
                max_points_per_centroid=1 << 30,
            )
            kmeans.train(residual)
            centroids = torch.from_numpy(np.ascontiguousarray(kmeans.centroids))
            self.codebooks[level].copy_(centroids)
            codes = nearest_codes(torch.from_numpy(residual), centroids)
            residual = residual - centroids[codes].numpy()
        self.initialised.fill_(True)

    @torch.no_grad()
    def reseed_dead_codes(self, usage: torch.Tensor, residuals: torch.Tensor, generator: torch.Generator) -> int:
        """Replace codes with zero `usage` [L, K] by residuals [N, L, d] of randomly drawn items.

        Returns the number of codes re-seeded.
        """
        reseeded = 0
        for level in range(self.levels):
            dead = torch.nonzero(usage[level] == 0).flatten()
            if dead.numel() == 0:
                continue
            # Without replacement while the pool allows, so two dead codes do not get the same vector.
            pool = residuals.shape[0]
            if dead.numel() <= pool:
                draw = torch.randperm(pool, generator=generator)[: dead.numel()]
            else:
                draw = torch.randint(pool, (dead.numel(),), generator=generator)
            self.codebooks[level, dead] = residuals[draw, level].to(self.codebooks.dtype)
            reseeded += dead.numel()
        return reseeded


def balanced_last_codes(codes: np.ndarray, residual: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Last-level codes that keep items with equal code tuples apart (LC-Rec's uniform semantic mapping).

    codes [N, L] are the argmin codes, residual [N, d] the input r^{L-1} of the last level, codebook [K, d] its
    codes. Within every prefix (c¹…c^{L−1}) where two items share a full code tuple, the last codes of the
    prefix's n items are re-chosen by a capacity-constrained assignment: each code takes at most ⌈n/K⌉ items and
    none takes a j-th item while another has fewer than j − 1 (so distinct codes when n ≤ K, the fewest shared
    ones otherwise); among those assignments, the one of least Σ_i ‖r_i − C_{c_i}‖². It is the exact (ε → 0) form
    of LC-Rec's Sinkhorn transport to uniform code marginals (Zheng et al., ICDE 2024), solved by the Hungarian
    algorithm: deterministic, and it guarantees the distinct codes that Sinkhorn + argmax does not. The whole
    prefix takes part, so a moved item cannot land on a code another item of the prefix holds. Other prefixes,
    and levels 1…L−1 everywhere, keep their argmin codes. Returns the last codes [N].
    """
    last = codes[:, -1].copy()
    if codes.shape[1] > 1:
        prefix = np.unique(codes[:, :-1], axis=0, return_inverse=True)[1].ravel()
    else:
        prefix = np.zeros(len(codes), dtype=np.int64)
    _, tuple_id, tuple_count = np.unique(
        np.column_stack([prefix, last]), axis=0, return_inverse=True, return_counts=True
    )
    colliding = np.unique(prefix[tuple_count[tuple_id.ravel()] > 1])
    codebook = codebook.astype(np.float64)
    size = len(codebook)
    for group in colliding:
        rows = np.flatnonzero(prefix == group)  # ascending: equal costs are settled by row order
        r = residual[rows].astype(np.float64)
        cost = (r**2).sum(1)[:, None] - 2.0 * r @ codebook.T + (codebook**2).sum(1)[None, :]  # [n, K]
        # Slot j of code k (columns j·K … j·K + K − 1) costs j·penalty more, a penalty above any saving in
        # squared error, so the j-th slots fill only once every code holds j − 1 items.
        tiers = -(-len(rows) // size)
        penalty = len(rows) * (cost.max() - cost.min()) + 1.0
        slots = np.concatenate([cost + tier * penalty for tier in range(tiers)], axis=1)  # [n, tiers·K]
        _, slot = linear_sum_assignment(slots)
        last[rows] = slot % size
    return last
