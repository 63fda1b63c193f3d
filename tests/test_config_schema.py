"""config/config.yaml and its schema: the schema knows exactly the options the package accepts."""

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from bbqrec.command_line_config import type_command_line_values
from bbqrec.embed.image import ImageEmbedConfig
from bbqrec.embed.text import TextEmbedConfig
from bbqrec.quantize.tokenizer import TokenizerConfig
from bbqrec.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def field_names(cls):
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    "schema_path, cls",
    [
        (("properties", "embed", "properties", "text"), TextEmbedConfig),
        (("properties", "embed", "properties", "image"), ImageEmbedConfig),
        (("$defs", "tokenizer_options"), TokenizerConfig),
        (("$defs", "train_options"), TrainConfig),
    ],
)
def test_schema_lists_exactly_the_package_options(schema_path, cls):
    node = SCHEMA
    for key in schema_path:
        node = node[key]
    assert node["additionalProperties"] is False
    assert set(node["properties"]) == field_names(cls)


def test_schema_knows_exactly_the_package_variants_and_tokenizer_presets():
    from bbqrec.models.variants import VARIANTS
    from bbqrec.quantize.config import TOKENIZER_PRESETS

    assert set(SCHEMA["$defs"]["variant"]["enum"]) == set(VARIANTS)
    # every variant's tokenizer is a preset the quantize stage knows
    assert {v.tokenizer for v in VARIANTS.values() if v.tokenizer} <= set(TOKENIZER_PRESETS)


def test_default_config_is_valid_and_package_defaults_pass_the_schema():
    jsonschema.validate(CONFIG, SCHEMA)
    for block, cls in (("tokenizer_options", TokenizerConfig), ("train_options", TrainConfig)):
        defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cls()).items()}
        jsonschema.validate(defaults, {**SCHEMA["$defs"][block], "$defs": SCHEMA["$defs"]})


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"train": {"options": {"dropuot": 0.2}}}, "'dropuot' was unexpected"),
        ({"train": {"variants": ["sasrec", "tiger"]}}, "'tiger' is not one of"),
        ({"quantize": {"options": {"levels": 0}}}, "0 is less than the minimum of 1"),
        ({"embed": {"text": {"fields": ["title", "price"]}}}, "'price' is not one of"),
        ({"quantize": {"seed": "per_seed"}}, "'per_seed' is not valid under any of the given schemas"),
        ({"quantize": {"seed": -1}}, "-1 is less than the minimum of 0"),
        ({"quantize": {"behavior_models": 0}}, "0 is less than the minimum of 1"),
        ({"quantize": {"behavior_models": "3"}}, "'3' is not of type 'integer'"),
        ({"compare": {"popularity_edges": [0, 5]}}, "0 is less than the minimum of 1"),
        ({"compare": {"popularity_edges": []}}, "should be non-empty"),
    ],
)
def test_bad_keys_and_values_are_named(patch, message):
    bad = {**CONFIG, **patch}
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(bad, SCHEMA)


@pytest.mark.parametrize("seed", ["per_run", 0, 7])
def test_tokenizer_seed_is_per_run_or_a_fixed_integer(seed):
    jsonschema.validate({**CONFIG, "quantize": {"seed": seed}}, SCHEMA)


def test_command_line_strings_take_the_type_the_schema_asks():
    # what snakemake's `--config` hands over for nested values: every scalar a string
    given = {
        "datasets": ["beauty"],
        "quantize": {"seed": "0", "behavior_models": "3", "options": {"commitment_beta": "0.5", "l2_normalize": "false"}},
        "train": {"seeds": ["0", "2"], "options": {"dropout": "0.3", "device": "0"}},
        "embed": {"text": {"model": "123"}},
    }
    typed = type_command_line_values(given, SCHEMA)
    assert typed == {
        "datasets": ["beauty"],
        "quantize": {"seed": 0, "behavior_models": 3, "options": {"commitment_beta": 0.5, "l2_normalize": False}},
        # device and the model name are strings in the schema, so '0' and '123' stay strings
        "train": {"seeds": [0, 2], "options": {"dropout": 0.3, "device": "0"}},
        "embed": {"text": {"model": "123"}},
    }
    assert given["train"]["seeds"] == ["0", "2"]  # the input is not changed
    jsonschema.validate({**CONFIG, **typed}, SCHEMA)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"quantize": {"seed": "per_seed"}}, "'per_seed' is not valid under any of the given schemas"),
        ({"quantize": {"behavior_models": "three"}}, "'three' is not of type 'integer'"),
        ({"train": {"seeds": ["1.5"]}}, "'1.5' is not of type 'integer'"),
        ({"train": {"options": {"dropuot": "0.2"}}}, "'dropuot' was unexpected"),
    ],
)
def test_command_line_strings_that_no_reading_makes_valid_stay_strings(given, message):
    typed = type_command_line_values(given, SCHEMA)
    assert typed == given
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate({**CONFIG, **typed}, SCHEMA)


def test_a_command_line_number_of_the_right_type_fails_on_its_value_not_its_type():
    typed = type_command_line_values({"quantize": {"behavior_models": "0"}, "train": {"seeds": ["-1"]}}, SCHEMA)
    assert typed == {"quantize": {"behavior_models": 0}, "train": {"seeds": [-1]}}
    with pytest.raises(jsonschema.ValidationError, match="0 is less than the minimum of 1"):
        jsonschema.validate({**CONFIG, **typed}, SCHEMA)
