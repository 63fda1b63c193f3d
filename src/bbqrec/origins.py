"""Where each evaluated run was trained: the CPU, instruction set, torch threads and code commit recorded in the
provenance of its metrics (evaluate copies the train run's), grouped for comparison.md and the report's page.

Torch-free (polars only), so that the report's environment can import it.
"""

from __future__ import annotations

import polars as pl

UNRECORDED = "not recorded"  # runs evaluated before evaluate recorded the training run's provenance
ORIGIN_KEYS = ("cpu", "instruction_set", "threads", "code")  # what tells two runs' machines and code apart


def run_origin(provenance: dict) -> dict[str, str]:
    """Where an evaluated run's model was trained, from its metrics.parquet provenance (evaluate copies the train
    run's): the CPU model, the instruction set and thread count torch ran with and the code's commit ("+ changes"
    when the checkout had uncommitted changes)."""
    trained = (provenance.get("config") or {}).get("trained") or {}
    cpu, code = trained.get("cpu") or {}, trained.get("code") or {}
    commit = code.get("commit")
    if commit:
        commit = commit[:12] + (" + changes" if code.get("uncommitted_changes") else "")
    return {
        "cpu": cpu.get("model") or UNRECORDED,
        "instruction_set": cpu.get("torch_capability") or UNRECORDED,
        "threads": str(cpu.get("torch_threads") or UNRECORDED),
        "code": commit or UNRECORDED,
    }


def origins_markdown(origins: pl.DataFrame) -> str:
    """`origins` (dataset, variant, seed and run_origin's columns, one row per run) as Markdown: one row per
    (CPU, instruction set, threads, code) with its datasets and run count, and a warning for each dataset whose
    runs were trained on more than one CPU or instruction set. Their floats differ, so such a dataset's gains
    compare machines as well as variants; mixed thread counts and commits are listed, not warned about (another
    thread count moves the floats as another seed does; most commits change no result)."""
    groups = origin_groups(origins)
    lines = [
        "# Where the runs were trained",
        "",
        "The same seed gives other floats, and so other metrics, on another CPU instruction set or thread count "
        "(recorded per run in the provenance of train/.../model.pt).",
        "",
        "| CPU | instruction set | threads | code | datasets | runs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in groups.iter_rows():
        lines.append("| " + " | ".join(map(str, row)) + " |")
    warnings = machine_warnings(origins)
    if warnings:
        lines.append("")
        lines += [f"Warning: {warning}." for warning in warnings]
    return "\n".join(lines) + "\n"


def origin_groups(origins: pl.DataFrame) -> pl.DataFrame:
    """`origins` (one row per run) grouped by ORIGIN_KEYS: their columns, then datasets (comma-separated) and runs."""
    keys = list(ORIGIN_KEYS)
    return (
        origins.group_by(keys)
        .agg(datasets=pl.col("dataset").unique().sort().str.join(", "), runs=pl.len())
        .sort(keys)
    )


def mixed_machines(origins: pl.DataFrame) -> dict[str, str]:
    """Each dataset whose runs were trained on more than one recorded (CPU, instruction set) -> those machines,
    named (runs without a record are listed by origins_markdown, not counted as another machine)."""
    machines = (
        origins.filter((pl.col("cpu") != UNRECORDED) | (pl.col("instruction_set") != UNRECORDED))
        .select("dataset", machine=pl.format("{} ({})", "cpu", "instruction_set"))
        .unique(maintain_order=True)
        .sort("dataset", "machine")
    )
    return {
        dataset: " and ".join(group["machine"])
        for (dataset,), group in machines.group_by("dataset", maintain_order=True)
        if group.height > 1
    }


def machine_warnings(origins: pl.DataFrame) -> list[str]:
    """One sentence per dataset of `mixed_machines`, for the compare log, comparison.md and the report's page."""
    return [
        f"the runs of {dataset} were trained on {machines}: its gains compare machines as well as variants"
        for dataset, machines in mixed_machines(origins).items()
    ]
