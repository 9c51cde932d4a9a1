"""The job store on SQLite and on PostgreSQL: migrations, claims and progress writes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service import store
from service.db import get_engine, session_scope, upgrade_database
from service.tables import AuditRecord, Base, DatasetRecord, ModelRecord, utcnow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_database(url)
    return url


def add_job(url: str, audit_id: str = "job-1") -> str:
    now = utcnow()
    with session_scope(url) as session:
        session.add(
            ModelRecord(
                id="m", sha256="0" * 64, filename="m.onnx", bytes=1, opset=17, inputs=[], outputs=[], parameters=1,
                created_at=now,
            )
        )
        session.add(
            DatasetRecord(
                id="d", sha256="1" * 64, filename="d.csv", format="csv", bytes=1, rows=1, columns=[], delimiter=",",
                created_at=now,
            )
        )
    with session_scope(url) as session:
        audit = AuditRecord(
            id=audit_id, status="queued", queue="cpu", trains=False, spec={}, model_id="m",
            evaluation_dataset_id="d", request_sha256="2" * 64, created_at=now, attempts=0,
        )
        store.add_audit(session, audit=audit, variants=[("base", "none"), ("int8", "quantize_dynamic")])
    return audit_id


def claim(url: str, audit_id: str, *, stale_after: float = 30.0, previous_attempt: int | None = None) -> store.Claim:
    now = utcnow()
    with session_scope(url) as session:
        return store.claim_audit(
            session,
            audit_id=audit_id,
            worker="w",
            device="cpu",
            now=now,
            stale_before=now - timedelta(seconds=stale_after),
            max_attempts=3,
            previous_attempt=previous_attempt,
        )


def event(kind: str, variant: str, status: str | None = None) -> dict:
    return {"event": kind, "variant": variant, "status": status, "index": 0, "total": 2}


def test_migrations_match_tables(database_url):
    with get_engine(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []


def test_upgrade_runs_twice(database_url):
    upgrade_database(database_url)
    tables = set(inspect(get_engine(database_url)).get_table_names())

    assert {"models", "datasets", "audits", "variants", "alembic_version"} <= tables


def test_first_claim_starts_attempt_one(database_url):
    audit_id = add_job(database_url)
    first = claim(database_url, audit_id)
    second = claim(database_url, audit_id)

    assert first.attempt == 1
    assert second.claimed is False
    assert second.status == "running"


def test_stale_job_claimed_again(database_url):
    audit_id = add_job(database_url)
    claim(database_url, audit_id)
    again = claim(database_url, audit_id, stale_after=-1.0)

    assert again.attempt == 2


def test_retry_keeps_attempt_number(database_url):
    audit_id = add_job(database_url)
    first = claim(database_url, audit_id)
    retried = claim(database_url, audit_id, previous_attempt=first.attempt)

    assert retried.attempt == first.attempt


def test_stale_attempt_cannot_finish(database_url):
    audit_id = add_job(database_url)
    first = claim(database_url, audit_id)
    claim(database_url, audit_id, stale_after=-1.0)
    with session_scope(database_url) as session:
        finished = store.finish_audit(session, audit_id=audit_id, attempt=first.attempt, status="failed", now=utcnow())

    assert finished is False


def test_finished_variant_kept_on_repeat(database_url):
    audit_id = add_job(database_url)
    attempt = claim(database_url, audit_id).attempt
    with session_scope(database_url) as session:
        store.record_variant_event(
            session, audit_id=audit_id, attempt=attempt, event=event("variant_started", "base"), now=utcnow()
        )
        store.record_variant_event(
            session,
            audit_id=audit_id,
            attempt=attempt,
            event=event("variant_finished", "base", "succeeded"),
            now=utcnow(),
        )
    with session_scope(database_url) as session:
        first_finish = store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER).variants[0].finished_at
        store.record_variant_event(
            session, audit_id=audit_id, attempt=attempt, event=event("variant_started", "base"), now=utcnow()
        )
    with session_scope(database_url) as session:
        variants = store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER).variants

    assert [variant.name for variant in variants] == ["base", "int8"]
    assert variants[0].status == "succeeded"
    assert variants[0].finished_at == first_finish


def test_other_events_only_beat(database_url):
    audit_id = add_job(database_url)
    attempt = claim(database_url, audit_id).attempt
    with session_scope(database_url) as session:
        owned = store.record_variant_event(
            session, audit_id=audit_id, attempt=attempt, event={"event": "epoch", "epoch": 1}, now=utcnow()
        )
    with session_scope(database_url) as session:
        variants = store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER).variants

    assert owned is True
    assert [variant.name for variant in variants] == ["base", "int8"]


def test_cancelled_job_rejects_progress(database_url):
    audit_id = add_job(database_url)
    attempt = claim(database_url, audit_id).attempt
    with session_scope(database_url) as session:
        store.cancel_audit(session, audit_id=audit_id, now=utcnow())
    with session_scope(database_url) as session:
        owned = store.record_variant_event(
            session, audit_id=audit_id, attempt=attempt, event=event("variant_started", "int8"), now=utcnow()
        )

    assert owned is False


def test_timestamps_read_back_in_utc(database_url):
    audit_id = add_job(database_url)
    with session_scope(database_url) as session:
        created = store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER).created_at

    assert created.utcoffset() == timedelta(0)


def test_lost_job_requeued_once(database_url):
    audit_id = add_job(database_url)
    claim(database_url, audit_id)
    later = utcnow() + timedelta(minutes=5)
    with session_scope(database_url) as session:
        lost = store.find_lost_audits(session, stale_before=later)
        previous = lost[0].enqueued_at
        first = store.mark_requeued(session, audit_id=audit_id, previous=previous, now=later)
        second = store.mark_requeued(session, audit_id=audit_id, previous=previous, now=later)

    assert [audit.id for audit in lost] == [audit_id]
    assert first is True
    assert second is False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def first_revision_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store migrated to revision 0001 only, with one model, dataset and job in it."""
    from alembic import command
    from sqlalchemy import text

    from service.db import alembic_config, normalize_url

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    command.upgrade(alembic_config(url), "0001")
    engine = create_engine(normalize_url(url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO models (id, sha256, filename, bytes, opset, inputs, outputs, parameters, created_at) "
                "VALUES ('m', 'aa', 'm.onnx', 1, 17, '[]', '[]', 1, '2026-01-01T00:00:00+00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO datasets (id, sha256, filename, format, bytes, rows, columns, delimiter, created_at) "
                "VALUES ('d', 'bb', 'd.csv', 'csv', 1, 1, '[]', ',', '2026-01-01T00:00:00+00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO audits (id, status, queue, trains, spec, model_id, evaluation_dataset_id, "
                "idempotency_key, request_sha256, created_at, attempts) VALUES ('a', 'succeeded', 'cpu', false, "
                "'{}', 'm', 'd', 'nightly', 'cc', '2026-01-01T00:00:00+00:00', 1)"
            )
        )
    engine.dispose()
    return url


