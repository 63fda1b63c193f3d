"""Next-item lists to serve (bbqrec.evaluation.next_items) on real Beauty and Gift Cards users: the history they
rank after (their prepared sequence, or a file of events), the items they leave out, the source ids they carry,
and the errors on bad input."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import polars as pl
import pytest
import torch

from bbqrec.data import left_out_histories, load_dataset_config
from bbqrec.evaluation import (
    UserHistories,
    event_histories,
    history_lists,
    latest_histories,
    mark_prepared_events,
    next_item_lists,
    prepared_histories,
    read_events,
    recommend,
)
from bbqrec.io import InputError
from bbqrec.models import ModelConfig, SASRec
from bbqrec.models.sasrec import pad_sequences
from bbqrec.training import recommend_runs

USERS = 400


@pytest.fixture(scope="module")
def beauty(prepared):
    """interactions / users / items / test frames of Beauty's first USERS users (every item kept)."""
    out = prepared("beauty")
    frames = {name: pl.read_parquet(out / f"{name}.parquet") for name in ("interactions", "users", "items", "test")}
    for name in ("interactions", "users", "test"):
        frames[name] = frames[name].filter(pl.col("user_id") <= USERS)
    return frames


def _model(n_items: int, max_len: int) -> SASRec:
    torch.manual_seed(0)
    return SASRec(ModelConfig(n_items=n_items, max_len=max_len)).eval()


def test_the_latest_history_is_the_test_history_followed_by_the_test_target(beauty):
    latest = latest_histories(beauty["interactions"], 50)
    test = beauty["test"].sort("user_id")
    expected = pad_sequences(test["history"].list.concat(test["target"]), 50)
    assert latest.user_ids.tolist() == test["user_id"].to_list()
    assert torch.equal(latest.histories, expected)
    last = (latest.histories != 0).sum(dim=1) - 1
    assert latest.histories[torch.arange(len(last)), last].tolist() == test["target"].to_list()


def test_next_items_leave_out_the_whole_sequence_not_only_the_model_window(beauty):
    items = beauty["items"]
    model = _model(items.height, max_len=5)  # most of these users have more than 5 items
    sequences = beauty["interactions"].sort("user_id", "position").group_by("user_id", maintain_order=True).agg("item_id")
    assert (sequences["item_id"].list.len() > 5).sum() > 100
    lists = next_item_lists(model, beauty["interactions"], beauty["users"], items, k=10, exclude_history=True)
    assert lists.height == USERS * 10 and lists["rank"].to_list() == list(range(1, 11)) * USERS
    # Brute force: score after the last 5 items, every item of the whole sequence (and padding) at -inf.
    with torch.no_grad():
        for row in sequences.head(60).iter_rows(named=True):
            window = torch.tensor([row["item_id"][-5:]])
            scores = model.score(window)[0]
            scores[torch.tensor(row["item_id"])] = float("-inf")
            expected = torch.topk(scores, 10).indices.tolist()
            listed = lists.filter(pl.col("user_id") == row["user_id"])
            assert listed["item_id"].to_list() == expected
            assert not set(listed["item_id"]) & set(row["item_id"])


def test_items_older_than_the_window_stay_out_even_when_they_score_highest(beauty):
    items = beauty["items"]
    model = _model(items.height, max_len=5)
    sequences = beauty["interactions"].sort("user_id", "position").group_by("user_id", maintain_order=True).agg("item_id")
    user, sequence = next((u, s) for u, s in sequences.iter_rows() if len(set(s[:-5]) - set(s[-5:])) >= 3)
    older = sorted(set(sequence[:-5]) - set(sequence[-5:]))
    with torch.no_grad():  # point the older items at this user's state: they now outscore every other item
        hidden = model.last_hidden(torch.tensor([sequence[-5:]]))[0]
        model.item_embedding.weight[older] = 100 * hidden
    mine = pl.col("user_id") == user
    kept = next_item_lists(model, beauty["interactions"], beauty["users"], items, k=10, exclude_history=False)
    assert sorted(kept.filter(mine)["item_id"][: len(older)]) == older
    excluded = next_item_lists(model, beauty["interactions"], beauty["users"], items, k=10)
    assert not set(excluded.filter(mine)["item_id"]) & set(sequence)


