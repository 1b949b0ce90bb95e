"""`magnetar.v1.UserService`: proto in, `UserErasure` (the domain), proto out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from gateway.blocking import in_thread
from gateway.interceptors import current_tenant
from magnetar.db.user_erasure import PostgresErasureStore
from magnetar.serving.erasure import UserErasure
from magnetar.v1 import user_service_pb2 as pb
from magnetar.v1 import user_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the server imports this module to mount it by default
    from gateway.server import GatewayDeps

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["UserService"].full_name


class UserService(pb_grpc.UserServiceServicer):
    def __init__(self, erasure: UserErasure) -> None:
        self._erasure = erasure

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: Any
    ) -> pb.DeleteUserResponse:
        report = await in_thread(
            context,
            self._erasure.delete_user,
            current_tenant(),
            request.user_id,
            request.anonymous_id,
        )
        deleted_before = timestamp_pb2.Timestamp()
        deleted_before.FromMilliseconds(report.erased_before_ms)
        return pb.DeleteUserResponse(
            deleted=[pb.DeletedRows(table=table, count=count) for table, count in report.deleted],
            deleted_before=deleted_before,
        )


def mount_user_service(server: Any, deps: GatewayDeps) -> str:
    erasure = UserErasure(PostgresErasureStore(deps.sessions))
    pb_grpc.add_UserServiceServicer_to_server(UserService(erasure), server)
    return str(SERVICE_NAME)
