"""BBQRec: behaviour-bind quantization for multi-modal sequential recommendation.

Shared code of the workflow stages: data adapters and splits (`bbqrec.data`), modality embeddings
(`bbqrec.embed`), the tokenizer (`bbqrec.quantize`), the sequence models (`bbqrec.models`) and the
evaluation protocol (`bbqrec.evaluation`). Stage scripts under `workflow/scripts/` stay thin wrappers.
"""

__version__ = "0.1.0"
