"""The largest request message each RPC accepts, checked before authentication.

The transport's own bound (`GatewayOptions.max_receive_bytes`, 8 MiB) has to fit the
largest legitimate request — an Ingest batch of 1,000 events of up to 16 KiB — so by itself
it would let an anonymous caller have 8 MiB parsed into any method. Each method gets its own
bound instead, from what its contract allows (the .proto limits); a larger request is
refused with RESOURCE_EXHAUSTED (`REQUEST_TOO_LARGE`, naming the method's bound) before the
message is parsed and before any key lookup. The bytes themselves were already received by
gRPC's core: the transport's bound is what limits that.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB

# Batches: Ingest and StreamEvents (1,000 events of ≤ 16 KiB), UpsertItems (1,000 items with
# attributes).
BATCH_BYTES = 8 * MIB
# Recommend may exclude 1,000 item ids of ≤ 128 bytes (~130 KiB with framing).
RECOMMEND_BYTES = 256 * KIB
# Everything else names a few ids and settings.
DEFAULT_BYTES = 64 * KIB

LARGER_METHODS = {
    "/magnetar.v1.EventService/Ingest": BATCH_BYTES,
    "/magnetar.v1.EventService/StreamEvents": BATCH_BYTES,
    "/magnetar.v1.CatalogService/UpsertItems": BATCH_BYTES,
    "/magnetar.v1.PersonalizationService/Recommend": RECOMMEND_BYTES,
}


def max_request_bytes(method: str) -> int:
    """The bound of `method` (a full gRPC method name), DEFAULT_BYTES unless listed."""
    return LARGER_METHODS.get(method, DEFAULT_BYTES)
