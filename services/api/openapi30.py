"""The OpenAPI 3.1 document FastAPI writes, restated as OpenAPI 3.0.3.

The guide promises OpenAPI 3.0, and the tools its readers use (vRealize Orchestrator, older
openapi-generator versions) import only 3.0. The two differ, for what FastAPI emits, in how a
schema says "or null", in ``const``, in ``examples`` inside schemas, in numeric exclusive bounds,
and in a ``$ref`` that carries siblings (3.0 ignores them). Each is rewritten to its 3.0 form;
nothing else changes, so both documents describe the same API.

Hand-written rather than a converter package: the one on the index rewrites every string
"true"/"false" in the document into a boolean and writes a warnings file into the working
directory, neither acceptable in a server.
"""

from __future__ import annotations

import copy
from typing import Any

OPENAPI_30 = "3.0.3"


def downgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A 3.0.3 copy of the 3.1 ``document`` (which is left untouched)."""
    converted: dict[str, Any] = _convert(copy.deepcopy(document))
    converted["openapi"] = OPENAPI_30
    converted.pop("jsonSchemaDialect", None)
    converted.pop("webhooks", None)
    return converted


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _convert(value) for key, value in node.items()}
    if _is_schema(converted):
        converted = _schema(converted)
    return converted


def _is_schema(node: dict[str, Any]) -> bool:
    """Whether ``node`` is a schema (and not, say, a ``properties`` map with a field "type")."""
    return (
        isinstance(node.get("type"), str | list)
        or isinstance(node.get("$ref"), str)
        or "const" in node
        or any(isinstance(node.get(key), list) for key in ("anyOf", "oneOf", "allOf"))
    )


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    # A file upload: 3.1 names the media type, 3.0 says "binary" (base64 text: "byte").
    if schema.pop("contentMediaType", None) is not None:
        schema.setdefault("format", "binary")
    if schema.pop("contentEncoding", None) == "base64":
        schema["format"] = "byte"
    if "examples" in schema and isinstance(schema["examples"], list):
        examples = schema.pop("examples")
        if examples:
            schema["example"] = examples[0]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), int | float) and not isinstance(schema[bound], bool):
            schema[inclusive] = schema.pop(bound)
            schema[bound] = True
    kinds = schema.get("type")
    if isinstance(kinds, list):
        rest = [kind for kind in kinds if kind != "null"]
        if len(rest) < len(kinds):
            schema["nullable"] = True
        if len(rest) == 1:
            schema["type"] = rest[0]
        else:
            schema.pop("type")
            schema["anyOf"] = [{"type": kind} for kind in rest]
    for combiner in ("anyOf", "oneOf"):
        options = schema.get(combiner)
        if isinstance(options, list) and any(_is_null(option) for option in options):
            schema = _nullable(schema, combiner, [o for o in options if not _is_null(o)])
    if "$ref" in schema and len(schema) > 1:
        # In 3.0 a $ref's siblings are ignored; allOf keeps them meaningful.
        schema = {"allOf": [{"$ref": schema.pop("$ref")}], **schema}
    return schema


def _is_null(option: Any) -> bool:
    return isinstance(option, dict) and option.get("type") == "null" and len(option) == 1


def _nullable(schema: dict[str, Any], combiner: str, options: list[Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` → X with ``nullable: true`` (a ``$ref`` X through allOf)."""
    schema.pop(combiner)
    schema["nullable"] = True
    if len(options) != 1:
        if options:
            schema[combiner] = options
        return schema
    (only,) = options
    if "$ref" in only or "allOf" in only:
        schema["allOf"] = only.get("allOf", [only])
        return schema
    return {**only, **schema}