def test_upgrade_keeps_rows_without_owner(first_revision_url):
    upgrade_database(first_revision_url)
    with session_scope(first_revision_url) as session:
        audit = store.get_audit(session, audit_id="a", owner=None)
        model = store.find_model_by_sha256(session, sha256="aa", owner=None)
        by_key = store.get_audit_by_idempotency_key(session, key="nightly", owner=None)

    assert audit.owner_key_id is None
    assert model.id == "m"
    assert by_key.id == "a"


def add_key(url: str, key_id: str) -> None:
    from service.tables import ApiKeyRecord

    with session_scope(url) as session:
        session.add(
            ApiKeyRecord(
                id=key_id, name=key_id, prefix=key_id, key_sha256="0" * 64, webhook_secret="s", created_at=utcnow()
            )
        )


def model_row(model_id: str, owner: str | None) -> ModelRecord:
    return ModelRecord(
        id=model_id, owner_key_id=owner, sha256="f" * 64, filename="m.onnx", bytes=1, opset=17, inputs=[],
        outputs=[], parameters=1, created_at=utcnow(),
    )


def test_same_model_bytes_one_row_per_owner(database_url):
    from sqlalchemy.exc import IntegrityError

    add_key(database_url, "k1")
    add_key(database_url, "k2")
    for model_id, owner in (("m0", None), ("m1", "k1"), ("m2", "k2")):
        with session_scope(database_url) as session:
            session.add(model_row(model_id, owner))

    for model_id, owner in (("m3", None), ("m4", "k1")):
        with pytest.raises(IntegrityError):
            with session_scope(database_url) as session:
                session.add(model_row(model_id, owner))


def test_delivery_staged_once_per_event(database_url):
    audit_id = add_job(database_url)
    now = utcnow()
    with session_scope(database_url) as session:
        first = store.add_delivery(
            session, delivery_id="d1", audit_id=audit_id, event="audit.succeeded", url="http://127.0.0.1/h", now=now
        )
    with session_scope(database_url) as session:
        second = store.add_delivery(
            session, delivery_id="d2", audit_id=audit_id, event="audit.succeeded", url="http://127.0.0.1/h", now=now
        )

    assert first.id == "d1"
    assert second is None


def test_delivery_lock_taken_once(database_url):
    audit_id = add_job(database_url)
    now = utcnow()
    with session_scope(database_url) as session:
        store.add_delivery(
            session, delivery_id="d1", audit_id=audit_id, event="audit.failed", url="http://127.0.0.1/h", now=now
        )
    until = now + timedelta(minutes=1)
    with session_scope(database_url) as session:
        first = store.lock_delivery(session, delivery_id="d1", now=now, until=until)
    with session_scope(database_url) as session:
        second = store.lock_delivery(session, delivery_id="d1", now=now, until=until)

    assert first is True
    assert second is False


def test_deleted_job_removes_deliveries(database_url):
    audit_id = add_job(database_url)
    with session_scope(database_url) as session:
        store.add_delivery(
            session, delivery_id="d1", audit_id=audit_id, event="audit.failed", url="http://127.0.0.1/h", now=utcnow()
        )
    with session_scope(database_url) as session:
        store.delete_audit(session, audit_id=audit_id)
    with session_scope(database_url) as session:
        remaining = store.get_delivery(session, delivery_id="d1")

    assert remaining is None
