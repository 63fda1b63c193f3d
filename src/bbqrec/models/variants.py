"""The model variants the pipeline runs side by side, each mapped to its model options in one table."""

from __future__ import annotations

from dataclasses import dataclass

from bbqrec.io import InputError

# The attention reweightings (bbqrec.models.similarity): by SID prefix-match length, with the levels tied, by cosine.
SIMILARITIES = ("prefix", "equal_levels", "cosine")


@dataclass(frozen=True)
class Variant:
    loss: str  # "ce" (full softmax) or "bce" (one sampled negative)
    item_inputs: str  # "id": ID only; "embeddings": + continuous text/image vectors; "sids": + tokenizer's quantized vectors
    similarity: str | None  # attention reweighting: None, "prefix", "equal_levels" or "cosine"
    tokenizer: str | None  # the tokenizer output folder (results/<ds>/sids/<tokenizer>/) for "sids" inputs


VARIANTS: dict[str, Variant] = {
    "sasrec": Variant("ce", "id", None, None),
    "sasrec-bce": Variant("bce", "id", None, None),
    "sasrec-mm": Variant("ce", "embeddings", None, None),
    "bbqrec": Variant("ce", "sids", "prefix", "bbq"),
    "bbqrec-no-club": Variant("ce", "sids", "prefix", "bbq-no-club"),
    "bbqrec-no-behavior": Variant("ce", "sids", "prefix", "bbq-no-behavior"),
    "bbqrec-no-reweight": Variant("ce", "sids", None, "bbq"),
    "bbqrec-cosine": Variant("ce", "sids", "cosine", "bbq"),
    # Not in METHOD.md: bbqrec on an untrained tokenizer (fixed random features and their k-means codes), the
    # control for what the tokenizer's training adds (docs/results.md, "What training the tokenizer adds").
    "bbqrec-untrained": Variant("ce", "sids", "prefix", "bbq-untrained"),
}


def get_variant(name: str) -> Variant:
    """The variant called `name`; an unknown name is an InputError listing the known ones."""
    if name not in VARIANTS:
        raise InputError(f"config key variant: unknown variant {name!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[name]
