"""Serving memory: a read that raced a change is not kept; bounded; keyed by tenant."""

from __future__ import annotations

from magnetar.db.change_stream import Change
from magnetar.serving.memory import ServingMemory


def _live(**bounds: int) -> ServingMemory:
    memory = ServingMemory(**bounds)
    memory.set_live(True)
    return memory


def test_a_read_that_started_before_a_change_of_its_user_is_not_kept() -> None:
    memory = _live()
    token = memory.token()
    memory.invalidate(Change("shop", users=("ann",)))
    memory.put_user("shop", "ann", "rows read before the change", token)
    assert memory.user("shop", "ann") is None
    # Another user's change does not stop the fill; a read after the change is kept.
    memory.put_user("shop", "bob", "bob's rows", token)
    memory.put_user("shop", "ann", "fresh rows", memory.token())
    assert memory.user("shop", "bob") == "bob's rows"
    assert memory.user("shop", "ann") == "fresh rows"


def test_a_change_drops_the_user_and_a_tenant_wide_change_drops_the_tenant() -> None:
    memory = _live()
    for tenant in ("shop", "other"):
        memory.put_user(tenant, "ann", f"{tenant} rows", memory.token())
    memory.invalidate(Change("shop", users=("ann",)))
    assert memory.user("shop", "ann") is None
    assert memory.user("other", "ann") == "other rows"
    memory.invalidate(Change("other", everything=True))
    assert memory.user("other", "ann") is None


def test_nothing_is_kept_while_the_stream_is_down_nor_across_a_reconnect() -> None:
    memory = ServingMemory()
    memory.put_user("shop", "ann", "rows", memory.token())
    assert memory.user("shop", "ann") is None
    memory.set_live(True)
    token = memory.token()
    memory.set_live(True)  # reconnected: changes may have been missed meanwhile
    memory.put_user("shop", "ann", "rows", token)
    assert memory.user("shop", "ann") is None


def test_each_tenant_holds_at_most_max_users_least_recently_used_out() -> None:
    memory = _live(max_users=2)
    for user in ("a", "b"):
        memory.put_user("shop", user, user, memory.token())
    memory.user("shop", "a")
    memory.put_user("shop", "c", "c", memory.token())
    assert memory.user("shop", "b") is None
    assert memory.user("shop", "a") == "a" and memory.user("shop", "c") == "c"
    memory.put_user("other", "x", "x", memory.token())
    assert memory.sizes() == {"shop": (2, 0, 0), "other": (1, 0, 0)}
