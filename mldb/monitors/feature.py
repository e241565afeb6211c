"""The monitors feature: CREATE / RUN / SHOW / ALTER / DROP MONITOR and ACKNOWLEDGE ALERT, and the
per-database record of which monitors are running (so a monitor never overlaps itself)."""

from __future__ import annotations

from mldb.features import Feature
from mldb.frontend.monitors import (AcknowledgeAlert, AlterMonitor, CreateMonitor, DropMonitor, RunMonitor,
                                    ShowMonitors)
from mldb.monitors import runner, statements

FEATURE = Feature(
    name="monitors",
    statements={
        CreateMonitor: statements.create_monitor,
        RunMonitor: statements.run_monitor,
        ShowMonitors: statements.show_monitors,
        AlterMonitor: statements.alter_monitor,
        DropMonitor: statements.drop_monitor,
        AcknowledgeAlert: statements.acknowledge_alert,
    },
    make_state=runner.MonitorState,
)
