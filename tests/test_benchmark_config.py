"""config/benchmark.yaml and config/comparison.yaml: the four-dataset comparisons validate and plan exactly
their training runs (every dataset x variant x seed; the main variants plus the ablations on two datasets)."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml
from snakemake.utils import validate
from workflow_runs import REPO, copy_workflow, dry_run, job_counts, snakemake

BENCHMARK = REPO / "config" / "benchmark.yaml"
COMPARISON = REPO / "config" / "comparison.yaml"


def test_benchmark_config_is_valid_and_names_the_four_datasets_every_variant_three_seeds():
    config = yaml.safe_load(BENCHMARK.read_text())
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["datasets"] == ["scientific", "scientific-mm", "beauty", "movielens-mm"]
    assert all((REPO / "config" / "datasets" / f"{name}.yaml").is_file() for name in config["datasets"])
    from bbqrec.models.variants import VARIANTS

    assert sorted(config["train"]["variants"]) == sorted(VARIANTS)
    assert config["train"]["seeds"] == [0, 1, 2]


def test_benchmark_dry_run_plans_one_training_run_per_dataset_variant_and_seed():
    result = dry_run("--configfile", str(BENCHMARK))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # every variant runs on every dataset (common.smk excludes none): 4 datasets x 9 variants x 3 seeds
    assert counts["train"] == counts["evaluate"] == 4 * 9 * 3
    # per dataset and seed one tokenizer of each kind: bbq, bbq-no-club, bbq-no-behavior, bbq-untrained
    assert counts["quantize"] == counts["assign_sids"] == 4 * 4 * 3
    assert counts["prepare_data"] == 4 and counts["compare"] == 1
    assert counts["plot_training_curves"] == 4


def test_comparison_config_plans_the_main_runs_and_the_ablations_on_their_datasets_only():
    config = yaml.safe_load(COMPARISON.read_text())
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    result = dry_run("--configfile", str(COMPARISON))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # 4 datasets x (sasrec, sasrec-mm, bbqrec) x 3 seeds + 2 datasets x 4 ablations x seed 0
    assert counts["train"] == counts["evaluate"] == 4 * 3 * 3 + 2 * 4
    # quantize.seed per_run: bbq with each of the 3 seeds on every dataset; bbq-no-club and bbq-no-behavior with
    # seed 0 only where the ablations run; behaviour SASRecs per dataset and seed (no-club shares seed 0's): three
    # (seeds k, k+1000, k+2000) on the text datasets, whose files set quantize.behavior_models 3, one on MovieLens
    assert counts["quantize"] == counts["assign_sids"] == 4 * 3 + 2 * 2
    assert counts["behavior_embed"] == 3 * 3 * 3 + 3
    planned = result.stdout
    assert "results/beauty/eval/bbqrec-no-club/seed0/metrics.parquet" in planned
    assert "results/scientific/eval/bbqrec-no-club" not in planned
    assert "bbqrec-cosine/seed1" not in planned and "results/movielens-mm/sids/bbq-no-behavior" not in planned
    assert "results/beauty/sids/bbq-no-club/seed1" not in planned
    assert counts["compare"] == 1


def planned_inputs(output: str, rule: str, output_path: str) -> str:
    """The `input:` line of the planned job of `rule` that writes output_path, from a dry run's job listing."""
    for job in output.split("\nrule ")[1:]:
        lines = job.splitlines()
        if lines[0] == f"{rule}:" and any(line.strip().startswith("output:") and output_path in line for line in lines):
            return next(line for line in lines if line.strip().startswith("input:"))
    raise AssertionError(f"no planned {rule} job writes {output_path}")


