"""workflow/scripts/prepare_data.py as Snakemake calls it: options, log file, exit status on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl


def run_script(repo_root, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    return subprocess.run(
        [sys.executable, str(repo_root / "workflow" / "scripts" / "prepare_data.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo_root,
        timeout=120,
    )


def test_help_works_outside_snakemake(repo_root):
    result = run_script(repo_root, "--help")
    assert result.returncode == 0
    assert "--dataset-config" in result.stdout and "--duplicates {keep,first,last}" in result.stdout


def test_command_line_overrides_and_log(repo_root, shared_data, tmp_path):
    out, log = tmp_path / "results" / "gift-cards" / "data", tmp_path / "logs" / "prepare.log"
    result = run_script(
        repo_root,
        "--dataset-config",
        "config/datasets/gift-cards.yaml",
        "--data-root",
        str(shared_data),
        "--out",
        str(out),
        "--max-history-len",
        "4",
        "--min-seq-len",
        "6",
        "--k-core",
        "0",
        "--duplicates",
        "first",
        "--log",
        str(log),
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["prepare"] == {"max_history_len": 4, "min_seq_len": 6, "k_core": 0, "duplicates": "first"}
    assert stats["sequence_length"]["min"] == 6
    assert pl.read_parquet(out / "test.parquet")["history"].list.len().max() == 4
    assert "gift-cards: " in log.read_text()


def test_bad_input_exits_1_and_logs_the_place(repo_root, shared_data, tmp_path):
    out, log = tmp_path / "out", tmp_path / "prepare.log"
    result = run_script(
        repo_root,
        "--dataset-config",
        "config/datasets/gift-cards.yaml",
        "--data-root",
        str(shared_data),
        "--out",
        str(out),
        "--k-core",
        "50",
        "--log",
        str(log),
    )
    assert result.returncode == 1
    assert "dataset 'gift-cards': no interactions left after filtering (k_core=50" in log.read_text()
    assert not out.exists()
