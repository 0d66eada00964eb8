"""JSON Schema export, so services in any language can produce valid events."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic.json_schema import GenerateJsonSchema

from govloop.schemas.base import UNTAGGED
from govloop.schemas.registry import TOPICS

__all__ = ["export_json_schemas", "json_schema"]


class _Generator(GenerateJsonSchema):
    """pydantic's generator, knowing the ``schema`` field's default (set below)."""

    def encode_default(self, dft: object) -> object:
        return str(dft) if dft is UNTAGGED else super().encode_default(dft)


def json_schema(topic: str) -> dict[str, object]:
    """The JSON Schema (draft 2020-12) of one topic's events, as produced on the wire."""
    entry = TOPICS[topic]
    schema = entry.model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_Generator
    )
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{entry.model.SCHEMA}"
    schema["title"] = entry.model.__name__
    schema["$comment"] = (
        "Also checked, beyond this schema: every number is finite (NaN and Infinity are "
        "not JSON; a number too large for a double, like 1e400, is refused).  The rules "
        "beside the schema are listed in docs/schemas.md."
    )
    # the tag may be left out (decode fills it in), but when present it must be this one
    tag = schema["properties"]["schema"]
    tag["const"] = entry.model.SCHEMA
    tag["default"] = entry.model.SCHEMA
    return schema


def export_json_schemas(directory: Path, prefix: str = "govloop.") -> list[Path]:
    """Write ``<prefix><topic>.schema.json`` for every topic; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TOPICS:
        path = directory / f"{prefix}{name}.schema.json"
        path.write_text(json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
