"""The train / evaluate / behavior_embed stage scripts end to end on a slice of real Beauty."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bbqrec.evaluation.compare import target_popularity
from bbqrec.io import InputError

CONFIG = json.dumps({"hidden_size": 32, "inner_size": 64, "batch_size": 128, "max_epochs": 2, "recommend_k": 10})


@pytest.fixture(scope="module")
def data_slice(prepared, tmp_path_factory):
    """results/beauty/data with the first 300 users (all items kept)."""
    source = prepared("beauty")
    out = tmp_path_factory.mktemp("beauty-slice") / "data"
    out.mkdir()
    shutil.copy(source / "items.parquet", out / "items.parquet")
    for split in ("train", "valid", "test"):
        pl.read_parquet(source / f"{split}.parquet").head(300).write_parquet(out / f"{split}.parquet")
    users = pl.read_parquet(out / "test.parquet")["user_id"]
    for name in ("interactions", "users"):  # what the recommend stage reads
        pl.read_parquet(source / f"{name}.parquet").filter(pl.col("user_id").is_in(users)).write_parquet(
            out / f"{name}.parquet"
        )
    return out


@pytest.mark.parametrize("name", ["train", "evaluate", "behavior_embed", "recommend"])
def test_scripts_have_help(repo_root, name):
    result = subprocess.run(
        [sys.executable, str(repo_root / "workflow" / "scripts" / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--out" in result.stdout


def test_train_then_evaluate_write_the_artifacts(repo_root, data_slice, tmp_path, capsys, stage_script):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    common = ["--dataset", "beauty", "--variant", "sasrec", "--seed", "1", "--data", str(data_slice)]
    stage_script("train").main([*common, "--config-json", CONFIG, "--out", str(train_dir)])
    assert sorted(p.name for p in train_dir.iterdir()) == ["log.parquet", "model.pt"]  # checkpoint removed
    log = pl.read_parquet(train_dir / "log.parquet")
    assert log["epoch"].to_list() == [1, 2]
    saved = torch.load(train_dir / "model.pt", weights_only=True)
    assert saved["variant"] == "sasrec" and saved["provenance"]["seed"] == 1
    # Floats differ between instruction sets and thread counts, so the run records the CPU it ran on and the code.
    cpu = saved["provenance"]["cpu"]
    assert cpu["torch_capability"] == torch.backends.cpu.get_cpu_capability() and cpu["torch_threads"] == 1
    head = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (CI's clean clone is one), not an installed copy
        assert saved["provenance"]["code"]["commit"] == head.stdout.strip()

    stage_script("evaluate").main(
        [*common, "--model", str(train_dir / "model.pt"), "--config-json", CONFIG, "--out", str(eval_dir)]
    )
    metrics = pl.read_parquet(eval_dir / "metrics.parquet")
    assert metrics.columns == ["dataset", "variant", "seed", "split", "metric", "k", "value"]
    assert metrics.height == 2 * 2 * 3  # splits x metrics x ks
    valid_ndcg10 = metrics.filter((pl.col("split") == "valid") & (pl.col("metric") == "ndcg") & (pl.col("k") == 10))
    assert valid_ndcg10["value"].item() == pytest.approx(saved["best_valid_ndcg10"], abs=1e-12)
    user_metrics = pl.read_parquet(eval_dir / "user_metrics.parquet")
    assert user_metrics.height == 2 * 300 * 6  # splits x users x (metric, k)
    for split in ("valid", "test"):  # each split's per-user rows average to its metric
        ndcg20 = (pl.col("split") == split) & (pl.col("metric") == "ndcg") & (pl.col("k") == 20)
        per_user = user_metrics.filter(ndcg20)
        assert per_user["user_id"].n_unique() == 300
        assert metrics.filter(ndcg20)["value"].item() == pytest.approx(per_user["value"].mean())
    recommendations = pl.read_parquet(eval_dir / "recommendations.parquet")
    assert recommendations.height == 300 * 10 and recommendations["item_id"].min() >= 1

    with pytest.raises(InputError, match="holds variant 'sasrec', expected 'bbqrec'"):
        stage_script("evaluate").main(
            [*common[:3], "bbqrec", *common[4:], "--model", str(train_dir / "model.pt"), "--out", str(eval_dir)]
        )

    # The next-item lists of the same model: after the whole sequence, without the items each user has.
    lists_path = tmp_path / "recommend" / "next_items.parquet"
    stage_script("recommend").main(
        [*common, "--model", str(train_dir / "model.pt"), "--k", "7", "--config-json", CONFIG, "--out", str(lists_path)]
    )
    assert sorted(p.name for p in lists_path.parent.iterdir()) == ["next_items.parquet"]  # no temporary file left
    lists = pl.read_parquet(lists_path)
    assert lists.columns == ["user_id", "user", "rank", "item_id", "item", "score", "ranked_by"]
    assert lists.height == 300 * 7 and set(lists["ranked_by"]) == {"model"}
    had = pl.read_parquet(data_slice / "interactions.parquet").select("user_id", "item_id").unique()
    assert lists.join(had, on=["user_id", "item_id"]).height == 0
    run = json.loads(pq.read_schema(lists_path).metadata[b"provenance"])
    assert run["seed"] == 1 and run["config"]["k"] == 7 and run["config"]["exclude_history"] is True
    assert run["config"]["cold_users"] == "popularity"
    stage_script("recommend").main(
        [*common, "--model", str(train_dir / "model.pt"), "--k", "7", "--keep-history", "--out", str(lists_path)]
    )
    assert pl.read_parquet(lists_path).join(had, on=["user_id", "item_id"]).height > 0  # a trained model repeats some
    with pytest.raises(InputError, match="holds variant 'sasrec', expected 'bbqrec'"):
        stage_script("recommend").main(
            [*common[:3], "bbqrec", *common[4:], "--model", str(train_dir / "model.pt"), "--out", str(lists_path)]
        )

    # The comparison of both splits from these files; compare finds a dataset's data by its folder's name.
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "data").symlink_to(data_slice)
    out = {name: tmp_path / f"comparison{suffix}" for name, suffix in
           (("table", ".parquet"), ("popularity", "_by_popularity.parquet"), ("markdown", ".md"),
            ("origins", "_origins.parquet"))}

    def compare(eval_dir):
        stage_script("compare").main(
            ["--eval-dirs", str(eval_dir), "--data-dirs", str(tmp_path / "beauty" / "data"), "--variants", "sasrec",
             "--out-parquet", str(out["table"]), "--out-popularity", str(out["popularity"]),
             "--out-markdown", str(out["markdown"]), "--out-origins", str(out["origins"])]
        )
        return pl.read_parquet(out["table"]), pl.read_parquet(out["popularity"])

    table, buckets = compare(eval_dir)
    keys = ["split", "metric", "k"]
    assert table.select(*keys, "mean").sort(keys).equals(metrics.select(*keys, mean="value").sort(keys))
    ndcg10 = (pl.col("metric") == "ndcg") & (pl.col("k") == 10)
    sizes = {}
    for split in ("valid", "test"):  # each split's buckets: its 300 users by its own targets, weighted means = its mean
        rows = buckets.filter(ndcg10 & (pl.col("split") == split))
        train = pl.read_parquet(data_slice / "train.parquet")
        targets = target_popularity(train, pl.read_parquet(data_slice / f"{split}.parquet"))
        sizes[split] = dict(zip(rows["bucket"], rows["users"]))
        assert sizes[split] == dict(targets.group_by("bucket").len().iter_rows())
        mean = metrics.filter(ndcg10 & (pl.col("split") == split))["value"].item()
        assert (rows["users"] * rows["mean"]).sum() / 300 == pytest.approx(mean, rel=1e-12)
    assert sizes["valid"] != sizes["test"]  # so the check above tells the splits' targets apart
    assert "# By the validation target's popularity" in out["markdown"].read_text()
    # Where the model was trained travels from model.pt through metrics.parquet into the comparison.
    trained = json.loads(pq.read_schema(eval_dir / "metrics.parquet").metadata[b"provenance"])["config"]["trained"]
    assert trained == {key: saved["provenance"][key] for key in ("code", "platform", "cpu")}
    machine = f"| {trained['cpu']['model']} | {torch.backends.cpu.get_cpu_capability()} | 1 |"
    assert "# Where the runs were trained" in out["markdown"].read_text() and machine in out["markdown"].read_text()
    origin = pl.read_parquet(out["origins"]).row(0, named=True)  # and per run, for the report's page
    assert origin["cpu"] == trained["cpu"]["model"] and origin["code"].startswith(trained["code"]["commit"][:12])
    assert (origin["dataset"], origin["variant"], origin["seed"]) == ("beauty", "sasrec", 1)
    # A user_metrics.parquet of an older evaluate stage (test rows, no split column) still compares, with a warning.
    old_dir = tmp_path / "eval-old"
    shutil.copytree(eval_dir, old_dir)
    user_metrics.filter(pl.col("split") == "test").drop("split").write_parquet(old_dir / "user_metrics.parquet")
    capsys.readouterr()
    old_table, old_buckets = compare(old_dir)
    warning = capsys.readouterr().err  # the stage scripts log to stderr
    assert "WARNING" in warning and "1 user_metrics.parquet without validation rows" in warning
    assert str(old_dir) in warning and "snakemake -R evaluate" in warning
    assert old_table.equals(table)  # one run: no p-values, and the means come from metrics.parquet
    test_rows = pl.col("split") == "test"
    assert old_buckets.filter(test_rows).equals(buckets.filter(test_rows))
    assert old_buckets.filter(~test_rows).is_empty()  # no per-user validation rows to bucket
    assert "# Comparison (validation split" in out["markdown"].read_text()
    assert "# By the validation target's popularity" not in out["markdown"].read_text()


def test_a_refit_trains_on_every_interaction_for_the_stopped_runs_epochs(data_slice, tmp_path, stage_script):
    from bbqrec.data.split import user_sequences
    from bbqrec.training import TrainConfig, TrainingSequences, build_model, fit, seed_everything

    train_dir, refit_dir = tmp_path / "train", tmp_path / "refit"
    common = ["--dataset", "beauty", "--variant", "sasrec", "--seed", "1", "--data", str(data_slice)]
    options = {**json.loads(CONFIG), "max_epochs": 3, "lr": 0.01}
    config_json = json.dumps(options)
    stage_script("train").main([*common, "--config-json", config_json, "--out", str(train_dir)])
    stopped = torch.load(train_dir / "model.pt", weights_only=True)
    stopped_log = pl.read_parquet(train_dir / "log.parquet")
    stage_script("train").main(
        [*common, "--refit-from", str(train_dir), "--config-json", config_json, "--out", str(refit_dir)]
    )
    assert sorted(p.name for p in refit_dir.iterdir()) == ["log.parquet", "model.pt"]
    saved = torch.load(refit_dir / "model.pt", weights_only=True)
    log = pl.read_parquet(refit_dir / "log.parquet")
    assert saved["variant"] == "sasrec" and saved["best_epoch"] == stopped["best_epoch"] == log.height
    assert log["lr"].to_list() == stopped_log["lr"][: stopped["best_epoch"]].to_list()
    assert saved["provenance"]["config"]["refit_of"] == {"run": str(train_dir), "epochs": stopped["best_epoch"]}
    # the training rows are every user's whole sequence (interactions.parquet), not train.parquet's
    config = TrainConfig.from_dict(options)
    whole = TrainingSequences.from_frame(user_sequences(pl.read_parquet(data_slice / "interactions.parquet")), 50)
    seed_everything(1)
    expected = build_model("sasrec", config, pl.read_parquet(data_slice / "items.parquet").height)
    fit(expected, whole, None, config, 1, learning_rates=log["lr"].to_list())
    for name, weight in expected.state_dict().items():
        assert torch.equal(saved["state_dict"][name], weight), name
    assert not torch.equal(saved["state_dict"]["item_embedding.weight"], stopped["state_dict"]["item_embedding.weight"])
    # and it serves: the recommend stage reads it like any model.pt
    lists_path = tmp_path / "next_items.parquet"
    stage_script("recommend").main(
        [*common, "--model", str(refit_dir / "model.pt"), "--k", "7", "--out", str(lists_path)]
    )
    assert pl.read_parquet(lists_path).height == 300 * 7
    with pytest.raises(InputError, match=r"train/model.pt: holds variant 'sasrec', expected 'bbqrec'"):
        stage_script("train").main(
            [*common[:3], "bbqrec", *common[4:], "--refit-from", str(train_dir), "--out", str(tmp_path / "other")]
        )


def test_behavior_embeddings_cover_every_item_and_use_the_training_part_only(data_slice, tmp_path, stage_script):
    training_only = tmp_path / "data"  # no valid/test files: they must not be needed
    training_only.mkdir()
    for name in ("items.parquet", "train.parquet"):
        shutil.copy(data_slice / name, training_only / name)
    out = tmp_path / "embeddings" / "behavior.parquet"
    config = json.dumps({"hidden_size": 32, "inner_size": 64, "batch_size": 128, "max_epochs": 1})
    stage_script("behavior_embed").main(["--data", str(training_only), "--config-json", config, "--out", str(out)])
    table = pq.read_table(out)
    n_items = pl.read_parquet(data_slice / "items.parquet").height
    assert table.num_rows == n_items and table.column("item_id").to_pylist() == list(range(1, n_items + 1))
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 32 and kind.value_type == pa.float32()
    assert sorted(p.name for p in out.parent.iterdir()) == ["behavior.parquet"]


def test_provenance_without_git_records_no_commit(monkeypatch):
    import subprocess as subprocess_module

    from bbqrec.io import code_commit, provenance

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess_module, "run", no_git)
    code_commit.cache_clear()  # looked up once per process: forget this process's checkout
    try:
        run = provenance({"k": 1}, seed=3)
    finally:
        code_commit.cache_clear()
    assert run["code"] is None and run["seed"] == 3 and run["config"] == {"k": 1}
    assert run["cpu"]["logical_cores"] >= 1
