"""The sequence model: input layout, causality, padding, zero-initialised reweighting == SASRec, losses."""

from __future__ import annotations

import json
from unittest.mock import patch

import polars as pl
import pytest
import torch
import torch.nn.functional as F

from bbqrec.models import ModelConfig, SASRec, pad_sequences
from bbqrec.models.layers import MASKED, allowed_pairs, attention_bias
from bbqrec.models.losses import full_softmax_cross_entropy
from bbqrec.models import losses, sasrec, similarity
from bbqrec.models.similarity import SimilarityBias, cosine_bucket
from bbqrec.training import TrainingSequences, pack_rows


# The prefix bias from its code matches (SPARSE_SHARE unbounded) and from every pair (0: never the matches).
EVERY_PAIR, CODE_MATCHES = 0.0, float("inf")


# The direct definitions of the buckets, the reference the layer's fast path (prefix ids, count_equal_keys) is
# checked against: the broadcast comparison of codes [B, L, M, levels] -> [B, L, L, M, M].
def prefix_match_length(codes):
    equal = codes[:, :, None, :, None, :] == codes[:, None, :, None, :, :]  # [B, L, L, M, M, levels]
    return equal.to(torch.uint8).cumprod(dim=-1).sum(dim=-1)


def equal_level_count(codes):
    equal = codes[:, :, None, :, None, :] == codes[:, None, :, None, :, :]
    return equal.sum(dim=-1)


def position_buckets(bias, item_seq):
    """The layer's `pair_buckets` of every (query, key) position pair of sequences [B, L]: [B, L, L, M*M]."""
    batch, length = item_seq.shape
    query = item_seq[:, :, None].expand(batch, length, length)
    key = item_seq[:, None, :].expand(batch, length, length)
    return bias.pair_buckets(query.flatten(), key.flatten()).view(batch, length, length, -1)


@pytest.fixture(scope="module")
def beauty(prepared):
    """Real Beauty (S3-Rec files): the first 300 users' valid histories, item count, and attribute codes."""
    out = prepared("beauty")
    n_items = pl.read_parquet(out / "items.parquet").height
    valid = pl.read_parquet(out / "valid.parquet").head(300)
    return out, n_items, pad_sequences(valid["history"], 50)


@pytest.fixture(scope="module")
def attribute_codes(beauty, shared_data):
    """Real 3-level codes of every item, two streams: its first 3 S3-Rec attribute ids (categories, brand) in
    file order, and the same reversed; 0 where an item has fewer. The adapter keeps S3-Rec's item ids."""
    _, n_items, _ = beauty
    attributes = json.loads((shared_data / "amazon-s3rec" / "Beauty_item2attributes.json").read_text())
    frame = pl.DataFrame({"item_id": list(map(int, attributes)), "attrs": list(attributes.values())})
    frame = frame.filter(pl.col("item_id") <= n_items).with_columns(pl.col("attrs").list.head(3))
    codes = torch.zeros(n_items + 1, 2, 3, dtype=torch.long)
    ids = torch.tensor(frame["item_id"].to_list())
    codes[ids, 0] = pad_sequences(frame["attrs"], 3)
    codes[ids, 1] = pad_sequences(frame["attrs"].list.reverse(), 3)
    return codes


def test_pad_sequences_left_aligns_and_keeps_the_last_items():
    sequences = pl.Series([[1, 2, 3], [4], [5, 6, 7, 8]], dtype=pl.List(pl.Int32))
    assert pad_sequences(sequences, 3).tolist() == [[1, 2, 3], [4, 0, 0], [6, 7, 8]]


def test_attention_bias_is_causal_and_hides_padding_and_other_segments():
    item_seq = torch.tensor([[5, 7, 0]])
    bias = attention_bias(allowed_pairs(item_seq))[0, 0]
    assert bias.tolist() == [[0, MASKED, MASKED], [0, 0, MASKED], [0, 0, MASKED]]
    packed = attention_bias(allowed_pairs(torch.tensor([[5, 7, 9]]), torch.tensor([[1, 1, 2]])))[0, 0]
    assert packed.tolist() == [[0, MASKED, MASKED], [0, 0, MASKED], [MASKED, MASKED, 0]]


