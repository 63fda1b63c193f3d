"""The workflow itself: config validation at start, lint and formatting, the planned DAG."""

import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(*args, cwd=REPO, timeout=300):
    return subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )


def test_dry_run_plans_every_stage_for_the_default_datasets():
    result = snakemake("-n", "--cores", "1", "--forceall", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    planned = result.stdout + result.stderr
    for rule in ("prepare_data",):
        assert rule in planned, planned


def test_unknown_config_key_is_an_error_naming_the_key():
    result = snakemake("-n", "--cores", "1", "--config", "datasetz=[beauty]")
    assert result.returncode != 0
    assert "'datasetz' was unexpected" in result.stdout + result.stderr


def test_mistyped_config_value_is_an_error_naming_the_key():
    result = snakemake("-n", "--cores", "1", "--config", "prepare={'max_history_len': 'fifty'}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'fifty' is not of type 'integer'" in output and "['max_history_len']" in output


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