def test_without_exclusion_the_lists_are_the_evaluation_ranking_of_the_latest_history(beauty):
    items = beauty["items"]
    model = _model(items.height, max_len=50)
    lists = next_item_lists(model, beauty["interactions"], beauty["users"], items, k=20, exclude_history=False)
    ranked = recommend(model, latest_histories(beauty["interactions"], 50), k=20)
    assert lists.select("user_id", "rank", "item_id", "score").equals(ranked.sort("user_id", "rank"))


def test_next_items_carry_the_source_ids_and_faiss_lists_the_same(beauty):
    items, users = beauty["items"], beauty["users"]
    model = _model(items.height, max_len=5)
    exact = next_item_lists(model, beauty["interactions"], users, items, k=10)
    searched = next_item_lists(model, beauty["interactions"], users, items, k=10, backend="faiss")
    assert exact.columns == ["user_id", "user", "rank", "item_id", "item", "score", "ranked_by"]
    assert exact.select("user_id", "rank", "item_id").equals(searched.select("user_id", "rank", "item_id"))
    by_item = dict(zip(items["item_id"], items["source_id"]))
    by_user = dict(zip(users["user_id"], users["source_id"]))
    assert all(by_item[i] == s for i, s in zip(exact["item_id"], exact["item"]))
    assert all(by_user[u] == s for u, s in zip(exact["user_id"], exact["user"]))
    assert exact["item"].str.len_chars().min() == 10  # ASINs, not dense ids


@pytest.mark.parametrize("backend", ["matmul", "faiss"])
def test_a_user_with_fewer_than_k_items_left_gets_only_those(beauty, backend):
    items = beauty["items"]
    interactions = beauty["interactions"].filter(pl.col("user_id") <= 40)
    model = _model(items.height, max_len=5)
    # k = the whole catalogue: every user has fewer than k items they do not have yet.
    lists = next_item_lists(model, interactions, beauty["users"], items, k=items.height, backend=backend)
    had = interactions.group_by("user_id").agg(pl.col("item_id").unique())
    per_user = lists.group_by("user_id").agg("rank", "item_id", "item").join(had, on="user_id", suffix="_had")
    assert per_user.height == 40
    for row in per_user.iter_rows(named=True):
        assert len(row["item_id"]) == items.height - len(row["item_id_had"])
        assert row["rank"] == list(range(1, len(row["item_id"]) + 1))
        assert not set(row["item_id"]) & set(row["item_id_had"]) and 0 not in row["item_id"]
    assert lists["item"].null_count() == 0 and lists["score"].is_finite().all()


def test_bad_input_names_the_key_or_the_file(beauty):
    items = beauty["items"]
    model = _model(items.height, max_len=5)
    interactions, users = beauty["interactions"], beauty["users"]
    with pytest.raises(InputError, match=r"config key recommend.k: expected 1..12101"):
        next_item_lists(model, interactions, users, items, k=20000)
    with pytest.raises(InputError, match=r"items.parquet: 12100 items, but the model was trained on 12101"):
        next_item_lists(model, interactions, users, items.head(12100))
    with pytest.raises(InputError, match=r"interactions.parquet: missing column\(s\) \['position'\]"):
        next_item_lists(model, interactions.drop("position"), users, items)
    with pytest.raises(InputError, match=r"sequences, row 1: empty items \(user 8\)"):
        UserHistories.from_sequences(pl.DataFrame({"user_id": [7, 8], "items": [[1], []]}), 5, "sequences")
    histories = latest_histories(interactions, 5)
    with pytest.raises(ValueError, match=r"seen has 1 rows, expected one per user \(400\)"):
        recommend(model, histories, k=10, exclude_history=True, seen=pl.Series([[1, 2]]))


