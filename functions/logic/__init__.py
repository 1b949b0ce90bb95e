"""Pure decision logic of the `pipeline` Function's steps (dedupe, enrich).

Nothing in this package performs I/O or imports Pulsar or generated Protobuf code: the
Function decodes its input into the records of :mod:`functions.logic.records`, calls the
logic here with the wall-clock time it read, and encodes what comes back. State that must
survive a restart is handed out by the logic and appended by the Function to a segment log
(:mod:`functions.logic.segment_log`) over the key-value port of
:mod:`functions.logic.state_port`, which it backs with Pulsar's managed state.

Modules:

- ``records``       the event and enriched-event records the logic works on
- ``state_port``    the key-value port and its adapter over a Function context
- ``segment_log``   durable state as time-stamped segments, a few writes a second
- ``dedupe_window`` has this event_id been seen within the window?
- ``validation``    semantic checks and the late/too-old/future policy (DLQ reasons)
- ``sessions``      30-minute-inactivity sessionization with stable ids
- ``devices``       device type, browser and OS from a user agent (ua-parser, LRU cached)
- ``catalog_view``  the compacted catalog topic as an in-memory table, and the join
- ``enrichment``    ``enrich``: validate → sessionize → device → catalog, or a DLQ routing
"""
