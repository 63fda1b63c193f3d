"""The workflow on a real single-node SLURM cluster (profiles/slurm) gives the same results as a local run.

Needs root, apt and about 5 minutes: runs where BBQREC_SLURM=1 (CI) or a SLURM cluster is already up.
The cluster comes from .ci/slurm-up.sh (notes: ../shared/notes/slurm-on-localhost.md) and is stopped again
by .ci/slurm-down.sh when this test started it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from workflow_runs import BASIC_CONFIG, BASIC_CONFIG_JOBS, BIN, REPO

WORKFLOW_FILES = ("Snakefile", "config", "workflow", "src", "profiles", ".test", "envs")
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


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running cluster with accounting; started (and stopped afterwards) here unless one is up."""
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


def copy_workflow(dest: Path) -> Path:
    """The repository's workflow files (tracked or not) without results, logs or caches."""
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    return dest


def start_snakemake(workdir: Path, data_root: Path, *args: str) -> subprocess.Popen:
    """snakemake on the test config in workdir, its output in workdir/snakemake.out.

    `--workflow-profile none`: profiles/default would be loaded as the workflow profile and replace the SLURM
    profile's default-resources (partition, account, cpus_per_task)."""
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
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, workdir: Path) -> str:
    process.wait()
    output = (workdir / "snakemake.out").read_text()
    assert process.returncode == 0, f"snakemake in {workdir} exited with {process.returncode}:\n{output[-6000:]}"
    return output


def stop(*processes: subprocess.Popen) -> None:
    """Interrupt runs still going (after a failure): timeout passes SIGINT on, snakemake then cancels its jobs."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()


def sacct_jobs(run_id: str, since: str) -> dict[str, dict[str, str]]:
    fields = ["JobIDRaw", "State", "Account", "Partition", "AllocCPUS", "ReqMem"]
    command = ["sacct", "-X", "--parsable2", "--noheader", "--name", run_id, "--starttime", since]
    result = subprocess.run(
        [*command, f"--format={','.join(fields)}"], capture_output=True, text=True, timeout=60, check=True
    )
    rows = [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines()]
    return {row["JobIDRaw"]: row for row in rows}


def test_slurm_run_matches_local_run(slurm_cluster, tmp_path, shared_data):
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    slurm_dir = copy_workflow(tmp_path / "slurm")
    local_dir = copy_workflow(tmp_path / "local")
    # Both at once: the SLURM run spends much of its time waiting on sbatch/sacct.
    local = start_snakemake(local_dir, shared_data, "--cores", "2")
    # The plugin's 40 s wait before the first status query suits a real cluster, not a 5-minute test.
    slurm = start_snakemake(
        slurm_dir, shared_data, "--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "5"
    )
    try:
        slurm_output = finish(slurm, slurm_dir)
        finish(local, local_dir)
    finally:
        stop(local, slurm)

    # Every job was a SLURM job that the accounting database lists as COMPLETED with the profile's settings.
    run_id = re.search(r"SLURM run ID: (\S+)", slurm_output).group(1)
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", slurm_output))
    rules = sorted(submitted.values())
    assert {rule: rules.count(rule) for rule in rules} == BASIC_CONFIG_JOBS
    jobs = sacct_jobs(run_id, since)
    assert jobs.keys() == submitted.keys()
    assert {job["State"] for job in jobs.values()} == {"COMPLETED"}
    assert {(job["Account"], job["Partition"]) for job in jobs.values()} == {("ci", "debug")}
    # cpus_per_task follows the rule's threads; mem_mb becomes --mem (train: threads 2, 6000 MB; compare: 1, 2000 MB)
    by_rule = {submitted[job_id]: job for job_id, job in jobs.items()}
    assert (by_rule["train"]["AllocCPUS"], by_rule["train"]["ReqMem"]) == ("2", "6000M")
    assert (by_rule["compare"]["AllocCPUS"], by_rule["compare"]["ReqMem"]) == ("1", "2000M")

    # Same config and seed, same results, wherever the jobs ran.
    results = "results/gift-cards"
    tables = [f"{results}/sids/bbq/semantic_ids.parquet"]
    tables += [f"{results}/eval/{variant}/seed0/metrics.parquet" for variant in ("sasrec", "bbqrec")]
    for table in tables:
        slurm_table = pl.read_parquet(slurm_dir / table)
        assert slurm_table.height > 0, table
        assert slurm_table.equals(pl.read_parquet(local_dir / table)), table
    stats = f"{results}/data/stats.json"
    assert json.loads((slurm_dir / stats).read_text()) == json.loads((local_dir / stats).read_text())
