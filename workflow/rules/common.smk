# Config validation, dataset catalogue and input functions shared by every stage.
import functools
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# This file imports the project package from src/; stage scripts get it through PYTHONPATH (see `script`).
SRC_DIR = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC_DIR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bbqrec.command_line_config import type_command_line_values  # noqa: E402
from bbqrec.data.config import load_dataset_config, merge_prepare_options  # noqa: E402
from bbqrec.data.download import resolve_source, tree_digest  # noqa: E402
from bbqrec.models.variants import get_variant  # noqa: E402
from bbqrec.quantize.config import behavior_seeds, tokenizer_config  # noqa: E402
from bbqrec.training import (  # noqa: E402
    DEFAULT_TRAIN_CONFIG,
    SEMANTIC_ID_OPTIONS,
    recommend_runs,
)

# `--config 'train={seeds: [0]}'` gives '0', a string, below the top level; read such values as the schema asks.
config.update(
    type_command_line_values(
        config,
        yaml.safe_load(
            (Path(workflow.basedir) / "workflow/schemas/config.schema.yaml").read_text()
        ),
    )
)
validate(config, schema="../schemas/config.schema.yaml")

DATASETS = config["datasets"]
# The one rule of the compare block that the schema cannot state (bbqrec.evaluation.compare.popularity_buckets
# checks it again for the script's own users).
_edges = config["compare"]["popularity_edges"]
if any(b <= a for a, b in zip(_edges, _edges[1:])):
    raise WorkflowError(
        f"config key compare.popularity_edges: expected strictly increasing counts, got {_edges}"
    )
DATASET_DIR = Path(workflow.basedir) / "config" / "datasets"
DATASET_CONFIGS = {
    name: load_dataset_config(DATASET_DIR / f"{name}.yaml") for name in DATASETS
}


def split_quantize_block(block):
    """A dataset file's `quantize` block as (tokenizer option overrides, {"behavior_models": n} or {}):
    behavior_models is its one key that is not a tokenizer option."""
    options = {key: value for key, value in block.items() if key != "behavior_models"}
    models = {key: value for key, value in block.items() if key == "behavior_models"}
    return options, models


# Each dataset's quantize block, split once: (tokenizer overrides, its own behavior_models if it sets one).
DATASET_QUANTIZE = {
    name: split_quantize_block(dataset["quantize"])
    for name, dataset in DATASET_CONFIGS.items()
}
for _name, _dataset in DATASET_CONFIGS.items():
    # A dataset file's stage overrides obey the same schema as config.yaml's `options` blocks (and its quantize
    # block's behavior_models as config.yaml's quantize.behavior_models).
    _options, _models = DATASET_QUANTIZE[_name]
    try:
        validate(
            {
                "datasets": [_name],
                "quantize": {"options": _options, **_models},
                "train": {"options": _dataset["train"]},
            },
            schema="../schemas/config.schema.yaml",
            set_default=False,
        )
    except WorkflowError as err:
        raise WorkflowError(
            f"config/datasets/{_name}.yaml (quantize/train overrides)", err
        )
_ablations = config["train"].get("ablations")
# Ablation datasets must be configured, unless the ablations run nothing (no variants or no seeds).
if (
    _ablations
    and _ablations["variants"]
    and _ablations.get("seeds", config["train"]["seeds"])
):
    _unknown = sorted(set(_ablations.get("datasets", [])) - set(DATASETS))
    if _unknown:
        raise WorkflowError(
            f"config train.ablations.datasets: {_unknown} not among the configured datasets {DATASETS}"
        )
DATA_ROOT = Path(config["data_root"])
RESOURCES = Path("resources")
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"


wildcard_constraints:
    dataset="|".join(DATASETS) if DATASETS else "^$",
    source=r"[a-z0-9][a-z0-9-]*",
    seed=r"\d+",


def script(name, launcher="python"):
    """`python <stage script>` with the project package importable without an install (cluster nodes too).

    The paths are relative to the workdir (snakemake runs every job there): params are rerun triggers, and
    absolute paths would rerun every job of a project folder that was moved or copied.
    """
    return (
        f"PYTHONPATH={os.path.relpath(SRC_DIR)}{os.pathsep}${{PYTHONPATH:-}}"
        f" {launcher} {os.path.relpath(SCRIPTS / name)}"
    )


def get_data_root(wildcards):
    """data_root when it holds every source of the dataset, else resources/data (filled by `download`)."""
    sources = DATASET_CONFIGS[wildcards.dataset]["sources"]
    if all(resolve_source(s, DATA_ROOT, RESOURCES) == DATA_ROOT / s for s in sources):
        return str(DATA_ROOT)
    return str(RESOURCES / "data")


