"""config/benchmark.yaml and config/comparison.yaml: the four-dataset comparisons validate and plan exactly
their training runs (every dataset x variant x seed; the main variants plus the ablations on two datasets)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BENCHMARK = REPO / "config" / "benchmark.yaml"
COMPARISON = REPO / "config" / "comparison.yaml"


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the `Job stats` table of a dry run."""
    counts = {}
    for line in output.split("Job stats:")[-1].splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_benchmark_config_is_valid_and_names_the_four_datasets_every_variant_three_seeds():
    config = yaml.safe_load(BENCHMARK.read_text())
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["datasets"] == ["scientific", "scientific-mm", "beauty", "movielens-mm"]
    assert all((REPO / "config" / "datasets" / f"{name}.yaml").is_file() for name in config["datasets"])
    from bbqrec.models.variants import VARIANTS

    assert sorted(config["train"]["variants"]) == sorted(VARIANTS)
    assert config["train"]["seeds"] == [0, 1, 2]


def dry_run(*args: str) -> subprocess.CompletedProcess:
    """A dry run of every job; stdout lists each job (its output paths) and ends with the job stats."""
    return subprocess.run(
        [str(BIN / "snakemake"), "-n", "--cores", "1", "--forceall", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )


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
