"""Artifact storage: uploaded files, ONNX variants and reports in a local folder, laid out by id.

    <root>/models/<id>/model.onnx
    <root>/datasets/<id>/<filename>
    <root>/audits/<id>/report.json
    <root>/audits/<id>/report.html
    <root>/audits/<id>/<variant>.onnx
    <root>/tmp/                       uploads in progress

Several machines can share the folder (a network volume) because every path derives from ids.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_FILENAME = "model.onnx"
REPORT_FILENAME = "report.json"
HTML_REPORT_FILENAME = "report.html"
VARIANT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SAFE_FILENAME_PATTERN = re.compile(r"[^A-Za-z0-9._-]+")


class ArtifactStorage:
    """Paths of every stored file, and the few operations that move or remove them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ensure_layout(self) -> None:
        for folder in ("models", "datasets", "audits", "tmp"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    # Paths

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def model_path(self, model_id: str) -> Path:
        return self.model_dir(model_id) / MODEL_FILENAME

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.root / "datasets" / dataset_id

    def dataset_path(self, dataset_id: str, filename: str) -> Path:
        return self.dataset_dir(dataset_id) / filename

    def audit_dir(self, audit_id: str) -> Path:
        return self.root / "audits" / audit_id

    def report_path(self, audit_id: str) -> Path:
        return self.audit_dir(audit_id) / REPORT_FILENAME

    def variant_path(self, audit_id: str, variant: str) -> Path:
        if not VARIANT_NAME_PATTERN.match(variant):
            raise ValueError(
                f"invalid variant name {variant!r}: use letters, digits, '.', '_' and '-' (at most 64 characters)"
            )
        return self.audit_dir(audit_id) / f"{variant}.onnx"

    def relative(self, path: Path) -> str:
        """Return `path` relative to the root, as the engine receives it in a job spec."""
        return Path(path).relative_to(self.root).as_posix()

    # Operations

    def temporary_file(self, suffix: str = "") -> Path:
        """Create an empty file under `<root>/tmp` and return its path; the caller moves or removes it."""
        folder = self.root / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=folder)
        os.close(handle)
        return Path(name)

    def place(self, source: Path, destination: Path) -> None:
        """Move a finished upload into place; the rename is atomic within one file system."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)

    def remove_tree(self, folder: Path) -> None:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=False)
            logger.info("removed %s", folder)

    def remove_audit(self, audit_id: str) -> None:
        self.remove_tree(self.audit_dir(audit_id))


def safe_filename(filename: str | None, *, default: str) -> str:
    """Reduce an uploaded file name to its last part in letters, digits, '.', '_' and '-'."""
    name = Path((filename or "").replace("\\", "/")).name
    name = SAFE_FILENAME_PATTERN.sub("_", name).strip("._")
    return name[:128] or default
