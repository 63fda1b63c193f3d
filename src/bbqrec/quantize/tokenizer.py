"""The BBQ tokenizer: behaviour-aligned and specific encoders, CLUB, decoders, residual quantizer, alignment losses.

Streams are `text`, `image` (content modalities) and `behavior`. Each content modality m has a specific encoder
s_m = E^S_m(x_m), a behaviour-aligned encoder z_m = E^B_m(x_m), a CLUB net q_m(s | z) and a decoder that rebuilds
x_m from [ẑ_m ; s_m]. The behaviour stream has z_B = E_B(x_B) and (our choice, so that it cannot drift) a decoder
rebuilding x_B from ẑ_B. Every z is quantized by one shared residual quantizer (or one per stream in `separate`
mode). Items missing a modality get a learned "missing" input vector and are masked out of that stream's losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bbqrec.io import InputError
from bbqrec.quantize.club import CLUB
from bbqrec.quantize.config import (  # noqa: F401  (re-exported: the tokenizer's options live there)
    BEHAVIOR,
    CONTENT_STREAMS,
    SHARED,
    TOKENIZER_PRESETS,
    TokenizerConfig,
    tokenizer_config,
)
from bbqrec.quantize.residual import Quantized, ResidualQuantizer


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))


def info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between row-paired vectors; the other rows of the batch are the negatives."""
    logits = F.normalize(query, dim=-1) @ F.normalize(key, dim=-1).T / temperature
    labels = torch.arange(query.shape[0], device=query.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2.0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` [N] over the rows where `mask` [N] holds (0 when none)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class StreamOutput:
    z: torch.Tensor  # [N, d_c] behaviour-aligned vector (input of the quantizer)
    specific: torch.Tensor | None  # [N, d_s] modality-specific vector (None for behaviour)
    quant: Quantized
    present: torch.Tensor  # [N] float, 1 where the item has this stream


@dataclass
class LossTerms:
    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> scalar (detached for logging)


class BBQTokenizer(nn.Module):
    """Encoders, decoders, CLUB nets, quantizer(s) and the small sequence encoder of the tokenizer."""

    def __init__(self, config: TokenizerConfig, input_dims: dict[str, int]):
        super().__init__()
        missing = [s for s in config.streams if s not in input_dims]
        if missing:
            raise InputError(f"tokenizer streams {missing} have no input embeddings")
        self.config = config
        self.input_dims = {s: int(input_dims[s]) for s in config.streams}
        c = config
        self.aligned = nn.ModuleDict({s: mlp(self.input_dims[s], c.hidden_dim, c.code_dim) for s in c.streams})
        self.specific = nn.ModuleDict({m: mlp(self.input_dims[m], c.hidden_dim, c.specific_dim) for m in c.modalities})
        self.decoders = nn.ModuleDict(
            {m: mlp(c.code_dim + c.specific_dim, c.hidden_dim, self.input_dims[m]) for m in c.modalities}
        )
        if c.use_behavior:
            self.decoders[BEHAVIOR] = mlp(c.code_dim, c.hidden_dim, self.input_dims[BEHAVIOR])
        self.clubs = nn.ModuleDict({m: CLUB(c.code_dim, c.specific_dim, c.club_hidden_dim) for m in c.modalities})
        # Every loss of its own stream masks it out: it learns only through the sequence encoder's input.
        self.missing = nn.ParameterDict({s: nn.Parameter(torch.zeros(self.input_dims[s])) for s in c.streams})
        for s in c.streams:  # standardisation statistics, set from the data by `set_input_statistics`
            self.register_buffer(f"mean_{s}", torch.zeros(self.input_dims[s]))
            self.register_buffer(f"std_{s}", torch.ones(self.input_dims[s]))
        books = (SHARED,) if c.codebook == SHARED else c.streams
        self.quantizers = nn.ModuleDict(
            {b: ResidualQuantizer(c.levels, c.codebook_size, c.code_dim, c.commitment_beta) for b in books}
        )
        self.sequence_encoder = nn.GRU(c.code_dim, c.code_dim, batch_first=True)
        self.sequence_head = nn.Linear(c.code_dim, c.code_dim)

    # --- parameters of the two optimisers ---
    def club_parameters(self) -> list[nn.Parameter]:
        return list(self.clubs.parameters())

    def main_parameters(self) -> list[nn.Parameter]:
        club = {id(p) for p in self.club_parameters()}
        return [p for p in self.parameters() if id(p) not in club]

    def quantizer(self, stream: str) -> ResidualQuantizer:
        return self.quantizers[SHARED if self.config.codebook == SHARED else stream]

    @torch.no_grad()
    def set_input_statistics(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> None:
        for s in self.config.streams:
            rows = features[s][present[s]]
            if self.config.standardize_inputs and rows.shape[0] > 1:
                getattr(self, f"mean_{s}").copy_(rows.mean(0))
                getattr(self, f"std_{s}").copy_(rows.std(0).clamp(min=1e-6))

    def normalised_input(self, stream: str, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        x = (x - getattr(self, f"mean_{stream}")) / getattr(self, f"std_{stream}")
        return torch.where(present[:, None], x, self.missing[stream].expand_as(x))

    def unit(self, v: torch.Tensor) -> torch.Tensor:
        return F.normalize(v, dim=-1) if self.config.l2_normalize else v

    def encode(
        self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor], specific: bool = True
    ) -> dict[str, StreamOutput]:
        """Encode and quantize every stream: features[s] [N, D_s], present[s] [N] bool.

        `specific=False` skips the modality-specific encoders (the sequence contrast does not need them).
        """
        out = {}
        for s in self.config.streams:
            x = self.normalised_input(s, features[s], present[s])
            z = self.unit(self.aligned[s](x))
            out[s] = StreamOutput(
                z=z,
                specific=self.unit(self.specific[s](x)) if specific and s in self.specific else None,
                quant=self.quantizer(s)(z),
                present=present[s].to(z.dtype),
            )
        return out

    @torch.no_grad()
    def kmeans_init(self, features, present, seed: int) -> None:
        """First pass: k-means on the z of every item that has the stream (all streams pooled when shared)."""
        z = {
            s: self.unit(self.aligned[s](self.normalised_input(s, features[s], present[s])))[present[s]]
            for s in self.config.streams
        }
        for book, quantizer in self.quantizers.items():
            pooled = torch.cat(list(z.values())) if book == SHARED else z[book]
            quantizer.kmeans_init(pooled, seed=seed, iterations=self.config.kmeans_iterations)

    def sequence_input(self, encoded: dict[str, StreamOutput]) -> torch.Tensor:
        """The sequence encoder's item vector: mean of the item's quantized streams ([N, d_c]).

        A missing stream enters through its learned "missing" vector, which is how that vector learns.
        """
        return torch.stack([aligned_quantized(encoded[s]) for s in self.config.streams]).mean(0)

    def losses(
        self,
        batch: dict[str, StreamOutput],
        x: dict[str, torch.Tensor],
        sequence_items: dict[str, StreamOutput] | None = None,
        sequences: torch.Tensor | None = None,
    ) -> LossTerms:
        """All loss terms of the encoders for one step.

        `batch` is the encoded item batch and `x` its input features. For the sequence-to-item contrast,
        `sequences` [U, T] holds rows of the items encoded in `sequence_items` (−1 = padding, right-padded).
        """
        c = self.config
        terms: dict[str, torch.Tensor] = {}

        quant = torch.stack([masked_mean(batch[s].quant.loss, batch[s].present) for s in c.streams]).mean()
        terms["quantizer"] = quant
        recon, club = [], []
        for m in c.modalities:
            o = batch[m]
            target = (x[m] - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
            rebuilt = self.decoders[m](torch.cat([o.quant.straight_through, o.specific], dim=-1))
            recon.append(masked_mean((rebuilt - target).pow(2).mean(-1), o.present))
            rows = o.present.bool()
            club.append(self.clubs[m].upper_bound(o.z[rows], o.specific[rows]) if rows.sum() > 1 else o.z.sum() * 0)
        total = c.quantizer_weight * quant
        if recon:
            terms["recon"] = torch.stack(recon).mean()
            terms["club"] = torch.stack(club).mean()
            total = total + c.recon_weight * terms["recon"] + c.club_weight * terms["club"]
        if c.use_behavior:
            o = batch[BEHAVIOR]
            target = (x[BEHAVIOR] - self.mean_behavior) / self.std_behavior
            rebuilt = self.decoders[BEHAVIOR](o.quant.straight_through)
            terms["behavior_recon"] = masked_mean((rebuilt - target).pow(2).mean(-1), o.present)
            total = total + c.behavior_recon_weight * terms["behavior_recon"]
        for (a, b), weight in self.alignment_pairs().items():
            both = (batch[a].present * batch[b].present).bool()
            if both.sum() < 2:
                continue
            loss = info_nce(aligned_quantized(batch[a])[both], aligned_quantized(batch[b])[both], c.temperature)
            terms[f"align_{a}_{b}"] = loss
            total = total + weight * loss
        if c.seq_weight > 0 and sequences is not None:
            terms["seq"] = self.sequence_loss(sequence_items, sequences)
            total = total + c.seq_weight * terms["seq"]
        return LossTerms(total=total, terms={k: v.detach() for k, v in terms.items()})

    def alignment_pairs(self) -> dict[tuple[str, str], float]:
        c = self.config
        weights = {
            (BEHAVIOR, "text"): c.align_behavior_text_weight,
            (BEHAVIOR, "image"): c.align_behavior_image_weight,
            ("text", "image"): c.align_text_image_weight,
        }
        return {p: w for p, w in weights.items() if w > 0 and set(p) <= set(c.streams)}

    def club_fit_loss(self, batch: dict[str, StreamOutput]) -> torch.Tensor | None:
        """Maximum-likelihood loss of every q_m(s | z) on the (detached) batch, for the CLUB optimiser."""
        losses = []
        for m in self.config.modalities:
            o = batch[m]
            rows = o.present.bool()
            if rows.sum() > 1:
                losses.append(self.clubs[m].fit_loss(o.z[rows].detach(), o.specific[rows].detach()))
        return torch.stack(losses).mean() if losses else None

    def sequence_loss(self, encoded: dict[str, StreamOutput], sequences: torch.Tensor) -> torch.Tensor:
        """State after each prefix vs the quantized vectors of the next item, per stream (in-batch negatives)."""
        c = self.config
        items = self.sequence_input(encoded)  # [N, d_c]
        valid = sequences >= 0  # [U, T]
        states, _ = self.sequence_encoder(items[sequences.clamp(min=0)] * valid[..., None])  # [U, T, d_c]
        has_next = valid[:, 1:]  # prefix ending at t predicts the item at t + 1
        query = F.normalize(self.sequence_head(states[:, :-1][has_next]), dim=-1)  # [P, d_c]
        next_rows = sequences[:, 1:][has_next]  # [P]
        candidates, label = torch.unique(next_rows, return_inverse=True)  # unique items are the classes
        losses = []
        for s in c.streams:
            keys = F.normalize(aligned_quantized(encoded[s])[candidates], dim=-1)  # [C, d_c]
            per_position = F.cross_entropy(query @ keys.T / c.seq_temperature, label, reduction="none")
            losses.append(masked_mean(per_position, encoded[s].present[next_rows]))
        return torch.stack(losses).mean()

    def checkpoint(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "input_dims": self.input_dims, "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], load_state: bool = True) -> BBQTokenizer:
        """The saved tokenizer; with `load_state=False` only its shapes (zero-initialised), for a caller that
        loads the weights as part of a larger state dict."""
        options = dict(checkpoint["config"])
        options["modalities"] = tuple(options["modalities"])
        model = cls(TokenizerConfig(**options), checkpoint["input_dims"])
        if load_state:
            model.load_state_dict(checkpoint["state_dict"])
        return model


def aligned_quantized(o: StreamOutput) -> torch.Tensor:
    """ẑ with gradients to both the codebook and the encoder: what the alignment losses train."""
    return o.quant.quantized + (o.z - o.z.detach())
