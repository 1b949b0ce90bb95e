"""A tenant's state is rebuilt while its events stream in: nothing accepted is lost or
counted twice.

The fault is the rebuild itself (`tenants.rebuild.Rebuild`, what `magnetar tenants rebuild`
runs), run from this checkout on each pipeline of the scenario while the stream flows: the
replay, the hold of the pipeline, the catch-up and the switch all land mid-stream, and the
stream goes on for a while after the last switch (`RunOptions.stream_through_fault`), so the
pipeline counts on top of the rebuilt state. The audit then compares the tenant's ledger and
aggregates with what was accepted, as for every scenario.

The control is the pipeline without its ledger: what the catch-up folded into the rebuilt
state while the pipeline was held — its batch waiting on the lock, the messages it had
received but not committed — is counted again once it resumes. The protected pipeline finds
those ids in the ledger the switch carried over. Both rebuilds run with
`allow_history_loss`: the ledger-less control's counter is not comparable with a rebuild's,
and the audit, not the rebuild's own check, is the judge here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tenants.rebuild import Rebuild, RebuildOptions
from tests.faults.harness import progress
from tests.faults.scenarios import Fault, RunOptions, ScenarioResult, run_scenario
from tests.integration.pipeline_support import Pipeline

# The stream goes on this long after the last switch.
AFTER_SWITCH_S = 3.0


def rebuild_each(max_hold_s: float = 10.0) -> Fault:
    def fault(pipes: Sequence[Pipeline]) -> list[str]:
        notes = []
        for pipe in pipes:
            options = RebuildOptions(allow_history_loss=True, max_hold_s=max_hold_s)
            with Rebuild(pipe.settings, pipe.tenant, options) as rebuild:
                rebuild.open()
                rebuild.replay()
                report = rebuild.switch()
            if not report.switched:
                raise AssertionError(f"{pipe.tenant}: the rebuild did not switch: {report}")
            counts = report.counts
            progress(
                f"rebuilt {pipe.tenant}: {counts.read} replayed, {counts.counted} counted, "
                f"held {report.hold_s:.2f}s"
            )
            notes.append(f"{counts.read} replayed, held {report.hold_s:.2f}s")
        time.sleep(AFTER_SWITCH_S)
        return notes

    return fault


def rebuild_during_ingest(
    settings: Settings, admin: PulsarAdmin, options: RunOptions
) -> list[ScenarioResult]:
    return run_scenario(settings, admin, "rebuild during ingest", rebuild_each(), options)
