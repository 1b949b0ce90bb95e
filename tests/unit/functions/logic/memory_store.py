"""`functions.logic.state_port.KeyValueStore` in memory, for the unit tests."""

from __future__ import annotations


class InMemoryStore:
    """Dict-backed stand-in for a Function's managed state.

    Two logic objects built over the same instance behave like a Function restarted over
    the same durable table.
    """

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.reads = 0
        self.writes = 0
        self.deletes = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        return self.values.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.writes += 1
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.deletes += 1
        self.values.pop(key, None)
