"""Residual vector quantizer: L levels of K codes, straight-through gradients, k-means init, dead-code re-seeding.

r⁰ = z;  c^l = argmin_k ‖r^{l-1} − C^l_k‖;  r^l = r^{l-1} − C^l_{c^l};  ẑ = Σ_l C^l_{c^l}.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch
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
