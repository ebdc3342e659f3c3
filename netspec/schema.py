"""JSON Schema of the spec format, for editors with a YAML language server (placeholder)."""

from __future__ import annotations

from typing import Any


def json_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}
