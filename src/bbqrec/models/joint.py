"""One-stage training: the recommender trains the tokenizer's quantized item vectors further instead of reading
frozen codes (METHOD.md, "Training is two-stage (default)"; `train.options.tokenizer_training: joint`).

The stage-1 tokenizer is the starting point. One objective then trains it with the recommender: the
recommendation loss reaches the behaviour-aligned encoders, "missing" vectors and codebook(s) through ẑ
(straight-through to the encoder, directly to the codebook), and the tokenizer's own losses on the items of
each step (quantizer, reconstruction, CLUB bound, behaviour reconstruction, cross-stream alignment) keep the
codes what stage 1 made them for. Left out: the sequence-to-item contrast (its small sequence encoder stood in
for the recommender, which now trains the codes itself) and the refitting of CLUB's q, which stays as stage 1
fitted it (a second, alternating optimiser). Every step re-encodes all items, so the codes that the similarity
bias compares follow the codebook. The codes are the argmin codes: the balanced last level of the SIDs file is
a stage-1 post-processing, not a trained part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bbqrec.quantize.tokenizer import BBQTokenizer, aligned_quantized
from bbqrec.training.config import STREAM_ORDER  # the streams in the order of the SIDs files' codes


@dataclass
class QuantizedItems:
    """Every item's quantized vectors and codes in one state of the tokenizer (row 0 = padding)."""

    vectors: Tensor  # [N+1, M, d] ẑ of each stream; zeros where an item lacks the stream
    codes: Tensor  # [N+1, M, levels]; -item_id where an item lacks the stream (matches no other item)


class JointQuantizer(nn.Module):
    """The tokenizer inside the recommender: `forward()` quantizes every item with the current weights.

    `features[s]` [N, D_s] and `present[s]` [N] (items 1..N in order) are the tokenizer's inputs, frozen buffers.
    """

    def __init__(self, tokenizer: BBQTokenizer, features: dict[str, Tensor], present: dict[str, Tensor]) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.streams = [s for s in STREAM_ORDER if s in tokenizer.config.streams]
        trained_parts = (tokenizer.aligned, tokenizer.specific, tokenizer.decoders, tokenizer.missing)
        trained = {id(p) for part in (*trained_parts, tokenizer.quantizers) for p in part.parameters()}
        for parameter in tokenizer.parameters():  # CLUB's q and the sequence encoder stay as stage 1 left them
            parameter.requires_grad_(id(parameter) in trained)
        for s in self.streams:
            self.register_buffer(f"features_{s}", features[s].float())
            self.register_buffer(f"present_{s}", present[s].bool())

    @property
    def n_items(self) -> int:
        return getattr(self, f"present_{self.streams[0]}").shape[0]

    def forward(self) -> QuantizedItems:
        features = {s: getattr(self, f"features_{s}") for s in self.streams}
        present = {s: getattr(self, f"present_{s}") for s in self.streams}
        encoded = self.tokenizer.encode(features, present, specific=False)
        item_ids = torch.arange(1, self.n_items + 1, device=features[self.streams[0]].device)
        vectors, codes = [], []
        for s in self.streams:
            has = present[s][:, None]
            vectors.append(aligned_quantized(encoded[s]) * has)
            codes.append(torch.where(has, encoded[s].quant.codes, -item_ids[:, None]))
        vectors, codes = torch.stack(vectors, dim=1), torch.stack(codes, dim=1)  # [N, M, d], [N, M, levels]
        return QuantizedItems(
            vectors=torch.cat([vectors.new_zeros(1, *vectors.shape[1:]), vectors]),
            codes=torch.cat([codes.new_zeros(1, *codes.shape[1:]), codes]),
        )

    def tokenizer_loss(self, items: Tensor) -> Tensor:
        """The tokenizer's own loss (stage 1's total, without the sequence contrast) on `items` (ids 1..N)."""
        rows = items - 1
        features = {s: getattr(self, f"features_{s}")[rows] for s in self.streams}
        present = {s: getattr(self, f"present_{s}")[rows] for s in self.streams}
        return self.tokenizer.losses(self.tokenizer.encode(features, present), features).total

    def checkpoint(self) -> dict:
        """What `from_checkpoint` needs besides the state dict (which holds the weights and the inputs)."""
        return {
            "tokenizer": {k: v for k, v in self.tokenizer.checkpoint().items() if k != "state_dict"},
            "feature_dims": {s: getattr(self, f"features_{s}").shape[1] for s in self.streams},
            "n_items": self.n_items,
        }

    @classmethod
    def from_checkpoint(cls, saved: dict) -> "JointQuantizer":
        """An instance of the saved shapes with zero weights and inputs: load the state dict next."""
        tokenizer = BBQTokenizer.from_checkpoint(saved["tokenizer"], load_state=False)
        rows = saved["n_items"]
        features = {s: torch.zeros(rows, dim) for s, dim in saved["feature_dims"].items()}
        present = {s: torch.zeros(rows, dtype=torch.bool) for s in saved["feature_dims"]}
        return cls(tokenizer, features, present)
