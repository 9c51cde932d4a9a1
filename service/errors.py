"""The error every route raises for a client mistake, and how validation errors are worded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ApiError(Exception):
    """A request the API rejects; `detail` names the field or resource and the value."""

    def __init__(self, status_code: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


def _location(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc]
    if not parts:
        return "request"
    source, rest = parts[0], parts[1:]
    if source == "body":
        return ".".join(rest) or "body"
    if source in ("query", "path", "header", "cookie"):
        return f"{source} parameter {'.'.join(rest)}"
    return ".".join(parts)


def format_request_errors(errors: Sequence[dict[str, Any]]) -> str:
    """Render FastAPI's validation errors as one line per field, with the value when it is short."""
    lines = []
    for item in errors:
        message = str(item.get("msg", "invalid value"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        line = f"{_location(item.get('loc', ()))}: {message}"
        received = item.get("input")
        if item.get("type") == "json_invalid":
            line = f"body: not valid JSON ({item.get('ctx', {}).get('error', message)}); send the job spec as a JSON object"
        elif item.get("type") == "missing":
            line = f"{_location(item.get('loc', ()))}: field required"
        elif isinstance(received, (str, int, float, bool)) and item.get("type") != "value_error":
            rendered = repr(received)
            line += f" (got {rendered[:80]}{'...' if len(rendered) > 80 else ''})"
        lines.append(line)
    return "\n".join(lines) or "invalid request"
