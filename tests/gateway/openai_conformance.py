"""OpenAI's own schemas for what the gateway answers, vendored from the openai/openai-openapi
repository (openapi.json, API version 2.3.0, commit f85dbe2; `openai_schemas.json` names the
file, the commit and the roots). The file holds the four response schemas the gateway produces
(completion, chunk, model list, error) and every schema they reference, with descriptions and
examples left out.

OpenAI's document is OpenAPI 3.1 but still marks some fields `nullable: true`, the 3.0 keyword
that JSON Schema 2020-12 ignores. OpenAI's own SDKs accept null there, so `nullable` is read as
"or null", as they read it."""

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).with_name("openai_schemas.json")
PREFIX = "#/components/schemas/"


def _with_null(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_with_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    rest = {key: _with_null(value) for key, value in schema.items() if key != "nullable"}
    return {"anyOf": [rest, {"type": "null"}]} if schema.get("nullable") is True else rest


@cache
def _components() -> dict[str, Any]:
    return {name: _with_null(schema) for name, schema in json.loads(SCHEMAS.read_text())["schemas"].items()}


def violations(schema_name: str, instance: object) -> list[str]:
    """Where `instance` breaks OpenAI's schema `schema_name`, one line per error; [] when it conforms."""
    document = {"components": {"schemas": _components()}}
    resource = referencing.Resource.from_contents(document, default_specification=DRAFT202012)
    registry = referencing.Registry().with_resource("openai", resource)
    validator = jsonschema.Draft202012Validator({"$ref": f"openai{PREFIX}{schema_name}"}, registry=registry)
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]