def _model(n_items: int, seed: int = 0, **options) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(ModelConfig(n_items=n_items, **options)).eval()


def test_output_at_position_t_ignores_later_items(beauty):
    _, n_items, histories = beauty
    model = _model(n_items)
    changed = histories.clone()
    changed[:, 3:] = torch.where(changed[:, 3:] != 0, (changed[:, 3:] % n_items) + 1, 0)  # other real items
    assert not torch.equal(changed, histories)
    with torch.no_grad():
        before, after = model.encode(histories), model.encode(changed)
    assert torch.equal(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_padding_is_zero_and_never_scored(beauty):
    _, n_items, histories = beauty
    model = _model(n_items)
    assert torch.equal(model.item_vectors()[0], torch.zeros(64))
    with torch.no_grad():
        scores = model.score(histories)
    assert scores.shape == (len(histories), n_items + 1)
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()


def test_kept_item_vectors_follow_every_change_of_the_weights(beauty, attribute_codes):
    """Evaluation keeps the item vectors between batches; any change of a weight or buffer must drop them."""
    _, n_items, histories = beauty
    features = [attribute_codes[:, 0].float().clamp(min=0)]
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=n_items), [features[0].clone()]).eval()  # its own buffer

    def fresh_scores():
        torch.manual_seed(1)
        rebuilt = SASRec(ModelConfig(n_items=n_items), [features[0].clone()]).eval()
        rebuilt.load_state_dict(model.state_dict())
        with torch.no_grad():
            return rebuilt.score(histories)

    with torch.no_grad():
        first = model.score(histories)
        assert model.item_vectors() is model.item_vectors()  # kept, not recomputed
        model.feature_projections[0].weight.mul_(2)  # an in-place edit, as an optimiser step makes
        assert torch.equal(model.score(histories), fresh_scores())
        assert not torch.equal(model.score(histories), first)
        model.item_feature_0.mul_(0.5)  # a buffer: the frozen content features
        assert torch.equal(model.score(histories), fresh_scores())
    assert model.item_vectors().requires_grad  # autograd never gets the kept (no_grad) vectors


