"""Spec extensions that expand before validation (reusable blocks). Placeholder: passes through."""

from __future__ import annotations

from typing import Any

from netspec.errors import Diagnostic


def expand(raw: Any, file: str, diags: list[Diagnostic]) -> Any:
    return raw
