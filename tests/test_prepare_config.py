"""Dataset config files: the shipped ones load, defaults are filled, bad keys and values name the key."""

from __future__ import annotations

import pytest
import yaml

from bbqrec.data import load_dataset_config, merge_prepare_options
from bbqrec.data.config import resolve_prepare_options
from bbqrec.io import InputError

SHIPPED = ["scientific", "scientific-mm", "beauty", "sports", "toys", "movielens-mm", "gift-cards"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load_and_their_sources_exist(repo_root, shared_data, name):
    cfg = load_dataset_config(repo_root / "config" / "datasets" / f"{name}.yaml")
    assert cfg["name"] == name
    assert all((shared_data / s).is_dir() for s in cfg["sources"])


def test_defaults_are_filled(repo_root):
    sci = load_dataset_config(repo_root / "config" / "datasets" / "scientific.yaml")
    assert sci["options"] == {
        "name": "Scientific",
        "history_len": 50,
        "split_text": True,
        "feature_dim": 512,
        "features": {},
    }
    ml = load_dataset_config(repo_root / "config" / "datasets" / "movielens-mm.yaml")
    assert ml["prepare"] == {"max_history_len": 200}  # only what the file sets: no defaults filled here
    gift = load_dataset_config(repo_root / "config" / "datasets" / "gift-cards.yaml")
    assert gift["prepare"] == {}  # no prepare block: every option falls back to config.yaml
    assert gift["description"].startswith("Raw Amazon 2018")


def test_prepare_option_precedence(repo_root):
    cfg = load_dataset_config(repo_root / "config" / "datasets" / "beauty.yaml")  # prepare: k_core 0, keep
    merged = merge_prepare_options({"k_core": 5, "min_seq_len": 4}, cfg)
    assert merged == {"max_history_len": 50, "min_seq_len": 4, "k_core": 0, "duplicates": "keep"}
    resolved = resolve_prepare_options(cfg, {"k_core": 2, "max_history_len": None})
    assert resolved == {"max_history_len": 50, "min_seq_len": 3, "k_core": 2, "duplicates": "keep"}


def write(tmp_path, text: str):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


GOOD = "adapter: s3rec\nsources: [amazon-s3rec]\noptions: {name: Beauty}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "adaptor: s3rec\n", "unknown key 'adaptor'"),
        (GOOD.replace("{name: Beauty}", "{name: Beauty, nme: x}"), "unknown key 'options.nme'"),
        (GOOD + "prepare: {k_core: three}\n", "key 'prepare.k_core': 'three' is not of type 'integer'"),
        (GOOD + "prepare: {k_core: -1}\n", "key 'prepare.k_core': -1 is less than the minimum of 0"),
        (GOOD + "prepare: {min_seq_len: 2}\n", "key 'prepare.min_seq_len'"),
        (GOOD + "prepare: {duplicates: middle}\n", "key 'prepare.duplicates'"),
        (GOOD + "prepare: {max_len: 3}\n", "unknown key 'prepare.max_len'"),
        (GOOD.replace("s3rec\n", "s4rec\n", 1), "key 'adapter'"),
        (GOOD.replace("{name: Beauty}", "{}"), "missing key 'options.name'"),
        ("sources: [x]\n", "missing key 'adapter'"),
        (GOOD.replace("[amazon-s3rec]", "amazon-s3rec"), "key 'sources'"),
        (
            "adapter: generic\nsources: [x]\noptions: {interactions: a.csv, columns: {usr: u}}\n",
            "unknown key 'options.columns.usr'",
        ),
        ("adapter: generic\nsources: [x]\noptions: {interactions: /abs/a.csv}\n", "key 'options.interactions'"),
    ],
)
def test_bad_key_or_value_names_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_dataset_config(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, GOOD + "prepare: {k_core: [1\n")
    with pytest.raises(InputError, match=r"mine\.yaml, line \d+: not valid YAML"):
        load_dataset_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="nothing.yaml: dataset config file not found"):
        load_dataset_config(tmp_path / "nothing.yaml")


def test_bad_prepare_option_from_the_command_line(repo_root):
    cfg = load_dataset_config(repo_root / "config" / "datasets" / "gift-cards.yaml")
    with pytest.raises(InputError, match="prepare options of dataset 'gift-cards': key 'duplicates'"):
        resolve_prepare_options(cfg, {"duplicates": "middle"})
    with pytest.raises(InputError, match="unknown key 'kcore'"):
        resolve_prepare_options(cfg, {"kcore": 2})


def test_schema_keys_match_the_global_prepare_block(repo_root):
    """The dataset `prepare` block takes exactly the keys of config.yaml's `prepare` (the lead's schema)."""
    schema = yaml.safe_load((repo_root / "workflow" / "schemas" / "dataset.schema.yaml").read_text())
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    assert set(schema["properties"]["prepare"]["properties"]) == set(config["prepare"])


def test_prepare_dataset_checks_a_config_dict(shared_data, tmp_path):
    from bbqrec.data import prepare_dataset

    cfg = {
        "name": "gift",
        "adapter": "amazon_raw",
        "sources": ["amazon2018-small-5core"],
        "options": {"reviews": "Gift_Cards_5.json.gz", "metadata": "meta_Gift_Cards.json.gz"},
    }
    with pytest.raises(InputError, match=r"dataset config 'gift': unknown key 'options.metadata'"):
        prepare_dataset(cfg, shared_data, tmp_path / "out")
    with pytest.raises(InputError, match=r"missing key 'name'"):
        prepare_dataset({k: v for k, v in cfg.items() if k != "name"}, shared_data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