def test_similarity_buckets_by_hand():
    # 3 items, 2 streams, 3 levels. Item 1: text (1,2,3), image (1,2,9); item 2: text (1,2,4), image (7,2,3).
    codes = torch.tensor([[[0, 0, 0], [0, 0, 0]], [[1, 2, 3], [1, 2, 9]], [[1, 2, 4], [7, 2, 3]]])
    prefix = prefix_match_length(codes[torch.tensor([[1, 2]])])  # [1, 2, 2, 2, 2]
    # query item 1 (p=0) vs key item 2 (q=1): text-text 2, text-image 0, image-text 2, image-image 0
    assert prefix[0, 0, 1].tolist() == [[2, 0], [2, 0]]
    equal = equal_level_count(codes[torch.tensor([[1, 2]])])
    # text(1)=(1,2,3) vs image(2)=(7,2,3): levels 2 and 3 equal -> 2; image(1)=(1,2,9) vs image(2): level 2 -> 1
    assert equal[0, 0, 1].tolist() == [[2, 2], [2, 1]]
    # within item 1: text vs image share the prefix (1, 2)
    assert prefix[0, 0, 0].tolist() == [[3, 2], [2, 3]]

    bias = SimilarityBias("prefix", n_layers=1, n_heads=1, item_codes=codes)
    assert bias.n_buckets == 5 and bias.self_bucket == 4  # prefix 0..3, then "self"
    rows = position_buckets(bias, torch.tensor([[1, 2, 1]]))  # [1, 3, 3, 4]: item 1 repeats at position 2
    assert (rows[0, 0, 0] % 5).tolist() == [4, 4, 4, 4]  # the diagonal is "self" for every stream pair
    assert (rows[0, 2, 0] % 5).tolist() == [4, 4, 4, 4]  # a repeated item is "self" too
    assert (rows[0, 0, 1] % 5).tolist() == [2, 0, 2, 0]
    assert (rows[0, 0, 1] // 5).tolist() == [0, 1, 2, 3]  # one table block per (m, n) pair
    with torch.no_grad():
        bias.tables[0, :, 0] = torch.arange(20.0)  # entry of (pair, bucket) = 5 * pair + bucket
    # p=0, q=1: pairs (tt, ti, it, ii) -> buckets (2, 0, 2, 0) -> 2 + 5 + 12 + 15 = 34
    item_seq = torch.tensor([[1, 2, 1]])
    every_pair = torch.ones(1, 3, 3, dtype=torch.bool)
    layer_bias = bias(item_seq, every_pair)[0, 0, 0]  # [L, L] of layer 0, sequence 0, head 0
    assert layer_bias[0, 1].item() == 34.0
    assert layer_bias[0, 0].item() == layer_bias[0, 2].item() == 4 + 9 + 14 + 19  # "self" of every pair
    # only the allowed pairs get a similarity bias, the others are masked
    causal = bias(item_seq, allowed_pairs(item_seq))[0, 0, 0]
    assert causal[1, 0].item() == layer_bias[1, 0].item() == 2 + 5 + 12 + 15  # (it, ti) swap: same sum
    assert causal[0, 1].item() == causal[0, 2].item() == causal[1, 2].item() == MASKED


@pytest.mark.parametrize("share", [CODE_MATCHES, EVERY_PAIR])
def test_prefix_bias_of_a_padding_query_shares_no_prefix(share, monkeypatch):
    # Padding (item 0) is not an item: a padding query, which an unpacked row lets attend to the items before
    # it and whose output nothing reads, gets the bias of sharing no prefix even where its code row matches.
    monkeypatch.setattr(similarity, "SPARSE_SHARE", share)
    codes = torch.tensor([[[0, 0, 0], [0, 0, 0]], [[0, 0, 3], [0, 5, 9]]])  # item 1 starts with padding's codes
    bias = SimilarityBias("prefix", n_layers=1, n_heads=1, item_codes=codes)
    with torch.no_grad():
        bias.tables[0, :, 0] = torch.arange(20.0)  # entry of (pair, bucket) = 5 * pair + bucket
    item_seq = torch.tensor([[1, 0]])
    values = bias(item_seq, allowed_pairs(item_seq))[0, 0, 0]
    assert values[1, 0].item() == 0 + 5 + 10 + 15  # bucket 0 (no shared prefix) of every stream pair
    assert values[0, 0].item() == 4 + 9 + 14 + 19  # the item itself: "self"
    assert values[0, 1].item() == values[1, 1].item() == MASKED  # padding is never a key


def test_prefix_bias_from_code_matches_only_while_they_are_few(beauty, attribute_codes):
    # Real attribute codes match in under 1% of the dense comparisons: the bias comes from the matches. With a
    # first level that every item shares, every pair matches there: the dense comparison is cheaper and taken.
    # Both give the other path's bias and table gradient.
    _, _, histories = beauty
    allowed = allowed_pairs(histories) & (histories != 0)[:, :, None]  # item queries only, as in packed rows
    shared_first = torch.cat([torch.ones_like(attribute_codes[:, :, :1]), attribute_codes], dim=2)
    for codes, from_matches in ((attribute_codes, True), (shared_first, False)):
        bias = SimilarityBias("prefix", n_layers=2, n_heads=2, item_codes=codes)
        torch.nn.init.normal_(bias.tables)
        assert (bias._prefix_matches(histories, allowed) is not None) == from_matches
        weights = torch.randn(2, len(histories), 2, 50, 50, generator=torch.Generator().manual_seed(0))
        results = []
        for share in (CODE_MATCHES, EVERY_PAIR):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(similarity, "SPARSE_SHARE", share)
                values = bias(histories, allowed)
            (values * weights).sum().backward()
            results.append((values.detach(), bias.tables.grad))
            bias.tables.grad = None
        (matched, matched_grad), (dense, dense_grad) = results
        assert torch.equal(matched == MASKED, dense == MASKED)
        assert torch.allclose(matched, dense, atol=1e-5)
        assert torch.allclose(matched_grad, dense_grad, rtol=1e-4, atol=1e-3)


def test_the_switch_counts_candidates_and_dense_comparisons_by_hand():
    # One stream, two levels; items 1 (0,0), 2 (0,1), 3 (1,0). Sequence [1, 2, 3, pad]: at level 1 the prefix
    # ids group positions {0, 1} and {2}, at level 2 every position is alone. Every ordered (element, element)
    # pair of a group: 2*2 + 1 + 1 + 1 + 1 = 8 candidates; with causal pairs only (key before the query), the
    # one pair (1, 0). Causal pairs with an item key: 1 + 2 + 3 + 3 (the padding query) = 9, x 1 stream pair
    # x 2 levels = 18 dense comparisons.
    codes = torch.tensor([[[-1, -1]], [[0, 0]], [[0, 1]], [[1, 0]]])
    bias = SimilarityBias("prefix", n_layers=1, n_heads=1, item_codes=codes)
    sequence = torch.tensor([[1, 2, 3, 0]])
    assert bias.match_candidates(sequence, causal=False) == 8
    assert bias.match_candidates(sequence) == 1
    assert bias.dense_comparisons(allowed_pairs(sequence)) == 18
    # one more sequence in the batch adds its own groups, never a group across rows: [3, 3] pairs at both levels
    two_rows = torch.tensor([[1, 2, 3, 0], [3, 3, 0, 0]])
    assert bias.match_candidates(two_rows, causal=False) == 8 + 4 + 4
    assert bias.match_candidates(two_rows) == 1 + 1 + 1


def test_causal_pairs_list_the_same_code_matches_in_the_same_order(beauty, attribute_codes):
    # With causal pairs an element is listed only with the elements before it in its group. The matches kept,
    # and their order (which fixes the float sums of the bias and its gradient), must be those of listing every
    # pair of the group. One allowed pair above the diagonal turns the causal listing off; its matches aside,
    # the result is the same.
    _, _, histories = beauty
    allowed = allowed_pairs(histories)
    bias = SimilarityBias("prefix", n_layers=2, n_heads=2, item_codes=attribute_codes)
    with patch.object(similarity, "SPARSE_SHARE", CODE_MATCHES):
        causal = bias._prefix_matches(histories, allowed)
        widened = allowed.clone()
        widened[0, 0, 1] = True  # sequence 0 has at least 2 items
        every = bias._prefix_matches(histories, widened)
    row, query, key, _ = every
    outside = (row == 0) & (query == 0) & (key == 1)
    assert len(causal[0]) > 1000 and len(every[0]) >= len(causal[0])
    for listed, expected in zip(causal, every):
        assert torch.equal(listed, expected[~outside])
    assert bias.match_candidates(histories) < bias.match_candidates(histories, causal=False) / 2


@pytest.mark.parametrize(
    "kind, share", [("prefix", CODE_MATCHES), ("prefix", EVERY_PAIR), ("equal_levels", EVERY_PAIR)]
)
def test_fast_buckets_and_bias_equal_the_reference_on_real_codes(beauty, attribute_codes, kind, share, monkeypatch):
    # The layer's fast paths (level keys of item pairs, one-hot or level steps @ table; for prefix also the
    # sorted code matches) against the direct definitions: the broadcast comparison of codes and a sum of the
    # M*M table entries per pair.
    monkeypatch.setattr(similarity, "SPARSE_SHARE", share)
    _, _, histories = beauty
    every_pair = torch.ones(histories.shape[0], 50, 50, dtype=torch.bool)
    reference = prefix_match_length if kind == "prefix" else equal_level_count
    bias = SimilarityBias(kind, n_layers=1, n_heads=2, item_codes=attribute_codes)
    torch.nn.init.normal_(bias.tables)
    rows = position_buckets(bias, histories)
    same = (histories[:, :, None] == histories[:, None, :])[..., None, None]
    expected = torch.where(same, bias.self_bucket, reference(attribute_codes[histories]).long()).flatten(3)
    assert torch.equal(rows % bias.n_buckets, expected)
    summed = bias.tables[0][rows].sum(dim=3).permute(0, 3, 1, 2)  # [B, H, L, L]
    assert torch.allclose(bias(histories, every_pair)[0], summed, atol=1e-5)
    # and the same gradient (prefix: a sum over levels of the table's steps, not a lookup)
    weights = torch.randn(summed.shape, generator=torch.Generator().manual_seed(0))
    (bias(histories, every_pair)[0] * weights).sum().backward()
    fast = bias.tables.grad.clone()
    bias.tables.grad = None
    (summed * weights).sum().backward()
    assert torch.allclose(fast, bias.tables.grad, rtol=1e-4, atol=1e-3)
    # without gradients the pairs go in chunks: the same values, and on the causal pairs the same as attention's
    allowed = allowed_pairs(histories)
    with torch.no_grad(), monkeypatch.context() as patch:
        patch.setattr(similarity, "PAIRS_PER_CHUNK", 1000)
        causal = bias(histories, allowed)[0]
    assert torch.allclose(causal, torch.where(allowed[:, None], summed, MASKED), atol=1e-5)


@pytest.mark.parametrize("kind", ["prefix", "equal_levels", "cosine"])
def test_exported_bias_table_gives_the_bias_of_every_position_pair(beauty, attribute_codes, kind):
    # table_frame's rows, looked up by (query stream, key stream, layer, head, bucket) and summed over the stream
    # pairs of each position pair, rebuild exactly the bias the layer adds to attention in every layer and head.
    _, _, histories = beauty
    histories = histories[:40]
    vectors = attribute_codes.float().clamp(min=0)  # [N+1, M=2, 3]: frozen vectors for the cosine buckets
    bias = SimilarityBias(kind, n_layers=2, n_heads=2, item_codes=attribute_codes, item_vectors=vectors)
    torch.nn.init.normal_(bias.tables)
    streams = ["text", "image"]
    frame = bias.table_frame(streams)
    assert frame.columns == ["query_stream", "key_stream", "layer", "head", "bucket", "bucket_label", "bias"]
    assert frame.height == 2 * 2 * 2 * 2 * bias.n_buckets  # stream pairs x layers x heads x buckets
    table = torch.zeros(2, 2, 2, 2, bias.n_buckets)  # [m, n, layer, head, bucket] from the rows alone
    for query, key, layer, head, bucket, _, value in frame.iter_rows():
        table[streams.index(query), streams.index(key), layer, head, bucket] = value
    buckets = position_buckets(bias, histories) % bias.n_buckets  # [B, L, L, M*M]
    query_stream, key_stream = torch.arange(4) // 2, torch.arange(4) % 2
    entries = table[query_stream, key_stream][:, :, :, buckets]  # [M*M, layers, H, B, L, L, M*M]
    pair = torch.arange(4)
    expected = entries[pair, :, :, :, :, :, pair].sum(dim=0)  # each stream pair's own bucket: [layers, H, B, L, L]
    every_pair = torch.ones(len(histories), 50, 50, dtype=torch.bool)
    with torch.no_grad():
        actual = bias(histories, every_pair)  # [layers, B, H, L, L]
    assert torch.allclose(actual, expected.transpose(1, 2), atol=1e-5)
    labels = frame.select("bucket", "bucket_label").unique().sort("bucket")["bucket_label"].to_list()
    assert labels == bias.bucket_labels() and labels[-1] == "same item"
    assert labels[0] == {"prefix": "shared prefix 0", "equal_levels": "equal levels 0",
                         "cosine": "cosine -1.00 to -0.75"}[kind]
    with pytest.raises(ValueError, match="1 stream names for 2 streams"):
        bias.table_frame(["text"])


def test_cosine_buckets_by_hand():
    query = torch.tensor([[[1.0, 0.0]]]).expand(4, 1, 2)  # [P=4, M=1, d=2]
    key = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.0]], [[0.6, 0.8]]])
    buckets = cosine_bucket(query, key, 4)[:, 0, 0]  # cosines 1, 0, -1, 0.6 with 4 bins of [-1, 1]
    assert buckets.tolist() == [3, 2, 0, 3]