def test_tokenizer_seed_follows_each_run_or_is_one_fixed_seed(tmp_path):
    runs = "datasets: [scientific-mm]\ntrain:\n  variants: [bbqrec]\n  seeds: [0, 1, 2]\n"
    (tmp_path / "per_run.yaml").write_text(runs)  # config.yaml's quantize.seed: per_run
    (tmp_path / "fixed.yaml").write_text(runs + "quantize:\n  seed: 7\n")
    per_run, fixed = (dry_run("--configfile", str(tmp_path / name)) for name in ("per_run.yaml", "fixed.yaml"))
    assert per_run.returncode == fixed.returncode == 0, per_run.stderr + fixed.stderr
    seed1 = "results/scientific-mm/train/bbqrec/seed1/model.pt"
    # per_run: run seed k reads tokenizer seed k, which reads behaviour SASRec seed k
    assert "results/scientific-mm/sids/bbq/seed1/semantic_ids.parquet" in planned_inputs(per_run.stdout, "train", seed1)
    assert "tokenizer.pt" not in planned_inputs(per_run.stdout, "train", seed1)  # two-stage: the codes only
    assert "embeddings/behavior/seed1.parquet" in planned_inputs(
        per_run.stdout, "quantize", "results/scientific-mm/quantize/bbq/seed1/tokenizer.pt"
    )
    # (scientific-mm.yaml sets quantize.behavior_models 3: each tokenizer also reads seeds k+1000 and k+2000)
    assert job_counts(per_run.stdout)["quantize"] == 3 and job_counts(per_run.stdout)["behavior_embed"] == 3 * 3
    # a fixed seed: one tokenizer (and its behaviour SASRecs), read by every run
    assert "results/scientific-mm/sids/bbq/seed7/semantic_ids.parquet" in planned_inputs(fixed.stdout, "train", seed1)
    assert job_counts(fixed.stdout)["quantize"] == 1 and job_counts(fixed.stdout)["behavior_embed"] == 3


def test_a_tokenizer_reads_behavior_models_behaviour_sasrecs(tmp_path):
    config = (
        "datasets: [movielens-mm]\ntrain:\n  variants: [bbqrec]\n  seeds: [0, 1]\nquantize:\n  behavior_models: 2\n"
    )
    (tmp_path / "two.yaml").write_text(config)
    result = dry_run("--configfile", str(tmp_path / "two.yaml"))
    assert result.returncode == 0, result.stderr
    # tokenizer seed 1 reads the behaviour SASRecs of seeds 1 and 1001; 2 tokenizers x 2 models
    inputs = planned_inputs(result.stdout, "quantize", "results/movielens-mm/quantize/bbq/seed1/tokenizer.pt")
    assert "embeddings/behavior/seed1.parquet" in inputs and "embeddings/behavior/seed1001.parquet" in inputs
    assert "seed0.parquet" not in inputs and "seed1000.parquet" not in inputs
    assert job_counts(result.stdout)["quantize"] == 2 and job_counts(result.stdout)["behavior_embed"] == 4


