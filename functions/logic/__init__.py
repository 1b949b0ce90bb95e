"""Pure decision logic of the `pipeline` Function's steps (dedupe, enrich).

Nothing in this package performs I/O or imports Pulsar or generated Protobuf code: the
Function decodes its input into :mod:`functions.logic.records`, calls the logic here with the
wall-clock time it read, and encodes what comes back; state that must survive a restart is
handed out by the logic and appended by the Function (docs/pipeline.md, "State")."""