@pytest.mark.parametrize("kind", ["prefix", "equal_levels", "cosine"])
def test_zero_tables_give_exactly_sasrec(beauty, attribute_codes, kind):
    _, n_items, histories = beauty
    features = [attribute_codes[:, 0].float().clamp(min=0), attribute_codes[:, 1].float().clamp(min=0)]
    torch.manual_seed(0)
    plain = SASRec(ModelConfig(n_items=n_items), features).eval()
    torch.manual_seed(0)
    config = ModelConfig(n_items=n_items, similarity=kind)
    reweighted = SASRec(config, features, attribute_codes, torch.stack(features, dim=1)).eval()
    missing, unexpected = reweighted.load_state_dict(plain.state_dict(), strict=False)
    assert "similarity.tables" in missing and all(k.startswith("similarity.") for k in missing) and not unexpected
    with torch.no_grad():
        assert torch.equal(plain.encode(histories), reweighted.encode(histories))
        reweighted.similarity.tables.normal_()
        assert not torch.allclose(plain.encode(histories), reweighted.encode(histories))


@pytest.mark.parametrize("kind, norm_first", [(None, False), (None, True), ("prefix", False)])
def test_the_last_positions_alone_give_the_full_encoding_there(beauty, attribute_codes, kind, norm_first):
    # Scoring needs each sequence's last hidden state only, so the last block computes that one query: the
    # same values as the full encoding at those positions, up to the rounding of a one-row attention.
    _, n_items, histories = beauty
    torch.manual_seed(0)
    config = ModelConfig(n_items=n_items, similarity=kind, norm_first=norm_first)
    model = SASRec(config, (), attribute_codes if kind else None).eval()
    lengths = (histories != 0).sum(dim=1)
    positions = torch.randint(0, 50, (len(histories),)) % lengths  # any item position, the last one included
    with torch.no_grad():
        if kind:
            model.similarity.tables.normal_()
        full = model.encode(histories)
        picked = model.encode(histories, query_positions=positions)
        last = model.last_hidden(histories)
    sequences = torch.arange(len(histories))
    assert picked.shape == (len(histories), 64)
    assert torch.allclose(picked, full[sequences, positions], atol=1e-5, rtol=0)
    assert torch.allclose(last, full[sequences, lengths - 1], atol=1e-5, rtol=0)
    assert not torch.allclose(picked, full[sequences, (positions + 1) % lengths], atol=1e-3)  # not any position