def test_a_dataset_file_sets_its_own_behavior_models(tmp_path):
    """A dataset file's quantize.behavior_models wins over config.yaml's for that dataset only, and is checked
    against the same schema (the error names the file)."""
    workdir = copy_workflow(tmp_path / "workdir")
    dataset_file = workdir / "config" / "datasets" / "movielens-mm.yaml"
    original = dataset_file.read_text()
    dataset_file.write_text(original + "quantize:\n  behavior_models: 2\n  epochs: 5\n")
    config = tmp_path / "two.yaml"
    config.write_text(
        f"data_root: {REPO.parent / 'shared' / 'data'}\ndatasets: [movielens-mm, gift-cards]\n"
        "train:\n  variants: [bbqrec]\n  seeds: [1]\n"
    )
    result = snakemake("-n", "-p", "--cores", "1", "--forceall", "--configfile", str(config), cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    inputs = planned_inputs(result.stdout, "quantize", "results/movielens-mm/quantize/bbq/seed1/tokenizer.pt")
    assert all(f"movielens-mm/embeddings/behavior/seed{k}.parquet" in inputs for k in (1, 1001))
    assert "seed2001" not in inputs
    # gift-cards (no quantize block) keeps config.yaml's single model
    inputs = planned_inputs(result.stdout, "quantize", "results/gift-cards/quantize/bbq/seed1/tokenizer.pt")
    assert "behavior/seed1.parquet" in inputs and "seed1001" not in inputs
    assert job_counts(result.stdout)["behavior_embed"] == 2 + 1
    # quantize.py's tokenizer options: the dataset's other override and modalities, no behavior_models
    lines = result.stdout.splitlines()
    command = next(line for line in lines if "quantize.py" in line and "results/movielens-mm/embeddings" in line)
    words = shlex.split(command)
    options = json.loads(words[words.index("--config-json") + 1])
    assert options["epochs"] == 5 and options["modalities"] == ["text", "image"]
    assert "behavior_models" not in options

    dataset_file.write_text(original + "quantize:\n  behavior_models: 0\n")
    result = snakemake("-n", "--cores", "1", "--configfile", str(config), cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config/datasets/movielens-mm.yaml (quantize/train overrides)" in output
    assert "0 is less than the minimum of 1" in output


def test_one_stage_training_reads_the_tokenizer_and_its_inputs(tmp_path):
    """train.options.tokenizer_training joint: each bbqrec run also reads its tokenizer and the tokenizer's input
    embeddings (the behaviour SASRecs of its seed); the ID-only runs are unaffected."""
    config = "datasets: [scientific-mm]\ntrain:\n  variants: [sasrec, bbqrec]\n  seeds: [1]\n"
    (tmp_path / "joint.yaml").write_text(config + "  options: {tokenizer_training: joint}\n")
    joint = dry_run("-p", "--configfile", str(tmp_path / "joint.yaml"))
    assert joint.returncode == 0, joint.stderr
    inputs = planned_inputs(joint.stdout, "train", "results/scientific-mm/train/bbqrec/seed1/model.pt")
    assert "results/scientific-mm/quantize/bbq/seed1/tokenizer.pt" in inputs
    assert all(f"results/scientific-mm/embeddings/behavior/seed{k}.parquet" in inputs for k in (1, 1001, 2001))
    command = next(line for line in joint.stdout.splitlines() if "train.py" in line and "--variant bbqrec" in line)
    words = shlex.split(command)
    assert words[words.index("--quantize-dir") + 1] == "results/scientific-mm/quantize/bbq/seed1"
    assert words[words.index("--embeddings-dir") + 1] == "results/scientific-mm/embeddings"
    behavior = words[words.index("--behavior") + 1 : words.index("--behavior") + 4]
    assert behavior == [f"results/scientific-mm/embeddings/behavior/seed{k}.parquet" for k in (1, 1001, 2001)]
    assert json.loads(words[words.index("--config-json") + 1])["tokenizer_training"] == "joint"
    sasrec = next(line for line in joint.stdout.splitlines() if "train.py" in line and "--variant sasrec" in line)
    assert "--quantize-dir" not in sasrec
    # (two-stage runs read no tokenizer: test_tokenizer_seed_follows_each_run_or_is_one_fixed_seed)


@pytest.mark.parametrize("empty", ["variants", "seeds"])
def test_an_empty_ablation_list_drops_a_config_files_ablations_and_their_dataset_check(empty):
    # comparison.yaml's ablations name scientific-mm, which is not configured here; with no ablation variants
    # (or seeds) nothing runs there, so that is no error, and only the main variants x seeds are planned
    result = dry_run(
        "--configfile", str(COMPARISON), "--config", "datasets=[beauty]", f'train={{"ablations":{{"{empty}":[]}}}}'
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts["train"] == counts["evaluate"] == 3 * 3  # sasrec, sasrec-mm, bbqrec x seeds 0-2
    assert counts["quantize"] == 3  # bbq per seed; no bbq-no-club or bbq-no-behavior
    assert "bbqrec-no-club" not in result.stdout and "bbqrec-cosine" not in result.stdout


def test_null_ablations_in_a_config_file_run_none(tmp_path):
    config = yaml.safe_load(COMPARISON.read_text())
    config["train"]["ablations"] = None
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    path = tmp_path / "no_ablations.yaml"
    path.write_text(yaml.safe_dump(config))
    result = dry_run("--configfile", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout)["train"] == 4 * 3 * 3


def test_ablations_on_a_dataset_that_is_not_configured_is_an_error_naming_the_key():
    result = dry_run(
        "--configfile", str(COMPARISON), "--config", "datasets=[beauty]"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "train.ablations.datasets: ['scientific-mm'] not among the configured datasets ['beauty']" in output
