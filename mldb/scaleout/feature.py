"""The scale-out feature: mldb's SET / RESET / SHOW settings and the rule that recognises what goes out.

Its rule comes last (features._load), so it sees every other feature's rewrite done."""

from __future__ import annotations

from mldb.features import Feature
from mldb.frontend.settings import ResetSetting, SetSetting, ShowSetting
from mldb.scaleout import plan, settings

FEATURE = Feature(
    name="scaleout",
    rules=(plan.rewrite_scaleout,),
    statements={
        SetSetting: settings.set_setting,
        ResetSetting: settings.reset_setting,
        ShowSetting: settings.show_setting,
    },
)