@pytest.mark.parametrize(
    "kind, share", [("prefix", CODE_MATCHES), ("prefix", EVERY_PAIR), ("equal_levels", EVERY_PAIR), ("cosine", EVERY_PAIR)]
)
def test_the_last_layers_bias_rows_are_the_full_bias_rows_to_the_bit(beauty, attribute_codes, kind, share, monkeypatch):
    # With query positions the last layer's bias is built for those rows alone (from the same code matches, or
    # the same pairs on the dense path): exactly forward's floats there, and forward's other layers unchanged.
    monkeypatch.setattr(similarity, "SPARSE_SHARE", share)
    _, _, histories = beauty
    vectors = attribute_codes.float().clamp(min=0)
    bias = SimilarityBias(kind, n_layers=3, n_heads=2, item_codes=attribute_codes, item_vectors=vectors)
    torch.nn.init.normal_(bias.tables)
    allowed = allowed_pairs(histories)
    lengths = (histories != 0).sum(dim=1)
    positions = torch.randint(0, 50, (len(histories),), generator=torch.Generator().manual_seed(0)) % lengths
    with torch.no_grad():
        full = bias(histories, allowed)  # [layers, B, H, L, L]
        layers = bias.layer_biases(histories, allowed, positions)
    assert len(layers) == 3 and layers[2].shape == (len(histories), 2, 1, 50)
    assert all(torch.equal(layers[depth], full[depth]) for depth in (0, 1))
    rows = full[2, torch.arange(len(histories)), :, positions]  # [B, H, L]
    assert torch.equal(layers[2][:, :, 0], rows)
    assert not torch.equal(layers[2][:, :, 0], full[2, torch.arange(len(histories)), :, (positions + 1) % lengths])
    # the rows carry the table gradient of those rows (the match path's autograd Function with one query row)
    weights = torch.randn(rows.shape, generator=torch.Generator().manual_seed(1))
    (bias.layer_biases(histories, allowed, positions)[2][:, :, 0] * weights).sum().backward()
    from_rows, bias.tables.grad = bias.tables.grad, None
    (bias(histories, allowed)[2, torch.arange(len(histories)), :, positions] * weights).sum().backward()
    assert torch.allclose(from_rows, bias.tables.grad, rtol=1e-5, atol=1e-5) and from_rows[2].abs().sum() > 0
    # a one-layer model builds only the query rows
    one_layer = SimilarityBias(kind, n_layers=1, n_heads=2, item_codes=attribute_codes, item_vectors=vectors)
    with torch.no_grad():
        one_layer.tables.copy_(bias.tables[2:])
        (only,) = one_layer.layer_biases(histories, allowed, positions)
    assert torch.equal(only[:, :, 0], rows)


