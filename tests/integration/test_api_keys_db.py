"""API keys in the real PostgreSQL: the CLI, hashing at rest, and row-level security."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from cli.main import main
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope, secret_sha256
from magnetar.db.engine import make_engine, make_sessionmaker, tenant_transaction
from magnetar.settings import Settings
from tests.integration.conftest import unique_name
from tests.integration.gateway_harness import add_tenant_row, remove_tenant_row

pytestmark = pytest.mark.integration


@pytest.fixture
def two_tenants(settings: Settings) -> Iterator[tuple[str, str]]:
    first, second = unique_name("ka"), unique_name("kb")
    for tenant in (first, second):
        add_tenant_row(settings, tenant)
    yield first, second
    for tenant in (first, second):
        remove_tenant_row(settings, tenant)


def test_cli_creates_a_key_that_authenticates_and_stores_only_its_hash(
    two_tenants: tuple[str, str],
    key_store: ApiKeyStore,
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
) -> None:
    tenant, _ = two_tenants
    assert main(["keys", "create", "--tenant", tenant, "--scope", "ingest", "--scope", "read"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith(f"mgk.{tenant}.")
    key_id = secret.split(".")[2]
    stored = key_store.find(tenant, key_id)
    assert stored is not None
    assert stored.scopes == {Scope.INGEST, Scope.READ}
    assert stored.secret_sha256 == secret_sha256(secret)
    engine = make_engine(settings.database_url, pool_size=1)
    with tenant_transaction(make_sessionmaker(engine), tenant) as session:
        row = session.execute(text("SELECT * FROM api_keys WHERE key_id = :k"), {"k": key_id}).one()
    engine.dispose()
    assert secret.encode() not in b"".join(str(v).encode() for v in row)  # no clear text at rest


def test_cli_creates_a_manage_key(
    two_tenants: tuple[str, str], key_store: ApiKeyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, _ = two_tenants
    assert main(["keys", "create", "--tenant", tenant, "--scope", "manage"]) == 0
    key_id = capsys.readouterr().out.strip().split(".")[2]
    stored = key_store.find(tenant, key_id)
    assert stored is not None and stored.scopes == {Scope.MANAGE}


def test_cli_refuses_admin_scope_and_unknown_tenants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tenant", unique_name("none"), "--scope", "ingest"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["keys", "create", "--tenant", "whatever", "--scope", "admin"]) == 1


def test_revoke_via_cli_marks_the_key(
    two_tenants: tuple[str, str], key_store: ApiKeyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, _ = two_tenants
    minted, _ = key_store.create(tenant, [Scope.READ])
    assert main(["keys", "revoke", "--tenant", tenant, minted.key_id]) == 0
    found = key_store.find(tenant, minted.key_id)
    assert found is not None and found.revoked
    assert key_store.list(tenant) == []
    assert [k.key_id for k in key_store.list(tenant, include_revoked=True)] == [minted.key_id]


def test_row_level_security_hides_other_tenants_keys(
    two_tenants: tuple[str, str], key_store: ApiKeyStore, settings: Settings
) -> None:
    mine, theirs = two_tenants
    their_key, _ = key_store.create(theirs, [Scope.INGEST])
    assert key_store.find(mine, their_key.key_id) is None
    engine = make_engine(settings.database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    try:
        with tenant_transaction(sessions, mine) as session:
            visible = session.execute(
                text("SELECT count(*) FROM api_keys WHERE tenant_id = :t"), {"t": theirs}
            )
            assert visible.scalar_one() == 0
            updated = session.execute(
                text("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = :t"), {"t": theirs}
            )
            assert updated.rowcount == 0  # type: ignore[attr-defined]
        with sessions.begin() as session:  # no tenant set at all: nothing visible
            assert session.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 0
        with (
            pytest.raises(Exception, match="row-level security"),
            tenant_transaction(sessions, mine) as session,
        ):
            session.execute(
                text(
                    "INSERT INTO api_keys (tenant_id, key_id, secret_sha256, scopes) "
                    "VALUES (:t, 'ffffffffffffffff', decode(repeat('00', 32), 'hex'), ARRAY['read'])"
                ),
                {"t": theirs},
            )
    finally:
        engine.dispose()
    assert key_store.find(theirs, their_key.key_id) is not None
    assert not key_store.find(theirs, their_key.key_id).revoked  # type: ignore[union-attr]
