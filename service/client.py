"""Python client of the fairsqueeze REST API, over httpx and typed with the service's own schemas.

    with FairsqueezeClient("http://127.0.0.1:8000", api_key=os.environ.get("FAIRSQUEEZE_API_KEY")) as client:
        model = client.upload_model("model.onnx")
        table = client.upload_dataset("eval.csv")
        audit = client.submit_audit({"model": model.id, "data": {"evaluation": table.id, ...}})
        audit = client.wait_for_audit(audit.id, timeout=600)
        report = client.get_report(audit.id)

Every method raises ServerUnreachable when no response comes, and ApiResponseError (with the
status code and the server's `detail`) for a 4xx or 5xx response. This module imports neither
torch nor the audit engine.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from service.schemas.audits import AuditPublic, AuditsPublic
from service.schemas.datasets import DatasetPublic
from service.schemas.models import ModelPublic
from service.schemas.webhooks import DeliveriesPublic
from workers.spec import JobSpec

logger = logging.getLogger(__name__)

API_KEY_VARIABLE = "FAIRSQUEEZE_API_KEY"
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
DEFAULT_TIMEOUT_SECONDS = 60.0


class ClientError(Exception):
    """A request to the fairsqueeze API did not give the expected result."""


class ServerUnreachable(ClientError):
    """No response came: the server is down, the address is wrong, or the request timed out."""


class ApiResponseError(ClientError):
    """The server responded with an error status; `detail` is its explanation."""

    def __init__(self, status_code: int, detail: str, *, method: str, path: str) -> None:
        super().__init__(f"{method} {path} failed with {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class WaitTimeout(ClientError):
    """A job did not end in time; `audit` is its last known state."""

    def __init__(self, audit: AuditPublic, timeout: float) -> None:
        done = audit.progress.succeeded + audit.progress.failed
        super().__init__(
            f"audit {audit.id} did not end within {timeout:g} s: it is {audit.status} with "
            f"{done} of {audit.progress.total} models done"
        )
        self.audit = audit


class FairsqueezeClient:
    """A session with one fairsqueeze server; close it, or use it in a `with` block."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.Client | None = None,
    ) -> None:
        """Connect to `base_url`; `http` replaces the httpx client (its own base URL is then used)."""
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)
        self._headers = headers

    @classmethod
    def from_environment(cls, base_url: str, **options: Any) -> FairsqueezeClient:
        """Connect with the API key in FAIRSQUEEZE_API_KEY, if that variable is set."""
        return cls(base_url, api_key=os.environ.get(API_KEY_VARIABLE) or None, **options)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> FairsqueezeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Uploads

    def upload_model(self, path: str | Path) -> ModelPublic:
        """Upload an ONNX model; the same bytes uploaded again return the existing record."""
        return ModelPublic.model_validate(self._upload("/v1/models", Path(path)).json())

    def upload_dataset(self, path: str | Path, *, delimiter: str = ",") -> DatasetPublic:
        """Upload a CSV, Parquet or NPZ table; the file name's extension gives its format."""
        response = self._upload("/v1/datasets", Path(path), params={"delimiter": delimiter})
        return DatasetPublic.model_validate(response.json())

    # Audits

    def submit_audit(self, spec: JobSpec | dict[str, Any], *, idempotency_key: str | None = None) -> AuditPublic:
        """Queue a job whose spec names uploaded model and dataset ids."""
        body = spec.model_dump(mode="json", exclude_unset=True) if isinstance(spec, JobSpec) else spec
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._request("POST", "/v1/audits", json=body, headers=headers)
        return AuditPublic.model_validate(response.json())

    def get_audit(self, audit_id: str) -> AuditPublic:
        return AuditPublic.model_validate(self._request("GET", f"/v1/audits/{audit_id}").json())

    def list_audits(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> AuditsPublic:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        return AuditsPublic.model_validate(self._request("GET", "/v1/audits", params=params).json())

    def wait_for_audit(
        self,
        audit_id: str,
        *,
        timeout: float,
        poll_interval: float = 1.0,
        on_update: Callable[[AuditPublic], None] | None = None,
    ) -> AuditPublic:
        """Poll the job until it succeeds, fails or is cancelled; raise WaitTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            audit = self.get_audit(audit_id)
            if on_update is not None:
                on_update(audit)
            if audit.status in FINAL_STATUSES:
                return audit
            if time.monotonic() + poll_interval > deadline:
                raise WaitTimeout(audit, timeout)
            time.sleep(poll_interval)

    def get_report(self, audit_id: str) -> dict[str, Any]:
        """Return the report (schema version 1) of a succeeded job."""
        response = self._request("GET", f"/v1/audits/{audit_id}/report")
        try:
            return response.json()
        except json.JSONDecodeError as error:
            raise ClientError(f"the report of audit {audit_id} is not valid JSON: {error}") from error

    def get_report_html(self, audit_id: str) -> str:
        """Return the HTML report of a succeeded job as text."""
        return self._request("GET", f"/v1/audits/{audit_id}/report.html").text

    def download_variant(self, audit_id: str, name: str, path: str | Path) -> Path:
        """Write one variant's ONNX file ('base' is the uploaded model) to `path` and return it."""
        return self._download(f"/v1/audits/{audit_id}/variants/{name}/model.onnx", Path(path))

    def cancel_audit(self, audit_id: str) -> AuditPublic:
        return AuditPublic.model_validate(self._request("POST", f"/v1/audits/{audit_id}/cancel").json())

    def delete_audit(self, audit_id: str) -> None:
        self._request("DELETE", f"/v1/audits/{audit_id}")

    def list_deliveries(self, audit_id: str) -> DeliveriesPublic:
        """List the job's webhook deliveries and every POST attempt."""
        response = self._request("GET", f"/v1/audits/{audit_id}/deliveries")
        return DeliveriesPublic.model_validate(response.json())

    # Transport

    def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        headers = {**self._headers, **(options.pop("headers", None) or {})}
        try:
            response = self._http.request(method, path, headers=headers, **options)
        except httpx.TransportError as error:
            raise ServerUnreachable(
                f"no response from the fairsqueeze server at {self.base_url} to {method} {path}: "
                f"{type(error).__name__}: {error}"
            ) from error
        _raise_for_status(response, method, path)
        return response

    def _upload(self, route: str, path: Path, *, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            handle = path.open("rb")
        except OSError as error:
            raise ClientError(f"cannot read {path} to upload it: {error}") from error
        with handle:
            files = {"file": (path.name, handle, "application/octet-stream")}
            return self._request("POST", route, files=files, params=params)

    def _download(self, path: str, destination: Path) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.part")
        try:
            with self._http.stream("GET", path, headers=self._headers) as response:
                if response.is_error:
                    response.read()
                    _raise_for_status(response, "GET", path)
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.TransportError as error:
            partial.unlink(missing_ok=True)
            raise ServerUnreachable(
                f"no response from the fairsqueeze server at {self.base_url} to GET {path}: "
                f"{type(error).__name__}: {error}"
            ) from error
        partial.replace(destination)
        return destination


def _raise_for_status(response: httpx.Response, method: str, path: str) -> None:
    if not response.is_error:
        return
    try:
        detail = str(response.json().get("detail"))
    except (ValueError, AttributeError):
        detail = response.text[:500] or response.reason_phrase
    raise ApiResponseError(response.status_code, detail, method=method, path=path)


def _local_path(text: str, base_dir: Path | None) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def upload_spec_inputs(client: FairsqueezeClient, spec: JobSpec, *, base_dir: Path | None) -> JobSpec:
    """Upload the model and tables a local spec names and return the spec with their ids.

    Relative paths are read from `base_dir` (the spec file's folder), as `fairsqueeze audit` reads them.
    """
    model = client.upload_model(_local_path(spec.model, base_dir))
    delimiter = spec.data.delimiter
    evaluation = client.upload_dataset(_local_path(spec.data.evaluation, base_dir), delimiter=delimiter)
    data_update: dict[str, Any] = {"evaluation": evaluation.id}
    if spec.data.training is not None:
        training = client.upload_dataset(_local_path(spec.data.training, base_dir), delimiter=delimiter)
        data_update["training"] = training.id
    logger.info("uploaded model %s and evaluation table %s", model.id, evaluation.id)
    return spec.model_copy(update={"model": model.id, "data": spec.data.model_copy(update=data_update)})


def download_results(client: FairsqueezeClient, audit_id: str, out_dir: Path) -> dict[str, Any]:
    """Write a succeeded job's report.json and the ONNX file of every built model to `out_dir`; return the report."""
    report = client.get_report(audit_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = out_dir / ".report.json.part"
    temporary.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(out_dir / "report.json")
    for variant in report.get("variants", []):
        artifact = variant.get("artifact") or {}
        if variant.get("status") == "succeeded" and artifact.get("path"):
            client.download_variant(audit_id, variant["name"], out_dir / Path(artifact["path"]).name)
    return report
