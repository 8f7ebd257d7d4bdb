"""The config's JSON schema (schemas/config.schema.yaml): its defaults filled in, its types
checked, and every violation described in one line that names the key path. The rules that
span several fields are config.py's."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from overtrained.core.errors import FixableError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
_FLOAT_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _pattern(validator, pattern: str, instance, schema):
    """`pattern`, with `^...$` meaning the whole string: Python's `$` also matches before a
    final newline, so "tiny\n" would pass as a family name and become a folder name."""
    if not validator.is_type(instance, "string"):
        return
    if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$"):
        matched = re.fullmatch(f"(?:{pattern[1:-1]})", instance)
    else:
        matched = re.search(pattern, instance)
    if not matched:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# JSON Schema's "integer" accepts 1.0e6 and 0.0; seeds and counts name files, so they
# must be real integers (and booleans are not integers here either).
_VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


class ConfigError(FixableError, ValueError):
    """A config problem, described in one line that names the key path."""


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**root["$defs"][name], **rest}
    return schema


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Insert schema defaults into `instance` in place, recursing into objects."""
    schema = _resolve(schema, root)
    if "if" in schema:  # a family: its `source` picks the definition
        chosen = (
            "then"
            if _VALIDATOR({**schema["if"], "$defs": root["$defs"]}).is_valid(instance)
            else "else"
        )
        schema = _resolve(schema[chosen], root)
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def fill_definition_defaults(definition: dict, where: str = "dataset") -> dict:
    """Validate a dataset definition (schema `$defs/dataset_definition`) and fill its defaults.
    Defaults inside `oneOf` branches are not filled by `load`, so dataset_tasks calls this."""
    schema = load_schema()
    sub = schema["$defs"]["dataset_definition"]
    _fill_defaults(definition, sub, schema)
    errors = sorted(_VALIDATOR({**sub, "$defs": schema["$defs"]}).iter_errors(definition), key=str)
    if errors:
        raise ConfigError(f"{where}.{_describe(errors[0])}".replace(".(top level)", ""))
    return definition


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """Turn a jsonschema error into one actionable line."""
    path = list(error.absolute_path)
    where = _key_path(path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        key = _key_path([*path, unknown[0]]) if unknown else where
        if path[:1] == ["families"] and "repo" in unknown and "budgets" in known:
            return f"{key}: a family with a repo is a hub family: add `source: hub`"
        return f"{key}: unknown key (allowed here: {known}); check its spelling"
    schema_path = list(error.absolute_schema_path)
    if "propertyNames" in schema_path:
        bad = error.instance
        if bad in ("probes", "judge"):
            return f"{where}: {bad!r} is reserved (a built-in evaluation); rename it"
        return (
            f"{where}: name {bad!r} is not a safe identifier: use letters, digits, '_' and '-', "
            "starting with a letter (names become file paths and wildcards)"
        )
    if (
        error.validator == "type"
        and isinstance(error.instance, str)
        and _FLOAT_STRING.match(error.instance)
    ):
        return (
            f"{where}: {error.instance!r} was read as a string, not a number (YAML needs a "
            f"dot in exponent notation): write {float(error.instance):.1e}"
        )
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{where}: {error.instance!r} is not one of: {allowed}"
    if error.validator == "oneOf" and "KMBT" in json.dumps(error.validator_value):
        return (
            f"{where}: {error.instance!r} is not a token count: use a positive integer or a "
            "number with a K/M/B/T suffix such as '250K' or '1.5M'"
        )
    if error.validator == "oneOf" and '"auto"' in json.dumps(error.validator_value):
        return f"{where}: {error.instance!r} must be a positive integer or 'auto'"
    if error.validator == "exclusiveMinimum":
        return f"{where}: {error.instance!r} must be greater than {error.validator_value}"
    if error.validator == "minItems" and error.validator_value == 1:
        return f"{where}: must not be empty"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "const":
        return f"{where}: must be {error.validator_value!r}, got {error.instance!r}"
    return f"{where}: {error.message}"


_YAML_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def validate(raw: dict | None) -> dict:
    """A copy of `raw` with the schema's defaults filled in, or the ConfigError of the first
    violation (the one nearest the top of the config: it names the outermost key)."""
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(
            "the config must be a mapping of sections such as `families:` and `finetune:` "
            f"(see config.yaml), not a {_YAML_KINDS.get(type(raw), type(raw).__name__)}"
        )
    cfg = copy.deepcopy(dict(raw or {}))
    schema = load_schema()
    _fill_defaults(cfg, schema, schema)
    errors = sorted(
        _VALIDATOR(schema).iter_errors(cfg), key=lambda e: (len(e.absolute_path), e.path)
    )
    if errors:
        raise ConfigError(_describe(errors[0]))
    return cfg
