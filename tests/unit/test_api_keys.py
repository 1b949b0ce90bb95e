"""API key format, hashing and scopes."""

from __future__ import annotations

import pytest

from magnetar.api_keys import (
    Scope,
    bearer_token,
    mint_key,
    parse_key,
    parse_scopes,
    secret_matches,
    secret_sha256,
)
from magnetar.errors import InvalidArgument, Unauthenticated


def test_a_minted_key_carries_its_tenant_and_id_and_parses_back() -> None:
    minted = mint_key("acme-shop")
    parsed = parse_key(minted.secret)
    assert (parsed.tenant_id, parsed.key_id) == ("acme-shop", minted.key_id)
    assert minted.secret.startswith(f"mgk.acme-shop.{minted.key_id}.")


def test_keys_are_unique_and_only_their_hash_matches() -> None:
    first, second = mint_key("acme"), mint_key("acme")
    assert first.secret != second.secret
    assert first.secret_sha256 == secret_sha256(first.secret)
    assert len(first.secret_sha256) == 32
    assert secret_matches(first.secret, first.secret_sha256)
    assert not secret_matches(second.secret, first.secret_sha256)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "mgk.acme",
        "xyz.acme.0123456789abcdef." + "A" * 43,
        "mgk.ACME.0123456789abcdef." + "A" * 43,
        "mgk.acme.0123456789ABCDEF." + "A" * 43,
        "mgk.acme.0123456789abcdef." + "A" * 42,
        "mgk.acme.0123456789abcdef." + "A" * 43 + ".x",
    ],
)
def test_malformed_keys_are_unauthenticated(secret: str) -> None:
    with pytest.raises(Unauthenticated):
        parse_key(secret)


def test_bearer_token_is_case_insensitive_on_the_scheme() -> None:
    assert bearer_token("bearer abc ") == "abc"
    assert bearer_token("Bearer abc") == "abc"


def test_tenant_keys_get_ingest_read_or_manage_never_admin() -> None:
    assert parse_scopes(["ingest", "READ"]) == {Scope.INGEST, Scope.READ}
    assert parse_scopes(["manage"]) == {Scope.MANAGE}
    with pytest.raises(InvalidArgument, match="cannot be given"):
        parse_scopes(["admin"])
    with pytest.raises(InvalidArgument, match="unknown scope"):
        parse_scopes(["write"])
    with pytest.raises(InvalidArgument):
        parse_scopes([])


def test_minting_for_an_invalid_tenant_id_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        mint_key("Not A Slug")