def test_reweighted_model_is_causal(beauty, attribute_codes):
    _, n_items, histories = beauty
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=n_items, similarity="prefix"), (), attribute_codes).eval()
    with torch.no_grad():
        model.similarity.tables.normal_()
        changed = histories.clone()
        changed[:, 5:] = torch.where(changed[:, 5:] != 0, (changed[:, 5:] % n_items) + 1, 0)
        assert torch.equal(model.encode(histories)[:, :5], model.encode(changed)[:, :5])


def test_packed_rows_give_the_unpacked_loss(prepared, beauty, attribute_codes):
    _, n_items, _ = beauty
    train = pl.read_parquet(prepared("beauty") / "train.parquet").head(256)
    data = TrainingSequences.from_frame(train, 50)
    packed = pack_rows(data.inputs, data.targets)
    assert packed[0].shape[0] < len(data.inputs) / 3  # Beauty sequences are short: packing saves most rows
    assert torch.equal(packed[1][packed[1] != 0].sort().values, data.targets[data.targets != 0].sort().values)
    for similarity, codes in ((None, None), ("prefix", attribute_codes)):
        torch.manual_seed(0)
        model = SASRec(ModelConfig(n_items=n_items, similarity=similarity), (), codes).eval()
        if codes is not None:
            torch.nn.init.normal_(model.similarity.tables)
        with torch.no_grad():
            unpacked = model.loss(data.inputs, data.targets)
            assert torch.allclose(model.loss(packed[0], packed[1], None, packed[2], packed[3]), unpacked, atol=1e-5)


