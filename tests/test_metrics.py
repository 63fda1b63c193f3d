"""Full-ranking metrics: hand-computed values, tie rule, history exclusion, padding, faiss == matmul."""

from __future__ import annotations

import copy
import subprocess
import sys

import polars as pl
import pytest
import torch
from torch import nn

from bbqrec.evaluation import EvalSet, mean_metrics, recommend, target_ranks, user_metrics_frame
from bbqrec.evaluation import ranking
from bbqrec.evaluation.ranking import _items_ahead
from bbqrec.io import InputError
from bbqrec.models import ModelConfig, SASRec


def test_metrics_by_hand():
    ranks = torch.tensor([1, 3, 10, 11, 25])
    metrics = mean_metrics(ranks, (5, 10, 20))
    # Recall@k: share of ranks <= k -> 2/5, 3/5, 4/5.
    assert metrics["recall@5"] == pytest.approx(0.4)
    assert metrics["recall@10"] == pytest.approx(0.6)
    assert metrics["recall@20"] == pytest.approx(0.8)
    # NDCG@k: mean of 1/log2(rank + 1) over ranks <= k: 1/log2(2) = 1, 1/log2(4) = 0.5,
    # 1/log2(11) = 0.2890648, 1/log2(12) = 0.2789429.
    assert metrics["ndcg@5"] == pytest.approx((1 + 0.5) / 5)
    assert metrics["ndcg@10"] == pytest.approx((1 + 0.5 + 0.2890648) / 5, abs=1e-7)
    assert metrics["ndcg@20"] == pytest.approx((1 + 0.5 + 0.2890648 + 0.2789429) / 5, abs=1e-7)


def test_user_metrics_frame_has_one_row_per_user_metric_and_k():
    frame = user_metrics_frame(torch.tensor([7, 9]), torch.tensor([1, 3]), (1, 5), "valid")
    assert frame.schema == pl.Schema(
        {"user_id": pl.Int32, "split": pl.String, "metric": pl.String, "k": pl.Int32, "value": pl.Float64}
    )
    assert frame.height == 2 * 2 * 2 and set(frame["split"]) == {"valid"}
    assert frame.filter((pl.col("user_id") == 9) & (pl.col("k") == 5))["value"].to_list() == [1.0, 0.5]


