"""SerDe that keeps payloads as bytes.

Pulsar's default Python SerDe turns any payload that happens to be valid UTF-8 (or an int,
or a float) into `str`/`int`/`float`, which would corrupt Protobuf bytes. Functions name
this class for their inputs and for what they publish.
"""

from __future__ import annotations

from pulsar import SerDe


class RawBytesSerDe(SerDe):  # type: ignore[misc]
    def serialize(self, input: bytes) -> bytes:
        return bytes(input)

    def deserialize(self, input_bytes: bytes) -> bytes:
        return bytes(input_bytes)


SERDE_CLASS = f"{RawBytesSerDe.__module__}.{RawBytesSerDe.__name__}"