def test_bce_negatives_are_never_the_target(beauty):
    _, n_items, histories = beauty
    model = _model(n_items, loss="bce")
    targets = torch.tensor([1, n_items, 5]).repeat(1000)
    offset = torch.randint(1, n_items, targets.shape, generator=torch.Generator().manual_seed(0))
    negative = (targets - 1 + offset) % n_items + 1  # the formula of SASRec.loss
    assert ((negative >= 1) & (negative <= n_items) & (negative != targets)).all()
    inputs, next_items = histories[:, :-1].clone(), histories[:, 1:]
    inputs[next_items == 0] = 0
    loss = model.loss(inputs, next_items, torch.Generator().manual_seed(0))
    assert 0.5 < loss.item() < 2.0  # an untrained model: about 2 log 2


@pytest.mark.parametrize("kind", ["prefix", "cosine"])
def test_checkpoint_round_trip_rebuilds_the_same_model(beauty, attribute_codes, kind):
    _, n_items, histories = beauty
    torch.manual_seed(1)
    features = [attribute_codes[:, 0].float().clamp(min=0)]
    code_vectors = attribute_codes[:, :2].float().clamp(min=0)  # [N+1, M=2, d=levels]: any frozen vectors
    config = ModelConfig(n_items=n_items, similarity=kind)
    model = SASRec(config, features, attribute_codes[:, :2], code_vectors).eval()
    torch.nn.init.normal_(model.similarity.tables)
    rebuilt = SASRec.from_checkpoint(model.checkpoint()).eval()
    with torch.no_grad():
        assert torch.equal(model.score(histories), rebuilt.score(histories))


