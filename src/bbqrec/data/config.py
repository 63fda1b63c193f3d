"""Dataset files (config/datasets/<name>.yaml): validation against the schema, defaults, prepare options."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bbqrec.io import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "dataset.schema.yaml"

# Built-in defaults of the prepare options; config.yaml's `prepare` and the dataset's `prepare` override them.
PREPARE_DEFAULTS: dict[str, Any] = {"max_history_len": 50, "min_seq_len": 3, "k_core": 0, "duplicates": "keep"}


def _with_defaults(validator_class: type) -> type:
    """A validator that writes each property's `default` into the instance before checking it."""
    check_properties = validator_class.VALIDATORS["properties"]

    def fill_then_check(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_then_check})


def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _describe(error: jsonschema.ValidationError) -> str:
    """'key ...: what was wrong' with the dotted key path of the offending value."""
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        keys = ", ".join(f"{where}.{k}" if where else k for k in unknown)
        return f"unknown key {keys!r} (allowed here: {sorted(allowed)})"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        keys = ", ".join(f"{where}.{k}" if where else k for k in missing)
        return f"missing key {keys!r}"
    return f"key {where or '(top level)'!r}: {error.message}"


def _validate(instance: dict[str, Any], schema: dict[str, Any], origin: str) -> None:
    validator = _with_defaults(jsonschema.validators.validator_for(schema))(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise InputError(f"{origin}: {_describe(errors[0])}")


def load_dataset_config(path: str | Path) -> dict[str, Any]:
    """The dataset file at `path`, validated, with defaults filled and `name` defaulting to the file stem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: dataset config file not found")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        raise InputError(f"{path}, line {mark.line + 1 if mark else '?'}: not valid YAML ({err.problem})") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: expected a mapping with keys adapter, sources, options, prepare")
    return check_dataset_config({"name": path.stem, **cfg}, str(path))


def check_dataset_config(cfg: dict[str, Any], origin: str) -> dict[str, Any]:
    """A validated copy of a dataset config with defaults filled; `origin` (file name) prefixes any error."""
    cfg = copy.deepcopy(cfg)
    _validate(cfg, _schema(), origin)
    return cfg


def merge_prepare_options(global_prepare: dict[str, Any], dataset_cfg: dict[str, Any]) -> dict[str, Any]:
    """Built-in defaults, overridden by config.yaml's `prepare`, overridden by the dataset's `prepare`."""
    return {**PREPARE_DEFAULTS, **global_prepare, **dataset_cfg.get("prepare", {})}


def resolve_prepare_options(dataset_cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The dataset's prepare options with `overrides` (None = not given) on top, checked against the schema."""
    options = merge_prepare_options({}, dataset_cfg)
    options.update({k: v for k, v in overrides.items() if v is not None})
    prepare_schema = {"$schema": _schema()["$schema"], **_schema()["properties"]["prepare"]}
    _validate(options, prepare_schema, f"prepare options of dataset {dataset_cfg.get('name', '?')!r}")
    return options
