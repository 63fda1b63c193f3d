"""config/benchmark.yaml and config/comparison.yaml: the four-dataset comparisons validate and plan exactly
their training runs (every dataset x variant x seed; the main variants plus the ablations on two datasets)."""

from __future__ import annotations

import yaml
from snakemake.utils import validate
from workflow_runs import REPO, dry_run, job_counts

BENCHMARK = REPO / "config" / "benchmark.yaml"
COMPARISON = REPO / "config" / "comparison.yaml"


def test_benchmark_config_is_valid_and_names_the_four_datasets_every_variant_three_seeds():
    config = yaml.safe_load(BENCHMARK.read_text())
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["datasets"] == ["scientific", "scientific-mm", "beauty", "movielens-mm"]
    assert all((REPO / "config" / "datasets" / f"{name}.yaml").is_file() for name in config["datasets"])
    from bbqrec.models.variants import VARIANTS

    assert sorted(config["train"]["variants"]) == sorted(VARIANTS)
    assert config["train"]["seeds"] == [0, 1, 2]


def test_benchmark_dry_run_plans_one_training_run_per_dataset_variant_and_seed():
    result = dry_run("--configfile", str(BENCHMARK))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # every variant runs on every dataset (common.smk excludes none): 4 datasets x 8 variants x 3 seeds
    assert counts["train"] == counts["evaluate"] == 4 * 8 * 3
    assert counts["prepare_data"] == 4 and counts["compare"] == 1
    assert counts["plot_training_curves"] == 4


def test_comparison_config_plans_the_main_runs_and_the_ablations_on_their_datasets_only():
    config = yaml.safe_load(COMPARISON.read_text())
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    result = dry_run("--configfile", str(COMPARISON))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # 4 datasets x (sasrec, sasrec-mm, bbqrec) x 3 seeds + 2 datasets x 4 ablations x seed 0
    assert counts["train"] == counts["evaluate"] == 4 * 3 * 3 + 2 * 4
    # bbq on every dataset; bbq-no-club and bbq-no-behavior only where the ablations run
    assert counts["quantize"] == counts["assign_sids"] == 4 + 2 * 2
    planned = result.stdout
    assert "results/beauty/eval/bbqrec-no-club/seed0/metrics.parquet" in planned
    assert "results/scientific/eval/bbqrec-no-club" not in planned
    assert "bbqrec-cosine/seed1" not in planned and "results/movielens-mm/sids/bbq-no-behavior" not in planned
    assert counts["compare"] == 1


def test_ablations_on_a_dataset_that_is_not_configured_is_an_error_naming_the_key():
    result = dry_run(
        "--configfile", str(COMPARISON), "--config", "datasets=[beauty]"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "train.ablations.datasets: ['scientific-mm'] not among the configured datasets ['beauty']" in output