def get_prepare_sources(wildcards):
    """The dataset's source folders; pre-staged ones (under data_root) are `ancient`: a re-staged copy with new
    mtimes reruns nothing, while changed contents do (through `get_source_digests`)."""
    root = Path(get_data_root(wildcards))
    paths = [str(root / s) for s in DATASET_CONFIGS[wildcards.dataset]["sources"]]
    return [ancient(p) for p in paths] if root == DATA_ROOT else paths


@functools.cache
def source_digest(folder):
    return tree_digest(Path(folder))


def get_source_digests(wildcards):
    """sha256 of every pre-staged source's files (a params value: Snakemake reruns when it changes); folders the
    `download` rule fills are timed by Snakemake as usual."""
    root = Path(get_data_root(wildcards))
    if root != DATA_ROOT:
        return ""
    sources = DATASET_CONFIGS[wildcards.dataset]["sources"]
    return " ".join(f"{s}:{source_digest(str(root / s))}" for s in sources)


def get_download_mirror_arg():
    mirror = config["download"]["mirror"]
    return f"--mirror {mirror}" if mirror else ""


def get_dataset_spec(wildcards):
    """What prepare_data reads from the dataset file (all but its later stages' overrides), as sorted JSON."""
    later = ("train", "quantize", "modalities", "description")
    spec = DATASET_CONFIGS[wildcards.dataset]
    return json.dumps({k: v for k, v in spec.items() if k not in later}, sort_keys=True)


def get_prepare_options(wildcards):
    """Global `prepare` defaults overridden by the dataset file's own `prepare` block."""
    return merge_prepare_options(config["prepare"], DATASET_CONFIGS[wildcards.dataset])


def get_final_outputs():
    """Everything the default run produces."""
    return [
        *expand("results/{dataset}/data/stats.json", dataset=DATASETS),
        *get_sid_quality_outputs(),
        "results/comparison.md",
        *get_report_outputs(),
        *get_recommend_outputs(),
    ]


def get_runs(dataset=None):
    """(dataset, variant, seed) of every configured training run, in config order: `train.variants` x
    `train.seeds` on every dataset, then `train.ablations`' variants x seeds (default: `train.seeds`) on its
    datasets (default: all). `dataset`: that dataset's runs only."""
    train = config["train"]
    runs = [
        (d, v, s) for d in DATASETS for v in train["variants"] for s in train["seeds"]
    ]
    ablations = train.get("ablations")
    if ablations:
        runs += [
            (d, v, s)
            for d in ablations.get("datasets", DATASETS)
            for v in ablations["variants"]
            for s in ablations.get("seeds", train["seeds"])
        ]
    runs = list(dict.fromkeys(runs))
    return [run for run in runs if dataset is None or run[0] == dataset]


def get_recommend_outputs():
    """The next-item lists of config `recommend` (bbqrec.training.recommend_runs picks the runs)."""
    return [
        f"results/{dataset}/recommend/{variant}/seed{seed}/next_items.parquet"
        for dataset, variant, seed in recommend_runs(config["recommend"], get_runs())
    ]


def get_variants():
    """Every configured variant, in config order (the order of the comparison's rows)."""
    return list(dict.fromkeys(variant for _, variant, _ in get_runs()))


def get_tokenizer_seed(seed):
    """The seed of the tokenizer (and of the behaviour embedding it reads) that a training run with `seed` uses:
    config quantize.seed, or the run's own seed with `per_run`."""
    tokenizer_seed = config["quantize"]["seed"]
    return int(seed) if tokenizer_seed == "per_run" else tokenizer_seed


def get_tokenizer_runs(dataset):
    """(tokenizer, seed) of every tokenizer that the variants run on `dataset` use, sorted."""
    runs = {
        (get_variant(v).tokenizer, get_tokenizer_seed(s))
        for _, v, s in get_runs(dataset)
        if get_variant(v).tokenizer is not None
    }
    return sorted(runs)


def get_sid_quality_outputs():
    """The SID quality report of every tokenizer that the configured runs use."""
    return [
        f"results/{dataset}/sids/{tokenizer}/seed{seed}/sid_quality.json"
        for dataset in DATASETS
        for tokenizer, seed in get_tokenizer_runs(dataset)
    ]


def get_report_outputs():
    """The figures and HTML tables of `snakemake --report` (workflow/rules/report.smk)."""
    return [
        *expand("results/{dataset}/report/dataset_stats.html", dataset=DATASETS),
        *[
            f"results/{dataset}/report/{tokenizer}/seed{seed}/{view}.svg"
            for dataset in DATASETS
            for tokenizer, seed in get_tokenizer_runs(dataset)
            for view in ("sid_quality", "tokenizer_log")
        ],
        *expand("results/{dataset}/report/training_curves.svg", dataset=DATASETS),
        *[
            f"results/{d}/report/{v}/seed{s}/similarity_bias.svg"
            for d, v, s in get_runs()
            if get_variant(v).similarity is not None
        ],
        "results/comparison.html",
        "results/comparison.svg",
    ]


