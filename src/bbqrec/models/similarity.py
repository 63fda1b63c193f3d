"""Discretised item-pair similarity and the learned attention bias built on it (BBQRec's reweighting).

For positions p, q of a sequence and streams m, n (text, image, behaviour), the similarity bucket is
- `prefix`: the length of the common prefix of SID_m(i_p) and SID_n(i_q), 0..levels;
- `equal_levels`: how many levels of the two IDs are equal, 0..levels;
- `cosine`: cos(z_m(i_p), z_n(i_q)) of the quantized vectors cut into `cosine_buckets` equal bins of [-1, 1].
A pair of the same item (the diagonal, or a repeated item) gets one more bucket of its own ("self"), so
the table learns similarity between different items rather than "attend less to yourself".
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bbqrec.models.layers import MASKED
from bbqrec.models.variants import SIMILARITIES

# Item pairs per chunk when no gradient is needed (evaluation): bounds memory to about 0.3 GB.
PAIRS_PER_CHUNK = 1 << 20
# The prefix bias enumerates code matches while their candidates are at most this share of the dense path's
# comparisons (allowed pairs x M*M x levels): about 2% on 200-item rows, 5-12% on short ones. The paths cost the
# same at about 0.09 on MovieLens-100K and 0.075 on Scientific (benchmarks/bench_prefix_bias.py, one AVX2 thread);
# below both, since AVX-512 speeds up the dense path's products more than the sort.
SPARSE_SHARE = 0.05


def prefix_ids(codes: Tensor) -> Tensor:
    """Codes [N, M, levels] -> [N, M, levels]: at level l, one id per distinct prefix (c1..cl), over all streams.

    Two IDs share a prefix of length >= l exactly when their level-l prefix ids are equal, so the prefix
    length is a count of equal ids: the same cheap comparison as the equal-level count, without a cumprod.
    """
    flat = codes.reshape(-1, codes.shape[-1])
    ids = [torch.unique(flat[:, : level + 1], dim=0, return_inverse=True)[1] for level in range(flat.shape[1])]
    return torch.stack(ids, dim=-1).view(codes.shape)


def cosine_bucket(query_vectors: Tensor, key_vectors: Tensor, n_buckets: int) -> Tensor:
    """Bucketed cosine of every stream pair of item pairs: vectors [P, M, d] twice -> [P, M, M] in 0..n_buckets-1."""
    cosine = torch.einsum("pmd,pnd->pmn", F.normalize(query_vectors, dim=-1), F.normalize(key_vectors, dim=-1))
    return ((cosine + 1) / 2 * n_buckets).floor().long().clamp_(0, n_buckets - 1)


class SimilarityBias(nn.Module):
    """A zero-initialised table w[layer][(m, n), bucket, head]; bias(p, q) = sum over (m, n) of its entries.

    `item_codes` [N+1, M, levels] are the semantic IDs (c1..cL) of every stream; `item_vectors` [N+1, M, d]
    the quantized vectors, used by `cosine` only. Both are buffers: frozen inputs, or with one-stage training
    replaced every step (`set_codes`).
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
        self.register_buffer("level_keys", self._level_keys(item_codes))
        if kind == "cosine":
            self.register_buffer("item_vectors", item_vectors.float())
        similar_buckets = cosine_buckets if kind == "cosine" else self.n_levels + 1
        self.self_bucket = similar_buckets
        self.n_buckets = similar_buckets + 1
        n_pairs = self.n_streams**2
        self.tables = nn.Parameter(torch.zeros(n_layers, n_pairs * self.n_buckets, n_heads))

    def _level_keys(self, item_codes: Tensor) -> Tensor:
        # What `buckets` compares level by level: prefix ids (prefix) or the codes themselves (equal_levels).
        return prefix_ids(item_codes.long()) if self.kind == "prefix" else item_codes.long()

    @torch.no_grad()
    def set_codes(self, item_codes: Tensor, item_vectors: Tensor | None = None) -> None:
        """New codes (and, for `cosine`, vectors) of every item: one-stage training recomputes them each step."""
        self.item_codes.copy_(item_codes)
        self.level_keys.copy_(self._level_keys(item_codes))
        if self.kind == "cosine":
            self.item_vectors.copy_(item_vectors)

    def bucket_labels(self) -> list[str]:
        """A stream pair's buckets by name, in table order; the last is the same-item bucket."""
        if self.kind == "cosine":
            edges = [-1 + 2 * b / self.cosine_buckets for b in range(self.cosine_buckets + 1)]
            similar = [f"cosine {low:+.2f} to {high:+.2f}" for low, high in zip(edges, edges[1:])]
        else:
            word = "shared prefix" if self.kind == "prefix" else "equal levels"
            similar = [f"{word} {s}" for s in range(self.n_levels + 1)]
        return [*similar, "same item"]

    def table_frame(self, streams: Sequence[str]) -> pl.DataFrame:
        """The learned tables, one row per entry: query_stream (of the attending position's item), key_stream,
        layer, head, bucket, bucket_label, bias. `streams` names the M streams in code order."""
        if len(streams) != self.n_streams:
            raise ValueError(f"{len(streams)} stream names for {self.n_streams} streams")
        n_layers, _, n_heads = self.tables.shape
        labels = self.bucket_labels()
        tables = self.tables.detach().float().cpu()
        # rows in reading order: stream pair, layer, head, bucket
        values = tables.view(n_layers, self.n_streams, self.n_streams, self.n_buckets, n_heads).permute(1, 2, 0, 4, 3)
        query, key, layer, head, bucket = (
            index.flatten().tolist() for index in torch.meshgrid(*map(torch.arange, values.shape), indexing="ij")
        )
        return pl.DataFrame(
            {
                "query_stream": [streams[m] for m in query],
                "key_stream": [streams[n] for n in key],
                "layer": layer,
                "head": head,
                "bucket": bucket,
                "bucket_label": [labels[b] for b in bucket],
                "bias": values.flatten().tolist(),
            },
            schema_overrides={"layer": pl.Int32, "head": pl.Int32, "bucket": pl.Int32, "bias": pl.Float32},
        )

    def pair_buckets(self, query_items: Tensor, key_items: Tensor) -> Tensor:
        """Row indices into a layer's table of item pairs, one per stream pair: items [P] twice -> [P, M*M]."""
        if self.kind == "cosine":
            bucket = cosine_bucket(self.item_vectors[query_items], self.item_vectors[key_items], self.cosine_buckets)
        else:  # prefix length or equal-level count, 0..levels
            equal = self._equal_levels(query_items, key_items).view(-1, self.n_streams, self.n_streams, self.n_levels)
            bucket = equal.sum(dim=-1)
        bucket = torch.where((query_items == key_items)[:, None, None], self.self_bucket, bucket).flatten(1)
        pair = torch.arange(bucket.shape[-1], device=bucket.device)
        return pair * self.n_buckets + bucket

    def pair_bias(self, query_items: Tensor, key_items: Tensor) -> Tensor:
        """The bias of item pairs in every layer and head: items [P] twice -> [P, layers * H]."""
        if self.kind == "prefix":
            return self._prefix_bias(query_items, key_items)
        n_layers, rows, n_heads = self.tables.shape
        buckets = self.pair_buckets(query_items, key_items)
        one_hot = torch.zeros(len(buckets), rows, device=buckets.device).scatter_(-1, buckets, 1.0)
        # a matrix product with the table (and its gradient another): on a CPU much faster than a gather
        return one_hot @ self.tables.permute(1, 0, 2).reshape(rows, n_layers * n_heads)

    def forward(self, item_seq: Tensor, allowed: Tensor) -> Tensor:
        """Every layer's attention bias for sequences [B, L]: [layers, B, H, L, L], the similarity bias on the
        `allowed` pairs [B, L, L] (see layers.allowed_pairs) and `MASKED` elsewhere.

        The bias of a position pair is the bias of its item pair; a pair with padding (a padding query, which
        attention never reads back) counts as sharing nothing. The prefix kind adds the table steps of the few
        code matches to a constant (`_PrefixBiasFromMatches`); otherwise, and when matches are many, the bias
        is computed for every pair that attention uses (causal, within one packed sequence).
        """
        return self._biases(item_seq, allowed, None)[0]

    def layer_biases(self, item_seq: Tensor, allowed: Tensor, query_positions: Tensor | None = None) -> list[Tensor]:
        """Each layer's bias, as `SASRec.encode` hands them to its blocks: [B, H, L, L] per layer (see `forward`).

        With `query_positions` [B] the last layer's is [B, H, 1, L], the bias row of that one query per sequence:
        the last block computes nothing else, so the other rows of its bias are not built. The row holds the
        same floats as `forward`'s (the same code matches, added in the same order).
        """
        every_row, query_rows = self._biases(item_seq, allowed, query_positions)
        return [*every_row, *([] if query_rows is None else query_rows)]

    def _biases(
        self, item_seq: Tensor, allowed: Tensor, query_positions: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """The bias of every query row in the layers before the last ([layers, B, H, L, L]; in every layer without
        `query_positions`) and of the query positions' rows in the last layer ([1, B, H, 1, L], or None)."""
        n_layers = self.tables.shape[0]
        matches = self._prefix_matches(item_seq, allowed) if self.kind == "prefix" else None
        every_layer = query_positions is None
        every_row = self._grid_bias(item_seq, allowed, matches, range(n_layers if every_layer else n_layers - 1))
        if every_layer:
            return every_row, None
        sequence = torch.arange(len(item_seq), device=item_seq.device)
        row_allowed = allowed[sequence, query_positions, None]  # [B, 1, L]
        if matches is not None:  # the matches of the query rows, in their order
            row, query, key, step = matches
            keep = query == query_positions[row]
            matches = (row[keep], torch.zeros_like(row[keep]), key[keep], step[keep])
        query_rows = self._grid_bias(item_seq, row_allowed, matches, range(n_layers - 1, n_layers), query_positions)
        return every_row, query_rows

    def _grid_bias(
        self,
        item_seq: Tensor,
        allowed: Tensor,
        matches: tuple[Tensor, ...] | None,
        layers: range,
        query_positions: Tensor | None = None,
    ) -> Tensor:
        """The bias [len(layers), B, H, Q, L] of a grid of query rows: `allowed` [B, Q, L] says which pairs
        attention uses. Its rows are the positions 0..L-1 (Q = L), or with `query_positions` [B] one row per
        sequence (Q = 1). `matches`: `_prefix_matches` of those rows (their query index in the grid), or None for
        the dense path. Every table column is computed and the layers' ones kept, so the floats do not depend
        on which layers are asked for."""
        batch, n_queries, length = allowed.shape
        n_heads = self.tables.shape[2]
        if not layers:
            return self.tables.new_empty((0, batch, n_heads, n_queries, length))
        columns = slice(layers.start * n_heads, layers.stop * n_heads)
        if query_positions is None:
            query_items = item_seq
        else:
            query_items = item_seq.gather(1, query_positions[:, None])  # [B, 1]
        if matches is not None:
            row, query, key, step = matches
            same = allowed & (query_items[:, :, None] == item_seq[:, None, :])
            flat = self._layout_index(row, query, key, len(layers), batch, n_queries, length).flatten()
            steps, no_prefix, same_item = (part[..., columns] for part in self._prefix_rows())
            shape = (len(layers), batch, n_heads, n_queries, length)
            return _PrefixBiasFromMatches.apply(steps, no_prefix, same_item, allowed, same, flat, step, shape)
        row, query, key = allowed.nonzero(as_tuple=True)
        query_item, key_item = query_items[row, query], item_seq[row, key]
        if torch.is_grad_enabled():
            values = self.pair_bias(query_item, key_item)
        else:  # nothing is kept for a backward pass: bounded memory in chunks of pairs
            chunks = zip(query_item.split(PAIRS_PER_CHUNK), key_item.split(PAIRS_PER_CHUNK))
            values = torch.cat([self.pair_bias(q, k) for q, k in chunks])
        # written straight into the contiguous [layers, B, H, Q, L] layout that attention reads
        flat = self._layout_index(row, query, key, len(layers), batch, n_queries, length)  # [P, layers, H]
        values = values[:, columns].reshape(-1, len(layers), n_heads)
        bias = values.new_full((len(layers) * batch * n_heads * n_queries * length,), MASKED)
        shape = (len(layers), batch, n_heads, n_queries, length)
        return bias.index_copy(0, flat.flatten(), values.flatten()).view(shape)

    def _layout_index(
        self, row: Tensor, query: Tensor, key: Tensor, n_layers: int, batch: int, n_queries: int, length: int
    ) -> Tensor:
        """Where position pairs [P] (row, query, key) lie in a flat [layers, B, H, Q, L] bias: [P, layers, H]."""
        n_heads = self.tables.shape[2]
        layer = torch.arange(n_layers, device=row.device)[:, None]
        head = torch.arange(n_heads, device=row.device)
        rows = (layer * batch + row[:, None, None]) * n_heads + head  # [P, layers, H]
        return (rows * n_queries + query[:, None, None]) * length + key[:, None, None]

    def _prefix_matches(self, item_seq: Tensor, allowed: Tensor) -> tuple[Tensor, ...] | None:
        """Every allowed pair of different items whose level-l prefix ids agree in streams m (query) and n (key):
        row, query, key and step = (m*M + n)*levels + l, each [K]. None when they are many (a tokenizer with
        few distinct codes), where the dense comparison of every pair is cheaper.

        Equal ids are found by sorting: every (row, level, id) group of (position, stream) elements pairs up,
        so the work grows with the matches (about 1/K of the pairs at level 1 for K codes), not with M*M*levels
        comparisons of every pair. With causal `allowed` pairs (every model's) an element pairs only with those
        before it in its group, fewer than half the candidates; the matches kept, and their order, are the same.
        """
        streams, levels = self.n_streams, self.n_levels
        row, position, order, counts = self._prefix_groups(item_seq)
        start, size = self._candidate_keys(counts, causal=not allowed.triu(1).any())
        n_candidates = int(size.sum())
        if n_candidates > SPARSE_SHARE * self.dense_comparisons(allowed):
            return None
        # each sorted element (first) with the first `size` elements of its group, in sorted order
        first = torch.arange(len(order), device=order.device).repeat_interleave(size)
        offset = torch.arange(n_candidates, device=order.device) - (size.cumsum(0) - size).repeat_interleave(size)
        query_element, key_element = order[first], order[start.repeat_interleave(size) + offset]
        per_position = streams * levels  # elements are laid out [E, M, levels]
        query_at, key_at = query_element // per_position, key_element // per_position
        query, key, pair_row = position[query_at], position[key_at], row[query_at]
        keep = allowed[pair_row, query, key] & (item_seq[pair_row, query] != item_seq[pair_row, key])
        query_stream = query_element[keep] // levels % streams
        key_stream = key_element[keep] // levels % streams
        step = (query_stream * streams + key_stream) * levels + query_element[keep] % levels
        return pair_row[keep], query[keep], key[keep], step

    def _prefix_groups(self, item_seq: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The item positions (row, position, each [E]) and their (position, stream, level) elements sorted by
        (row, level, prefix id): `order` [E*M*levels] into the elements laid out [E, M, levels], and the sizes
        of the runs of equal keys, `counts`."""
        row, position = (item_seq != 0).nonzero(as_tuple=True)  # [E] item positions
        keys = self.level_keys[item_seq[row, position]]  # [E, M, levels]
        level = torch.arange(self.n_levels, device=item_seq.device)
        group = ((row[:, None, None] * self.n_levels + level) * (int(self.level_keys.max()) + 1) + keys).flatten()
        order = torch.argsort(group, stable=True)  # stable: the same matches in the same order every time
        _, counts = torch.unique_consecutive(group[order], return_counts=True)
        return row, position, order, counts

    @staticmethod
    def _candidate_keys(counts: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
        """Per sorted element: where its group starts, and with how many of the group's first elements it is
        listed as the query. All of them; or, for causal pairs, those before it: a group is sorted by position,
        so these are the keys before the query's position or at it in another stream, and the others are never
        kept (a later position is not causal; the element itself, or another stream at its position, is the
        same item)."""
        start = (counts.cumsum(0) - counts).repeat_interleave(counts)
        if not causal:
            return start, counts.repeat_interleave(counts)
        return start, torch.arange(len(start), device=counts.device) - start

    def match_candidates(self, item_seq: Tensor, causal: bool = True) -> int:
        """How many (element, element) pairs of equal prefix ids `_prefix_matches` lists for `item_seq` [B, L],
        before it keeps the allowed pairs of different items: its cost, against `dense_comparisons`. `causal`:
        whether the allowed pairs are causal ones (`layers.allowed_pairs`), as in every model."""
        counts = self._prefix_groups(item_seq)[3]
        return int(self._candidate_keys(counts, causal)[1].sum())

    def dense_comparisons(self, allowed: Tensor) -> int:
        """The level comparisons of the every-pair path: allowed pairs x M*M stream pairs x levels."""
        return int(allowed.sum()) * self.n_streams**2 * self.n_levels

    def _equal_levels(self, query_items: Tensor, key_items: Tensor) -> Tensor:
        """Level by level, whether the level keys of every stream pair are equal: [P] twice -> [P, M*M*levels].

        The keys are laid out per (query stream m, key stream n, level) first, so that the comparison is one
        contiguous one of two gathered rows: several times faster than broadcasting [P, M, 1, levels] against
        [P, 1, M, levels]. int32 compares faster than int64.
        """
        keys = self.level_keys.to(torch.int32)
        layout = (keys.shape[0], self.n_streams, self.n_streams, self.n_levels)
        as_query = keys[:, :, None, :].expand(layout).reshape(keys.shape[0], -1)
        as_key = keys[:, None, :, :].expand(layout).reshape(keys.shape[0], -1)
        return as_query.index_select(0, query_items) == as_key.index_select(0, key_items)

    def _prefix_bias(self, query_items: Tensor, key_items: Tensor) -> Tensor:
        """The prefix-length bias of item pairs as a sum over levels, without the buckets: [P] twice -> [P, layers*H].

        A table row w[s] (s = prefix length 0..levels) is w[0] + sum over l <= s of (w[l] - w[l-1]), and
        "prefix length >= l" is "equal level-l prefix ids". So the bias of a pair of different items is
        w[0] summed over stream pairs plus a matrix product of the [M*M*levels] equality indicators with the
        table's level differences: fewer columns than the one-hot rows, and no bucket to build. A pair of the
        same item takes the "self" rows instead. Only the prefix length nests this way: the other kinds keep
        the one-hot rows.
        """
        equal = self._equal_levels(query_items, key_items)  # [P, M*M*levels]
        equal &= (query_items != 0)[:, None]  # padding shares no prefix (as in `_prefix_matches`)
        steps, no_prefix, same_item = self._prefix_rows()
        bias = equal.float() @ steps + no_prefix
        return torch.where((query_items == key_items)[:, None], same_item, bias)

    def _prefix_rows(self) -> tuple[Tensor, Tensor, Tensor]:
        """The prefix table as level steps w[l] - w[l-1] [M*M*levels, layers*H] (rows in (m, n, l) order), and
        the bias of sharing no prefix (w[0] summed over stream pairs) and of the same item, each [layers*H]."""
        streams, levels = self.n_streams, self.n_levels
        n_layers, _, n_heads = self.tables.shape
        tables = self.tables.view(n_layers, streams * streams, self.n_buckets, n_heads)
        steps = tables[:, :, 1 : levels + 1] - tables[:, :, :levels]  # [layers, M*M, levels, H]
        steps = steps.permute(1, 2, 0, 3).reshape(-1, n_layers * n_heads)
        return steps, tables[:, :, 0].sum(dim=1).flatten(), tables[:, :, self.self_bucket].sum(dim=1).flatten()


class _PrefixBiasFromMatches(torch.autograd.Function):
    """Writes the prefix bias into the [layers, B, H, Q, L] layout and sums its gradient back into the table rows.

    An allowed pair of different items gets w[0] summed over the stream pairs plus the level step w[l] - w[l-1] of
    each code match (see `_prefix_bias`), a pair of the same item the "self" rows, a forbidden pair `MASKED`.

    Autograd through `torch.where` and an in-place `index_add_` would keep full-size zero and copy tensors for
    the backward pass; here the gradient of the two constant rows is one masked sum over the grid and that of
    the level steps a gather at the matched cells.
    """

    @staticmethod
    def forward(ctx, steps, no_prefix, same_item, allowed, same, flat, step, shape):
        # allowed, same [B, Q, L]: the pairs attention uses, and those of them that hold the same item
        n_layers, _, n_heads, _, _ = shape
        forbidden = ~allowed
        bias = steps.new_empty(shape)
        for layer in range(n_layers):
            for head in range(n_heads):
                column = layer * n_heads + head
                pairs = bias[layer, :, head].fill_(no_prefix[column])
                pairs.masked_fill_(same, same_item[column]).masked_fill_(forbidden, MASKED)
        bias.view(-1).index_add_(0, flat, steps[step].flatten())
        ctx.save_for_backward(allowed, same, flat, step)
        ctx.n_steps = steps.shape[0]
        return bias

    @staticmethod
    def backward(ctx, grad):
        allowed, same, flat, step = ctx.saved_tensors
        n_layers, batch, n_heads, n_queries, length = grad.shape
        grad = grad.contiguous()
        # per sequence b, [H, Q*L] @ [Q*L, 2] sums its different-item and same-item pairs; then over sequences
        kinds = torch.stack([allowed & ~same, same], dim=-1).to(grad.dtype).view(batch, n_queries * length, 2)
        per_layer = grad.view(n_layers, batch, n_heads, -1)
        constant = torch.stack([torch.bmm(per_layer[layer], kinds).sum(dim=0) for layer in range(n_layers)])
        at_matches = grad.view(-1)[flat].view(-1, n_layers * n_heads)
        grad_steps = at_matches.new_zeros(ctx.n_steps, n_layers * n_heads).index_add_(0, step, at_matches)
        no_prefix, same_item = constant.permute(2, 0, 1).reshape(2, -1)  # each [layers*H]
        return grad_steps, no_prefix, same_item, None, None, None, None, None