@pytest.fixture(scope="module")
def gift_cards_left_out(prepared, shared_data, repo_root):
    """Gift Cards (458 users, 5-core) prepared with min_seq_len 10, the users left out, and every user's sequence
    of source item ids from a preparation that keeps them all (min_seq_len 3)."""
    out = prepared("gift-cards", min_seq_len=10)
    users, items = pl.read_parquet(out / "users.parquet"), pl.read_parquet(out / "items.parquet")
    config = load_dataset_config(repo_root / "config" / "datasets" / "gift-cards.yaml")
    left_out = left_out_histories(config, shared_data, users, items, min_seq_len=10)
    everyone = prepared("gift-cards", min_seq_len=3)
    whole = (
        pl.read_parquet(everyone / "interactions.parquet")
        .join(pl.read_parquet(everyone / "items.parquet").select("item_id", pl.col("source_id").alias("item")), on="item_id")
        .join(pl.read_parquet(everyone / "users.parquet").select("user_id", pl.col("source_id").alias("user")), on="user_id")
        .sort("user_id", "position")
        .group_by("user", maintain_order=True)
        .agg("item", "timestamp")
    )
    return out, users, items, left_out, whole


def test_the_left_out_users_are_the_others_with_their_catalogue_items_in_time_order(gift_cards_left_out):
    _, users, items, left_out, whole = gift_cards_left_out
    assert users.height == 38 and left_out.height == 420  # 458 in all; the 420 all had a catalogue item
    assert set(left_out["user"]) == set(whole["user"]) - set(users["source_id"])
    source_of = dict(zip(items["item_id"], items["source_id"]))
    expected = dict(zip(whole["user"], whole["item"]))
    expected_times = dict(zip(whole["user"], whole["timestamp"]))
    catalogue = set(items["source_id"])
    for user, item_ids, times in left_out.iter_rows():
        # the same order as the full preparation gives them, items outside this catalogue skipped
        assert [source_of[i] for i in item_ids] == [i for i in expected[user] if i in catalogue]
        assert times == [t for i, t in zip(expected[user], expected_times[user]) if i in catalogue]
    assert left_out["items"].list.len().min() >= 1 and left_out["items"].list.len().max() <= 9


def test_left_out_users_get_lists_after_their_own_items(gift_cards_left_out, repo_root, shared_data, tmp_path):
    out, users, items, left_out, _ = gift_cards_left_out
    interactions = pl.read_parquet(out / "interactions.parquet")
    model = _model(items.height, max_len=5)
    lists = next_item_lists(model, interactions, users, items, k=10, left_out=left_out)
    alone = next_item_lists(model, interactions, users, items, k=10)
    assert lists.filter(pl.col("user_id").is_not_null()).equals(alone)  # the prepared users' lists unchanged
    theirs = lists.filter(pl.col("user_id").is_null())
    assert theirs["user"].unique(maintain_order=True).to_list() == left_out["user"].to_list()
    assert theirs.height == 420 * 10
    with torch.no_grad():  # brute force: the last max_len items as history, every item of theirs at -inf
        for user, item_ids, _ in left_out.head(30).iter_rows():
            scores = model.score(torch.tensor([item_ids[-5:]]))[0]
            scores[torch.tensor(item_ids)] = float("-inf")
            assert theirs.filter(pl.col("user") == user)["item_id"].to_list() == torch.topk(scores, 10).indices.tolist()
    # the stage scripts write the same: left_out_users.parquet, then the lists from it
    left_out_file = tmp_path / "left_out_users.parquet"
    subprocess.run(
        [sys.executable, str(repo_root / "workflow" / "scripts" / "left_out_users.py"), "--dataset-config",
         str(repo_root / "config" / "datasets" / "gift-cards.yaml"), "--data-root", str(shared_data),
         "--data", str(out), "--min-seq-len", "10", "--k-core", "0", "--duplicates", "keep", "--out", str(left_out_file)],
        check=True, capture_output=True, text=True,
    )
    assert pl.read_parquet(left_out_file).equals(left_out)


