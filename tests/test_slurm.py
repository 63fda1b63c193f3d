"""The workflow on a real single-node SLURM cluster (profiles/slurm) gives the same results as a local run.

The local run is the session fixture basic_config_run (conftest.py), shared with the end-to-end tests; the SLURM run
is the session fixture slurm_run, started in the background when the session starts (tests/slurm_runs.py).
Needs root, apt and about 4 minutes: runs where BBQREC_SLURM=1 (CI) or a SLURM cluster is already up.
The cluster comes from .ci/slurm-up.sh (notes: ../shared/notes/slurm-on-localhost.md) and is stopped again
by .ci/slurm-down.sh when the suite ends, if the suite started it.
"""

from __future__ import annotations

import json
import re
import subprocess

import polars as pl
import pytest
from slurm_runs import slurm_enabled
from workflow_runs import BASIC_CONFIG_JOBS, declared_local_rules

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not slurm_enabled(),
        reason="needs a SLURM cluster: set BBQREC_SLURM=1 to start one with .ci/slurm-up.sh (root, apt)",
    ),
]


def sacct_jobs(run_id: str, since: str) -> dict[str, dict[str, str]]:
    fields = ["JobIDRaw", "State", "Account", "Partition", "AllocCPUS", "ReqMem"]
    command = ["sacct", "-X", "--parsable2", "--noheader", "--name", run_id, "--starttime", since]
    result = subprocess.run(
        [*command, f"--format={','.join(fields)}"], capture_output=True, text=True, timeout=60, check=True
    )
    rows = [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines()]
    return {row["JobIDRaw"]: row for row in rows}


def test_slurm_run_matches_local_run(slurm_run, basic_config_run):
    slurm_output = slurm_run.result()
    slurm_dir, since = slurm_run.workdir, slurm_run.since

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
