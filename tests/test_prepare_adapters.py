"""Each adapter on the real files: the counts of SOURCE.md, the published splits, side information."""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from bbqrec.data import prepare_dataset
from bbqrec.io import read_parquet_metadata

COUNTS = {  # users, items, interactions (the folders' SOURCE.md)
    "scientific": (8442, 4385, 59427),
    "scientific-mm": (2928, 1585, 19712),
    "beauty": (22363, 12101, 198502),
    "sports": (35598, 18357, 296337),
    "toys": (19412, 11924, 167597),
    "movielens-mm": (943, 1682, 100000),
    "gift-cards": (458, 148, 2972),
}


def sequences(out: Path, column: str = "source_id") -> dict[str, list[str]]:
    """{user source id: [item source ids in position order]} read back from a prepared folder."""
    items = pl.read_parquet(out / "items.parquet").select("item_id", pl.col("source_id").alias("item"))
    users = pl.read_parquet(out / "users.parquet").select("user_id", pl.col("source_id").alias("user"))
    frame = (
        pl.read_parquet(out / "interactions.parquet")
        .join(items, on="item_id")
        .join(users, on="user_id")
        .sort("user_id", "position")
        .group_by("user", maintain_order=True)
        .agg("item")
    )
    return dict(zip(frame["user"], frame["item"].to_list()))


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_match_source_md(prepared, name):
    stats = json.loads((prepared(name) / "stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == COUNTS[name]
    users, items, interactions = COUNTS[name]
    assert stats["density"] == pytest.approx(interactions / (users * items))
    assert stats["removed"]["filtered_interactions"] == 0


def _read_inter(path: Path) -> list[tuple[str, tuple[str, ...], str]]:
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            user, history, target = line.rstrip("\n").split("\t")
            rows.append((user, tuple(history.split(" ")), target))
    return rows


@pytest.mark.parametrize(
    ("name", "folder"), [("scientific", "amazon-scientific"), ("scientific-mm", "amazon-scientific-mm")]
)
def test_scientific_split_equals_published_rows(prepared, shared_data, name, folder):
    out = prepared(name)
    src = shared_data / folder
    asin = dict(line.rstrip("\n").split("\t")[::-1] for line in open(src / "Scientific.item2index"))
    reviewer = dict(line.rstrip("\n").split("\t")[::-1] for line in open(src / "Scientific.user2index"))
    item_id = dict(pl.read_parquet(out / "items.parquet").select("source_id", "item_id").iter_rows())
    user_id = dict(pl.read_parquet(out / "users.parquet").select("source_id", "user_id").iter_rows())

    def ours(row):
        user, history, target = row
        return user_id[reviewer[user]], [item_id[asin[i]] for i in history], item_id[asin[target]]

    for split in ("valid", "test"):
        published = sorted(ours(r) for r in _read_inter(src / f"Scientific.{split}.inter"))
        mine = sorted(pl.read_parquet(out / f"{split}.parquet").select("user_id", "history", "target").iter_rows())
        assert mine == published, split

    # Train rows are every earlier prefix (history cut to 50) of the full sequence.
    seqs = defaultdict(list)
    for user, item, _ in (
        pl.read_parquet(out / "interactions.parquet")
        .sort("user_id", "position")
        .select("user_id", "item_id", "position")
        .iter_rows()
    ):
        seqs[user].append(item)
    prefixes = sorted((u, s[max(0, k - 50) : k], s[k]) for u, s in seqs.items() for k in range(1, len(s) - 2))
    assert prefixes == sorted(ours(r) for r in _read_inter(src / "Scientific.train.inter"))


def test_scientific_rebuilds_histories_cut_at_50(prepared, shared_data):
    """3 users have more than 51 items: their first items exist only in the train rows."""
    stats = json.loads((prepared("scientific") / "stats.json").read_text())
    assert stats["sequence_length"]["max"] == 80
    test = pl.read_parquet(prepared("scientific") / "test.parquet")
    lengths = pl.read_parquet(prepared("scientific") / "interactions.parquet").group_by("user_id").len()
    long_users = lengths.filter(pl.col("len") > 51)
    assert long_users.height == 3
    assert (
        test.filter(pl.col("user_id").is_in(long_users["user_id"].implode()))["history"].list.len().to_list()
        == [50] * 3
    )


def test_scientific_text_split_and_ids(prepared, shared_data):
    items = pl.read_parquet(prepared("scientific") / "items.parquet")
    # "PORTER-CABLE ... Sanding Roll. Industrial & Scientific ... Sanding Rolls. PORTER-CABLE. "
    row = items.filter(pl.col("source_id") == "B0000223SI").row(0, named=True)
    assert row["title"] == "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll"
    assert row["categories"].startswith("Industrial & Scientific Abrasive & Finishing Products")
    assert row["brand"] == "PORTER-CABLE"
    # "24 Oz. Sprayer Bottles, ..." has a third ". ": ambiguous, kept whole as the title.
    row = items.filter(pl.col("source_id") == "B00008VXNE").row(0, named=True)
    assert row["title"].startswith("24 Oz. Sprayer Bottles, Pack Of 3. Industrial & Scientific Lab")
    assert row["title"].endswith("Lab Bottles & Jars. Continental.")
    assert row["categories"] is None and row["brand"] is None
    # Split where ". " occurs exactly twice (4,226 of 4,385 texts); empty parts become null ("title. . brand. ").
    text = dict(
        line.rstrip("\n").split("\t") for line in list(open(shared_data / "amazon-scientific" / "Scientific.text"))[1:]
    )
    split = items.filter(pl.col("title") != pl.col("source_id").replace_strict(text).str.strip_chars())
    assert split.height == 4226
    wine = items.filter(pl.col("source_id") == "B007LQC3Q0").row(0, named=True)
    assert (wine["categories"], wine["brand"]) == (None, "Red Star")
    # ids follow item2index: B00TNNWMXI has index 0 -> item_id 1
    assert items.row(0, named=True)["source_id"] == "B00TNNWMXI"
    assert items["source_row"].null_count() == items.height


def test_scientific_mm_features_declared(prepared, shared_data):
    out = prepared("scientific-mm")
    items = pl.read_parquet(out / "items.parquet")
    assert items["source_row"].to_list() == list(range(1585))  # item_id k+1 <-> item2index k
    metadata = read_parquet_metadata(out / "items.parquet")
    assert (metadata["paths_relative_to"], metadata["data_root"]) == ("data_root", str(shared_data))
    features = metadata["features"]
    assert features["text"]["path"] == "amazon-scientific-mm/Scientific.feat1CLS"
    assert features["image"]["path"] == "amazon-scientific-mm/Scientific.feat3CLS"
    for spec in features.values():
        assert (spec["dim"], spec["rows"], spec["dtype"], spec["relative_to"]) == (512, 1585, "float32", "data_root")
        assert (shared_data / spec["path"]).stat().st_size == 1585 * 512 * 4
    stats = json.loads((out / "stats.json").read_text())
    assert stats["share_items_with_image"] == 1.0 and stats["share_items_with_text"] == 1.0


@pytest.mark.parametrize(("name", "s3name"), [("beauty", "Beauty"), ("toys", "Toys_and_Games")])
def test_s3rec_keeps_s3rec_order_and_ids(prepared, shared_data, name, s3name):
    out = prepared(name)
    lines = [list(map(int, line.split())) for line in open(shared_data / "amazon-s3rec" / f"{s3name}.txt")]
    inter = pl.read_parquet(out / "interactions.parquet").sort("user_id", "position")
    mine = inter.group_by("user_id", maintain_order=True).agg("item_id")
    # Every S3-Rec id is used, so the dense ids are the S3-Rec ids and the lines are the sequences.
    assert mine["user_id"].to_list() == [line[0] for line in lines]
    assert mine["item_id"].to_list() == [line[1:] for line in lines]
    assert inter["timestamp"].null_count() == inter.height


def test_beauty_asins_titles_and_reviewers(prepared, shared_data):
    out = prepared("beauty")
    items = pl.read_parquet(out / "items.parquet")
    first = items.row(0, named=True)
    assert (first["item_id"], first["source_id"]) == (1, "B004756YJA")
    assert first["title"] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert items["title"].null_count() == 15  # 12,086 of 12,101 titled
    assert pl.read_parquet(out / "users.parquet").row(0) == (1, "A1YJEY40YUW4SE")
    # SOURCE.md: the mapped Beauty sequences equal IDGenRec's ASIN sequences, in order, on every line.
    idgenrec = {}
    for line in open(shared_data / "amazon-s3rec-asin" / "Beauty.user_sequence.txt"):
        user, *asins = line.split()
        idgenrec[user] = asins
    assert sequences(out) == idgenrec


def test_movielens_keeps_every_rating_in_time_order(prepared, shared_data):
    out = prepared("movielens-mm")
    rows = defaultdict(list)
    with open(shared_data / "movielens-100k" / "ml-100k.inter") as f:
        next(f)
        for line_no, line in enumerate(f):
            user, item, _, ts = line.split("\t")
            rows[user].append((int(ts), line_no, item))
    # Equal timestamps keep the file order (line_no breaks ties).
    expected = {user: [item for *_, item in sorted(r)] for user, r in rows.items()}
    assert sequences(out) == expected
    assert sum(len(v) for v in expected.values()) == 100000
    ts = pl.read_parquet(out / "interactions.parquet")["timestamp"]
    assert ts.null_count() == 0 and ts.min() == 874724710


def test_movielens_side_information(prepared, shared_data):
    items = pl.read_parquet(prepared("movielens-mm") / "items.parquet")
    toy = items.row(0, named=True)
    assert (toy["item_id"], toy["source_id"], toy["title"]) == (1, "1", "Toy Story (1995)")
    assert toy["categories"] == "Animation, Children's, Comedy"  # ML-100K genres, not the JSON's
    assert toy["image"] == "movielens-100k-mm/posters/1.jpg" and (shared_data / toy["image"]).is_file()
    assert toy["description"].startswith("A cowboy doll")
    lawrence = items.filter(pl.col("item_id") == 511).row(0, named=True)
    assert "Western" not in lawrence["categories"]  # the JSON says Action, Western
    assert items.filter(pl.col("item_id") == 267)["title"].to_list() == [None]  # RecBole's "unkonwn"
    assert items["image"].is_not_null().sum() == 1621
    assert items["description"].is_not_null().sum() == 1591
    assert (items["image"].is_not_null() & items["description"].is_not_null()).sum() == 1543


def test_gift_cards_raw_amazon(prepared, shared_data):
    out = prepared("gift-cards")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["repeated_user_item_pairs"] == 7
    items = pl.read_parquet(out / "items.parquet")
    assert items["title"].null_count() == 0
    assert items["description"].is_not_null().sum() == 145
    assert items["image"].is_not_null().sum() == 116
    assert items["image"].drop_nulls().str.starts_with("https://").all()
    assert stats["share_items_with_image"] == pytest.approx(116 / 148)
    first = items.filter(pl.col("source_id") == "B004LLIKVU").row(0, named=True)
    assert first["categories"] == "Gift Cards"  # the 2018 list ["Gift Cards", "Gift Cards"], deduplicated
    inter = pl.read_parquet(out / "interactions.parquet").sort("user_id", "position")
    assert inter.select((pl.col("timestamp").diff().over("user_id").fill_null(0) >= 0).all()).item()


def _gift_cards_as_2014(shared_data: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """The reviews (uncompressed) and their items' metadata rewritten in the 2014 style, as Python literals."""
    folder = tmp_path / "amazon2014-like"
    folder.mkdir()
    reviews = gzip.open(shared_data / "amazon2018-small-5core" / "Gift_Cards_5.json.gz", "rt").read().splitlines()
    (folder / "reviews.json").write_text("\n".join(reviews) + "\n")
    asins = {json.loads(line)["asin"] for line in reviews}
    meta_lines = []
    for line in gzip.open(shared_data / "amazon2018-small-5core" / "meta_Gift_Cards.json.gz", "rt"):
        m = json.loads(line)
        if m["asin"] in asins:
            old = {
                "asin": m["asin"],
                "title": m["title"],
                "categories": [m.get("category", [])],
                "description": " ".join(m.get("description", [])),
                "brand": m.get("brand", ""),
            }
            if m.get("imageURLHighRes"):
                old["imUrl"] = m["imageURLHighRes"][0]
            meta_lines.append(repr(old))  # Python literal: single quotes, not JSON
    (folder / "meta.json").write_text("\n".join(meta_lines) + "\n")
    return folder, asins


def test_amazon_raw_reads_2014_python_literal_meta(shared_data, tmp_path):
    folder, asins = _gift_cards_as_2014(shared_data, tmp_path)
    cfg = {
        "name": "gift-2014",
        "adapter": "amazon_raw",
        "sources": [folder.name],
        "options": {"reviews": "reviews.json", "meta": "meta.json"},
    }
    stats = prepare_dataset(cfg, tmp_path, tmp_path / "out")
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    assert (stats["users"], stats["items"], stats["interactions"]) == COUNTS["gift-cards"]
    assert set(items["source_id"]) == asins
    assert items["image"].is_not_null().sum() == 116
    assert items["title"].null_count() == 0
    first = items.filter(pl.col("source_id") == "B004LLIKVU").row(0, named=True)
    assert first["title"] == "Amazon eGift Card" and first["categories"] == "Gift Cards"
    assert first["image"] == "https://images-na.ssl-images-amazon.com/images/I/31cvqMhdG2L.jpg"


def _ml_slice(shared_data: Path, folder: Path, n_users: int, suffix: str) -> None:
    """The interactions of the first `n_users` ML-100K users (by id) and the item table, as CSV or Parquet."""
    inter = pl.read_csv(shared_data / "movielens-100k" / "ml-100k.inter", separator="\t")
    inter = inter.rename({c: c.split(":")[0] for c in inter.columns}).filter(pl.col("user_id") <= n_users)
    inter = inter.select(
        pl.col("user_id").alias("uid"),
        pl.col("item_id").alias("movie"),
        pl.col("timestamp").cast(pl.Int64).alias("when"),
    )
    items = pl.read_csv(
        shared_data / "movielens-100k" / "ml-100k.item", separator="\t", quote_char=None, infer_schema=False
    )
    items = items.select(
        pl.col("item_id:token").alias("movie"),
        pl.col("movie_title:token_seq").alias("name"),
        pl.format("../posters/{}.jpg", pl.col("item_id:token")).alias("poster"),
    )
    folder.mkdir(parents=True)
    if suffix == "csv":
        inter.write_csv(folder / "ratings.csv")
        items.write_csv(folder / "movies.csv")
    else:
        inter.write_parquet(folder / "ratings.parquet")
        items.write_parquet(folder / "movies.parquet")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_generic_matches_movielens_adapter(prepared, shared_data, tmp_path, suffix):
    _ml_slice(shared_data, tmp_path / "mine" / "tables", 200, suffix)
    cfg = {
        "name": "mine",
        "adapter": "generic",
        "sources": ["mine"],
        "options": {
            "interactions": f"tables/ratings.{suffix}",
            "columns": {"user": "uid", "item": "movie", "timestamp": "when"},
            "items": f"tables/movies.{suffix}",
            "item_columns": {"item": "movie", "title": "name", "image": "poster"},
        },
    }
    stats = prepare_dataset(cfg, tmp_path, tmp_path / "out")
    ml = sequences(prepared("movielens-mm"))
    expected = {u: s for u, s in ml.items() if int(u) <= 200}
    assert sequences(tmp_path / "out") == expected
    assert stats["users"] == 200 and stats["interactions"] == sum(map(len, expected.values()))
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    toy = items.filter(pl.col("source_id") == "1").row(0, named=True)
    assert toy["title"] == "Toy Story"
    assert toy["image"] == "mine/tables/../posters/1.jpg"  # relative to data_root
    # ids by first appearance: ML-100K's first row is user 196's
    assert pl.read_parquet(tmp_path / "out" / "users.parquet").row(0) == (1, "196")


def test_generic_without_timestamps_uses_file_order(shared_data, tmp_path):
    lines = open(shared_data / "amazon-s3rec" / "Toys_and_Games.txt").read().splitlines()[:50]
    rows = [(int(u), int(i)) for line in lines for u, *items in [line.split()] for i in items]
    folder = tmp_path / "toys-csv"
    folder.mkdir()
    with open(folder / "inter.csv", "w", newline="") as f:
        csv.writer(f).writerows([("user_id", "item_id"), *rows])
    cfg = {
        "name": "toys-csv",
        "adapter": "generic",
        "sources": ["toys-csv"],
        "options": {"interactions": "inter.csv", "columns": {"timestamp": None}},
    }
    prepare_dataset(cfg, tmp_path, tmp_path / "out")
    assert sequences(tmp_path / "out") == {line.split()[0]: line.split()[1:] for line in lines}
