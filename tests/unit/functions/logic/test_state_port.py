from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from functions.logic.state_port import FunctionContextStore


class RecordingContext:
    """The managed-state methods of a Pulsar Function context, typed as the runtime's are.

    Like Pulsar's Python runtime, ``put_state`` takes text and stores its UTF-8 bytes, and
    ``get_state`` answers with those bytes.
    """

    def __init__(self) -> None:
        self.state: dict[str, bytes] = {}
        self.deleted: list[str] = []

    def get_state(self, key: str) -> bytes | None:
        return self.state.get(key)

    def put_state(self, key: str, value: str) -> None:
        self.state[key] = value.encode("utf-8")

    def del_counter(self, key: str) -> None:
        self.deleted.append(key)
        self.state.pop(key, None)


def test_context_store_reads_and_writes_managed_state() -> None:
    context = RecordingContext()
    store = FunctionContextStore(context)

    store.put("k", b"v")

    assert "k" in context.state
    assert store.get("k") == b"v"
    assert store.get("missing") is None


@given(st.binary(min_size=1, max_size=256))
def test_any_bytes_survive_the_text_only_put_state(value: bytes) -> None:
    store = FunctionContextStore(RecordingContext())

    store.put("k", value)

    assert store.get("k") == value


def test_context_store_reads_an_empty_value_as_absent() -> None:
    context = RecordingContext()
    context.state["k"] = b""

    assert FunctionContextStore(context).get("k") is None


def test_context_store_deletes_through_del_counter_which_deletes_any_key() -> None:
    context = RecordingContext()
    store = FunctionContextStore(context)
    store.put("k", b"v")

    store.delete("k")

    assert context.deleted == ["k"]
    assert store.get("k") is None