class FixedScores(nn.Module):
    """A stand-in model that scores items 1..5 the same way whatever the history: a hidden state of 1 against
    one-number item vectors (row 0 = padding, scored -inf)."""

    config = ModelConfig(n_items=5)

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def item_vectors(self) -> torch.Tensor:
        return torch.tensor([[0.0], [0.5], [0.9], [0.5], [0.1], [0.7]])

    def last_hidden(self, histories: torch.Tensor, vectors: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(len(histories), 1)


def _eval_set(histories, targets):
    frame = pl.DataFrame({"user_id": list(range(1, len(targets) + 1)), "history": histories, "target": targets})
    return EvalSet.from_frame(frame, max_len=4)


@pytest.mark.parametrize("items_per_block", [2048, 2])  # one block, or three (items 0-1, 2-3, 4-5)
def test_ties_go_to_the_smaller_id_as_in_the_list_and_history_exclusion_keeps_the_target(items_per_block, monkeypatch):
    monkeypatch.setattr(ranking, "ITEMS_PER_BLOCK", items_per_block)
    data = _eval_set([[2, 1], [3], [2]], [1, 4, 3])
    # user 1, target 1 (0.5): higher are item 2 (0.9) and item 5 (0.7); item 3 ties but has a larger id -> 3.
    # user 2, target 4 (0.1): items 1, 2, 3, 5 are higher -> rank 5.
    # user 3, target 3 (0.5): items 2 and 5 are higher and item 1 ties with a smaller id -> rank 4.
    assert target_ranks(FixedScores(), data).tolist() == [3, 5, 4]
    # Excluding the history: user 1 loses item 2 (its target 1 is in the history too but is kept) -> rank 2;
    # user 2 loses item 3 -> rank 4; user 3 loses item 2 -> rank 3.
    assert target_ranks(FixedScores(), data, exclude_history=True).tolist() == [2, 4, 3]
    # An excluded target that ties with one item of a smaller id: user 4, target 3 (0.5) in its history; items 2
    # and 5 are higher, item 1 ties and comes first -> rank 4. (The tie is the one equal score left once the
    # target's column is excluded; it must not pass for the target's own.)
    repeated = _eval_set([[3]], [3])
    assert target_ranks(FixedScores(), repeated, exclude_history=True).tolist() == [4]
    # The rank is the target's place in the recommendation list, ties included.
    listed = recommend(FixedScores(), data, k=5).filter(pl.col("item_id") == pl.col("user_id").replace_strict({1: 1, 2: 4, 3: 3}))
    assert listed.sort("user_id")["rank"].to_list() == [3, 5, 4]


@pytest.mark.parametrize("items_per_block", [2048, 2])  # one block, or three (items 0-1, 2-3, 4-5)
def test_recommendations_break_ties_by_item_id_and_skip_padding_and_history(items_per_block, monkeypatch):
    # With blocks of 2, the tied items 1 and 3 lie in two blocks: the merge must still put item 1 first.
    monkeypatch.setattr(ranking, "ITEMS_PER_BLOCK", items_per_block)
    data = _eval_set([[2, 1], [3]], [1, 4])
    top = recommend(FixedScores(), data, k=5)
    # scores 2: .9, 5: .7, 1: .5, 3: .5 (tie -> smaller id first), 4: .1; padding 0 never appears
    assert top.filter(pl.col("user_id") == 1)["item_id"].to_list() == [2, 5, 1, 3, 4]
    assert top["rank"].to_list() == [1, 2, 3, 4, 5] * 2
    # a tie across the k-th place (items 1 and 3 at 0.5 for the 3rd place) goes to the smaller id too
    assert recommend(FixedScores(), data, k=3).filter(pl.col("user_id") == 1)["item_id"].to_list() == [2, 5, 1]
    excluded = recommend(FixedScores(), data, k=3, exclude_history=True)
    assert excluded.filter(pl.col("user_id") == 1)["item_id"].to_list() == [5, 3, 4]
    assert excluded.filter(pl.col("user_id") == 2)["item_id"].to_list() == [2, 5, 1]
    assert excluded.schema == pl.Schema(
        {"user_id": pl.Int32, "rank": pl.Int32, "item_id": pl.Int32, "score": pl.Float32}
    )


def test_ranking_and_training_need_faiss_only_for_the_faiss_backend(monkeypatch):
    # a GPU machine may have torch but no faiss build: importing, training and the matmul backend must not need it
    blocked = "import sys; sys.modules['faiss'] = None; import bbqrec.evaluation, bbqrec.training"
    subprocess.run([sys.executable, "-c", blocked], check=True)
    monkeypatch.setitem(sys.modules, "faiss", None)
    data = _eval_set([[2, 1], [3]], [1, 4])
    assert recommend(FixedScores(), data, k=2)["item_id"].to_list() == [2, 5, 2, 5]
    with pytest.raises(InputError, match="recommend_backend: 'faiss' needs the faiss package"):
        recommend(FixedScores(), data, k=2, backend="faiss")


def test_eval_set_rejects_bad_frames():
    with pytest.raises(InputError, match="missing column"):
        EvalSet.from_frame(pl.DataFrame({"user_id": [1], "target": [2]}), 5, "valid.parquet")
    with pytest.raises(InputError, match=r"valid.parquet, row 1: empty history \(user 8\)"):
        EvalSet.from_frame(
            pl.DataFrame({"user_id": [7, 8], "history": [[1], []], "target": [2, 3]}), 5, "valid.parquet"
        )


@pytest.fixture(scope="module")
def beauty_model_and_test(prepared):
    out = prepared("beauty")
    n_items = pl.read_parquet(out / "items.parquet").height
    test = EvalSet.from_frame(pl.read_parquet(out / "test.parquet").head(500), 50)
    torch.manual_seed(0)
    return SASRec(ModelConfig(n_items=n_items)).eval(), test


def test_ranks_match_a_brute_force_count_on_real_histories(beauty_model_and_test):
    model, test = beauty_model_and_test
    with torch.no_grad():
        scores = torch.cat([model.score(test.histories[i : i + 1]) for i in range(0, 40)])
    target_scores = scores.gather(1, test.targets[:40, None])
    expected = 1 + (scores > target_scores).sum(dim=1)
    assert torch.equal(target_ranks(model, test, batch_size=37)[:40], expected)


@pytest.mark.parametrize("exclude_history", [False, True])
def test_ranks_counted_by_blocks_of_items_equal_a_count_over_whole_rows(beauty_model_and_test, exclude_history, monkeypatch):
    # 13 blocks of 1,000 of Beauty's 12,102 columns, the last one short, against the whole [users, items] scores.
    # Beauty's test targets are never in their history: every third user gets it as the first item, so that an
    # excluded target is counted too.
    model, test = beauty_model_and_test
    histories = test.histories.clone()
    histories[::3, 0] = test.targets[::3]
    test = EvalSet(test.user_ids, histories, test.targets)
    monkeypatch.setattr(ranking, "ITEMS_PER_BLOCK", 1000)
    with torch.no_grad():
        scores = model.score(test.histories)
    target_scores = scores.gather(1, test.targets[:, None])
    if exclude_history:
        scores.scatter_(1, test.histories, float("-inf"))
    expected = 1 + (scores > target_scores).sum(dim=1)  # random weights: no ties
    recounted = []  # rows counted again from whole rows: with no tie, none (an excluded target included)
    whole_rows = ranking._items_ahead
    monkeypatch.setattr(ranking, "_items_ahead", lambda scores, *rest: recounted.append(len(scores)) or whole_rows(scores, *rest))
    ranks = target_ranks(model, test, batch_size=128, exclude_history=exclude_history)
    assert torch.equal(ranks, expected)
    assert recounted == []
    if exclude_history:  # history items ranked above the target are gone
        assert (ranks < target_ranks(model, test, batch_size=128)).any()


@pytest.mark.parametrize("exclude_history", [False, True])
def test_recommendations_by_blocks_of_items_equal_the_top_k_of_whole_rows(beauty_model_and_test, exclude_history, monkeypatch):
    # 13 blocks of 1,000 of Beauty's 12,102 columns against one block (`_top_k` of whole rows). Items share their
    # vector in runs of 7 ids, so every list is full of ties, some across blocks (the run 995-1001) and across the
    # 20th place.
    model, test = beauty_model_and_test
    model = copy.deepcopy(model)  # the fixture's model serves the whole module
    with torch.no_grad():
        ids = torch.arange(1, model.config.n_items + 1)
        model.item_embedding.weight[1:] = model.item_embedding.weight[1 + (ids - 1) // 7 * 7].clone()
    lists = {}
    for items_per_block, k in ((10**6, 21), (10**6, 20), (1000, 20)):
        monkeypatch.setattr(ranking, "ITEMS_PER_BLOCK", items_per_block)
        lists[items_per_block, k] = recommend(model, test, k=k, batch_size=128, exclude_history=exclude_history)
    whole_rows, blocks = lists[10**6, 20], lists[1000, 20]
    assert blocks.height == 500 * 20 and blocks.equals(whole_rows)
    places = lists[10**6, 21].filter(pl.col("rank") >= 20).pivot("rank", index="user_id", values="score")
    assert places.filter(pl.col("20") == pl.col("21")).height > 50  # ties the smaller-id rule decides
    # lists holding tied items of one run from two blocks: the merge, not one block's `_top_k`, ordered them
    runs = blocks.group_by("user_id", run=(pl.col("item_id") - 1) // 7).agg(blocks=(pl.col("item_id") // 1000).n_unique())
    assert runs.filter(pl.col("blocks") > 1).height > 0


def test_the_float_count_of_items_ahead_equals_the_mask_count_with_ties_nan_and_infinities():
    """_items_ahead counts by float sums where the target is the only item of its score, by masks elsewhere."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 40, (300, 60), generator=generator).float() / 8  # many ties
    scores[:, 0] = float("-inf")
    scores[:100] += torch.rand(100, 60, generator=generator)  # rows 0-99: ties almost surely gone
    scores[5, 7], scores[6, 8], scores[7, 9], scores[8, :] = float("nan"), float("inf"), float("-inf"), float("inf")
    targets = torch.randint(1, 60, (300, 1), generator=generator)
    targets[5:8, 0] = torch.tensor([7, 8, 20])  # a NaN target, an infinite one, one beside a -inf item
    target_score = scores.gather(1, targets)
    scores[10, targets[10, 0]] = float("-inf")  # an excluded target keeps its score, as in target_ranks
    smaller_id = torch.arange(60) < targets
    expected = ((scores > target_score) | ((scores == target_score) & smaller_id)).sum(dim=1)
    ahead = _items_ahead(scores.clone(), target_score, targets, torch.empty_like(scores))
    assert torch.equal(ahead, expected)
    assert ahead[5] == 0 and ahead[6] == 0 and ahead[8] == targets[8, 0]  # NaN ahead of nothing; +inf ties
    fast = (scores == target_score).sum(dim=1) == 1
    assert fast[:100].sum() >= 95 and not fast[100:].all()  # both ways of counting were used


@pytest.mark.parametrize("exclude_history", [False, True])
def test_faiss_and_matmul_recommend_the_same_items(beauty_model_and_test, exclude_history):
    model, test = beauty_model_and_test
    exact = recommend(model, test, k=20, batch_size=128, exclude_history=exclude_history, backend="matmul")
    searched = recommend(model, test, k=20, batch_size=128, exclude_history=exclude_history, backend="faiss")
    assert exact.height == 500 * 20 and exact["item_id"].min() >= 1
    assert exact.select("user_id", "rank", "item_id").equals(searched.select("user_id", "rank", "item_id"))
    assert (exact["score"] - searched["score"]).abs().max() < 1e-5
    if exclude_history:
        joined = exact.join(
            pl.DataFrame({"user_id": test.user_ids.numpy(), "history": test.histories.tolist()}), on="user_id"
        )
        assert not joined.select(pl.col("history").list.contains(pl.col("item_id")).any()).item()


def test_bad_recommendation_options_name_the_config_key(beauty_model_and_test):
    model, test = beauty_model_and_test
    with pytest.raises(InputError, match="recommend_backend"):
        recommend(model, test, backend="annoy")
    with pytest.raises(InputError, match=r"recommend_k: expected 1..12101"):
        recommend(model, test, k=20000)
