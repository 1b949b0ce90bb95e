"""The local stack: a real Pulsar standalone and PostgreSQL on this machine, for dev and tests."""
