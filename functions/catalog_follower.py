"""The tenant's catalog as a table view that follows the compacted ``catalog/items`` topic.

The initial load is synchronous, so the first events already join against the whole
catalog; a background thread then applies each later record (latest per item key), so an
upsert shows up in joins within moments. One unreadable record is skipped, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pulsar

from functions.logic.catalog_view import CatalogItem, CatalogView
from magnetar.v1 import catalog_service_pb2

log = logging.getLogger(__name__)


def decode_catalog_item(payload: bytes) -> CatalogItem:
    item = catalog_service_pb2.Item()
    item.ParseFromString(payload)
    return CatalogItem(
        item_id=item.item_id,
        title=item.title,
        categories=tuple(item.categories),
        # proto3 has no presence for doubles: a zero price means "not given".
        price=item.price or None,
    )


class CatalogFollower:
    """Keeps `view` current from the catalog topic.

    On a client of its own (see `functions.runtime.own_client`), and a reader rather than a
    TableView, whose callbacks would run on that client's listener thread.
    """

    def __init__(self, view: CatalogView) -> None:
        self._view = view
        self._reader: Any = None

    def load(self, client: Any, topic: str) -> Any:
        """Apply the compacted topic up to its end; the reader, positioned there."""
        reader = client.create_reader(topic, pulsar.MessageId.earliest, is_read_compacted=True)
        while reader.has_message_available():
            self._apply(reader.read_next())
        return reader

    def follow(self, client: Any, topic: str) -> None:
        self._reader = self.load(client, topic)
        threading.Thread(target=self._keep_following, name="catalog", daemon=True).start()

    def _keep_following(self) -> None:
        while True:
            try:
                message = self._reader.read_next(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            except Exception:
                log.exception("catalog reader failed; retrying")
                time.sleep(1)
                continue
            self._apply(message)

    def _apply(self, message: Any) -> None:
        self.on_record(message.partition_key(), message.data())

    def on_record(self, key: str, payload: bytes | None) -> None:
        try:
            self._view.apply_message(key, payload, decode_catalog_item)
        except Exception:
            # One corrupt catalog record must not stop the view; the item stays as it was.
            log.exception("skipping unreadable catalog record %r", key)
