"""Discretised item-pair similarity and the learned attention bias built on it (BBQRec's reweighting).

For positions p, q of a sequence and streams m, n (text, image, behaviour), the similarity bucket is
- `prefix`: the length of the common prefix of SID_m(i_p) and SID_n(i_q), 0..levels;
- `equal_levels`: how many levels of the two IDs are equal, 0..levels;
- `cosine`: cos(z_m(i_p), z_n(i_q)) of the quantized vectors cut into `cosine_buckets` equal bins of [-1, 1].
A pair of the same item (the diagonal, or a repeated item) gets one more bucket of its own ("self"), so
the table learns similarity between different items rather than "attend less to yourself".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIMILARITIES = ("prefix", "equal_levels", "cosine")


def prefix_ids(codes: Tensor) -> Tensor:
    """Codes [N, M, levels] -> [N, M, levels]: at level l, one id per distinct prefix (c1..cl), over all streams.

    Two IDs share a prefix of length >= l exactly when their level-l prefix ids are equal, so the prefix
    length is a count of equal ids: the same cheap comparison as the equal-level count, without a cumprod.
    """
    flat = codes.reshape(-1, codes.shape[-1])
    ids = [torch.unique(flat[:, : level + 1], dim=0, return_inverse=True)[1] for level in range(flat.shape[1])]
    return torch.stack(ids, dim=-1).view(codes.shape)


def count_equal_keys(keys: Tensor) -> Tensor:
    """Per (query, key) pair and stream pair, how many levels have equal keys: [B, L, M, levels] -> [B, L, L, M, M].

    One [B, L*M, L*M] comparison per level: much faster than broadcasting the 6-d [B, L, L, M, M, levels] one.
    """
    batch, length, streams, levels = keys.shape
    flat = keys.reshape(batch, length * streams, levels)
    count = torch.zeros(batch, length * streams, length * streams, dtype=torch.uint8, device=keys.device)
    for level in range(levels):
        column = flat[:, :, level]
        count += column[:, :, None] == column[:, None, :]
    return count.view(batch, length, streams, length, streams).permute(0, 1, 3, 2, 4)


def cosine_bucket(vectors: Tensor, n_buckets: int) -> Tensor:
    """Bucketed cosine of every (query, key) pair: vectors [B, L, M, d] -> [B, L, L, M, M] in 0..n_buckets-1."""
    unit = F.normalize(vectors, dim=-1)
    cosine = torch.einsum("bpmd,bqnd->bpqmn", unit, unit)  # [B, L, L, M, M]
    return ((cosine + 1) / 2 * n_buckets).floor().long().clamp_(0, n_buckets - 1)


class SimilarityBias(nn.Module):
    """A zero-initialised table w[layer][(m, n), bucket, head]; bias(p, q) = sum over (m, n) of its entries.

    `item_codes` [N+1, M, levels] are the semantic IDs (c1..cL) of every stream; `item_vectors` [N+1, M, d]
    the quantized vectors, used by `cosine` only. Both are frozen inputs (buffers).
    """

    def __init__(
        self,
        kind: str,
        n_layers: int,
        n_heads: int,
        item_codes: Tensor,
        item_vectors: Tensor | None = None,
        cosine_buckets: int = 8,
    ) -> None:
        super().__init__()
        if kind not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")
        if kind == "cosine" and item_vectors is None:
            raise ValueError("similarity 'cosine' needs the quantized item vectors")
        self.kind = kind
        self.cosine_buckets = cosine_buckets
        self.n_streams, self.n_levels = item_codes.shape[1], item_codes.shape[2]
        self.register_buffer("item_codes", item_codes.long())
        # What `buckets` compares level by level: prefix ids (prefix) or the codes themselves (equal_levels).
        keys = prefix_ids(item_codes.long()) if kind == "prefix" else item_codes.long()
        self.register_buffer("level_keys", keys)
        if kind == "cosine":
            self.register_buffer("item_vectors", item_vectors.float())
        similar_buckets = cosine_buckets if kind == "cosine" else self.n_levels + 1
        self.self_bucket = similar_buckets
        self.n_buckets = similar_buckets + 1
        n_pairs = self.n_streams**2
        self.tables = nn.Parameter(torch.zeros(n_layers, n_pairs * self.n_buckets, n_heads))

    def buckets(self, item_seq: Tensor) -> Tensor:
        """Row indices into a layer's table, one per stream pair: [B, L] -> [B, L, L, M*M]."""
        if self.kind == "cosine":
            bucket = cosine_bucket(self.item_vectors[item_seq], self.cosine_buckets)
        else:  # prefix length or equal-level count, 0..levels
            bucket = count_equal_keys(self.level_keys[item_seq]).long()
        same_item = (item_seq[:, :, None] == item_seq[:, None, :])[..., None, None]  # [B, L, L, 1, 1]
        bucket = torch.where(same_item, self.self_bucket, bucket).flatten(3)  # [B, L, L, M*M]
        pair = torch.arange(bucket.shape[-1], device=bucket.device)
        return pair * self.n_buckets + bucket

    def one_hot(self, buckets: Tensor) -> Tensor:
        """Table-row indicators of every (query, key) pair: buckets [B, L, L, M*M] -> [B, L, L, rows] (0/1 float).

        A bias is then one matrix product with the table, whose gradient is another: on a CPU, about six times
        faster than gathering the M*M entries per pair.
        """
        counts = torch.zeros(*buckets.shape[:3], self.tables.shape[1], device=buckets.device)
        return counts.scatter_(-1, buckets, 1.0)

    def forward(self, item_seq: Tensor) -> Tensor:
        """Every layer's bias for sequences [B, L]: [layers, B, H, L, L]."""
        if self.kind == "prefix":
            if torch.is_grad_enabled():
                return self._prefix_bias(item_seq)
            # without gradients nothing is kept for a backward pass: a few sequences at a time stay in cache
            return torch.cat([self._prefix_bias(chunk) for chunk in item_seq.split(16)], dim=1)
        return torch.einsum("bpqr,lrh->lbhpq", self.one_hot(self.buckets(item_seq)), self.tables)

    def _prefix_bias(self, item_seq: Tensor) -> Tensor:
        """The prefix-length bias as a sum over levels, without the buckets.

        A table row w[s] (s = prefix length 0..levels) is w[0] + sum over l <= s of (w[l] - w[l-1]), and
        "prefix length >= l" is "equal level-l prefix ids". So the bias of a pair of different items is
        w[0] summed over stream pairs plus a matrix product of the [M*M*levels] equality indicators with the
        table's level differences. Measured on 64 real MovieLens sequences of 200 items (3 streams, 4 levels):
        forward + backward 1.6 s against 4.4 s for buckets + `one_hot`, in a fraction of the memory. A pair of the
        same item takes the "self" rows instead. Only the prefix length nests this way: the other kinds keep
        `one_hot`.
        """
        keys = self.level_keys[item_seq].to(torch.int32)  # [B, L, M, levels]; int32 compares faster
        batch, length, streams, levels = keys.shape
        keys = keys.permute(0, 2, 3, 1)  # [B, M, levels, L]
        equal = keys[:, :, None, :, :, None] == keys[:, None, :, :, None, :]  # [B, M, M, levels, L, L]
        equal = equal.view(batch, streams * streams * levels, length * length).float()
        n_layers, _, n_heads = self.tables.shape
        tables = self.tables.view(n_layers, streams * streams, self.n_buckets, n_heads)
        steps = tables[:, :, 1 : levels + 1] - tables[:, :, :levels]  # [layers, M*M, levels, H]
        steps = steps.permute(0, 3, 1, 2).reshape(n_layers * n_heads, -1)  # [layers*H, M*M*levels]
        bias = (steps @ equal).view(batch, n_layers, n_heads, length, length)
        bias = bias + tables[:, :, 0].sum(dim=1)[:, :, None, None]  # w[0] of every stream pair
        same_item = (item_seq[:, :, None] == item_seq[:, None, :])[:, None, None]  # [B, 1, 1, L, L]
        self_rows = tables[:, :, self.self_bucket].sum(dim=1)[:, :, None, None]  # [layers, H, 1, 1]
        return torch.where(same_item, self_rows, bias).transpose(0, 1)  # [layers, B, H, L, L]
