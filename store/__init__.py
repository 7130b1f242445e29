"""wbg: group ML runs into experiments, locally (one SQLite file, no server).

    import wbg
    with wbg.init(group="exp_1", job_type="train", config={"lr": 0.1}) as run:
        run.log({"loss": 0.5})

The API is loaded on first use so that ``import wbg`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wbg.ids import generate_id

__all__ = ["Run", "finish", "generate_id", "init", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from wbg.api import Run, finish, init


def __getattr__(name: str) -> Any:
    if name == "__version__":  # written once, in pyproject.toml
        from importlib.metadata import version

        return version("wbg")
    if name in ("init", "finish", "Run"):
        from wbg import api

        return getattr(api, name)
    raise AttributeError(f"module 'wbg' has no attribute {name!r}")
