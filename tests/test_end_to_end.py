"""The whole workflow on a small real dataset (.test/config_basic: Gift Cards), and what a rerun does.

The run itself is the session fixture basic_config_run (conftest.py), which the SLURM test compares with too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from workflow_runs import BASIC_CONFIG, BASIC_CONFIG_SOURCE, REPO, job_counts, snakemake

pytestmark = pytest.mark.slow


def snakemake_in(workdir: Path, *args: str, configfiles: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """snakemake on the basic config in workdir, its data root workdir/data."""
    return snakemake(
        *args, "--configfile", BASIC_CONFIG, *configfiles, "--config", f"data_root={workdir / 'data'}",
        cwd=workdir, timeout=900,
    )


def planned_rules(result: subprocess.CompletedProcess) -> set[str]:
    """Rule names of the jobs a dry run (`-n --quiet rules`) would run."""
    rules, in_table = set(), False
    for line in result.stdout.splitlines():
        if line.startswith("job "):
            in_table = True
        elif in_table and line.strip() and not line.startswith("-"):
            name = line.split()[0]
            if name == "total":
                break
            rules.add(name)
    return rules


def test_every_stage_writes_its_artifacts(basic_config_run):
    results = basic_config_run / "results"
    stats = json.loads((results / "gift-cards" / "data" / "stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == (458, 148, 2972)
    text = pl.read_parquet(results / "gift-cards" / "embeddings" / "text.parquet")
    assert text.height == 148 and text["has_text"].all()  # gathered from 2 shards, every item once
    sids = pl.read_parquet(results / "gift-cards" / "sids" / "bbq" / "seed0" / "semantic_ids.parquet")
    assert set(sids["stream"]) == {"text", "behavior"}  # the dataset's modalities + behaviour
    assert sids.select("stream", "c1", "c2", "extra").is_unique().all()  # every (stream, item) ID unique
    comparison = pl.read_parquet(results / "comparison.parquet")
    assert set(comparison["variant"]) == {"sasrec", "bbqrec"}
    assert "## gift-cards" in (results / "comparison.md").read_text()
    # The same per bucket of the target's training count, for the test and the validation split: each split's
    # buckets hold its users once, and their users-weighted means give that split's mean (one seed), which is the
    # evaluate stage's.
    by_popularity = pl.read_parquet(results / "comparison_by_popularity.parquet")
    for split in ("valid", "test"):
        n_users = pl.read_parquet(results / "gift-cards" / "data" / f"{split}.parquet").height
        for variant in ("sasrec", "bbqrec"):
            ndcg10 = (pl.col("split") == split) & (pl.col("variant") == variant) & (pl.col("metric") == "ndcg") & (
                pl.col("k") == 10
            )
            rows, overall = by_popularity.filter(ndcg10), comparison.filter(ndcg10)
            assert rows["users"].sum() == n_users and rows["bucket"].is_unique().all()
            assert (rows["users"] * rows["mean"]).sum() / n_users == pytest.approx(overall["mean"].item(), rel=1e-9)
            evaluated = pl.read_parquet(results / "gift-cards" / "eval" / variant / "seed0" / "metrics.parquet")
            assert overall["mean"].item() == evaluated.filter(ndcg10)["value"].item()
    markdown = (results / "comparison.md").read_text()
    assert markdown.index("# Comparison (test split") < markdown.index("# By the test target's popularity")
    assert markdown.index("# By the test target's popularity") < markdown.index("# Comparison (validation split")
    assert markdown.index("# Comparison (validation split") < markdown.index("# By the validation target's popularity")
    # The lists to serve (config recommend: bbqrec's first seed, top 20, without what each user has).
    lists = pl.read_parquet(results / "gift-cards" / "recommend" / "bbqrec" / "seed0" / "next_items.parquet")
    assert lists.height == 458 * 20 and lists["user"].null_count() == lists["item"].null_count() == 0
    # 5-core: every user has a split, so none is left out and every row has a user_id
    assert pl.read_parquet(results / "gift-cards" / "data" / "left_out_users.parquet").height == 0
    assert lists["user_id"].null_count() == 0 and set(lists["ranked_by"]) == {"model"}
    had = pl.read_parquet(results / "gift-cards" / "data" / "interactions.parquet").select("user_id", "item_id")
    assert lists.join(had, on=["user_id", "item_id"]).height == 0
    metrics = pl.read_parquet(results / "gift-cards" / "eval" / "bbqrec" / "seed0" / "metrics.parquet")
    assert metrics.filter(pl.col("split") == "test").height == 6  # recall/ndcg at 5, 10, 20
    import torch

    saved = torch.load(results / "gift-cards" / "train" / "bbqrec" / "seed0" / "model.pt", weights_only=True)
    assert saved["provenance"]["config"]["sids"] == {  # the run's own seed picked the tokenizer (per_run)
        "path": "results/gift-cards/sids/bbq/seed0/semantic_ids.parquet", "tokenizer": "bbq", "seed": 0,
    }


def test_similarity_bias_export_holds_the_trained_tables_and_checks_the_codes(basic_config_run, tmp_path):
    import torch

    results = basic_config_run / "results" / "gift-cards"
    run = results / "train" / "bbqrec" / "seed0"
    table = pl.read_parquet(run / "similarity_bias.parquet")
    tables = torch.load(run / "model.pt", weights_only=True)["state_dict"]["similarity.tables"]
    # 2 streams (text, behaviour) -> 4 stream pairs; 2 layers x 2 heads; prefix 0..2 and "same item"
    assert set(table["query_stream"]) == set(table["key_stream"]) == {"text", "behavior"}
    assert table.height == tables.numel() == 4 * 2 * 2 * 4
    assert sorted(table["bias"].to_list()) == pytest.approx(sorted(tables.flatten().tolist()))
    assert table["bias"].abs().max() > 0  # trained: not the zero tables it started from
    assert (results / "report" / "bbqrec" / "seed0" / "similarity_bias.svg").stat().st_size > 10_000

    export = [sys.executable, str(REPO / "workflow" / "scripts" / "export_similarity_bias.py")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    sids = pl.read_parquet(results / "sids" / "bbq" / "seed0" / "semantic_ids.parquet")
    other = tmp_path / "other_sids.parquet"
    sids.with_columns((pl.col("c1") + 1) % 16).write_parquet(other)  # another tokenizer's codes
    for model, sids_path, message in (
        (run / "model.pt", other, "not the semantic IDs"),
        (results / "train" / "sasrec" / "seed0" / "model.pt", results / "sids" / "bbq" / "seed0" / "semantic_ids.parquet",
         "variant 'sasrec' has no similarity bias"),
    ):
        result = subprocess.run([*export, "--model", str(model), "--sids", str(sids_path), "--out",
                                 str(tmp_path / "bias.parquet")], capture_output=True, text=True, env=env)
        assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "bias.parquet").exists()


def test_rerun_with_unchanged_inputs_does_nothing(basic_config_run):
    result = snakemake_in(basic_config_run, "-n", "--cores", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_copied_project_folder_reruns_nothing(basic_config_run, tmp_path):
    """A finished project (workflow, config, results, .snakemake) copied elsewhere with its mtimes plans no job:
    no rule's params hold the folder's absolute path (the stage scripts' paths are relative to the workdir). The
    data stays where data_root says."""
    copy = tmp_path / "copied-project"
    shutil.copytree(
        basic_config_run, copy, symlinks=True, ignore=lambda folder, _: ["data"] if Path(folder) == basic_config_run else []
    )
    result = snakemake(
        "-n", "--cores", "1", "--configfile", BASIC_CONFIG, "--config", f"data_root={basic_config_run / 'data'}", cwd=copy
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


def test_restaged_data_with_new_mtimes_reruns_nothing(basic_config_run):
    for path in (basic_config_run / "data").rglob("*"):
        os.utime(path)  # what copying the data again does: same bytes, newer than every result
    result = snakemake_in(basic_config_run, "-n", "--cores", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changed_source_contents_rerun_from_preparation(basic_config_run):
    note = basic_config_run / "data" / BASIC_CONFIG_SOURCE / "SOURCE.md"
    original = note.read_bytes()
    try:
        note.write_bytes(original + b"\nedited\n")
        result = snakemake_in(basic_config_run, "-n", "--cores", "1", "--quiet", "rules")
    finally:
        note.write_bytes(original)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"prepare_data", "train", "evaluate"} <= planned_rules(result)


def test_changing_the_text_template_reruns_downstream_only(basic_config_run):
    (basic_config_run / "shorter_text.yaml").write_text("embed:\n  shards: 2\n  text:\n    max_chars: 200\n")
    result = snakemake_in(basic_config_run, "-n", "--cores", "1", "--quiet", "rules", configfiles=("shorter_text.yaml",))
    assert result.returncode == 0, result.stdout + result.stderr
    planned = planned_rules(result)
    assert {"embed_text", "gather_embeddings", "quantize", "assign_sids", "train", "evaluate"} <= planned
    assert "prepare_data" not in planned and "behavior_embed" not in planned


def test_dataset_file_edits_rerun_only_the_stages_they_configure(basic_config_run):
    dataset_file = basic_config_run / "config" / "datasets" / "gift-cards.yaml"
    original = dataset_file.read_text()
    try:
        planned, trains = {}, {}
        for name, block in (
            ("bbqrec inputs", "train:\n  content_inputs: false\n"),  # read by bbqrec, not the behaviour SASRec
            ("every model", "train:\n  patience: 3\n"),
            ("preparation", "prepare:\n  min_seq_len: 4\n"),
        ):
            dataset_file.write_text(original + block)
            result = snakemake_in(basic_config_run, "-n", "--cores", "1", "--quiet", "rules")
            assert result.returncode == 0, result.stdout + result.stderr
            planned[name] = planned_rules(result)
            trains[name] = job_counts(result.stdout).get("train", 0)
    finally:
        dataset_file.write_text(original)
    assert planned["bbqrec inputs"] == {
        "train", "evaluate", "compare", "plot_training_curves", "report_comparison", "all",
        "export_similarity_bias", "plot_similarity_bias", "recommend",
    }
    assert trains["bbqrec inputs"] == 1  # bbqrec; the sasrec baseline does not read the option
    assert {"behavior_embed", "quantize", "train"} <= planned["every model"]
    assert trains["every model"] == 2
    assert "prepare_data" not in planned["every model"] and "left_out_users" not in planned["every model"]
    assert {"prepare_data", "left_out_users", "train", "evaluate", "recommend"} <= planned["preparation"]


def test_a_refit_model_is_planned_alone_and_trains_the_stopped_runs_epochs(basic_config_run, tmp_path):
    """recommend.model: refit plans only refit and recommend; the refit itself runs here, its lists go to tmp_path
    (the run's own lists stay the evaluated model's, for the other tests)."""
    import torch

    # one --config for both keys: a second --config would replace the first
    refit = ("--configfile", BASIC_CONFIG, "--config", f"data_root={basic_config_run / 'data'}", "recommend={model: refit}")
    planned = snakemake("-n", "--cores", "1", "--quiet", "rules", *refit, cwd=basic_config_run)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert planned_rules(planned) == {"refit", "recommend", "all"}
    target = "results/gift-cards/refit/bbqrec/seed0/model.pt"
    result = snakemake("--cores", "2", target, *refit, cwd=basic_config_run, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = basic_config_run / "results" / "gift-cards"
    stopped, refit_dir = results / "train" / "bbqrec" / "seed0", results / "refit" / "bbqrec" / "seed0"
    best_epoch = torch.load(stopped / "model.pt", weights_only=True)["best_epoch"]
    log = pl.read_parquet(refit_dir / "log.parquet")
    assert log["epoch"].to_list() == list(range(1, best_epoch + 1))
    assert log["lr"].to_list() == pl.read_parquet(stopped / "log.parquet")["lr"][:best_epoch].to_list()
    lists_path = tmp_path / "next_items.parquet"
    subprocess.run(
        [sys.executable, str(REPO / "workflow" / "scripts" / "recommend.py"), "--dataset", "gift-cards", "--variant",
         "bbqrec", "--seed", "0", "--model", str(refit_dir / "model.pt"), "--data", str(results / "data"),
         "--out", str(lists_path)],
        check=True, capture_output=True, text=True,
    )
    lists = pl.read_parquet(lists_path)
    evaluated = pl.read_parquet(results / "recommend" / "bbqrec" / "seed0" / "next_items.parquet")
    assert lists.height == evaluated.height == 458 * 20 and not lists["item_id"].equals(evaluated["item_id"])
    had = pl.read_parquet(results / "data" / "interactions.parquet").select("user_id", "item_id")
    assert lists.join(had, on=["user_id", "item_id"]).height == 0


def test_report_is_one_html_file_with_every_view(basic_config_run):
    result = snakemake_in(basic_config_run, "--report", "report.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (basic_config_run / "report.html").read_text()
    for view in ("dataset_stats.html", "sid_quality.svg", "tokenizer_log.svg", "training_curves.svg",
                 "similarity_bias.svg", "comparison.html", "comparison.svg"):
        assert view in report, view
    for category in ("1. Data", "2. Semantic IDs", "3. Training", "4. Comparison"):
        assert category in report, category
