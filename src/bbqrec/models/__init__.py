"""bbqrec.models: the sequence model (SASRec + BBQRec's item inputs and attention reweighting)."""

from bbqrec.models.sasrec import ModelConfig, SASRec, pad_sequences
from bbqrec.models.variants import VARIANTS, Variant, get_variant

__all__ = ["VARIANTS", "ModelConfig", "SASRec", "Variant", "get_variant", "pad_sequences"]