def test_bad_left_out_users_name_the_file_and_row(gift_cards_left_out):
    out, users, items, left_out, _ = gift_cards_left_out
    interactions = pl.read_parquet(out / "interactions.parquet")
    model = _model(items.height, max_len=5)
    broken = left_out.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit([1, 999], dtype=pl.List(pl.Int32))).otherwise("items").alias("items")
    )
    with pytest.raises(InputError, match=rf"left_out_users.parquet, row 3 \(user {left_out['user'][3]}\): expected a list of item ids in 1..{items.height} \(empty for a user with none\), got \[1, 999\]"):
        next_item_lists(model, interactions, users, items, left_out=broken)
    no_list = left_out.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise("items").alias("items"))
    with pytest.raises(InputError, match=rf"left_out_users.parquet, row 5 \(user {left_out['user'][5]}\): .*, got None"):
        next_item_lists(model, interactions, users, items, left_out=no_list)
    with pytest.raises(InputError, match=r"left_out_users.parquet: missing column\(s\) \['items'\]"):
        next_item_lists(model, interactions, users, items, left_out=left_out.select("user"))
    with pytest.raises(InputError, match=r"config key recommend.cold_users: expected one of \['popularity', 'skip'\], got 'random'"):
        next_item_lists(model, interactions, users, items, left_out=left_out, cold_users="random")


@pytest.fixture(scope="module")
def gift_cards_cold(prepared, shared_data, repo_root):
    """Gift Cards prepared with k_core 6 (150 users, 67 items): of the 308 users left out, 16 have none of the
    catalogue's items, since k_core cut every one of theirs."""
    out = prepared("gift-cards", k_core=6)
    users, items = pl.read_parquet(out / "users.parquet"), pl.read_parquet(out / "items.parquet")
    config = load_dataset_config(repo_root / "config" / "datasets" / "gift-cards.yaml")
    return out, users, items, left_out_histories(config, shared_data, users, items, k_core=6)


def test_a_left_out_user_without_catalogue_items_has_an_empty_list(gift_cards_cold, gift_cards_left_out):
    _, users, items, left_out = gift_cards_cold
    whole = gift_cards_left_out[-1]  # every user's source items, from a preparation that keeps them all
    assert (users.height, items.height, left_out.height) == (150, 67, 308)
    catalogue = set(items["source_id"])
    expected = {user: [i for i in had if i in catalogue] for user, had, _ in whole.iter_rows() if user not in set(users["source_id"])}
    source_of = dict(zip(items["item_id"], items["source_id"]))
    assert {user: [source_of[i] for i in item_ids] for user, item_ids, _ in left_out.iter_rows()} == expected
    assert (left_out["items"].list.len() == 0).sum() == 16


