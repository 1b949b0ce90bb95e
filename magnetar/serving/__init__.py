"""Serving: what the gateway's read and catalog services decide, without gRPC or I/O.

Servicers translate Protobuf to the requests here and back; these modules check the
requests against the documented limits, call the personalization core and the stores
through ports, and raise `magnetar.errors` that the gateway maps to status codes.
"""
