"""config/config.yaml and its schema: the schema knows exactly the options the package accepts."""

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

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
