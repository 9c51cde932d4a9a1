"""Generate openapi/openapi.json from the app, and check that the committed copy is current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.app import create_app
from service.settings import Settings

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    # The document depends on no setting, so fixed settings keep it identical on every machine.
    return create_app(Settings(data_dir=Path("var"))).openapi()


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def write_openapi(path: Path = DEFAULT_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi(), encoding="utf-8")


def openapi_is_current(path: Path = DEFAULT_PATH) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == render_openapi()
