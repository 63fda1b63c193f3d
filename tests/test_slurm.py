"""The workflow on a real single-node SLURM cluster (profiles/slurm) gives the same results as a local run.

The local run is the session fixture basic_config_run (conftest.py), shared with the end-to-end tests.
Needs root, apt and about 4 minutes: runs where BBQREC_SLURM=1 (CI) or a SLURM cluster is already up.
The cluster comes from .ci/slurm-up.sh (notes: ../shared/notes/slurm-on-localhost.md) and is stopped again
by .ci/slurm-down.sh when this test started it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from workflow_runs import BASIC_CONFIG, BASIC_CONFIG_JOBS, BIN, REPO, copy_workflow, declared_local_rules

# SIGINT, not SIGTERM: a snakemake waiting on jobs ignores SIGTERM.
TIMEOUT = ("timeout", "-s", "INT", "-k", "60", "900")


def _succeeds(*command: str) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def cluster_running() -> bool:
    return shutil.which("scontrol") is not None and _succeeds("scontrol", "ping")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("BBQREC_SLURM") != "1" and not cluster_running(),
        reason="needs a SLURM cluster: set BBQREC_SLURM=1 to start one with .ci/slurm-up.sh (root, apt)",
    ),
]


# Session scope: the cluster stays up until the suite ends. The SLURM executor plugin runs `scontrol show config`
# whenever snakemake starts; with the client installed and no controller that waits 9 s, which every later test
# calling snakemake would pay (12.8 s for `snakemake --list-rules` instead of 3.7 s).
@pytest.fixture(scope="session")
def slurm_cluster():
    """A running cluster with accounting; started (and stopped when the suite ends) here unless one is up."""
    started = not cluster_running()
    try:
        if started:
            up = subprocess.run(
                ["bash", str(REPO / ".ci" / "slurm-up.sh")], capture_output=True, text=True, timeout=600
            )
            assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout}\n{up.stderr}"
        # The plugin reads job states from sacct: without slurmdbd it would wait forever.
        assert _succeeds("sacct", "-X", "-n"), "the running SLURM cluster has no accounting (sacct fails)"
        yield
    finally:
        if started:
            subprocess.run(["bash", str(REPO / ".ci" / "slurm-down.sh")], timeout=120, check=True)


def run_snakemake(workdir: Path, data_root: Path, *args: str) -> str:
    """snakemake on the test config in workdir; its output (also in workdir/snakemake.out) once it succeeded.

    `--workflow-profile none`: profiles/default would be loaded as the workflow profile and replace the SLURM
    profile's default-resources (partition, account, cpus_per_task). The timeout interrupts with SIGINT, on which
    snakemake cancels its SLURM jobs (a SIGKILL would leave them running)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    command = [
        *TIMEOUT,
        str(BIN / "snakemake"),
        "--workflow-profile",
        "none",
        "--configfile",
        BASIC_CONFIG,
        "--config",
        f"data_root={data_root}",
        *args,
    ]
    with open(workdir / "snakemake.out", "w") as out:
        returncode = subprocess.run(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    output = (workdir / "snakemake.out").read_text()
    assert returncode == 0, f"snakemake in {workdir} exited with {returncode}:\n{output[-6000:]}"
    return output


def sacct_jobs(run_id: str, since: str) -> dict[str, dict[str, str]]:
    fields = ["JobIDRaw", "State", "Account", "Partition", "AllocCPUS", "ReqMem"]
    command = ["sacct", "-X", "--parsable2", "--noheader", "--name", run_id, "--starttime", since]
    result = subprocess.run(
        [*command, f"--format={','.join(fields)}"], capture_output=True, text=True, timeout=60, check=True
    )
    rows = [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines()]
    return {row["JobIDRaw"]: row for row in rows}


def test_slurm_run_matches_local_run(slurm_cluster, basic_config_run, tmp_path, shared_data):
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    slurm_dir = copy_workflow(tmp_path / "slurm")
    # The plugin's 40 s wait before the first status query suits a real cluster, not a 4-minute test.
    slurm_output = run_snakemake(
        slurm_dir, shared_data, "--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "5"
    )

    # Every job ran once: the declared local rules (seconds of plotting) where snakemake ran, the rest as SLURM jobs
    # that the accounting database lists as COMPLETED with the profile's settings.
    run_id = re.search(r"SLURM run ID: (\S+)", slurm_output).group(1)
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", slurm_output))
    ran_locally = re.findall(r"^localrule (\w+):$", slurm_output, re.M)
    rules = sorted([*submitted.values(), *ran_locally])
    assert {rule: rules.count(rule) for rule in rules} == {**BASIC_CONFIG_JOBS, "all": 1}
    assert set(ran_locally) == (declared_local_rules() & set(BASIC_CONFIG_JOBS)) | {"all"}
    assert {"prepare_data", "embed_text", "behavior_embed", "quantize", "assign_sids", "train", "evaluate"} <= set(
        submitted.values()
    )
    jobs = sacct_jobs(run_id, since)
    assert jobs.keys() == submitted.keys()
    assert {job["State"] for job in jobs.values()} == {"COMPLETED"}
    assert {(job["Account"], job["Partition"]) for job in jobs.values()} == {("ci", "debug")}
    # cpus_per_task follows the rule's threads; mem_mb becomes --mem (train: threads 2, 6000 MB; assign_sids: 1, 4000 MB)
    by_rule = {submitted[job_id]: job for job_id, job in jobs.items()}
    assert (by_rule["train"]["AllocCPUS"], by_rule["train"]["ReqMem"]) == ("2", "6000M")
    assert (by_rule["assign_sids"]["AllocCPUS"], by_rule["assign_sids"]["ReqMem"]) == ("1", "4000M")

    # Same config and seed, same results, wherever the jobs ran.
    results = "results/gift-cards"
    tables = [f"{results}/sids/bbq/seed0/semantic_ids.parquet"]
    tables += [f"{results}/eval/{variant}/seed0/metrics.parquet" for variant in ("sasrec", "bbqrec")]
    tables += ["results/comparison.parquet"]
    for table in tables:
        slurm_table = pl.read_parquet(slurm_dir / table)
        assert slurm_table.height > 0, table
        assert slurm_table.equals(pl.read_parquet(basic_config_run / table)), table
    stats = f"{results}/data/stats.json"
    assert json.loads((slurm_dir / stats).read_text()) == json.loads((basic_config_run / stats).read_text())
