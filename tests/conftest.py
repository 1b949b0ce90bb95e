"""Shared test configuration: integration tests start the real stack once per session."""
