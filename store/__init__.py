"""wbg: group ML runs into experiments, locally (one SQLite file, no server).

    import wbg
    with wbg.init(group="exp_1", job_type="train", config={"lr": 0.1}) as run:
        run.log({"loss": 0.5})

The module is shaped as ``wandb``'s, so ``import wbg as wandb`` keeps a W&B script
working: ``wbg.run``, ``wbg.config``, ``wbg.summary``, ``wbg.log``, ``wbg.finish``,
``wbg.define_metric`` and the rest (README, "Coming from W&B"). The API is loaded on first
use so that ``import wbg`` stays cheap.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from wbg.ids import generate_id

__all__ = [
    "Run",
    "config",
    "define_metric",
    "finish",
    "generate_id",
    "init",
    "log",
    "run",
    "summary",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from wbg.api import Run, define_metric, finish, init, log

# Names served by wbg.api, and by wbg.compat (wandb's surface wbg accepts).
_API = frozenset(
    [
        "init",
        "finish",
        "Run",
        "log",
        "define_metric",
        "save",
        "watch",
        "unwatch",
        "alert",
        "log_artifact",
        "use_artifact",
        "log_model",
        "use_model",
        "link_model",
        "log_code",
        "mark_preempting",
    ]
)
_COMPAT = frozenset(
    [
        "Settings",
        "Table",
        "Image",
        "Histogram",
        "Html",
        "Video",
        "Audio",
        "Object3D",
        "Molecule",
        "Plotly",
        "Graph",
        "Artifact",
        "AlertLevel",
        "login",
        "termlog",
        "termwarn",
        "termerror",
        "plot",
    ]
)
_ERRORS = frozenset(("Error", "UsageError", "ConfigError"))


def __getattr__(name: str) -> Any:
    if name == "__version__":  # written once, in pyproject.toml
        from importlib.metadata import version

        return version("wbg")
    # ``wbg.run``, ``wbg.config`` and ``wbg.summary`` follow the current run, as wandb's
    # module attributes do: read here at every access instead of being rebound.
    if name == "run":
        api = sys.modules.get("wbg.api")
        return api.current() if api is not None else None
    if name in ("config", "summary"):
        api = sys.modules.get("wbg.api")
        run = api.current() if api is not None else None
        if run is not None:
            return getattr(run, name)
        from wbg.compat import PreInit

        return PreInit(f"wbg.{name}")
    if name in _API:
        from wbg import api

        return getattr(api, name)
    if name in _COMPAT:
        from wbg import compat

        return getattr(compat, name)
    if name in _ERRORS:
        from wbg import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'wbg' has no attribute {name!r}")
