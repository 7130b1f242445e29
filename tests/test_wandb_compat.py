"""Differential tests: the same W&B script under the real ``wandb`` (offline, then
``wbg import wandb``) and under ``import wbg as wandb`` must record the same runs.

Each script in ``wandb_scripts/`` is written for wandb. The wbg side changes exactly one
line (``import wandb`` -> ``import wbg as wandb``). The two databases must agree on runs,
project, group, job_type, name, tags, notes, state, config, summary and history, except for
the differences the README lists under "Coming from W&B" (``KEPT_DIFFERENTLY`` below).
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import PY, no_database, run_wbg

pytest.importorskip("wandb")

SCRIPTS = Path(__file__).parent / "wandb_scripts"
SCRIPT_NAMES = sorted(p.stem for p in SCRIPTS.glob("*.py"))

# Summary keys a script's W&B recording holds in another form (README, "Coming from W&B"):
# media objects are kept as a description, not as W&B's file references.
KEPT_DIFFERENTLY = {"value_types": {"summary": {"hist", "table", "img"}}}


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBG_"))}
    env.update(WANDB_SILENT="true", WANDB_DIR=str(tmp / "wandb-dir"), WANDB_MODE="offline")
    env["WANDB_CONSOLE"] = "off"
    return env


def _run(script: Path, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [PY, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"


def record_with_wandb(name: str, tmp: Path) -> Path:
    work = tmp / "with-wandb"
    work.mkdir()
    env = _clean_env(tmp)
    _run(SCRIPTS / f"{name}.py", work, env)
    db = tmp / "wandb.db"
    logs = tmp / "wandb-dir" / "wandb"
    if logs.exists():
        imported = run_wbg("import", "wandb", str(logs), env={**env, "WBG_DB": str(db)})
        assert imported.returncode == 0, imported.stderr
    return db


def record_with_wbg(name: str, tmp: Path) -> Path:
    work = tmp / "with-wbg"
    work.mkdir()
    source = (SCRIPTS / f"{name}.py").read_text()
    assert source.count("\nimport wandb\n") == 1
    script = work / f"{name}.py"
    script.write_text(source.replace("\nimport wandb\n", "\nimport wbg as wandb\n"))
    db = tmp / "wbg.db"
    _run(script, work, {**_clean_env(tmp), "WBG_DB": str(db)})
    return db


def _records(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    from wbg import db as dbmod
    from wbg import runs

    with contextlib.closing(dbmod.connect(db)) as conn:
        found = list(reversed(runs.list_runs(conn)))
        for record in found:
            record["history"] = {
                (p["step"], p["key"]): p["value"] for p in runs.get_history(conn, record["id"])
            }
    return found


def _comparable(record: dict[str, Any], skip: dict[str, set[str]]) -> dict[str, Any]:
    name = record["name"]
    return {
        "project": record["project"],
        "group": record["group"],
        "job_type": record["job_type"],
        "name": "<id>" if name == record["id"] else name,
        "tags": sorted(record["tags"]),
        "notes": record["notes"],
        "state": record["state"],
        "config": record["config"],
        "summary": {
            k: v
            for k, v in record["summary"].items()
            if not k.startswith("_") and k not in skip.get("summary", set())
        },
        "history": record["history"],
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, bool) or isinstance(b, bool):
            return a is b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        # W&B stores float32 values and rounds summaries through JSON: 1e-6 relative.
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for field in a:
        if not _same(a[field], b[field]):
            if isinstance(a[field], dict):
                keys = sorted(set(a[field]) | set(b[field]), key=str)
                for key in keys:
                    x, y = a[field].get(key, "<absent>"), b[field].get(key, "<absent>")
                    if not _same(x, y):
                        out.append(f"{field}[{key!r}]: wandb {x!r} != wbg {y!r}")
            else:
                out.append(f"{field}: wandb {a[field]!r} != wbg {b[field]!r}")
    return out


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_script_records_the_same_under_wandb_and_wbg(name: str, tmp_path: Path) -> None:
    with_wandb = _records(record_with_wandb(name, tmp_path))
    with_wbg = _records(record_with_wbg(name, tmp_path))
    skip = KEPT_DIFFERENTLY.get(name, {})
    assert len(with_wandb) == len(with_wbg), (
        f"wandb recorded {len(with_wandb)} runs, wbg {len(with_wbg)}"
    )
    for a, b in zip(with_wandb, with_wbg, strict=True):
        problems = _diff(_comparable(a, skip), _comparable(b, skip))
        assert not problems, "\n".join(problems)


@no_database
def test_every_script_is_collected() -> None:
    # A meta-test that proves its reach: the differential suite runs all nine scripts.
    assert len(SCRIPT_NAMES) == 9, SCRIPT_NAMES


@no_database
def test_wandb_import_is_the_one_changed_line() -> None:
    for name in SCRIPT_NAMES:
        assert (SCRIPTS / f"{name}.py").read_text().count("\nimport wandb\n") == 1, name


if __name__ == "__main__":  # pragma: no cover - run one script by hand
    sys.exit(pytest.main([__file__, "-k", sys.argv[1] if len(sys.argv) > 1 else ""]))
