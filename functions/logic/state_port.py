"""The key-value port that lets stream logic keep state across Function restarts.

Pulsar's Python Function context offers managed state backed by BookKeeper's table service,
one table per function (so per tenant, as functions are deployed per tenant) shared by all of
its instances: ``get_state(key) -> bytes | None``, ``put_state(key, str)`` and
``del_counter(key)``, which deletes any key, counter or value (Pulsar 4.0
``state_context.delete_key``). The logic (`functions.logic.segment_log`) depends only on the
protocol below; :class:`FunctionContextStore` adapts a context to it (the unit tests' fake
is ``tests/unit/functions/logic/memory_store.py``).

Every call is synchronous and may raise; the logic lets failures propagate so the runtime
nacks the message instead of acknowledging something that was not recorded.
"""

from __future__ import annotations

import base64
from typing import Protocol


class KeyValueStore(Protocol):
    """Durable bytes by string key; a missing key reads as ``None``."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


class FunctionStateContext(Protocol):
    """The part of ``pulsar.Context`` the adapter uses (duck-typed: no Pulsar import)."""

    def get_state(self, key: str) -> bytes | None: ...

    # Text, not bytes: the runtime hands it to the table client's ``put_str``, which
    # UTF-8-encodes it; ``get_state`` answers with the stored bytes.
    def put_state(self, key: str, value: str) -> None: ...

    def del_counter(self, key: str) -> None: ...


class FunctionContextStore:
    """`KeyValueStore` over a Pulsar Function context's managed state."""

    def __init__(self, context: FunctionStateContext) -> None:
        self._context = context

    def get(self, key: str) -> bytes | None:
        value = self._context.get_state(key)
        # The logic never stores an empty value, so an empty answer can only mean "nothing
        # there"; folding it into None keeps callers to a single absent case.
        if not value:
            return None
        return base64.b64decode(value)

    def put(self, key: str, value: bytes) -> None:
        # The Python runtime's put_state takes text (it UTF-8 encodes it) while get_state
        # answers with the stored bytes; base64 keeps arbitrary bytes intact both ways.
        self._context.put_state(key, base64.b64encode(value).decode("ascii"))

    def delete(self, key: str) -> None:
        self._context.del_counter(key)
