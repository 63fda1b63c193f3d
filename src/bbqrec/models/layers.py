"""Transformer pieces shared by the sequence models: the attention-bias helper and the block.

Sequences are left-aligned: items first, padding (id 0) after them, so that position p of a sequence is the
same position in every prefix of it (training on the whole sequence equals training on each prefix).
Several short sequences may share one row ("packing"): `segments` then says which sequence each slot
belongs to, and attention never crosses from one to another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Bias of a forbidden (query, key) pair. Finite, so that a row with no allowed key (an all-padding query)
# gives a uniform softmax instead of NaN; exp(MASKED - max) is exactly 0 in float32 otherwise.
MASKED = torch.finfo(torch.float32).min


def allowed_pairs(item_seq: Tensor, segments: Tensor | None = None) -> Tensor:
    """Which (query p, key q) pairs of `item_seq` [B, L] may attend: [B, L, L] bool.

    q <= p (causal), item q is not padding and, with `segments` [B, L], both belong to the same sequence.
    """
    length = item_seq.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=item_seq.device).tril()  # [L, L]
    allowed = causal & (item_seq != 0)[:, None, :]  # [B, L, L]
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    return allowed


def attention_bias(allowed: Tensor) -> Tensor:
    """The additive attention bias [B, 1, L, L] of plain SASRec: 0 on the `allowed` pairs [B, L, L] (see
    `allowed_pairs`), `MASKED` elsewhere. The similarity reweighting builds its own (models.similarity)."""
    zero = torch.zeros((), dtype=torch.float32, device=allowed.device)
    return torch.where(allowed[:, None], zero, MASKED)


class TransformerBlock(nn.Module):
    """Multi-head self-attention + feed-forward, each with dropout, a residual connection and a layer norm.

    `norm_first=False` is the post-LN block of RecBole's SASRec (norm after each residual sum);
    `norm_first=True` the pre-LN block (norm on each sublayer's input; the model then adds a final norm).
    """

    def __init__(
        self,
        hidden_size: int,
        n_heads: int,
        inner_size: int,
        dropout: float,
        attn_dropout: float,
        norm_first: bool,
        layer_norm_eps: float,
    ) -> None:
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.norm_first = norm_first
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attn_out = nn.Linear(hidden_size, hidden_size)
        self.ffn_in = nn.Linear(hidden_size, inner_size)
        self.ffn_out = nn.Linear(inner_size, hidden_size)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor, query_positions: Tensor | None = None) -> Tensor:
        """x [B, L, D], bias [B, H or 1, L, L] -> [B, L, D].

        query_positions [B]: only the output at that position of each sequence, [B, 1, D]; `bias` is then those
        queries' rows, [B, H or 1, 1, L]. Every position is still a key, but one query per sequence skips most of
        the block: what scoring the next item needs of the last block.
        """
        if query_positions is None:
            residual = x
        else:
            residual = x[torch.arange(len(x), device=x.device), query_positions, None]
        if self.norm_first:
            x = residual + self._attention(self.attn_norm(x), bias, query_positions)
            return x + self._feed_forward(self.ffn_norm(x))
        x = self.attn_norm(residual + self._attention(x, bias, query_positions))
        return self.ffn_norm(x + self._feed_forward(x))

    def _attention(self, x: Tensor, bias: Tensor, query_positions: Tensor | None) -> Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, Dh]
        if query_positions is not None:  # one query per sequence: [B, H, 1, Dh]
            q = q[torch.arange(batch, device=x.device), :, query_positions, None]
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_dropout if self.training else 0.0
        )  # [B, H, L or 1, Dh]
        return self.dropout(self.attn_out(context.transpose(1, 2).reshape(batch, -1, hidden)))

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.ffn_out(F.gelu(self.ffn_in(x))))
