"""config/benchmark.yaml: the four-dataset comparison validates and plans every dataset x variant x seed."""

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


def test_benchmark_dry_run_plans_one_training_run_per_dataset_variant_and_seed():
    result = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--cores", "1", "--forceall", "--quiet", "rules",
         "--configfile", str(BENCHMARK)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # every variant runs on every dataset (common.smk excludes none): 4 datasets x 8 variants x 3 seeds
    assert counts["train"] == counts["evaluate"] == 4 * 8 * 3
    assert counts["prepare_data"] == 4 and counts["compare"] == 1
    assert counts["plot_training_curves"] == 4
