"""Leave-one-out invariants, dense ids, the prepare options and determinism, on the real datasets."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict

import polars as pl
import pytest

from bbqrec.data import load_dataset_config, prepare_dataset
from bbqrec.data.prepare import OUTPUT_FILES

DATASETS = ["scientific", "scientific-mm", "beauty", "sports", "toys", "movielens-mm", "gift-cards"]


def read_sequences(out) -> dict[int, list[int]]:
    seqs = defaultdict(list)
    inter = pl.read_parquet(out / "interactions.parquet").sort("user_id", "position")
    for user, item, position in inter.select("user_id", "item_id", "position").iter_rows():
        assert position == len(seqs[user])  # positions 0..n-1, no gap
        seqs[user].append(item)
    return dict(seqs)


def assert_leave_one_out(out, max_history_len: int, min_seq_len: int) -> None:
    seqs = read_sequences(out)
    train = {u: items for u, items in pl.read_parquet(out / "train.parquet").iter_rows()}
    valid = {
        u: (h, t)
        for u, h, t in pl.read_parquet(out / "valid.parquet").select("user_id", "history", "target").iter_rows()
    }
    test = {
        u: (h, t)
        for u, h, t in pl.read_parquet(out / "test.parquet").select("user_id", "history", "target").iter_rows()
    }
    assert set(train) == set(valid) == set(test) == set(seqs)
    for user, seq in seqs.items():
        assert len(seq) >= min_seq_len
        # By position, since an item may repeat in a sequence.
        assert test[user] == (seq[:-1][-max_history_len:], seq[-1])
        assert valid[user] == (seq[:-2][-max_history_len:], seq[-2])
        assert train[user] == seq[:-2][-max_history_len:]


@pytest.mark.parametrize("name", DATASETS)
def test_leave_one_out_by_position_and_dense_ids(prepared, name):
    out = prepared(name)
    expected_len = 200 if name == "movielens-mm" else 50  # the dataset files' own prepare blocks
    assert json.loads((out / "stats.json").read_text())["prepare"]["max_history_len"] == expected_len
    assert_leave_one_out(out, max_history_len=expected_len, min_seq_len=3)
    users = pl.read_parquet(out / "users.parquet")
    items = pl.read_parquet(out / "items.parquet")
    inter = pl.read_parquet(out / "interactions.parquet")
    assert users["user_id"].to_list() == list(range(1, users.height + 1))
    assert items["item_id"].to_list() == list(range(1, items.height + 1))
    assert set(inter["item_id"]) == set(items["item_id"]) and set(inter["user_id"]) == set(users["user_id"])
    assert users["source_id"].is_unique().all() and items["source_id"].is_unique().all()
    assert inter.schema == pl.Schema(
        {"user_id": pl.Int32, "item_id": pl.Int32, "timestamp": pl.Int64, "position": pl.Int32}
    )
    assert pl.read_parquet(out / "test.parquet").schema == pl.Schema(
        {"user_id": pl.Int32, "history": pl.List(pl.Int32), "target": pl.Int32}
    )
    assert pl.read_parquet(out / "train.parquet").schema == pl.Schema({"user_id": pl.Int32, "items": pl.List(pl.Int32)})
    stats = json.loads((out / "stats.json").read_text())
    lengths = sorted(Counter(inter["user_id"]).values())
    assert stats["sequence_length"]["min"] == lengths[0] and stats["sequence_length"]["max"] == lengths[-1]
    assert stats["sequence_length"]["mean"] == pytest.approx(sum(lengths) / len(lengths))
    assert stats["sequence_length"]["p50"] == pytest.approx(
        (lengths[(len(lengths) - 1) // 2] + lengths[len(lengths) // 2]) / 2
    )


def test_max_history_len_truncates_histories(prepared):
    out = prepared("movielens-mm", max_history_len=5)
    assert_leave_one_out(out, max_history_len=5, min_seq_len=3)
    assert pl.read_parquet(out / "test.parquet")["history"].list.len().max() == 5


def _gift_card_reviews(shared_data) -> list[tuple[str, str, int]]:
    lines = gzip.open(shared_data / "amazon2018-small-5core" / "Gift_Cards_5.json.gz", "rt").read().splitlines()
    return [(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in map(json.loads, lines)]


def _source_sequences(out) -> dict[str, list[str]]:
    users = dict(pl.read_parquet(out / "users.parquet").iter_rows())
    items = dict(pl.read_parquet(out / "items.parquet").select("item_id", "source_id").iter_rows())
    return {users[u]: [items[i] for i in seq] for u, seq in read_sequences(out).items()}


@pytest.mark.parametrize("duplicates", ["keep", "first", "last"])
def test_duplicates_option(prepared, shared_data, duplicates):
    reviews = _gift_card_reviews(shared_data)
    # Chronological, equal times in file order, then the option applied to repeated (user, item) pairs.
    ordered = sorted(range(len(reviews)), key=lambda i: (reviews[i][2], i))
    if duplicates != "keep":
        chosen = {}
        for i in ordered if duplicates == "first" else reversed(ordered):
            chosen.setdefault(reviews[i][:2], i)
        ordered = [i for i in ordered if chosen[reviews[i][:2]] == i]
    expected = defaultdict(list)
    for i in ordered:
        expected[reviews[i][0]].append(reviews[i][1])
    out = prepared("gift-cards", duplicates=duplicates)
    assert _source_sequences(out) == dict(expected)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["interactions"] == (2972 if duplicates == "keep" else 2965)
    assert stats["repeated_user_item_pairs"] == (7 if duplicates == "keep" else 0)


def _k_core(pairs: list[tuple[str, str]], user_min: int, item_min: int) -> list[tuple[str, str]]:
    while True:
        users, items = Counter(u for u, _ in pairs), Counter(i for _, i in pairs)
        kept = [(u, i) for u, i in pairs if users[u] >= user_min and items[i] >= item_min]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


# (users, items, interactions) left, counted by the plain loop `_k_core` on the review file.
@pytest.mark.parametrize(
    ("k_core", "min_seq_len", "left"), [(5, 3, (456, 147, 2960)), (6, 3, (150, 67, 1110)), (0, 10, (38, 132, 510))]
)
def test_k_core_and_min_seq_len(prepared, shared_data, k_core, min_seq_len, left):
    pairs = [(u, i) for u, i, _ in _gift_card_reviews(shared_data)]
    expected = _k_core(pairs, max(k_core, min_seq_len), k_core)
    out = prepared("gift-cards", k_core=k_core, min_seq_len=min_seq_len)
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == left
    assert stats["interactions"] == len(expected)
    assert stats["users"] == len({u for u, _ in expected})
    assert stats["items"] == len({i for _, i in expected})
    assert_leave_one_out(out, max_history_len=50, min_seq_len=min_seq_len)
    if k_core:
        assert min(Counter(pl.read_parquet(out / "interactions.parquet")["item_id"]).values()) >= k_core


def test_same_config_gives_identical_bytes(repo_root, shared_data, tmp_path):
    cfg = load_dataset_config(repo_root / "config" / "datasets" / "gift-cards.yaml")
    first = prepare_dataset(cfg, shared_data, tmp_path / "a")
    second = prepare_dataset(cfg, shared_data, tmp_path / "b")
    assert first == second
    for name in OUTPUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging folder left behind
