"""The git commit and dirty flag of the directory a run starts in.

The two git commands are started without waiting (``GitProbe``) so that ``wbg run`` can
launch its child at once and collect the answer afterwards. Outside a work tree, or with no
git installed, both values are None; this never fails a run.
"""

from __future__ import annotations

import os
import subprocess

TIMEOUT_S = 5.0


class GitProbe:
    """Asks git for HEAD and for uncommitted changes to tracked files, in the background."""

    def __init__(self, cwd: str | None = None) -> None:
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        self._procs: list[subprocess.Popen[bytes]] = []
        if not in_work_tree(cwd):
            return
        for args in (
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            ["git", "status", "--porcelain", "--untracked-files=no"],
        ):
            try:
                proc = subprocess.Popen(
                    args,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            except OSError:
                return
            self._procs.append(proc)

    def result(self) -> tuple[str | None, bool | None]:
        """``(commit, dirty)``; waits for git at most ``TIMEOUT_S`` seconds."""
        if len(self._procs) != 2:
            return None, None
        outputs = []
        for proc in self._procs:
            try:
                out, _ = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                outputs.append(None)
                continue
            outputs.append(out.decode("utf-8", "replace").strip() if proc.returncode == 0 else None)
        commit, status = outputs
        if not commit:
            return None, None
        return commit, None if status is None else bool(status)


def in_work_tree(cwd: str | None = None) -> bool:
    """Whether git could find a repository from ``cwd``: a ``.git`` in it or a parent (or
    ``GIT_DIR`` set). A few ``stat`` calls instead of two git processes outside a repository."""
    if os.environ.get("GIT_DIR"):
        return True
    folder = os.path.abspath(cwd or os.getcwd())
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


_known: dict[tuple[int, str], tuple[str | None, bool | None]] = {}


def git_info(cwd: str | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of ``cwd``, asked of git once per process and directory: a
    process that starts many runs (a sweep, K folds) pays for git once."""
    key = (os.getpid(), os.path.abspath(cwd or os.getcwd()))
    if key not in _known:
        _known[key] = GitProbe(cwd).result()
    return _known[key]
