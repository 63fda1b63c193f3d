"""Shared fixtures: the repository root and the real datasets in ../shared/data (beside the repository)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from slurm_runs import BackgroundSlurmRun, slurm_enabled
from workflow_runs import BASIC_CONFIG, BASIC_CONFIG_SOURCE, copy_workflow, dry_run, job_counts, snakemake

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def stage_script(repo_root):
    """Loads workflow/scripts/<name>.py as a module, whose `main(argv)` then runs in this process: the same code
    as the command line without an interpreter's and torch's start-up (several seconds each)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, repo_root / "workflow" / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets; tests that need them are skipped where they are not checked out beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


# Autouse, session scope: set up before the first test, so the SLURM run's minutes of waiting on the scheduler overlap
# the rest of the suite (tests/slurm_runs.py). The cluster stays up until the suite ends: the SLURM executor plugin
# runs `scontrol show config` whenever snakemake starts, and with the client installed and no controller that waits
# 9 s, which every later test calling snakemake would pay.
@pytest.fixture(scope="session", autouse=True)
def slurm_run(request, tmp_path_factory):
    """The SLURM run that tests/test_slurm.py checks, started now; None where that test is not run."""
    wanted = any(Path(item.path).name == "test_slurm.py" for item in request.session.items)
    if not (wanted and SHARED_DATA.is_dir() and slurm_enabled()):
        yield None
        return
    run = BackgroundSlurmRun(tmp_path_factory.mktemp("slurm-run") / "workdir", SHARED_DATA).start()
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture(scope="session")
def default_config_jobs() -> dict[str, int]:
    """Rule -> job count of a dry run of every job on config/config.yaml (about 15 s, so run once a session)."""
    result = dry_run("--quiet", "rules")
    assert result.returncode == 0, result.stderr
    return job_counts(result.stdout)


@pytest.fixture(scope="session")
def prepared(shared_data, repo_root, tmp_path_factory):
    """prepared(name, **options) -> the out dir of config/datasets/<name>.yaml, prepared once per session."""
    from bbqrec.data import load_dataset_config, prepare_dataset

    cache: dict[tuple, Path] = {}

    def run(name: str, **options) -> Path:
        key = (name, *sorted(options.items()))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"prepared-{name}") / "data"
            cfg = load_dataset_config(repo_root / "config" / "datasets" / f"{name}.yaml")
            prepare_dataset(cfg, shared_data, out, **options)
            cache[key] = out
        return cache[key]

    return run


@pytest.fixture(scope="session")
def basic_config_run(tmp_path_factory, shared_data) -> Path:
    """The workdir of a finished local run (2 cores) of .test/config_basic on a copy of the workflow.

    Its data root is workdir/data, a copy of the Gift Cards source that tests may re-stage and edit (restoring it).
    The end-to-end tests inspect and dry-run it; the SLURM test compares its own run's results with these.
    """
    workdir = copy_workflow(tmp_path_factory.mktemp("basic-config-run") / "workdir")
    shutil.copytree(shared_data / BASIC_CONFIG_SOURCE, workdir / "data" / BASIC_CONFIG_SOURCE)
    result = snakemake(
        "--cores", "2", "--configfile", BASIC_CONFIG, "--config", f"data_root={workdir / 'data'}",
        cwd=workdir, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir
