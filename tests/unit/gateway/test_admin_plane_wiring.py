"""Which process holds which credential: the public gateway serves tenants' services with
stored producer tokens and no platform credential; the admin plane serves TenantService."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.admin_server import require_admin_key
from gateway.event_publisher import SharedToken
from gateway.producer_tokens import StoredProducerTokens, producer_credentials
from gateway.wiring import PlatformKeyOnly
from magnetar.errors import FailedPrecondition
from magnetar.problems import EnvironmentProblem
from magnetar.pulsar_tokens import tenant_role, token_role
from magnetar.settings import Settings
from tenants.wiring import role_token_signer

MISSING = "/nonexistent/never-read"


class Tokens:
    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.asked: list[str] = []

    def producer_token(self, tenant_id: str) -> str | None:
        self.asked.append(tenant_id)
        return self.tokens.get(tenant_id)


def test_by_default_the_gateway_reads_stored_tokens_and_never_the_platform_files() -> None:
    settings = Settings(pulsar_admin_token_file=MISSING, pulsar_token_secret_key_file=MISSING)
    credentials = producer_credentials(settings, Tokens({}))
    assert isinstance(credentials, StoredProducerTokens)


def test_stored_tokens_are_read_per_tenant_and_a_missing_one_says_how_to_issue_it() -> None:
    source = Tokens({"acme": "token-of-acme"})
    credentials = StoredProducerTokens(source)
    assert credentials.token_for("acme") == "token-of-acme"
    with pytest.raises(FailedPrecondition) as refused:
        credentials.token_for("bolt")
    assert refused.value.reason == "PRODUCER_TOKEN_MISSING"
    assert "magnetar tenants issue-producer-tokens" in refused.value.message
    assert source.asked == ["acme", "bolt"]


def test_the_superuser_opt_out_is_explicit(tmp_path: Path) -> None:
    token_file = tmp_path / "superuser"
    token_file.write_text("superuser-token\n")
    settings = Settings(producer_credentials="superuser", pulsar_admin_token_file=str(token_file))
    source = Tokens({})
    credentials = producer_credentials(settings, source)
    assert credentials == SharedToken("superuser-token")
    assert source.asked == []


def test_an_unknown_producer_credentials_value_is_refused_by_name() -> None:
    with pytest.raises(EnvironmentProblem) as refused:
        Settings(producer_credentials="signing-key")
    assert "producer_credentials" in str(refused.value)


def test_the_admin_plane_signs_with_the_key_file_and_without_one_does_not(tmp_path: Path) -> None:
    assert role_token_signer(Settings()) is None
    key = tmp_path / "secret.key"
    key.write_bytes(b"s" * 32)
    sign = role_token_signer(Settings(pulsar_token_secret_key_file=str(key)))
    assert sign is not None
    assert token_role(sign("acme"), b"s" * 32) == tenant_role("acme")


def test_the_admin_plane_refuses_to_start_without_the_admin_key() -> None:
    with pytest.raises(EnvironmentProblem):
        require_admin_key(Settings(admin_api_key=""))
    require_admin_key(Settings(admin_api_key="mga_x"))


def test_the_admin_plane_knows_no_tenant_key() -> None:
    assert PlatformKeyOnly().find("acme", "k1") is None
