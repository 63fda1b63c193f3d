"""Helpers for tests that call snakemake on this repository: a dry run and its job table."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BASIC_CONFIG = ".test/config_basic/config.yaml"
BASIC_CONFIG_SOURCE = "amazon2018-small-5core"  # Gift Cards' only source
# What a run needs of the repository (tracked or not), without results, logs or caches.
WORKFLOW_FILES = ("Snakefile", "config", "workflow", "src", "profiles", ".test", "envs")
# The jobs of .test/config_basic (gift-cards, 2 text shards, variants sasrec + bbqrec, seed 0) without `all`;
# the SLURM test checks that each ran as one SLURM job, test_workflow that a dry run plans exactly these.
BASIC_CONFIG_JOBS = {
    "prepare_data": 1,
    "embed_text": 2,
    "gather_embeddings": 1,
    "behavior_embed": 1,
    "quantize": 1,
    "assign_sids": 1,
    "train": 2,
    "evaluate": 2,
    "compare": 1,
    "recommend": 1,  # config recommend.variants: auto, so bbqrec seed 0
    "left_out_users": 1,  # none in Gift Cards 5-core, an empty file
    # the report's figures and tables (workflow/rules/report.smk)
    "report_dataset_stats": 1,
    "plot_sid_quality": 1,
    "plot_tokenizer_log": 1,
    "plot_training_curves": 1,
    "report_comparison": 1,
    # what the bbqrec run's attention bias learned (train.smk, report.smk)
    "export_similarity_bias": 1,
    "plot_similarity_bias": 1,
}


def copy_workflow(dest: Path) -> Path:
    """The repository's workflow files in dest (created), for a run that must not touch the repository."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    return dest


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )


def dry_run(*args: str, cores: int = 1) -> subprocess.CompletedProcess:
    """A dry run of every job; stdout lists each job (its output paths) and ends with the job stats."""
    return snakemake("-n", "--cores", str(cores), "--forceall", *args)


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the `Job stats` table of a dry run."""
    counts = {}
    for line in output.split("Job stats:")[-1].splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def declared_local_rules() -> set[str]:
    """The rules that workflow/rules/*.smk declare in `localrules:` blocks (run where snakemake runs)."""
    names = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.findall(r"^localrules:\n((?:    \w+,\n)+)", path.read_text(), re.M):
            names |= set(re.findall(r"\w+", block))
    return names