def test_full_softmax_cross_entropy_by_hand():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], requires_grad=True)
    loss = full_softmax_cross_entropy(hidden, weight, torch.tensor([0, 2]))
    # logits [1, 0, 0] -> -log(e / (e + 2)); logits [0, 2, 0] -> -log(1 / (e^2 + 2)); mean of the two
    e = torch.e
    expected = (-torch.log(torch.tensor(e / (e + 2))) - torch.log(torch.tensor(1 / (e**2 + 2)))) / 2
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    (loss * 3).backward()  # a scaled loss, as train_epoch weighs it
    # d/d hidden_0 = 3/2 * (softmax - onehot) @ weight; softmax of row 0 = [e, 1, 1] / (e + 2)
    assert hidden.grad[0].tolist() == pytest.approx([1.5 * (e / (e + 2) - 1), 1.5 / (e + 2)], abs=1e-6)


def test_chunked_cross_entropy_gives_the_plain_loss_and_gradients(prepared, beauty):
    """The model's CPU loss (blocks of CHUNK positions) against F.cross_entropy of the whole logits, on real
    Beauty rows: 600 users, more targets than one block and not a multiple of it; a weighted backward."""
    _, n_items, _ = beauty
    data = TrainingSequences.from_frame(pl.read_parquet(prepared("beauty") / "train.parquet").head(600), 50)
    assert int((data.targets != 0).sum()) % losses.CHUNK != 0 and int((data.targets != 0).sum()) > 2 * losses.CHUNK
    model = _model(n_items).eval()  # no dropout: both passes see the same hidden states
    grads = []
    for loss_fn in (losses.full_softmax_cross_entropy, lambda h, w, t: F.cross_entropy(h @ w.T, t)):
        model.zero_grad()
        with patch.object(sasrec, "full_softmax_cross_entropy", loss_fn):
            loss = model.loss(data.inputs, data.targets)
        (loss * 0.7).backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (chunked, chunked_grads), (plain, plain_grads) = grads
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-6)
    assert len(chunked_grads) == len(plain_grads) > 0
    for a, b in zip(chunked_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    with torch.no_grad():  # no gradient wanted: the loss alone, the same value
        assert model.loss(data.inputs, data.targets).item() == pytest.approx(chunked.item(), rel=1e-6)
