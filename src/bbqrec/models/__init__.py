"""bbqrec.models: the sequence model (SASRec + BBQRec's item inputs and attention reweighting).

`variants` is torch-free and imported eagerly; the model itself is imported on first use, so that reading the
variant table (the workflow does it at every start) does not load torch.
"""

from bbqrec.lazy import lazy_exports
from bbqrec.models.variants import VARIANTS, Variant, get_variant

# The model's public names, loaded on first use (tests/test_train_loop.py checks the list against the module).
MODEL_NAMES = ("ModelConfig", "SASRec", "pad_sequences")
__getattr__, __dir__ = lazy_exports(__name__, "bbqrec.models.sasrec", MODEL_NAMES)

__all__ = ["VARIANTS", "ModelConfig", "SASRec", "Variant", "get_variant", "pad_sequences"]