def to_json(value):
    """A config block as compact JSON for a script's --config-json (keys sorted: stable params)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def get_gpu_request(wildcards):
    """GPUs asked of the scheduler by the embedding and training jobs (config `gpus`)."""
    return config["gpus"]


def get_embedding_shards(wildcards):
    n = config["embed"]["shards"]
    return [
        f"results/{wildcards.dataset}/embeddings/shards/{wildcards.modality}.{i}-of-{n}.parquet"
        for i in range(n)
    ]


def get_modalities(wildcards):
    """The content modalities of a dataset (its file's `modalities`)."""
    return DATASET_CONFIGS[wildcards.dataset]["modalities"]


def get_train_options(wildcards):
    """config.yaml's train.options with the dataset file's `train` overrides."""
    return {**config["train"]["options"], **DATASET_CONFIGS[wildcards.dataset]["train"]}


def get_train_option(wildcards, key):
    """One train option: the configured value, else the package default."""
    return get_train_options(wildcards).get(key, DEFAULT_TRAIN_CONFIG[key])


def get_train_processes(wildcards):
    """Training processes (train option `processes`)."""
    return get_train_option(wildcards, "processes")


def get_train_script(wildcards):
    """train.py under python, or under torchrun as `processes` data-parallel processes on this node."""
    n = get_train_processes(wildcards)
    if n == 1:
        return script("train.py")
    return script("train.py", f"torchrun --standalone --nproc_per_node {n}")


def get_train_threads(wildcards):
    """The train job's CPUs, shared by its processes: 2, or one per process if there are more."""
    return max(2, get_train_processes(wildcards))


def get_train_mem_mb(wildcards):
    """The train job's memory: 6 GB, 3 GB more per extra process (each holds its own data and model)."""
    return 3000 * (get_train_processes(wildcards) + 1)


def get_train_gpu_request(wildcards):
    """Config `gpus` for the train job; with several processes on GPUs, one GPU per process."""
    return config["gpus"] and max(config["gpus"], get_train_processes(wildcards))


def without_semantic_id_options(options):
    """Train options less those only the semantic-ID (bbqrec) variants read."""
    return {k: v for k, v in options.items() if k not in SEMANTIC_ID_OPTIONS}


def get_train_options_record(wildcards):
    """The train options a run reads, as a params value of wildcards alone: Snakemake records (and reruns on)
    such params, not those that take `threads` or `input`, like get_train_options_json. The baselines do not
    read the semantic-ID options, so changing one reruns the bbqrec variants only."""
    options = get_train_options(wildcards)
    if get_variant(wildcards.variant).item_inputs != "sids":
        options = without_semantic_id_options(options)
    return to_json(options)


def get_behavior_options_record(wildcards):
    """The options the ID-only behaviour SASRec reads: changing a semantic-ID option reruns the bbqrec
    variants, not the tokenizers."""
    return to_json(without_semantic_id_options(get_train_options(wildcards)))


def get_train_options_json(wildcards, threads):
    """The train options for train.py's --config-json: `threads` is each process's share of the job's threads."""
    threads_each = max(1, threads // get_train_processes(wildcards))
    return to_json({**get_train_options(wildcards), "threads": threads_each})


def get_eval_options_json(wildcards, threads):
    """The train options for evaluate.py's --config-json, using the job's threads (both cores on CPU)."""
    return to_json({**get_train_options(wildcards), "threads": threads})


def get_quantize_options(wildcards):
    """config.yaml's quantize.options with the dataset's modalities and its file's tokenizer overrides."""
    overrides, _ = DATASET_QUANTIZE[wildcards.dataset]
    return {
        **config["quantize"]["options"],
        "modalities": get_modalities(wildcards),
        **overrides,
    }


def get_behavior_models(dataset):
    """config quantize.behavior_models, unless the dataset file's quantize block sets its own."""
    _, models = DATASET_QUANTIZE[dataset]
    return models.get("behavior_models", config["quantize"]["behavior_models"])


def get_tokenizer_streams(wildcards):
    """The streams a tokenizer reads: the content modalities, and behaviour unless ablated."""
    return tokenizer_config(
        wildcards.tokenizer, get_quantize_options(wildcards)
    ).streams


def get_tokenizer_embeddings(wildcards):
    """The item embeddings a tokenizer reads, by stream; the behaviour stream reads the behaviour SASRecs of
    behavior_seeds(tokenizer seed, the dataset's behavior_models)."""
    behavior = [
        f"results/{wildcards.dataset}/embeddings/behavior/seed{seed}.parquet"
        for seed in behavior_seeds(
            wildcards.seed, get_behavior_models(wildcards.dataset)
        )
    ]
    return {
        stream: (
            behavior
            if stream == "behavior"
            else f"results/{wildcards.dataset}/embeddings/{stream}.parquet"
        )
        for stream in get_tokenizer_streams(wildcards)
    }


def get_behavior_arg(wildcards, input):
    """quantize.py's / assign_sids.py's --behavior argument when the tokenizer reads the behaviour stream."""
    return f"--behavior {input.behavior}" if "behavior" in input.keys() else ""


def get_train_inputs(wildcards):
    """Data splits, plus the semantic IDs (bbqrec variants) and/or the content embeddings (sasrec-mm, and the
    bbqrec variants with the train option content_inputs)."""
    data = f"results/{wildcards.dataset}/data"
    inputs = {"train": f"{data}/train.parquet", "valid": f"{data}/valid.parquet"}
    variant = get_variant(wildcards.variant)
    if variant.item_inputs == "sids":
        sids_dir = f"results/{wildcards.dataset}/sids/{variant.tokenizer}"
        tokenizer_seed = get_tokenizer_seed(wildcards.seed)
        inputs["sids"] = f"{sids_dir}/seed{tokenizer_seed}/semantic_ids.parquet"
        if get_train_option(wildcards, "tokenizer_training") == "joint":
            # one stage: the model starts from the trained tokenizer and reads its inputs
            tokenizer = SimpleNamespace(
                dataset=wildcards.dataset,
                tokenizer=variant.tokenizer,
                seed=tokenizer_seed,
            )
            quantize_dir = f"results/{wildcards.dataset}/quantize/{variant.tokenizer}"
            inputs["tokenizer"] = f"{quantize_dir}/seed{tokenizer_seed}/tokenizer.pt"
            for stream, path in get_tokenizer_embeddings(tokenizer).items():
                inputs[f"tokenizer_{stream}"] = path
    if variant.item_inputs == "embeddings" or (
        variant.item_inputs == "sids" and get_train_option(wildcards, "content_inputs")
    ):
        for modality in get_modalities(wildcards):
            inputs[modality] = (
                f"results/{wildcards.dataset}/embeddings/{modality}.parquet"
            )
    return inputs


def get_refit_inputs(wildcards):
    """A train run's inputs with every interaction in place of the training split, and the early-stopped run
    whose best epoch count and learning rates the refit replays."""
    inputs = {
        name: path
        for name, path in get_train_inputs(wildcards).items()
        if name not in ("train", "valid")
    }
    stopped = (
        f"results/{wildcards.dataset}/train/{wildcards.variant}/seed{wildcards.seed}"
    )
    return {
        **inputs,
        "interactions": f"results/{wildcards.dataset}/data/interactions.parquet",
        "stopped_model": f"{stopped}/model.pt",
        "stopped_log": f"{stopped}/log.parquet",
    }


def get_recommend_model(wildcards):
    """The model that lists the next items: the evaluated run, or its refit on every interaction (config
    recommend.model)."""
    stage = "refit" if config["recommend"]["model"] == "refit" else "train"
    return f"results/{wildcards.dataset}/{stage}/{wildcards.variant}/seed{wildcards.seed}/model.pt"


def get_train_input_args(wildcards, input):
    """The optional --sids / --text / --image arguments of train.py, and a one-stage model's tokenizer and
    its inputs (--quantize-dir, --embeddings-dir, --behavior)."""
    args = [
        f"--{name} {input[name]}"
        for name in ("sids", "text", "image")
        if name in input.keys()
    ]
    if "tokenizer" in input.keys():
        args.append(f"--quantize-dir {Path(input.tokenizer).parent}")
        args.append(f"--embeddings-dir results/{wildcards.dataset}/embeddings")
    if "tokenizer_behavior" in input.keys():
        args.append(f"--behavior {input.tokenizer_behavior}")
    return " ".join(args)


def get_similarity_bias_sids(wildcards):
    """The semantic IDs a variant with a similarity bias was trained on (stream names, and a check of its codes)."""
    return get_train_inputs(wildcards)["sids"]


def get_train_logs(wildcards):
    """The per-epoch training log of every configured run of one dataset."""
    return [
        f"results/{d}/train/{v}/seed{s}/log.parquet"
        for d, v, s in get_runs(wildcards.dataset)
    ]


def get_eval_outputs():
    """The test metrics of every configured run."""
    return [f"results/{d}/eval/{v}/seed{s}/metrics.parquet" for d, v, s in get_runs()]


def get_compared_data():
    """The training sequences and the validation and test targets of every dataset with a run: the compare stage
    counts each target's training interactions for its per-popularity tables."""
    datasets = dict.fromkeys(d for d, _, _ in get_runs())
    return [
        f"results/{d}/data/{split}.parquet"
        for d in datasets
        for split in ("train", "valid", "test")
    ]