def test_cold_users_get_the_most_popular_items_or_no_list(gift_cards_cold):
    out, users, items, left_out = gift_cards_cold
    interactions = pl.read_parquet(out / "interactions.parquet")
    model = _model(items.height, max_len=5)
    lists = next_item_lists(model, interactions, users, items, k=10, left_out=left_out)
    cold_users = left_out.filter(pl.col("items").list.len() == 0)["user"]
    # by hand: interactions per item, most first, ties by the lower item_id
    counts: dict[int, int] = {}
    for item in interactions["item_id"].to_list():
        counts[item] = counts.get(item, 0) + 1
    top = sorted(counts, key=lambda item: (-counts[item], item))[:10]
    popular = lists.filter(pl.col("ranked_by") == "popularity")
    assert set(popular["user"]) == set(cold_users) and popular.height == 16 * 10
    assert popular["user_id"].null_count() == popular.height
    for user in cold_users:
        mine = popular.filter(pl.col("user") == user)
        assert mine["item_id"].to_list() == top and mine["rank"].to_list() == list(range(1, 11))
        assert mine["score"].to_list() == [counts[item] for item in top]
    assert mine["item"].to_list() == [dict(zip(items["item_id"], items["source_id"]))[i] for i in top]
    # every other user is ranked by the model; the file's order of left-out users is kept
    assert set(lists.filter(pl.col("ranked_by") == "model")["user"]) == set(users["source_id"]) | (
        set(left_out["user"]) - set(cold_users)
    )
    assert lists.filter(pl.col("user_id").is_null())["user"].unique(maintain_order=True).to_list() == left_out["user"].to_list()
    skipped = next_item_lists(model, interactions, users, items, k=10, left_out=left_out, cold_users="skip")
    assert skipped.equals(lists.filter(pl.col("ranked_by") == "model"))


RUNS = [("sci", "sasrec", 2), ("sci", "sasrec", 1), ("sci", "bbqrec", 2), ("sci", "bbqrec", 1),
        ("beauty", "bbqrec", 2), ("beauty", "bbqrec", 1), ("beauty", "bbqrec-no-club", 0)]


def test_the_runs_that_list_are_the_configured_ones():
    block = {"variants": "auto", "seed": None}
    assert recommend_runs(block, RUNS) == [("sci", "bbqrec", 2), ("beauty", "bbqrec", 2)]  # first seed, each dataset
    assert recommend_runs(block, [r for r in RUNS if r[1] == "sasrec"]) == []  # auto: bbqrec only where trained
    assert recommend_runs({"variants": [], "seed": None}, RUNS) == []
    ablation = {"variants": ["bbqrec-no-club", "sasrec"], "seed": None}  # each where it runs
    assert recommend_runs(ablation, RUNS) == [("beauty", "bbqrec-no-club", 0), ("sci", "sasrec", 2)]
    assert recommend_runs({"variants": ["bbqrec"], "seed": 1}, RUNS) == [("sci", "bbqrec", 1), ("beauty", "bbqrec", 1)]


def test_a_variant_or_seed_without_a_run_is_an_error_naming_the_key():
    with pytest.raises(InputError, match=r"config key recommend.variants: 'sasrec-mm' has no training run \(configured"):
        recommend_runs({"variants": ["sasrec-mm"], "seed": None}, RUNS)
    with pytest.raises(
        InputError, match=r"config key recommend.seed: sasrec has no run with seed 0 on sci \(its seeds there: \[2, 1\]\)"
    ):
        recommend_runs({"variants": ["sasrec"], "seed": 0}, RUNS)



# --- lists after a file of events (workflow/scripts/recommend_events.py) ---


@pytest.fixture(scope="module")
def gift_cards_events(gift_cards_left_out, shared_data, repo_root, tmp_path_factory):
    """The Gift Cards reviews as an events file (user, item, timestamp: the raw source's ids and review times, in
    source order), as a user would export them, with the min_seq_len 10 preparation of gift_cards_left_out."""
    from bbqrec.data.prepare import load_raw

    config = load_dataset_config(repo_root / "config" / "datasets" / "gift-cards.yaml")
    raw = load_raw(config, shared_data).interactions.select("user", "item", "timestamp")
    path = tmp_path_factory.mktemp("events") / "events.csv"
    raw.write_csv(path)
    return path, raw


