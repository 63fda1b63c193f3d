"""Values given on snakemake's command line, typed as the config schema asks.

`snakemake --config 'train={seeds: [0], options: {dropout: 0.3}}'` reads the value with YAML's BaseLoader, so every
scalar below the top level arrives as a string ('0', '0.3') and the schema would reject it. A string that the
schema rejects is replaced by its YAML reading (a number, a boolean or null) where that reading passes, or is at
least of the type asked for (so '0' where the minimum is 1 fails as 0, on the minimum); every other value is left
as it is, so a wrong one still fails validation with its own message.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its local `$ref` ("#/$defs/name", the only kind the config schema uses) followed."""
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"config schema: only local $ref ('#/...') are followed, got {ref!r}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = {**target, **{key: value for key, value in schema.items() if key != "$ref"}}
    return schema


def _has_type_error(validator: jsonschema.protocols.Validator, value: Any) -> bool:
    return any(error.validator == "type" for error in validator.iter_errors(value))


def _typed_scalar(value: str, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    # The sub-schema may still point into $defs (inside oneOf, items ...), so it carries the root's $defs along.
    validator = jsonschema.validators.validator_for(root)({**schema, "$defs": root.get("$defs", {})})
    if validator.is_valid(value):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if parsed is None or isinstance(parsed, (bool, int, float)):
        if validator.is_valid(parsed) or (_has_type_error(validator, value) and not _has_type_error(validator, parsed)):
            return parsed
    return value


def type_command_line_values(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A copy of `value` (a config, or part of one under `schema`) in which each string that `schema` rejects is
    read as a YAML scalar where that reading passes, or fails only on its value (module docstring). Keys the schema
    does not describe are copied unchanged."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        typed = {}
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            typed[key] = item if sub is None else type_command_line_values(item, sub, root)
        return typed
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return list(value)
        return [type_command_line_values(item, items, root) for item in value]
    if isinstance(value, str):
        return _typed_scalar(value, schema, root)
    return value
