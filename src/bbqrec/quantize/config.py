"""Tokenizer options and the named tokenizer presets (torch-free, so the workflow can read them cheaply)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bbqrec.io import InputError

CONTENT_STREAMS = ("text", "image")
BEHAVIOR = "behavior"
SHARED = "shared"


@dataclass(frozen=True)
class TokenizerConfig:
    """Every option of the tokenizer (the config block `quantize` plus the per-tokenizer switches)."""

    modalities: tuple[str, ...] = CONTENT_STREAMS  # content streams used (subset of text, image)
    use_behavior: bool = True  # behaviour stream E_B(x_B) on/off
    codebook: str = SHARED  # `shared` (one residual codebook for all streams) or `separate` (one per stream)
    levels: int = 4  # L
    codebook_size: int = 128  # K
    code_dim: int = 64  # d_c: output of the behaviour-aligned encoders and of the codebook
    specific_dim: int = 32  # d_s: output of the modality-specific encoders
    hidden_dim: int = 256  # hidden width of every encoder / decoder MLP
    standardize_inputs: bool = True  # z-score each input dimension (statistics of the items that have it)
    l2_normalize: bool = True  # z and s on the unit sphere: bounded scale for the quantizer and CLUB
    commitment_beta: float = 0.25
    quantizer_weight: float = 1.0  # weight of codebook + β·commitment
    recon_weight: float = 1.0  # content decoders x_m ← [ẑ_m ; s_m]
    behavior_recon_weight: float = 1.0  # behaviour decoder x_B ← ẑ_B (0 = off)
    club_weight: float = 0.1  # weight of I_CLUB(z_m, s_m) in the encoders' loss
    club_hidden_dim: int = 64
    club_lr: float = 1e-3
    align_behavior_text_weight: float = 1.0  # InfoNCE ẑ_B ↔ ẑ_T
    align_behavior_image_weight: float = 1.0  # InfoNCE ẑ_B ↔ ẑ_I
    align_text_image_weight: float = 1.0  # InfoNCE ẑ_T ↔ ẑ_I
    temperature: float = 0.2  # of the cross-stream InfoNCE
    seq_weight: float = 0.5  # sequence-to-item contrast (0 = off)
    seq_temperature: float = 0.1
    seq_max_len: int = 20  # last N items of each training sequence fed to the sequence encoder
    seq_batch_size: int = 128  # training sequences per step
    epochs: int = 40  # 0: no training; the encoders keep their random initialisation, the codebooks their k-means
    batch_size: int = 256  # items per step
    lr: float = 1e-3
    weight_decay: float = 0.0
    kmeans_iterations: int = 20
    reseed_dead_codes: bool = True  # after each epoch but the last, codes unused in that epoch
    # Semantic IDs: items whose argmin code tuples collide get distinct last-level codes by a capacity-constrained
    # min-cost assignment within their prefix (LC-Rec's uniform semantic mapping; residual.balanced_last_codes).
    balance_last_level: bool = True

    def __post_init__(self):
        unknown = set(self.modalities) - set(CONTENT_STREAMS)
        if unknown or len(set(self.modalities)) != len(self.modalities):
            raise InputError(
                f"config key `modalities`: expected distinct values of {CONTENT_STREAMS}, got {self.modalities}"
            )
        if not self.modalities and not self.use_behavior:
            raise InputError("config keys `modalities` / `use_behavior`: the tokenizer needs at least one stream")
        if self.codebook not in (SHARED, "separate"):
            raise InputError(f"config key `codebook`: expected `shared` or `separate`, got {self.codebook!r}")
        for key in (
            "levels",
            "codebook_size",
            "code_dim",
            "specific_dim",
            "hidden_dim",
            "club_hidden_dim",
            "seq_max_len",
            "seq_batch_size",
            "batch_size",
            "kmeans_iterations",
        ):
            if getattr(self, key) < 1:
                raise InputError(f"config key `{key}`: expected an integer >= 1, got {getattr(self, key)}")
        if self.epochs < 0:
            raise InputError(f"config key `epochs`: expected an integer >= 0, got {self.epochs}")
        if self.temperature <= 0 or self.seq_temperature <= 0:
            raise InputError("config keys `temperature` / `seq_temperature`: expected > 0")

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.modalities) + ((BEHAVIOR,) if self.use_behavior else ())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["modalities"] = list(self.modalities)
        return out


# Behaviour SASRec j of a tokenizer with seed k has seed k + j * BEHAVIOR_SEED_STRIDE: model 0 is the one a
# single-model tokenizer reads, and tokenizers with seeds below the stride share no model.
BEHAVIOR_SEED_STRIDE = 1000


def behavior_seeds(tokenizer_seed: int, models: int) -> list[int]:
    """Seeds of the behaviour SASRecs whose item rows, concatenated, are the x_B of the tokenizer `tokenizer_seed`."""
    if models < 1:
        raise InputError(f"config key `quantize.behavior_models`: expected an integer >= 1, got {models}")
    return [int(tokenizer_seed) + j * BEHAVIOR_SEED_STRIDE for j in range(models)]


# The tokenizers the workflow can build: name -> the switches that define it (they win over the config block).
TOKENIZER_PRESETS: dict[str, dict[str, Any]] = {
    "bbq": {},
    "bbq-no-club": {"club_weight": 0.0},
    # Fragmented quantization: one codebook per modality, no behaviour stream, no behaviour signal at all.
    "bbq-no-behavior": {"codebook": "separate", "use_behavior": False, "seq_weight": 0.0},
    # The control for what training the tokenizer is worth: the same architecture and seed, no gradient step, so
    # its aligned vectors are fixed random (MLP) features of the inputs and its codes their residual k-means.
    "bbq-untrained": {"epochs": 0},
}


def tokenizer_config(name: str, overrides: dict[str, Any] | None = None) -> TokenizerConfig:
    """Defaults < `overrides` (the config block) < the preset switches of tokenizer `name`."""
    if name not in TOKENIZER_PRESETS:
        raise InputError(f"tokenizer {name!r}: expected one of {sorted(TOKENIZER_PRESETS)}")
    known = {f.name for f in dataclasses.fields(TokenizerConfig)}
    options = {**(overrides or {}), **TOKENIZER_PRESETS[name]}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"config key(s) {unknown} of the quantize block: not a tokenizer option ({sorted(known)})")
    if "modalities" in options:
        options["modalities"] = tuple(options["modalities"])
    return TokenizerConfig(**options)
