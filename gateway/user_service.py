"""`magnetar.v1.UserService`: proto in, `UserErasure` (the domain), proto out.

DeleteUser answers only once no gateway process serves the user from memory: this process
drops the user itself and waits (up to `ERASURE_ECHO_S`) until its change listener has
heard the erasure's commit, then `ERASURE_SPREAD_S` for the other processes' listeners
(docs/serving.md, "DeleteUser"). It then sends the pipeline a marker per subject.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import timestamp_pb2

from gateway.blocking import in_thread
from gateway.event_publisher import EventPublisher
from gateway.interceptors import current_tenant
from gateway.serving_memory import ERASURE_ECHO_S, ERASURE_SPREAD_S, MemoryFeed
from magnetar.raw_events import erasure_marker
from magnetar.serving.erasure import UserErasure
from magnetar.v1 import user_service_pb2 as pb
from magnetar.v1 import user_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["UserService"].full_name


class UserService(pb_grpc.UserServiceServicer):
    def __init__(
        self,
        erasure: UserErasure,
        feed: MemoryFeed,
        markers: EventPublisher,
    ) -> None:
        self._erasure = erasure
        self._feed = feed
        self._markers = markers

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: Any
    ) -> pb.DeleteUserResponse:
        tenant = current_tenant()
        subjects = [s for s in (request.user_id, request.anonymous_id) if s]
        feed = self._feed if self._feed.listener.connected else None
        heard = [(s, feed.listener.expect(tenant, s)) for s in subjects] if feed else []
        try:
            report = await in_thread(
                context, self._erasure.delete_user, tenant, request.user_id, request.anonymous_id
            )
            if feed is not None:
                for subject, seen in heard:
                    feed.memory.forget_user(tenant, subject)
                    await asyncio.to_thread(seen.wait, ERASURE_ECHO_S)
                await asyncio.sleep(ERASURE_SPREAD_S)
        finally:
            if feed is not None:
                for subject, seen in heard:
                    feed.listener.forget(tenant, subject, seen)
        # The pipeline forgets the subjects' sessions too: a marker per subject, down the raw
        # topic behind the subject's earlier events. A failed send fails the call; a retry
        # erases again (nothing left) and resends.
        markers = [
            erasure_marker(user_id=request.user_id) if request.user_id else None,
            erasure_marker(anonymous_id=request.anonymous_id) if request.anonymous_id else None,
        ]
        await self._markers.publish(
            tenant, [m for m in markers if m is not None], context.time_remaining()
        )
        deleted_before = timestamp_pb2.Timestamp()
        deleted_before.FromMilliseconds(report.erased_before_ms)
        return pb.DeleteUserResponse(
            deleted=[pb.DeletedRows(table=table, count=count) for table, count in report.deleted],
            deleted_before=deleted_before,
        )