def test_events_of_the_left_out_users_give_their_histories_and_lists(gift_cards_left_out, gift_cards_events):
    out, users, items, left_out, _ = gift_cards_left_out
    path, raw = gift_cards_events
    events = read_events(path)
    assert events.height == raw.height == 2972 and events["line"][:2].to_list() == [2, 3]  # line 1: the header
    theirs = events.join(users.select(pl.col("source_id").alias("user")), on="user", how="anti")
    # Shuffled rows: the timestamps, not the file order, make the history (equal times keep the file order).
    shuffled = theirs.sample(fraction=1.0, shuffle=True, seed=0)
    assert shuffled["timestamp"].to_list() != theirs["timestamp"].to_list()
    histories = event_histories(theirs, items)
    assert histories.equals(left_out.drop("timestamps"))  # the left_out_users stage reads the source through its adapter
    reordered = dict(event_histories(shuffled, items).iter_rows())
    tied = set(theirs.filter(pl.len().over("user", "timestamp") > 1)["user"])  # there the file order decides
    assert 0 < len(tied) < histories.height
    assert all(reordered[user] == had for user, had in histories.iter_rows() if user not in tied)
    # Without a timestamp column the file order is the order.
    untimed = path.with_name("untimed.csv")
    theirs.sort("timestamp", "line").select("user", "item").write_csv(untimed)
    assert dict(event_histories(read_events(untimed, timestamp=None), items).iter_rows()) == dict(histories.iter_rows())
    interactions = pl.read_parquet(out / "interactions.parquet")
    model = _model(items.height, max_len=5)
    lists = history_lists(model, histories, interactions, items, k=10)
    expected = next_item_lists(model, interactions, users, items, k=10, left_out=left_out)
    _assert_same_lists(lists, expected.filter(pl.col("user_id").is_null()).drop("user_id"))


def _assert_same_lists(lists: pl.DataFrame, expected: pl.DataFrame) -> None:
    """The same rows; scores equal up to float rounding (users batched with others sum in another order: MovieLens
    lists from events and from the recommend stage differ by up to 6e-8 with the same items)."""
    assert lists.drop("score").equals(expected.drop("score"))
    assert (lists["score"] - expected["score"]).abs().max() <= 1e-6


def test_known_users_continue_their_prepared_sequence(gift_cards_left_out):
    out, users, items, _, _ = gift_cards_left_out
    interactions = pl.read_parquet(out / "interactions.parquet")
    # What the dataset knew a while ago (each user's last 2 items not yet there), and those 2 as new events.
    last_two = pl.col("position") >= pl.col("position").max().over("user_id") - 1
    before, since = interactions.filter(~last_two), interactions.filter(last_two)
    names = users.select("user_id", pl.col("source_id").alias("user"))
    events = (
        since.join(names, on="user_id")
        .join(items.select("item_id", pl.col("source_id").alias("item")), on="item_id")
        .sort("position", descending=True)  # the file order must not matter: the timestamps decide
        .select("user", "item", pl.col("position").cast(pl.Int64).alias("timestamp"))
    )
    continued = event_histories(events, items, known=prepared_histories(before, users))
    whole = prepared_histories(interactions, users)
    assert dict(continued.iter_rows()) == dict(whole.iter_rows())
    assert dict(event_histories(events, items).iter_rows()) == {
        user: had[-2:] for user, had in whole.iter_rows()
    }  # without `known`: the events alone
    # Events that repeat the prepared data (same user, item and time) are marked and skipped; the rest are not.
    again = pl.concat([since, before]).join(names, on="user_id").join(
        items.select("item_id", pl.col("source_id").alias("item")), on="item_id"
    ).select("user", "item", pl.col("position").cast(pl.Int64).alias("timestamp"))
    marked = mark_prepared_events(again, before.with_columns(pl.col("position").cast(pl.Int64).alias("timestamp")), users, items)
    assert marked["prepared"].sum() == before.height and marked.height == again.height
    assert dict(event_histories(marked, items, known=prepared_histories(before, users)).iter_rows()) == dict(whole.iter_rows())
    model = _model(items.height, max_len=5)
    lists = history_lists(model, continued, before, items, k=10)
    expected = next_item_lists(model, interactions, users, items, k=10).drop("user_id")
    by_user = {user: frame for (user,), frame in lists.group_by("user")}
    for (user,), frame in expected.group_by("user"):
        _assert_same_lists(by_user[user], frame)


