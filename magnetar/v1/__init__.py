"""Generated from proto/magnetar/v1 by scripts/generate_proto.py. Do not edit."""
