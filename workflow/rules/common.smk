# Config validation, dataset catalogue and input functions shared by every stage.
import os
import sys
from pathlib import Path

from snakemake.utils import validate

# This file imports the project package from src/; stage scripts get it through PYTHONPATH (see `script`).
SRC_DIR = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC_DIR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bbqrec.data.config import load_dataset_config, merge_prepare_options  # noqa: E402
from bbqrec.data.download import resolve_source  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")

DATASETS = config["datasets"]
DATASET_DIR = Path(workflow.basedir) / "config" / "datasets"
DATASET_CONFIGS = {
    name: load_dataset_config(DATASET_DIR / f"{name}.yaml") for name in DATASETS
}
DATA_ROOT = Path(config["data_root"])
RESOURCES = Path("resources")
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"


wildcard_constraints:
    dataset="|".join(DATASETS) if DATASETS else "^$",
    source=r"[a-z0-9][a-z0-9-]*",


def script(name):
    """`python <stage script>` with the project package importable without an install (cluster nodes too)."""
    return f"PYTHONPATH={SRC_DIR}{os.pathsep}${{PYTHONPATH:-}} python {SCRIPTS / name}"


def get_data_root(wildcards):
    """data_root when it holds every source of the dataset, else resources/data (filled by `download`)."""
    sources = DATASET_CONFIGS[wildcards.dataset]["sources"]
    if all(resolve_source(s, DATA_ROOT, RESOURCES) == DATA_ROOT / s for s in sources):
        return str(DATA_ROOT)
    return str(RESOURCES / "data")


def get_prepare_sources(wildcards):
    root = Path(get_data_root(wildcards))
    return [str(root / s) for s in DATASET_CONFIGS[wildcards.dataset]["sources"]]


def get_download_mirror_arg():
    mirror = config["download"]["mirror"]
    return f"--mirror {mirror}" if mirror else ""


def get_prepare_options(wildcards):
    """Global `prepare` defaults overridden by the dataset file's own `prepare` block."""
    return merge_prepare_options(config["prepare"], DATASET_CONFIGS[wildcards.dataset])


def get_final_outputs():
    """Everything the default run produces."""
    return expand("results/{dataset}/data/stats.json", dataset=DATASETS)