def _as_events(histories: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """user, item (source id), timestamp: one event per item of `histories` (user, items, timestamps)."""
    return (
        histories.select("user", "items", "timestamps")
        .explode("items", "timestamps")
        .drop_nulls()
        .join(items.select(pl.col("item_id").alias("items"), pl.col("source_id").alias("item")), on="items",
              maintain_order="left")
        .select("user", "item", pl.col("timestamps").alias("timestamp"))
    )


def test_left_out_users_continue_their_items(gift_cards_left_out):
    out, users, items, left_out, _ = gift_cards_left_out
    interactions = pl.read_parquet(out / "interactions.parquet")
    # What left_out_users.parquet held a while ago (each left-out user's last 2 items not yet there), and those 2
    # as new events, latest first in the file (the timestamps decide; equal ones keep the file order, so these do)
    earlier = (pl.col("items").list.len() - 2).clip(lower_bound=0)
    before = left_out.with_columns(pl.col("items", "timestamps").list.head(earlier))
    events = _as_events(left_out.with_columns(pl.col("items", "timestamps").list.tail(2)), items)
    events = events.sort("timestamp", descending=True, maintain_order=True)
    assert before["items"].list.len().sum() + events.height == left_out["items"].list.len().sum()
    known = prepared_histories(interactions, users, before)
    assert known.height == users.height + left_out.height
    continued = event_histories(events, items, known)
    assert dict(continued.iter_rows()) == dict(left_out.select("user", "items").iter_rows())
    # everything they did, given again: each event is one the file holds (same item and time), so none is added
    again = _as_events(left_out, items)
    marked = mark_prepared_events(again, interactions, users, items, left_out)
    assert marked["prepared"].all()
    assert dict(event_histories(marked, items, prepared_histories(interactions, users, left_out)).iter_rows()) == dict(
        left_out.select("user", "items").iter_rows()
    )
    # a file without timestamps (an older version's) still continues them, but cannot recognise a repeat
    assert not mark_prepared_events(again, interactions, users, items, left_out.drop("timestamps"))["prepared"].any()


def test_events_outside_the_catalogue_are_skipped_and_a_user_with_none_gets_the_popular_items(
    gift_cards_cold, gift_cards_events, repo_root, tmp_path
):
    prepared_dir, users, items, left_out = gift_cards_cold
    path, raw = gift_cards_events
    # the prepared data as the workflow leaves it: with left_out_users.parquet (its users are known too)
    out = tmp_path / "data"
    shutil.copytree(prepared_dir, out)
    left_out.write_parquet(out / "left_out_users.parquet")
    # an untrained model saved as a train run would save it
    model = _model(items.height, max_len=5)
    model_path = tmp_path / "model.pt"
    torch.save({**model.checkpoint(), "variant": "sasrec"}, model_path)
    interactions = pl.read_parquet(out / "interactions.parquet")
    expected = next_item_lists(model, interactions, users, items, k=10, left_out=left_out)
    outside = raw.join(items.select(pl.col("source_id").alias("item")), on="item", how="anti").height
    theirs = int(left_out["items"].list.len().sum())  # the left-out users' events in the catalogue
    for known_users, already in (("replace", 0), ("extend", interactions.height + theirs)):
        lists_path = tmp_path / f"lists-{known_users}.parquet"
        result = _recommend_events(repo_root, model_path, out, path, lists_path, "--known-users", known_users)
        assert result.returncode == 0, result.stderr
        lists = pl.read_parquet(lists_path)
        # The whole source replayed: every user, the prepared ones with their own sequence (the source's reviews in
        # the catalogue), and the 16 users whose items k_core cut entirely with the popularity list. With `extend`
        # every interaction of the data is in the file too (same item and time): skipped, not counted twice.
        assert lists["user"].n_unique() == 458
        assert lists.filter(pl.col("ranked_by") == "popularity")["user"].n_unique() == 16
        _assert_same_lists(lists.sort("user", "rank"), expected.drop("user_id").sort("user", "rank"))
        assert (
            f"{raw.height} events of 458 users (150 known to the dataset, 308 more left out by its preparation; "
            f"{already} events already in it and {outside} with items outside the catalogue, skipped)"
        ) in result.stderr
    # An older version's left_out_users.parquet (no timestamps): their events repeat what it holds, and a warning
    # says so and how to mend it.
    left_out.drop("timestamps").write_parquet(out / "left_out_users.parquet")
    result = _recommend_events(repo_root, model_path, out, path, tmp_path / "old.parquet")
    assert result.returncode == 0, result.stderr
    assert f"{interactions.height} events already in it" in result.stderr
    assert "has no timestamps (an older version wrote it)" in result.stderr
    assert "snakemake -R left_out_users" in result.stderr


def _recommend_events(repo_root, model_path, data, events, out, *options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(repo_root / "workflow" / "scripts" / "recommend_events.py"), "--model", str(model_path),
         "--variant", "sasrec", "--data", str(data), "--events", str(events), "--k", "10", "--out", str(out), *options],
        capture_output=True, text=True,
    )


def test_bad_events_name_the_file_line_and_column(gift_cards_left_out, gift_cards_events, repo_root, tmp_path, stage_script, caplog):
    out, _, items, _, _ = gift_cards_left_out
    _, raw = gift_cards_events
    model_path = tmp_path / "model.pt"
    torch.save({**_model(items.height, max_len=5).checkpoint(), "variant": "sasrec"}, model_path)
    head = raw.head(5).with_columns(pl.col("timestamp").cast(pl.String))
    script = stage_script("recommend_events")

    def arguments(events: pl.DataFrame, extra: tuple[str, ...], variant: str, out_name: str) -> list[str]:
        path = tmp_path / "events.csv"
        events.write_csv(path)
        return ["--model", str(model_path), "--variant", variant, "--data", str(out), "--events", str(path),
                "--out", str(tmp_path / out_name), *extra]

    def run(events: pl.DataFrame, *extra: str, variant: str = "sasrec", out_name: str = "lists.parquet"):
        """The script's exit code and what it logged, run in this process (a command line costs seconds)."""
        caplog.clear()
        with caplog.at_level(logging.INFO):
            code = script.main(arguments(events, extra, variant, out_name))
        return code, caplog.text

    renamed = head.rename({"user": "customer"})
    # once from the command line: the exit status and the message on stderr
    result = subprocess.run(
        [sys.executable, str(repo_root / "workflow" / "scripts" / "recommend_events.py"),
         *arguments(renamed, (), "sasrec", "lists.parquet")],
        capture_output=True, text=True,
    )
    assert result.returncode == 1 and "events.csv: missing column(s) ['user']; the file has ['customer', 'item', 'timestamp']" in result.stderr
    assert run(renamed, "--user-column", "customer")[0] == 0  # the columns are options
    code, log = run(head.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise("item").alias("item")))
    assert code == 1 and "events.csv, line 4: empty 'item', expected the item's id" in log
    code, log = run(head.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("yesterday")).otherwise("timestamp").alias("timestamp")))
    assert code == 1 and "events.csv, line 3: column 'timestamp' must be an integer, got 'yesterday'" in log
    code, log = run(head.clear())
    assert code == 1 and "events.csv: no events, expected at least one row" in log
    code, log = run(head, variant="bbqrec")
    assert code == 1 and "model.pt: holds variant 'sasrec', expected 'bbqrec'" in log
    code, log = run(head, "--k", str(items.height + 1))
    assert code == 1 and f"--k: expected 1..{items.height} (the number of items), got {items.height + 1}" in log
    code, log = run(head, out_name="lists.csv")
    assert code == 1 and "lists.csv: expected a .parquet file" in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv", "lists.parquet", "model.pt"]  # nothing else
