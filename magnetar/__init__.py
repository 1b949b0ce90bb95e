"""Magnetar: multi-tenant, real-time personalization on Apache Pulsar."""

__version__ = "0.1.0"
