"""Stages quantize and assign_sids on real inputs: amazon-scientific-mm (prepared by the data stage) with its
shipped text/image features and, standing in for the SASRec behaviour embeddings of the behavior_embed stage, an
item2vec-style SVD of the item co-occurrence matrix of the training sequences (tests only).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds

from bbqrec.io import InputError, read_parquet_metadata, write_parquet
from bbqrec.quantize.config import behavior_seeds
from bbqrec.quantize.sids import assign_extra, encode_items, sid_quality
from bbqrec.quantize.tokenizer import BBQTokenizer, tokenizer_config
from bbqrec.quantize.train import TokenizerInputs, load_embeddings, load_sequences, train_tokenizer

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
QUICK = {
    "epochs": 2,
    "codebook_size": 32,
    "levels": 3,
    "code_dim": 16,
    "hidden_dim": 64,
    "batch_size": 512,
    "seq_batch_size": 128,
    "seq_max_len": 10,
}


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cooccurrence_behavior(train: pl.DataFrame, n_items: int, dim: int, seed: int, window: int = 3) -> np.ndarray:
    """[n_items, dim] item vectors: truncated SVD of the PPMI matrix of items within `window` positions."""
    lengths = train["items"].list.len().to_numpy().astype(np.int64)
    flat = train["items"].explode().to_numpy().astype(np.int64)
    ends = np.repeat(np.cumsum(lengths), lengths)
    rows, cols = [], []
    for offset in range(1, window + 1):
        ok = np.flatnonzero(np.arange(len(flat)) + offset < ends)
        rows.append(flat[ok])
        cols.append(flat[ok + offset])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    counts = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_items + 1, n_items + 1)).tocsr()
    counts = (counts + counts.T).tocoo()
    marginal = np.asarray(counts.sum(1)).ravel()
    pmi = np.log(counts.data * counts.sum() / (marginal[counts.row] * marginal[counts.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)
    u, s, _ = svds(ppmi, k=dim, random_state=seed)
    return (u * np.sqrt(s))[1:].astype(np.float32)  # row 0 is the padding id


def embedding_frame(item_ids: np.ndarray, vectors: np.ndarray, flag: str | None, present=None) -> pl.DataFrame:
    present = np.ones(len(item_ids), dtype=bool) if present is None else present
    series = pl.Series("embedding", vectors, dtype=pl.Array(pl.Float32, vectors.shape[1]))
    frame = pl.DataFrame({"item_id": item_ids.astype(np.int32)}).with_columns(
        pl.when(pl.Series(present)).then(series).otherwise(None).alias("embedding")
    )
    return frame.with_columns(pl.Series(flag, present)) if flag else frame


@pytest.fixture(scope="module")
def scientific(prepared, shared_data, tmp_path_factory):
    """(embeddings dir, train.parquet) of amazon-scientific-mm."""
    data = prepared("scientific-mm")
    items = pl.read_parquet(data / "items.parquet")
    out = tmp_path_factory.mktemp("scientific-embeddings")
    ids, rows = items["item_id"].to_numpy(), items["source_row"].to_numpy()
    for stream, suffix, flag in (("text", "feat1CLS", "has_text"), ("image", "feat3CLS", "has_image")):
        matrix = np.fromfile(shared_data / "amazon-scientific-mm" / f"Scientific.{suffix}", dtype=np.float32)
        write_parquet(embedding_frame(ids, matrix.reshape(-1, 512)[rows], flag), out / f"{stream}.parquet")
    train = pl.read_parquet(data / "train.parquet")
    behavior = cooccurrence_behavior(train, len(ids), 64, seed=0)
    write_parquet(embedding_frame(ids, behavior, None), out / "behavior.parquet")
    return out, data / "train.parquet"


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True, timeout=600
    )


def test_extra_numbers_items_sharing_a_code_tuple_by_item_id():
    frame = pl.DataFrame(
        {
            "item_id": [7, 3, 5, 9, 3, 4],
            "stream": ["text", "text", "text", "text", "image", "image"],
            "c1": [1, 1, 1, 2, 1, 1],
            "c2": [0, 0, 0, 0, 0, 0],
            "quantized": [[0.0]] * 6,
        },
        schema_overrides={"quantized": pl.Array(pl.Float32, 1), "c1": pl.Int32, "c2": pl.Int32},
    )
    out = assign_extra(frame)
    extra = {(r["stream"], r["item_id"]): r["extra"] for r in out.iter_rows(named=True)}
    assert extra == {("text", 3): 0, ("text", 5): 1, ("text", 7): 2, ("text", 9): 0, ("image", 3): 0, ("image", 4): 1}
    assert out.columns == ["item_id", "stream", "c1", "c2", "extra", "quantized"]


def test_quality_metrics_by_hand():
    # text: tuples (0,0) (0,0) (1,2) (2,2) -> 2 of 4 items collide; image: (0,0) (1,2) (2,3) (3,3) all unique.
    frame = pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 1, 2, 3, 4],
            "stream": ["text"] * 4 + ["image"] * 4,
            "c1": [0, 0, 1, 2, 0, 1, 2, 3],
            "c2": [0, 0, 2, 2, 0, 2, 3, 3],
        }
    )
    quality = sid_quality(frame, codebook_size=4)
    text = quality["streams"]["text"]
    assert text["collision_rate"] == 0.5 and text["unique_id_rate"] == 0.75 and text["max_extra"] == 1
    first = text["levels"][0]  # level-1 counts 2, 1, 1 of 4 codes
    assert (first["codes_used"], first["dead_codes"], first["usage"]) == (3, 1, 0.75)
    assert first["perplexity"] == pytest.approx(np.exp(-(0.5 * np.log(0.5) + 0.5 * np.log(0.25))))
    assert text["duplicate_id_rate"] == pytest.approx(0.25)  # TIGER / LETTER: 1 − 3 unique / 4 items
    # Without `last_argmin` the codes are the argmin codes.
    assert (text["collision_rate_argmin"], text["last_level_reassigned"]) == (0.5, 0.0)
    assert quality["streams"]["image"]["collision_rate"] == 0.0
    assert quality["streams"]["image"]["levels"][0]["perplexity"] == pytest.approx(4.0)
    # items 1..4: text vs image codes agree on level 1 for item 1 only, on (c1, c2) for item 1 only.
    assert quality["prefix_agreement"]["image-text"] == {"items": 4, "share_by_prefix_length": {"1": 0.25, "2": 0.25}}


def test_quality_reports_collisions_before_and_after_the_balanced_last_level():
    # argmin tuples (0,0) (0,0) (0,0) (1,2): 3 of 4 collide; balanced last codes 0, 1, 3: none collide.
    frame = pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4],
            "stream": ["text"] * 4,
            "c1": [0, 0, 0, 1],
            "c2": [0, 1, 3, 2],
            "last_argmin": [0, 0, 0, 2],
        }
    )
    text = sid_quality(frame, codebook_size=4)["streams"]["text"]
    assert (text["collision_rate"], text["duplicate_id_rate"]) == (0.0, 0.0)
    assert text["collision_rate_argmin"] == 0.75 and text["duplicate_id_rate_argmin"] == pytest.approx(0.5)
    assert text["last_level_reassigned"] == 0.5


def test_quantize_and_assign_sids_scripts_write_the_artifacts(scientific, tmp_path):
    embeddings, train = scientific
    quantize_dir, sids_dir = tmp_path / "quantize" / "bbq", tmp_path / "sids" / "bbq"
    result = run_script(
        "quantize.py",
        "--embeddings-dir",
        embeddings,
        "--train",
        train,
        "--tokenizer",
        "bbq",
        "--config-json",
        json.dumps(QUICK),
        "--seed",
        "0",
        "--out-dir",
        quantize_dir,
        "--log",
        tmp_path / "q.log",
    )
    assert result.returncode == 0, result.stderr
    codebook = pl.read_parquet(quantize_dir / "codebook.parquet")
    assert codebook.schema == pl.Schema(
        {"codebook": pl.String, "level": pl.Int32, "code": pl.Int32, "vector": pl.Array(pl.Float32, 16)}
    )
    assert codebook.height == 3 * 32 and codebook["codebook"].unique().to_list() == ["shared"]
    log = pl.read_parquet(quantize_dir / "log.parquet")
    assert log["epoch"].to_list() == [0, 1]
    for term in (
        "total",
        "quantizer",
        "recon",
        "club",
        "club_fit",
        "behavior_recon",
        "align_behavior_text",
        "align_behavior_image",
        "align_text_image",
        "seq",
        "seconds",
    ):
        assert log[term].is_finite().all(), term
    provenance = read_parquet_metadata(quantize_dir / "log.parquet")["provenance"]
    assert provenance["seed"] == 0
    assert provenance["config"]["behavior_files"] == [str(embeddings / "behavior.parquet")]  # the default file

    result = run_script(
        "assign_sids.py",
        "--quantize-dir",
        quantize_dir,
        "--embeddings-dir",
        embeddings,
        "--out-dir",
        sids_dir,
        "--log",
        tmp_path / "s.log",
    )
    assert result.returncode == 0, result.stderr
    sids = pl.read_parquet(sids_dir / "semantic_ids.parquet")
    assert sids.schema == pl.Schema(
        {
            "item_id": pl.Int32,
            "stream": pl.String,
            "c1": pl.Int32,
            "c2": pl.Int32,
            "c3": pl.Int32,
            "extra": pl.Int32,
            "last_argmin": pl.Int32,
            "quantized": pl.Array(pl.Float32, 16),
        }
    )
    assert sids.group_by("stream").len().sort("stream").rows() == [("behavior", 1585), ("image", 1585), ("text", 1585)]
    sids_provenance = read_parquet_metadata(sids_dir / "semantic_ids.parquet")["provenance"]["config"]
    assert sids_provenance["behavior_files"] == [str(embeddings / "behavior.parquet")]
    assert sids.select("stream", "c1", "c2", "c3", "extra").n_unique() == sids.height  # every ID unique
    assert sids.select(pl.col("c1", "c2", "c3").is_between(0, 31).all()).row(0) == (True, True, True)
    quality = json.loads((sids_dir / "sid_quality.json").read_text())
    for stream in ("text", "image", "behavior"):
        part = sids.filter(pl.col("stream") == stream)
        q = quality["streams"][stream]
        assert q["max_extra"] == part["extra"].max()
        assert q["collision_rate"] == pytest.approx(part.filter(pl.len().over("c1", "c2", "c3") > 1).height / 1585)
        argmin_collisions = part.filter(pl.len().over("c1", "c2", "last_argmin") > 1).height
        assert q["collision_rate_argmin"] == pytest.approx(argmin_collisions / 1585)
        assert q["collision_rate"] <= q["collision_rate_argmin"]
        assert len(q["levels"]) == 3
    assert quality["balance_last_level"] is True
    # 50 groups of items share one image vector (SOURCE.md quirk): 113 items, 7.1 %.
    assert quality["streams"]["image"]["input_duplicate_rate"] == pytest.approx(113 / 1585)
    assert set(quality["prefix_agreement"]) == {"behavior-image", "behavior-text", "image-text", "all"}
    # ẑ is the sum of the code vectors of the item's codes, balanced last code included.
    vectors = np.stack(codebook.sort("level", "code")["vector"].to_numpy()).reshape(3, 32, 16)
    codes = sids.select("c1", "c2", "c3").to_numpy()
    expected = vectors[np.arange(3)[None, :], codes].sum(1)
    np.testing.assert_allclose(np.stack(sids["quantized"].to_numpy()), expected, atol=1e-5)
    assert (sids["c3"] != sids["last_argmin"]).any()  # the check above covers moved codes


def train_quick(embeddings, train, seed: int, name: str = "bbq") -> pl.DataFrame:
    model, inputs = train_quick_model(embeddings, train, seed, name)
    return assign_extra(encode_items(model, inputs))


def train_quick_model(embeddings, train, seed: int, name: str = "bbq") -> tuple[BBQTokenizer, TokenizerInputs]:
    config = tokenizer_config(name, QUICK)
    inputs = load_embeddings(embeddings, config.streams)
    inputs.sequences = load_sequences(train, inputs.item_ids, config.seq_max_len)
    model, _ = train_tokenizer(inputs, config, seed=seed)
    return model, inputs


def test_balanced_last_level_changes_only_the_last_code_and_lowers_collisions(scientific):
    model, inputs = train_quick_model(*scientific, seed=0)
    balanced = encode_items(model, inputs)
    model.config = dataclasses.replace(model.config, balance_last_level=False)
    argmin = encode_items(model, inputs)
    assert argmin["c3"].equals(argmin["last_argmin"]) and balanced["last_argmin"].equals(argmin["c3"])
    assert balanced.select("item_id", "stream", "c1", "c2").equals(argmin.select("item_id", "stream", "c1", "c2"))
    on, off = (sid_quality(f, 32)["streams"] for f in (balanced, argmin))
    for stream in ("text", "image", "behavior"):
        assert on[stream]["collision_rate_argmin"] == off[stream]["collision_rate"]
        assert on[stream]["collision_rate"] < off[stream]["collision_rate"], stream
    # The 113 items sharing an image vector with another item all collide under argmin codes.
    assert off["image"]["collision_rate"] >= 113 / 1585
    # Balanced codes collide only where a (c1, c2) prefix holds more than 32 items, and there as little as an even
    # spread allows: n in (32, 64) items leave 2(n - 32) of them on shared codes, n >= 64 all of them.
    for stream in ("text", "image", "behavior"):
        sizes = balanced.filter(pl.col("stream") == stream).group_by("c1", "c2").len()["len"].to_numpy()
        fewest = np.where(sizes > 32, np.minimum(sizes, 2 * (sizes - 32)), 0).sum() / sizes.sum()
        assert on[stream]["collision_rate"] == pytest.approx(fewest), stream


def test_same_seed_gives_identical_semantic_ids(scientific):
    first, again, other = (train_quick(*scientific, seed=s) for s in (0, 0, 1))
    assert first.equals(again)
    assert not first.equals(other)


def test_untrained_tokenizer_keeps_its_initial_weights_and_the_k_means_codebooks(scientific):
    config = tokenizer_config("bbq-untrained", QUICK)
    assert config == dataclasses.replace(tokenizer_config("bbq", QUICK), epochs=0)  # only the training differs
    inputs = load_embeddings(scientific[0], config.streams)
    inputs.sequences = load_sequences(scientific[1], inputs.item_ids, config.seq_max_len)
    model, log = train_tokenizer(inputs, config, seed=3)
    assert log.is_empty() and {"epoch", "total", "seconds"} <= set(log.columns)
    # The same seed's fresh model, standardised and k-means-initialised as training starts: every weight and
    # codebook equal, so no gradient step and no dead-code re-seeding touched it.
    torch.manual_seed(3)
    fresh = BBQTokenizer(config, inputs.input_dims)
    fresh.set_input_statistics(inputs.features, inputs.present)
    fresh.kmeans_init(inputs.features, inputs.present, seed=3)
    trained_state, fresh_state = model.state_dict(), fresh.state_dict()
    assert trained_state.keys() == fresh_state.keys()
    for name, tensor in fresh_state.items():
        assert torch.equal(trained_state[name], tensor), name
    untrained = assign_extra(encode_items(model, inputs))
    assert untrained.equals(train_quick(*scientific, seed=3, name="bbq-untrained"))  # deterministic
    assert not untrained.equals(train_quick(*scientific, seed=3))  # and not the trained tokenizer's codes
    # its level-1 codes are the nearest of k-means centroids of the streams' pooled random features: each is used
    assert untrained["c1"].n_unique() == config.codebook_size


def test_fragmented_tokenizer_has_one_codebook_per_modality_and_no_behavior(scientific):
    sids = train_quick(*scientific, seed=0, name="bbq-no-behavior")
    assert sorted(sids["stream"].unique().to_list()) == ["image", "text"]


def test_items_missing_an_image_get_no_image_row(scientific, tmp_path):
    embeddings, train = scientific
    image = pl.read_parquet(embeddings / "image.parquet")
    present = (image["item_id"] % 4 != 0).to_numpy()  # a quarter of the items lose their image
    vectors = image["embedding"].to_numpy()
    for stream in ("text", "behavior"):
        (tmp_path / f"{stream}.parquet").symlink_to(embeddings / f"{stream}.parquet")
    write_parquet(
        embedding_frame(image["item_id"].to_numpy(), vectors, "has_image", present), tmp_path / "image.parquet"
    )
    sids = train_quick(tmp_path, train, seed=0)
    image_items = sids.filter(pl.col("stream") == "image")["item_id"].to_numpy()
    np.testing.assert_array_equal(image_items, image["item_id"].to_numpy()[present])
    assert sids.filter(pl.col("stream") == "text").height == 1585


def test_bad_inputs_are_errors_naming_the_file(scientific, tmp_path):
    embeddings, train = scientific
    with pytest.raises(InputError, match=r"audio\.parquet: missing embedding file"):
        load_embeddings(embeddings, ("audio",))
    text = pl.read_parquet(embeddings / "text.parquet")
    write_parquet(text.with_columns(pl.lit(False).alias("has_text")), tmp_path / "text.parquet")
    with pytest.raises(InputError, match=r"text\.parquet: row 0: `has_text` disagrees"):
        load_embeddings(tmp_path, ("text",))
    write_parquet(text.reverse(), tmp_path / "text.parquet")
    with pytest.raises(InputError, match=r"text\.parquet: row 1: item_id must be unique and ascending"):
        load_embeddings(tmp_path, ("text",))
    write_parquet(text.head(100), tmp_path / "text.parquet")
    inputs = load_embeddings(tmp_path, ("text",))
    with pytest.raises(InputError, match=r"train\.parquet: item_id \d+ is not in the embedding files"):
        load_sequences(train, inputs.item_ids, 20)


def test_behavior_path_replaces_the_embeddings_dir_behavior_stream(scientific, tmp_path):
    """The workflow keeps one behaviour embedding per seed outside the embeddings folder (--behavior)."""
    embeddings, _ = scientific
    behavior = pl.read_parquet(embeddings / "behavior.parquet")
    vectors = 2 * behavior["embedding"].to_numpy()
    seed_file = tmp_path / "behavior" / "seed1.parquet"
    seed_file.parent.mkdir()
    write_parquet(embedding_frame(behavior["item_id"].to_numpy(), vectors, None), seed_file)
    inputs = load_embeddings(embeddings, ("text", "behavior"), seed_file)
    np.testing.assert_array_equal(inputs.features["behavior"].numpy(), vectors)
    default = load_embeddings(embeddings, ("text", "behavior"))
    np.testing.assert_array_equal(2 * default.features["behavior"].numpy(), vectors)
    write_parquet(embedding_frame(behavior["item_id"].to_numpy()[:100], vectors[:100], None), seed_file)
    with pytest.raises(InputError, match=r"seed1\.parquet: item_id column differs from .*text\.parquet"):
        load_embeddings(embeddings, ("text", "behavior"), seed_file)


def test_several_behavior_files_are_concatenated_along_the_dimension(scientific, tmp_path):
    """quantize.behavior_models > 1: x_B = [e_1 ; e_2], the item rows of two behaviour SASRecs side by side."""
    embeddings, _ = scientific
    behavior = pl.read_parquet(embeddings / "behavior.parquet")
    item_ids, first = behavior["item_id"].to_numpy(), behavior["embedding"].to_numpy()
    second = -3 * first[:, :5]
    second_file = tmp_path / "seed1001.parquet"
    write_parquet(embedding_frame(item_ids, second, None), second_file)
    inputs = load_embeddings(embeddings, ("text", "behavior"), [embeddings / "behavior.parquet", second_file])
    assert inputs.input_dims["behavior"] == first.shape[1] + 5
    np.testing.assert_array_equal(inputs.features["behavior"].numpy(), np.concatenate([first, second], axis=1))
    assert inputs.present["behavior"].all()
    # one file given as a list or alone reads the same
    alone = load_embeddings(embeddings, ("behavior",), embeddings / "behavior.parquet")
    as_list = load_embeddings(embeddings, ("behavior",), [embeddings / "behavior.parquet"])
    assert torch.equal(alone.features["behavior"], as_list.features["behavior"])
    write_parquet(embedding_frame(item_ids[1:], second[1:], None), second_file)
    with pytest.raises(InputError, match=r"seed1001\.parquet: item_id column differs from .*behavior\.parquet"):
        load_embeddings(embeddings, ("behavior",), [embeddings / "behavior.parquet", second_file])


def test_behavior_seeds_start_at_the_tokenizer_seed_a_stride_apart():
    assert behavior_seeds(1, 1) == [1]
    assert behavior_seeds(2, 3) == [2, 1002, 2002]
    with pytest.raises(InputError, match=r"quantize\.behavior_models.*got 0"):
        behavior_seeds(0, 0)


def test_quantize_script_rejects_an_unknown_config_key(scientific, tmp_path, stage_script):
    embeddings, train = scientific
    script = stage_script("quantize")
    with pytest.raises(InputError, match="codebook_sise"):
        script.main(
            [
                "--embeddings-dir",
                str(embeddings),
                "--train",
                str(train),
                "--tokenizer",
                "bbq",
                "--config-json",
                '{"codebook_sise": 64}',
                "--out-dir",
                str(tmp_path / "out"),
            ]
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_default_tokenizer_meets_the_quality_bars(scientific):
    """Default options on Scientific-mm: level-1 usage >= 90 % in every stream, collisions before `extra` below
    5 % in every stream (balanced last level; the argmin codes cannot go below the 7.1 % of items that share an
    identical image vector), alignment losses falling."""
    embeddings, train = scientific
    config = tokenizer_config("bbq")
    inputs = load_embeddings(embeddings, config.streams)
    inputs.sequences = load_sequences(train, inputs.item_ids, config.seq_max_len)
    model, log = train_tokenizer(inputs, config, seed=0)
    quality = sid_quality(assign_extra(encode_items(model, inputs)), config.codebook_size)
    for stream, q in quality["streams"].items():
        assert q["levels"][0]["usage"] >= 0.9, (stream, q["levels"][0])
        assert q["collision_rate"] < 0.05, (stream, q["collision_rate"])
    assert quality["streams"]["image"]["collision_rate_argmin"] >= 113 / 1585
    for term in ("align_behavior_text", "align_behavior_image", "align_text_image"):
        assert log[term][-1] < 0.5 * log[term][0], term
    assert log["seq"][-1] < 0.9 * log["seq"][0]
