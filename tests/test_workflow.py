"""The workflow itself: config validation at start, lint and formatting, the planned DAG."""

import os
import re
import subprocess

import yaml

from workflow_runs import BASIC_CONFIG, BASIC_CONFIG_JOBS, BIN, REPO, dry_run, job_counts, snakemake


def test_dry_run_of_the_default_config_plans_every_stage_of_the_workflow(default_config_jobs):
    rules = snakemake("--list-rules")
    assert rules.returncode == 0, rules.stderr
    # `download` runs only where ../shared/data lacks a dataset (rules/data.smk), `refit` only with
    # recommend.model: refit (planned in test_recommend_lists_come_from_configured_runs_and_name_the_key_otherwise)
    every_rule = set(rules.stdout.split()) - {"download", "refit"}
    # the default datasets have text and images, so every stage (embed_image included) has a job
    assert set(default_config_jobs) - {"total"} == every_rule
    assert default_config_jobs["all"] == 1


def test_dry_run_of_the_basic_test_config_plans_the_jobs_the_slurm_test_expects(shared_data):
    # on 2 cores through the single-thread profile: every job then runs on one thread (without it 8 take 2)
    profile = ("--profile", "profiles/single-thread-jobs")
    result = dry_run("--configfile", BASIC_CONFIG, "--config", f"data_root={shared_data}", *profile, cores=2)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts.pop("all") == 1 and counts.pop("total") == sum(BASIC_CONFIG_JOBS.values()) + 1
    assert counts == BASIC_CONFIG_JOBS
    assert "threads:" not in result.stdout  # snakemake prints a job's threads only when they are more than one


def test_the_single_thread_profile_names_every_rule_that_declares_more_than_one_thread():
    declared = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", path.read_text(), re.S | re.M):
            declared[name] = re.search(r"^    threads: (.+)$", body, re.M).group(1)  # the lint wants it on every rule
    multi_threaded = {name for name, threads in declared.items() if threads != "1"}
    assert {"train", "embed_text", "quantize"} <= multi_threaded  # the parse did find the rules
    profile = yaml.safe_load((REPO / "profiles" / "single-thread-jobs" / "config.yaml").read_text())
    assert profile["set-threads"] == {name: 1 for name in multi_threaded}


def test_make_run_uses_one_thread_per_job_on_at_most_three_cores():
    def planned(cores):  # `make -n` prints the commands without running them (nor the install)
        command = ["make", "--no-print-directory", "-n", "run", f"CORES={cores}"]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        (line,) = [line for line in result.stdout.splitlines() if line.startswith("snakemake")]
        return line.split()

    assert planned(2) == ["snakemake", "--cores", "all", "--profile", "profiles/single-thread-jobs"]
    assert planned(3)[-1] == "profiles/single-thread-jobs"
    assert planned(4) == planned(16) == ["snakemake", "--cores", "all"]


def test_unknown_config_key_is_an_error_naming_the_key():
    result = snakemake("-n", "--cores", "1", "--config", "datasetz=[beauty]")
    assert result.returncode != 0
    assert "'datasetz' was unexpected" in result.stdout + result.stderr


def test_mistyped_config_value_is_an_error_naming_the_key():
    result = snakemake("-n", "--cores", "1", "--config", "prepare={'max_history_len': 'fifty'}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'fifty' is not of type 'integer'" in output and "['max_history_len']" in output


def test_nested_command_line_values_get_the_types_the_schema_asks():
    # snakemake reads `--config` with YAML's BaseLoader: below the top level 2 arrives as '2' and 0.3 as '0.3'
    result = dry_run(
        "-p", "--config", "datasets=[scientific-mm]", "train={seeds: [2], options: {dropout: 0.3}}", "quantize={seed: 1}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout)["train"] == 8  # every variant, with the one seed
    assert set(re.findall(r"train/[\w-]+/seed(\d+)/", result.stdout)) == {"2"}
    assert set(re.findall(r"quantize/bbq/seed(\d+)/", result.stdout)) == {"1"}
    assert set(re.findall(r'"dropout":([\d.]+)', result.stdout)) == {"0.3"}


def test_popularity_edges_out_of_order_are_an_error_naming_the_key(tmp_path):
    # Each edge passes the schema (a positive integer); their order is checked when the workflow is parsed.
    (tmp_path / "edges.yaml").write_text("compare:\n  popularity_edges: [5, 1]\n")
    result = snakemake("-n", "--cores", "1", "--configfile", str(tmp_path / "edges.yaml"))
    assert result.returncode != 0
    assert "config key compare.popularity_edges: expected strictly increasing counts, got [5, 1]" in (
        result.stdout + result.stderr
    )


def test_recommend_lists_come_from_configured_runs_and_name_the_key_otherwise():
    # which runs list is bbqrec.training.recommend_runs' choice (tests/test_next_items.py); here the workflow's use
    one_run = "datasets=[scientific-mm]", "train={variants: [sasrec, bbqrec], seeds: [2, 1]}"
    planned = dry_run("--config", *one_run, "recommend={variants: [sasrec, bbqrec], k: 5, cold_users: skip}")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert job_counts(planned.stdout)["recommend"] == 2
    assert set(re.findall(r"recommend/([\w-]+/seed\d+)/next_items", planned.stdout)) == {"sasrec/seed2", "bbqrec/seed2"}
    assert "--k 5" in planned.stdout and "--cold-users skip" in planned.stdout
    assert "refit" not in job_counts(planned.stdout)  # the evaluated models list by default
    refit = dry_run("--config", *one_run, "recommend={variants: [bbqrec], model: refit}")
    assert refit.returncode == 0, refit.stdout + refit.stderr
    assert job_counts(refit.stdout)["refit"] == 1 and job_counts(refit.stdout)["recommend"] == 1
    assert "--model results/scientific-mm/refit/bbqrec/seed2/model.pt" in refit.stdout
    assert "--refit-from results/scientific-mm/train/bbqrec/seed2 " in refit.stdout
    not_trained = snakemake("-n", "--cores", "1", "--config", *one_run, "recommend={variants: [sasrec-mm]}")
    assert not_trained.returncode != 0
    assert "config key recommend.variants: 'sasrec-mm' has no training run" in not_trained.stdout + not_trained.stderr


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_parsing_the_workflow_does_not_import_torch():
    # Every cluster job parses the Snakefile again: torch would add about 3 s to each. Parse it (every included
    # file, every package module they import) with Python's import log on, and look for torch in it.
    result = subprocess.run(
        [str(BIN / "python"), "-X", "importtime", str(BIN / "snakemake"), "--list-rules"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0 and "train" in result.stdout.split(), result.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "bbqrec.training.config" in imported  # the log does list the package's modules
    assert "torch" not in imported
