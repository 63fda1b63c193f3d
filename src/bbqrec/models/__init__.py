"""bbqrec.models: the sequence model (SASRec + BBQRec's item inputs and attention reweighting).

`variants` is torch-free and imported eagerly; the model itself is imported on first use, so that reading the
variant table (the workflow does it at every start) does not load torch.
"""

from bbqrec.models.variants import VARIANTS, Variant, get_variant

_LAZY = {"ModelConfig", "SASRec", "pad_sequences"}


def __getattr__(name):
    if name in _LAZY:
        from bbqrec.models import sasrec

        return getattr(sasrec, name)
    raise AttributeError(f"module 'bbqrec.models' has no attribute {name!r}")


__all__ = ["VARIANTS", "ModelConfig", "SASRec", "Variant", "get_variant", "pad_sequences"]
