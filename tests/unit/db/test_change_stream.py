"""The change stream's payloads: under PostgreSQL's 8,000-byte limit, and read back whole."""

from __future__ import annotations

from magnetar.db.change_stream import MAX_MESSAGES, Change, everything, parse, payloads


def test_ids_are_split_into_messages_under_the_limit_and_read_back_whole() -> None:
    users = [f"user-{n:05d}" for n in range(700)]
    items = [f"item-{n:05d}-ü" for n in range(600)]
    messages = payloads("shop", users, items)
    assert len(messages) > 1
    assert all(len(m.encode()) < 8000 for m in messages)
    changes = [parse(m) for m in messages]
    assert all(c is not None and c.tenant_id == "shop" for c in changes)
    assert sorted(u for c in changes if c for u in c.users) == users
    assert sorted(i for c in changes if c for i in c.items) == sorted(items)


def test_too_many_ids_become_one_message_for_the_whole_tenant() -> None:
    users = [f"user-{n:06d}-{'x' * 100}" for n in range(MAX_MESSAGES * 80)]
    assert [parse(m) for m in payloads("shop", users)] == [Change("shop", everything=True)]
    # What a rebuild's switch sends on purpose reads the same.
    assert parse(everything("shop")) == Change("shop", everything=True)


def test_nothing_changed_sends_nothing_and_garbage_is_not_a_change() -> None:
    assert payloads("shop") == []
    assert parse("not json") is None
    assert parse('{"u": ["a"]}') is None
