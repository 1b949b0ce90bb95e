"""The personalization core as pure logic: signals, folding events into state, serving.

Nothing in this package performs I/O. The materializer folds a batch of enriched events with
`fold.fold_events` and writes the resulting `StateDelta` once per key; the gateway answers
requests with `recommend` over any implementation of the `state.StateReader` port (PostgreSQL
in production, `memory_state.MemoryState` in tests and the offline evaluation).
"""
