"""The Textual app behind ``wbg ui`` (imported only by that command: see ``wbg.cli.ui``).

Screens: the workspace (runs table + charts), a chart full-screen, a group page, a run
page, pickers and help. Every number comes from the library paths of the other commands:
group rows from ``wbg.aggregate.build_table`` (``wbg table``), curves from
``wbg.curves.select_runs`` + ``panel`` (``wbg plot``), the group page from
``wbg.groups.group_page`` (``wbg group show``), tag/move/delete from ``wbg.runs``
(``wbg runs tag|move|delete``).

Reading happens in worker threads, each with its own connection, so a 100,000-run
aggregation never freezes the keyboard; the app's own connection polls
``PRAGMA data_version`` twice a second and reloads the screen in view when another
process has committed (a running job logging points, a ``wbg runs tag`` elsewhere).
A load that is asked for while one of its kind runs is queued, never stacked: at most one
aggregation per kind at a time, however fast runs write.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import (
    DataTable,
    Footer,
    Input,
    Log,
    OptionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.option_list import Option

from wbg import aggregate, curves, groups, query, runs, workspace
from wbg.cli.chart import render_terminal
from wbg.cli.render import format_mean_spread, format_number, safe_text
from wbg.errors import InvalidInput, WbgError

SMOOTHING = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
PAGE_SIZE = 200  # table rows per page: a page is built at once, 100,000 runs never are
MEMBERS_SHOWN = 50  # runs listed under an expanded group row (all on the group page)
RUN_CHARTS = 4  # a run page charts the run's first metrics unless metrics were picked
UNGROUPED_LINES = 10  # with grouping off, the newest runs get a line each
POLL_S = 0.5  # change-counter poll: at most two reloads a second
REAP_EVERY = 10  # polls between looks for crashed runs (an indexed query of running runs)
RUNNING = "●"
MAX_COLUMN = 48  # widest table column (a longer cell is cut; the run page shows all)
AGGREGATES = ("count", "mean", "std")
_SGR = re.compile(r"\x1b\[[0-9;:]*m")  # colours: dropped from plain text


@dataclass
class WorkspaceSettings:
    """What the workspace shows; keys change it while the app runs."""

    filters: query.Filters
    group_by: list[str] | None = None  # None: as wbg table (by group when runs have one)
    grouped: bool = True
    metrics: list[str] = field(default_factory=list)  # charted metrics; [] = a default
    line: str = "mean"
    band: str = "minmax"
    x_axis: str = "step"
    smooth: float = 0.0

    def filter_text(self) -> str:
        parts = self.filters.options(short=True)
        scope = self.filters.project_from  # a default project, as the views note it
        if scope and self.filters.project is not None:
            parts[0] += f" (from {scope})"  # the project comes first
        return " ".join(parts) or "none"

    def chart_text(self) -> str:
        smooth = f", smooth {self.smooth:g}" if self.smooth else ""
        return f"{self.line}, band {self.band}, x {self.x_axis}{smooth}"


# --- what the screens show, computed off the UI thread ----------------------------------


@dataclass(frozen=True)
class Scope:
    """Which runs a chart draws and how they are grouped into lines."""

    filters: query.Filters
    keys: tuple[str, ...] | None  # curve grouping (None: the default of wbg plot)
    members: tuple[tuple[str, ...], tuple[Any, ...]] | None = None  # one group's runs only
    newest: int | None = None  # only the newest N runs (one line per run)

    def selection(self, conn) -> curves.Selection:
        keys = None if self.keys is None else list(self.keys)
        selection = curves.select_runs(conn, self.filters, keys)
        if self.members is not None:
            nums = workspace.member_nums(conn, self.filters, *self.members)
            selection = workspace.restrict(selection, nums)
        if self.newest is not None:
            selection = workspace.latest(selection, self.newest)
        return selection


def load_panels(
    path: Path, scope: Scope, metrics: Sequence[str], settings: WorkspaceSettings
) -> list[tuple[str, curves.Panel | str]]:
    """Each metric's panel, or the message saying why it has none (as wbg plot)."""
    with contextlib.closing(_connect(path)) as conn:
        selection = scope.selection(conn)
        found: list[tuple[str, curves.Panel | str]] = []
        for metric in metrics:
            try:
                found.append(
                    (
                        metric,
                        curves.panel(
                            conn,
                            metric,
                            selection,
                            line=settings.line,
                            band=settings.band,
                            smooth=settings.smooth,
                            x_axis=settings.x_axis,
                        ),
                    )
                )
            except WbgError as exc:
                found.append((metric, exc.message))
        return found


def _connect(path: Path):
    """A reading connection (as every reading command opens the file: nothing written)."""
    from wbg.db import connect

    return connect(path, read_only=True)


def default_metrics(path: Path) -> list[str]:
    """The metric charted when none was chosen: ``loss`` if logged, else the first."""
    with contextlib.closing(_connect(path)) as conn:
        names = [m for m in query.metric_names(conn) if m != aggregate.DURATION]
    return ["loss"] if "loss" in names else names[:1]


@dataclass
class Entry:
    """One row of the runs table: a group, a run (under a group when ``depth``), or the
    ``... N more`` line of an expanded group."""

    kind: str  # "group", "run", "more"
    group: tuple[Any, ...] = ()
    row: dict[str, Any] = field(default_factory=dict)
    depth: int = 0


@dataclass
class TableData:
    total: int  # runs selected
    grouped: bool
    keys: list[str]
    metrics: list[str]
    entries: list[Entry]
    rows: int  # rows before paging (groups, or runs)
    table: aggregate.Table | None = None  # the grouped aggregation the rows come from


def load_table(
    path: Path,
    settings: WorkspaceSettings,
    page: int,
    expanded: set[tuple[Any, ...]],
    same: TableData | None = None,
) -> TableData:
    """The rows of one page. ``same``: the data shown, still current (only the page or the
    expanded groups changed), whose aggregation is reused instead of being run again."""
    with contextlib.closing(_connect(path)) as conn:
        filters = settings.filters
        if same is not None and same.table is not None:
            return _group_entries(conn, filters, same.table, same.total, page, expanded)
        runs.reap_crashed(conn)
        total = workspace.count_runs(conn, filters)
        keys = settings.group_by
        grouped = settings.grouped
        if grouped and keys is None:
            keys = workspace.default_keys(conn, filters)
            grouped = bool(keys)
        if not grouped:
            metrics = [*query.metric_names(conn)]
            metrics = [m for m in metrics if m != aggregate.DURATION] + [aggregate.DURATION]
            rows = workspace.run_page(conn, filters, page * PAGE_SIZE, PAGE_SIZE)
            entries = [Entry("run", row=row) for row in rows]
            return TableData(total, False, [], metrics, entries, total)
        table = aggregate.build_table(conn, filters, group_by=keys, aggregates=AGGREGATES)
        return _group_entries(conn, filters, table, total, page, expanded)


def _group_entries(
    conn,
    filters: query.Filters,
    table: aggregate.Table,
    total: int,
    page: int,
    expanded: set[tuple[Any, ...]],
) -> TableData:
    entries = []
    running = workspace.running_counts(conn, filters, table.keys)
    for row in table.rows[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]:
        group = tuple(row[k] for k in table.keys)
        entries.append(Entry("group", group, {**row, "running": running.get(group, 0)}))
        if group in expanded:
            members, count = workspace.group_members(
                conn, filters, table.keys, group, limit=MEMBERS_SHOWN
            )
            entries += [Entry("run", group, member, depth=1) for member in members]
            if count > len(members):
                entries.append(Entry("more", group, {"more": count - len(members)}, 1))
    return TableData(total, True, table.keys, table.metrics, entries, len(table.rows), table=table)


def group_label(keys: Sequence[str], group: Sequence[Any]) -> str:
    """``exp-1`` for the key group, ``lr=0.1, bs=32`` for others (as wbg plot's legend)."""
    parts = []
    for key, value in zip(keys, group, strict=True):
        shown = curves.MISSING if value is None else format_number(value, 6)
        parts.append(shown if key == "group" else f"{key}={shown}")
    return ", ".join(parts)


def metric_cell(row: dict[str, Any], metric: str) -> str:
    """``mean ± std`` with ``(n=N)`` where the metric's count differs from the runs, as the
    human formats of wbg table."""
    mean = row.get(f"{metric}.mean")
    if mean is None:
        return ""
    text = format_mean_spread(mean, row.get(f"{metric}.std"))  # the one rule of every view
    count = row.get(f"{metric}.count")
    if count != row.get("runs"):
        text += f" (n={count})"
    return text


def run_label(row: dict[str, Any]) -> str:
    name, run_id = row.get("name"), row["id"]
    return f"{name} ({run_id})" if name and name != run_id else run_id


def state_cell(state: str | None) -> str:
    return f"{RUNNING} running" if state == "running" else (state or "")


def run_value(row: dict[str, Any], metric: str) -> str:
    value = row["duration_s"] if metric == aggregate.DURATION else row["summary"].get(metric)
    if isinstance(value, (dict, list)):
        return ""
    return format_number(value, 4)


def clean_output(text: str) -> list[str]:
    """Kept output as plain lines: colours dropped, a \\r-redrawn line at its last state,
    every other control character or escape sequence shown escaped (``\\x1b``), as the
    human formats show untrusted text (run output is)."""
    lines = []
    for line in _SGR.sub("", text).split("\n"):
        lines.append(safe_text(line.rstrip("\r").rsplit("\r", 1)[-1]))
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# --- widgets -----------------------------------------------------------------------------


class ChartView(Widget, can_focus=True):  # type: ignore[call-arg, unused-ignore]
    """One metric's grouped curves, drawn by the renderer of ``wbg plot``."""

    BINDINGS = [Binding("enter", "open", "Full screen")]

    DEFAULT_CSS = """
    ChartView { height: 1fr; min-height: 6; }
    ChartView:focus { background: $boost; }
    """

    def __init__(self, metric: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.panel: curves.Panel | None = None
        self.message = "loading…"
        self.x_range: tuple[float, float] | None = None
        self.log_y = False
        self.text = ""

    @property
    def ws(self) -> Workspace:
        return cast("Workspace", self.app)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Enter opens a chart of a panel full-screen; the full-screen chart has no Enter
        return action != "open" or isinstance(self.parent, Charts)

    def action_open(self) -> None:
        charts = self.parent
        if isinstance(charts, Charts):
            open_chart(self.app, charts.scope, self.metric)

    def show(self, found: curves.Panel | str) -> None:
        if isinstance(found, str):
            self.panel, self.message = None, found
        else:
            self.panel, self.message = found, ""
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        settings = self.ws.settings
        if self.panel is None or width < 20 or height < 4:
            self.text = f"{self.metric}: {self.message}"
            return Text(self.text)
        color = not self.app.no_color
        drawn = render_terminal(
            [self.panel],
            settings.line,
            settings.band,
            width,
            height,
            color=color,
            x_range=self.x_range,
            log_y=self.log_y,
            min_height=4,
        )
        self.text = _SGR.sub("", drawn)
        return Text.from_ansi(drawn, no_wrap=True) if color else Text(drawn, no_wrap=True)


class Charts(Vertical):
    """The charts of a scope: one ChartView per metric, reloaded on demand."""

    DEFAULT_CSS = "Charts { height: 1fr; }"

    def __init__(self, scope: Scope, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scope = scope
        self.loaded: list[tuple[str, curves.Panel | str]] = []

    def views(self) -> list[ChartView]:
        return list(self.query(ChartView))

    async def show(self, found: list[tuple[str, curves.Panel | str]]) -> None:
        self.loaded = found
        metrics = [metric for metric, _ in found]
        if [view.metric for view in self.views()] != metrics:
            await self.remove_children()
            await self.mount_all([ChartView(metric) for metric in metrics])
        for view, (_, panel) in zip(self.views(), found, strict=True):
            view.show(panel)
        if not found:
            await self.remove_children()
            await self.mount(Static("no metric logged yet: m picks metrics"))


class Loader:
    """Loads of one screen, by kind, in threads. A load asked for while one of its kind
    runs waits for it (only the newest such request is kept), so a slow aggregation is
    never run twice at once, however often the data changes; the finished load's result
    is still shown, so a busy database never starves the screen."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.busy: set[str] = set()
        self.pending: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {}

    def start(self, kind: str, compute: Callable[[], Any], apply: Callable[[Any], Any]) -> None:
        if kind in self.busy:
            self.pending[kind] = (compute, apply)
            return
        self.busy.add(kind)

        def job() -> None:
            try:
                result: Any = compute()
            except (WbgError, sqlite3.Error) as exc:
                result = exc
            self.screen.app.call_from_thread(self._done, kind, apply, result)

        self.screen.run_worker(job, thread=True, group=f"load-{kind}")

    async def _done(self, kind: str, apply: Callable[[Any], Any], result: Any) -> None:
        self.busy.discard(kind)
        if kind in self.pending:
            self.start(kind, *self.pending.pop(kind))  # newer data or settings
        if isinstance(result, WbgError):
            self.screen.notify(result.message, severity="error", markup=False)
        elif isinstance(result, sqlite3.Error):
            cast(Workspace, self.screen.app).lost(result)
        else:
            await apply(result)

    @property
    def idle(self) -> bool:
        return not self.busy and not self.pending


class DataScreen(Screen):
    """A screen that reloads its data when the database changes."""

    DEFAULT_CSS = """
    DataScreen #title { height: 1; background: $panel; padding: 0 1; text-wrap: nowrap; }
    DataScreen TabbedContent { height: 1fr; }
    DataScreen TabPane { height: 1fr; padding: 0; }
    DataScreen #facts, DataScreen #fields { padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.loader = Loader(self)
        self.stale = False

    def reload(self) -> None:  # pragma: no cover - every screen defines it
        pass

    def on_screen_resume(self) -> None:
        if self.stale:
            self.stale = False
            self.reload()

    @property
    def idle(self) -> bool:
        return self.loader.idle

    @property
    def ws(self) -> Workspace:
        """The app, typed."""
        return cast("Workspace", self.app)


# --- the workspace -----------------------------------------------------------------------


class MainScreen(DataScreen):
    BINDINGS = [
        Binding("g", "toggle_grouping", "Group"),
        Binding("G", "pick_group_by", "Group by"),
        Binding("m", "pick_metrics", "Metrics"),
        Binding("l", "cycle_line", "Line"),
        Binding("b", "cycle_band", "Band"),
        Binding("x", "cycle_x", "X", show=False),
        Binding("s", "cycle_smooth", "Smooth", show=False),
        Binding("space", "expand", "Expand", show=False),
        Binding("t", "tag", "Tag", show=False),
        Binding("M", "move", "Move", show=False),
        Binding("d", "delete", "Delete", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False),
        Binding("f", "full_chart", "Full chart", show=False),
    ]

    DEFAULT_CSS = """
    #status {
        height: 2; background: $panel; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis;
    }
    #body { height: 1fr; layout: vertical; }
    #body.wide { layout: horizontal; }
    #runs { height: auto; max-height: 50%; }
    #body.wide #runs { width: 3fr; height: 1fr; max-height: 100%; }
    #body.wide Charts { width: 2fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.page = 0
        self.expanded: set[tuple[Any, ...]] = set()
        self.data: TableData | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with Vertical(id="body"):
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
            yield Charts(self._scope(), id="charts")
        yield Footer()

    @property
    def settings(self) -> WorkspaceSettings:
        return self.ws.settings

    def on_mount(self) -> None:
        # The table first, the charts once it is up: at 100,000 runs both loads compete for
        # the interpreter, and the table is what the first screen is for.
        self.reload(charts=False)

    def on_resize(self) -> None:
        self.query_one("#body").set_class(self.size.width >= 120, "wide")

    def reload(self, table: bool = True, charts: bool = True, same: bool = False) -> None:
        """Load again; ``same``: only the page or the expanded groups changed, so the
        grouped aggregation shown is reused (an expand at 100,000 runs reads one group)."""
        self._status()
        if table:
            settings, page, expanded = replace(self.settings), self.page, set(self.expanded)
            path = self.ws.path
            # a load in flight may be a full one (new data): never replace it with a reuse
            shown = self.data if same and "table" not in self.loader.busy else None
            self.loader.start(
                "table",
                lambda: load_table(path, settings, page, expanded, shown),
                self._show_table,
            )
        if charts:
            self._load_charts()

    def _scope(self) -> Scope:
        s = self.settings
        if not s.grouped:
            return Scope(s.filters, (), newest=UNGROUPED_LINES)
        return Scope(s.filters, None if s.group_by is None else tuple(s.group_by))

    def _load_charts(self) -> None:
        path = self.ws.path
        settings, scope = replace(self.settings), self._scope()
        charts = self.query_one(Charts)
        charts.scope = scope

        def compute():
            metrics = settings.metrics or default_metrics(path)
            return load_panels(path, scope, metrics, settings)

        self.loader.start("charts", compute, charts.show)

    def _status(self) -> None:
        s = self.settings
        app = self.ws
        data = self.data
        counts = ""
        if data is not None:
            first = self.page * PAGE_SIZE
            what = "groups" if data.grouped else "runs"
            shown = f"{first + 1}-{min(first + PAGE_SIZE, data.rows)} of " if data.rows else ""
            counts = f"{data.total:,} runs · {what} {shown}{data.rows:,} · "
        if not s.grouped:
            grouping = "off (g)"
        elif data is not None and data.grouped:
            grouping = ", ".join(data.keys)
        elif data is not None:
            grouping = "none: no run has a group (g picks keys)"
        else:
            grouping = ", ".join(s.group_by or ["default"])
        lines = [
            f"{counts}filter: {s.filter_text()} · db {app.shown_path}",
            f"group by: {grouping} · chart: {s.chart_text()}",
        ]
        # one line each, cut at the width (CSS): a long path loses its end, not the settings
        self.query_one("#status", Static).update(Text("\n".join(map(safe_text, lines))))

    async def _show_table(self, data: TableData) -> None:
        first, self.data = self.data is None, data
        table = self.query_one("#runs", DataTable)
        row_before = table.cursor_row
        if data.grouped:
            columns = ["group" if data.keys == ["group"] else ", ".join(data.keys), "runs"]
        else:
            columns = ["run", "state", "group", "job_type"]
        fill_table(table, [*columns, *data.metrics], [self._cells(data, e) for e in data.entries])
        if data.entries:
            table.move_cursor(row=min(row_before, len(data.entries) - 1))
        self._status()
        if first:
            self._load_charts()

    def _cells(self, data: TableData, entry: Entry) -> list[str]:
        row = entry.row
        if entry.kind == "group":
            mark = "▾ " if entry.group in self.expanded else "▸ "
            live = f"  {RUNNING} {row['running']} running" if row["running"] else ""
            return [
                mark + group_label(data.keys, entry.group) + live,
                str(row["runs"]),
                *(metric_cell(row, m) for m in data.metrics),
            ]
        if entry.kind == "more":
            return [
                f"    … {row['more']} more (Enter: group page)",
                "",
                *([""] * len(data.metrics)),
            ]
        label = run_label(row)
        if data.grouped:
            mark = RUNNING + " " if row["state"] == "running" else "  "
            return [f"  {mark}{label}", row["state"], *(run_value(row, m) for m in data.metrics)]
        return [
            label,
            state_cell(row["state"]),
            row["group"] or "-",
            row["job_type"] or "-",
            *(run_value(row, m) for m in data.metrics),
        ]

    def current(self) -> Entry | None:
        if self.data is None or not self.data.entries:
            return None
        row = self.query_one("#runs", DataTable).cursor_row
        return self.data.entries[row] if 0 <= row < len(self.data.entries) else None

    # --- keys ---

    def action_toggle_grouping(self) -> None:
        settings = self.settings
        showing_groups = self.data is not None and self.data.grouped
        if settings.grouped and not showing_groups and settings.group_by is None:
            # runs, because no run has a group (wbg table's default): pick what to group by
            self.action_pick_group_by()
            return
        settings.grouped = not showing_groups
        self.page = 0
        self.reload()

    def action_pick_group_by(self) -> None:
        path = self.ws.path
        with contextlib.closing(_connect(path)) as conn:
            keys = [*query.FIELDS, *query.known_keys(conn, "config")]
        keys = [k for k in keys if k not in ("id", "started_at", "ended_at", "pid")]
        chosen = list(self.settings.group_by or (self.data.keys if self.data else []))

        def picked(result: list[str] | None) -> None:
            if result is None or (result == chosen and self.settings.grouped):
                return  # nothing changed: no aggregation to run again
            self.settings.group_by = result or None
            self.settings.grouped = True
            self.page = 0
            self.expanded.clear()
            self.reload()

        self.app.push_screen(Picker("Group by (in order)", keys, chosen, ordered=True), picked)

    def action_pick_metrics(self) -> None:
        shown = [view.metric for view in self.query_one(Charts).views()]
        pick_metrics(self.app, shown, lambda: self.reload(table=False))

    def action_cycle_line(self) -> None:
        self.settings.line = _next(curves.LINES, self.settings.line)
        self.reload(table=False)

    def action_cycle_band(self) -> None:
        self.settings.band = _next(curves.BANDS, self.settings.band)
        self.reload(table=False)

    def action_cycle_x(self) -> None:
        self.settings.x_axis = _next(curves.X_AXES, self.settings.x_axis)
        self.reload(table=False)

    def action_cycle_smooth(self) -> None:
        self.settings.smooth = _next(SMOOTHING, self.settings.smooth)
        self.reload(table=False)

    def action_page(self, delta: int) -> None:
        if self.data is None:
            return
        pages = max((self.data.rows + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        page = min(max(self.page + delta, 0), pages - 1)
        if page != self.page:
            self.page = page
            self.reload(charts=False, same=True)

    def action_expand(self) -> None:
        entry = self.current()
        if entry is None or entry.kind == "run" and not entry.depth:
            return
        if entry.group in self.expanded:
            self.expanded.discard(entry.group)
        else:
            self.expanded.add(entry.group)
        self.reload(charts=False, same=True)

    @on(DataTable.RowSelected, "#runs")
    def open_row(self) -> None:
        entry = self.current()
        if entry is None or self.data is None:
            return
        if entry.kind == "run":
            self.app.push_screen(RunScreen(entry.row["id"]))
        else:
            self.app.push_screen(GroupScreen(self.data.keys, entry.group))

    def action_full_chart(self) -> None:
        views = self.query_one(Charts).views()
        focused = self.focused if isinstance(self.focused, ChartView) else None
        if focused or views:
            open_chart(self.app, self.query_one(Charts).scope, (focused or views[0]).metric)

    def _run_id(self) -> str | None:
        entry = self.current()
        if entry is None or entry.kind != "run":
            self.notify("choose a run row (space expands a group)", severity="warning")
            return None
        return entry.row["id"]

    def action_tag(self) -> None:
        run_id = self._run_id()
        if run_id:
            tag_run(self.app, run_id)

    def action_move(self) -> None:
        run_id = self._run_id()
        if run_id:
            move_run(self.app, run_id)

    def action_delete(self) -> None:
        run_id = self._run_id()
        if run_id:
            delete_run(self.app, run_id)


def fill_table(table: DataTable, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Replace a table's columns and rows (untrusted text: shown literally, control
    characters escaped). Widths are measured here, from the cells of the
    page, rather than left to DataTable's own measuring when idle, which can miss rows
    that arrive while the app is busy."""
    from rich.cells import cell_len

    shown = [[safe_text(cell) for cell in row] for row in rows]
    headers = [safe_text(c) for c in columns]
    widths = [cell_len(c) for c in headers]
    for row in shown:
        widths = [max(w, cell_len(cell)) for w, cell in zip(widths, row, strict=True)]
    table.clear(columns=True)
    for column, width in zip(headers, widths, strict=True):
        table.add_column(Text(column), width=min(width, MAX_COLUMN))
    # Text, not str: DataTable reads a str cell as Rich markup ("[red]" in a run name)
    table.add_rows([[Text(cell) for cell in row] for row in shown])


def _next(options: Sequence[Any], value: Any) -> Any:
    index = list(options).index(value) if value in options else -1
    return options[(index + 1) % len(options)]


def pick_metrics(app: Workspace, shown: list[str], done: Callable[[], None]) -> None:
    """The metric picker, starting from the charts ``shown``; applies to every screen."""
    path = app.path
    with contextlib.closing(_connect(path)) as conn:
        names = [m for m in query.metric_names(conn) if m != aggregate.DURATION]

    def picked(result: list[str] | None) -> None:
        if result is not None:
            app.settings.metrics = result
            done()

    app.push_screen(Picker("Metrics to chart", names, shown), picked)


def open_chart(app: Workspace, scope: Scope, metric: str) -> None:
    app.push_screen(ChartScreen(scope, metric))


def tag_run(app: Workspace, run_id: str) -> None:
    def entered(text: str | None) -> None:
        if not text:
            return
        add, remove = [], []
        for change in text.split():  # as wbg runs tag: +a adds, -b removes, a bare name adds
            if change.startswith("-"):
                remove.append(change[1:])
            else:
                add.append(change.removeprefix("+"))
        changed(app, lambda conn: runs.set_tags(conn, run_id, add, remove), f"tagged {run_id}")

    app.push_screen(Ask(f"Tags for {run_id} (+add -remove):"), entered)


def move_run(app: Workspace, run_id: str) -> None:
    def entered(text: str | None) -> None:
        if text:
            changed(app, lambda conn: runs.move_runs(conn, [run_id], text), f"moved to {text}")

    app.push_screen(Ask(f"Move {run_id} to group:"), entered)


def delete_run(app: Workspace, run_id: str) -> None:
    def answered(yes: bool | None) -> None:
        if not yes:
            return

        def delete(conn) -> None:
            nums = [runs.run_num(conn, run_id)]
            if runs.running_ids(conn, nums):
                raise InvalidInput(f"run {run_id} is still running: not deleted")
            runs.delete_runs(conn, nums)

        screen = app.screen
        if isinstance(screen, RunScreen):
            screen.gone = True  # nothing left to reload on its page
        if changed(app, delete, f"deleted {run_id}") and isinstance(screen, RunScreen):
            app.pop_screen()
        elif isinstance(screen, RunScreen):
            screen.gone = False

    app.push_screen(Confirm(f"Delete run {run_id} with its history and output?"), answered)


def changed(app: Workspace, change: Callable[[Any], Any], done: str) -> bool:
    """Apply a change through the app's connection (the store function the CLI calls),
    then reload every screen."""
    try:
        change(app.conn)
    except WbgError as exc:
        app.notify(exc.message, severity="error", markup=False)
        return False
    except sqlite3.OperationalError as exc:  # a read-only file or mount
        app.notify(f"cannot change the database: {exc}", severity="error", markup=False)
        return False
    app.notify(safe_text(done), markup=False)
    app.reload_all()
    return True


# --- chart full-screen ---------------------------------------------------------------------


class ChartScreen(DataScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in"),
        Binding("minus", "zoom(2)", "Zoom out"),
        Binding("left,h", "pan(-1)", "Pan"),
        Binding("right", "pan(1)", "Pan", show=False),
        Binding("y", "log_y", "Log y"),
        Binding("0", "reset", "Reset", show=False),
        Binding("slash", "search", "Metric"),
        Binding("l", "cycle_line", "Line", show=False),
        Binding("b", "cycle_band", "Band", show=False),
    ]

    def __init__(self, scope: Scope, metric: str) -> None:
        super().__init__()
        self.scope = scope
        self.metric = metric

    def compose(self) -> ComposeResult:
        yield ChartView(self.metric, id="full")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        path, scope, metric = self.ws.path, self.scope, self.metric
        settings = replace(self.ws.settings)
        self.loader.start("chart", lambda: load_panels(path, scope, [metric], settings), self._show)

    async def _show(self, found: list[tuple[str, curves.Panel | str]]) -> None:
        view = self.query_one(ChartView)
        view.metric = self.metric
        view.show(found[0][1])

    def _full_range(self) -> tuple[float, float] | None:
        panel = self.query_one(ChartView).panel
        if panel is None or not panel.curves:
            return None
        return min(c.x[0] for c in panel.curves), max(c.x[-1] for c in panel.curves)

    def action_zoom(self, factor: float) -> None:
        view, full = self.query_one(ChartView), self._full_range()
        if full is None:
            return
        low, high = view.x_range or full
        center, half = (low + high) / 2, (high - low) / 2 * factor
        if half * 2 >= full[1] - full[0]:
            view.x_range = None
        else:
            low = min(max(center - half, full[0]), full[1] - 2 * half)
            view.x_range = (low, low + 2 * half)
        view.refresh()

    def action_pan(self, direction: int) -> None:
        view, full = self.query_one(ChartView), self._full_range()
        if full is None or view.x_range is None:
            return
        low, high = view.x_range
        shift = (high - low) / 4 * direction
        shift = min(max(shift, full[0] - low), full[1] - high)
        view.x_range = (low + shift, high + shift)
        view.refresh()

    def action_log_y(self) -> None:
        view = self.query_one(ChartView)
        view.log_y = not view.log_y
        view.refresh()

    def action_reset(self) -> None:
        view = self.query_one(ChartView)
        view.x_range, view.log_y = None, False
        view.refresh()

    def action_cycle_line(self) -> None:
        self.ws.settings.line = _next(curves.LINES, self.ws.settings.line)
        self.reload()

    def action_cycle_band(self) -> None:
        self.ws.settings.band = _next(curves.BANDS, self.ws.settings.band)
        self.reload()

    def action_search(self) -> None:
        path = self.ws.path
        with contextlib.closing(_connect(path)) as conn:
            names = [m for m in query.metric_names(conn) if m != aggregate.DURATION]

        def picked(result: list[str] | None) -> None:
            if result:
                self.metric = result[0]
                self.action_reset()
                self.reload()

        self.app.push_screen(Picker("Metric", names, [self.metric], single=True), picked)


# --- group page ----------------------------------------------------------------------------


@dataclass
class GroupData:
    facts: list[tuple[str, str]]
    rows: list[dict[str, Any]]
    columns: list[str]
    aggregates: aggregate.Table | None


def load_group(
    path: Path, settings: WorkspaceSettings, keys: list[str], group: tuple[Any, ...]
) -> GroupData:
    filters = settings.filters
    with contextlib.closing(_connect(path)) as conn:
        runs.reap_crashed(conn)
        page = None
        if keys == ["group"] and group[0] is not None:
            with contextlib.suppress(InvalidInput):  # a name in several projects: below
                page = groups.group_page(conn, group[0], filters.project, max_runs=PAGE_SIZE)
        if page is not None:
            duration = page["compute_s"]
            facts = [
                ("group", page["group"]),
                ("project", page["project"]),
                ("runs", f"{page['runs']} ({_counts(page['job_types'])})"),
                ("states", _counts(page["states"])),
                ("first start", page["first_start"] or ""),
                ("last end", page["last_end"] or "(running)"),
                ("compute", f"{format_number(duration, 4)} s"),
            ]
            facts += [
                (f"config.{k}", format_number(v, 6)) for k, v in page["common_config"].items()
            ]
            rows = [groups.run_row(r, page["varying_keys"]) for r in page["run_records"]]
            columns = list(dict.fromkeys(c for row in rows for c in row))
            return GroupData(facts, rows, columns, page["aggregates"])
        members, count = workspace.group_members(conn, filters, keys, group, limit=PAGE_SIZE)
        facts = [("group", group_label(keys, group)), ("runs", str(count))]
        narrowed = workspace.member_filters(filters, keys, group)
        table = None
        if narrowed is not None:  # the missing-key group has no --where of its own
            table = aggregate.build_table(conn, narrowed, group_by=["job_type"])
        rows = [
            {
                "id": m["id"],
                "name": m["name"],
                "group": m["group"],
                "job_type": m["job_type"],
                "state": m["state"],
                "duration_s": m["duration_s"],
                **{f"summary.{k}": v for k, v in m["summary"].items()},
            }
            for m in members
        ]
        columns = list(dict.fromkeys(c for row in rows for c in row))
        return GroupData(facts, rows, columns, table)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


class GroupScreen(DataScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "tab('overview')", "Overview"),
        Binding("2", "tab('runs')", "Runs"),
        Binding("3", "tab('charts')", "Charts"),
        Binding("f", "full_chart", "Full chart", show=False),
    ]

    def __init__(self, keys: list[str], group: tuple[Any, ...]) -> None:
        super().__init__()
        self.keys, self.group = keys, group
        self.data: GroupData | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(safe_text(f"group {group_label(self.keys, self.group)}")), id="title")
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"), VerticalScroll():
                yield Static("loading…", id="facts")
                yield DataTable(id="aggregates", cursor_type="none")
            with TabPane("Runs", id="runs"):
                yield DataTable(id="members", cursor_type="row")
            with TabPane("Charts", id="charts"):
                yield Charts(self._scope())
        yield Footer()

    def _scope(self) -> Scope:
        """The group's runs, one line per job_type. As --where conditions when the group
        has values (only its runs are read); the missing-key group is cut from all runs."""
        filters = self.ws.settings.filters
        narrowed = workspace.member_filters(filters, self.keys, self.group)
        if narrowed is not None:
            return Scope(narrowed, ("job_type",))
        return Scope(filters, ("job_type",), (tuple(self.keys), tuple(self.group)))

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        path = self.ws.path
        settings = replace(self.ws.settings)
        keys, group, scope = self.keys, self.group, self._scope()
        self.loader.start("group", lambda: load_group(path, settings, keys, group), self._show)

        def charts():
            metrics = settings.metrics or default_metrics(path)
            return load_panels(path, scope, metrics, settings)

        self.loader.start("charts", charts, self.query_one(Charts).show)

    async def _show(self, data: GroupData) -> None:
        self.data = data
        width = max(len(k) for k, _ in data.facts)
        self.query_one("#facts", Static).update(
            Text("\n".join(f"{k.ljust(width)}  {safe_text(v)}" for k, v in data.facts))
        )
        fill_table(
            self.query_one("#members", DataTable),
            [c.removeprefix("summary.") for c in data.columns],
            [[_cell(row.get(c)) for c in data.columns] for row in data.rows],
        )
        result = data.aggregates
        if result is not None:
            fill_table(
                self.query_one("#aggregates", DataTable),
                ["job_type", "runs", *result.metrics],
                [
                    [
                        row["job_type"] or "-",
                        str(row["runs"]),
                        *(metric_cell(row, m) for m in result.metrics),
                    ]
                    for row in result.rows
                ],
            )

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @on(DataTable.RowSelected, "#members")
    def open_run(self, event: DataTable.RowSelected) -> None:
        if self.data is not None and 0 <= event.cursor_row < len(self.data.rows):
            self.app.push_screen(RunScreen(self.data.rows[event.cursor_row]["id"]))

    def action_full_chart(self) -> None:
        views = self.query_one(Charts).views()
        if views:
            focused = self.focused if isinstance(self.focused, ChartView) else views[0]
            open_chart(self.app, self._scope(), focused.metric)


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, separators=(",", ":"))
    return "-" if value is None else format_number(value, 4)


# --- run page ------------------------------------------------------------------------------


@dataclass
class RunData:
    record: dict[str, Any]
    output: list[str]


def load_run(path: Path, run_id: str) -> RunData:
    with contextlib.closing(_connect(path)) as conn:
        record = runs.get_run(conn, run_id)
        record["history_points"] = runs.history_count(conn, run_id)
        return RunData(record, clean_output(workspace.run_output_tail(conn, run_id)))


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out.append((prefix, value))


class RunScreen(DataScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "tab('overview')", "Overview"),
        Binding("2", "tab('output')", "Output"),
        Binding("3", "tab('charts')", "Charts"),
        Binding("t", "tag", "Tag"),
        Binding("M", "move", "Move"),
        Binding("d", "delete", "Delete"),
        Binding("f", "full_chart", "Full chart", show=False),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.data: RunData | None = None
        self.gone = False  # deleted from this page

    def compose(self) -> ComposeResult:
        yield Static(Text(safe_text(f"run {self.run_id}")), id="title")
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"), VerticalScroll():
                yield Static("loading…", id="fields")
            with TabPane("Output", id="output"):
                yield Log(id="log", highlight=False)
            with TabPane("Charts", id="charts"):
                yield Charts(self._scope())
        yield Footer()

    def _scope(self) -> Scope:
        return Scope(query.Filters(where=(f"id = '{self.run_id}'",)), ())

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        if self.gone:
            return
        path, run_id = self.ws.path, self.run_id
        settings, scope = replace(self.ws.settings), self._scope()
        self.loader.start("run", lambda: load_run(path, run_id), self._show)

        def charts():
            metrics = settings.metrics
            if not metrics:  # the run's own curves, not another run's default
                with contextlib.closing(_connect(path)) as conn:
                    metrics = workspace.run_history_keys(conn, run_id)[:RUN_CHARTS]
            return load_panels(path, scope, metrics, settings)

        self.loader.start("charts", charts, self.query_one(Charts).show)

    async def _show(self, data: RunData) -> None:
        self.data = data
        record = data.record
        fields: list[tuple[str, Any]] = []
        for key, value in record.items():
            if key in ("config", "summary"):
                _flatten(key, value, fields)
            elif key == "state":
                fields.append((key, state_cell(value)))
            else:
                fields.append((key, value))
        width = max(len(k) for k, _ in fields)
        lines = [f"{k.ljust(width)}  {safe_text(_cell(v))}" for k, v in fields]
        self.query_one("#fields", Static).update(Text("\n".join(lines)))
        self.query_one("#title", Static).update(
            Text(safe_text(f"run {run_label(record)} · {state_cell(record['state'])}"))
        )
        log = self.query_one("#log", Log)
        if list(log.lines) != data.output:
            log.clear()
            log.write_lines(data.output)  # follows the end while the run writes

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_tag(self) -> None:
        tag_run(self.app, self.run_id)

    def action_move(self) -> None:
        move_run(self.app, self.run_id)

    def action_delete(self) -> None:
        delete_run(self.app, self.run_id)

    def action_full_chart(self) -> None:
        views = self.query_one(Charts).views()
        if views:
            open_chart(self.app, self._scope(), views[0].metric)


# --- dialogs -------------------------------------------------------------------------------


class Picker(ModalScreen[list[str] | None]):
    """Choose names from a list with a search box: Enter adds or removes the highlighted
    name (``ordered``: the order chosen is kept, e.g. nested group-by keys), Escape
    applies; ``single``: Enter chooses one and closes."""

    BINDINGS = [
        Binding("escape", "done", "Apply"),
        Binding("ctrl+c", "cancel", "Cancel", show=False),
        Binding("down", "move(1)", show=False),
        Binding("up", "move(-1)", show=False),
    ]
    DEFAULT_CSS = """
    Picker { align: center middle; }
    #box { width: 60; max-width: 100%; height: 80%; border: round $accent; padding: 0 1; }
    #chosen { height: auto; }
    OptionList { height: 1fr; }
    """

    def __init__(
        self,
        title: str,
        names: Sequence[str],
        chosen: Sequence[str],
        *,
        ordered: bool = False,
        single: bool = False,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.names = list(names)
        self.chosen = [name for name in chosen if name in self.names]
        self.ordered = ordered
        self.single = single

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            hint = "Enter: choose" if self.single else "Enter: add/remove · Esc: apply"
            yield Static(f"{self.title_text} — type to search · {hint}")
            yield Static("", id="chosen")
            yield Input(placeholder="search", id="search")
            yield OptionList(id="options")

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#search", Input).focus()

    def _fill(self, text: str) -> None:
        options = self.query_one("#options", OptionList)
        options.clear_options()
        needle = text.lower()
        for name in self.names:
            if needle in name.lower():
                options.add_option(Option(Text(safe_text(self._prompt(name))), id=name))
        if options.option_count:
            options.highlighted = 0
        shown = ", ".join(self.chosen) or "(none)"
        self.query_one("#chosen", Static).update(Text(safe_text(f"chosen: {shown}")))

    def _prompt(self, name: str) -> str:
        if name not in self.chosen:
            return f"  {name}"
        return f"{self.chosen.index(name) + 1} {name}" if self.ordered else f"✓ {name}"

    @on(Input.Changed, "#search")
    def search(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#search")
    def submitted(self) -> None:
        self._toggle()

    @on(OptionList.OptionSelected, "#options")
    def selected(self) -> None:
        self._toggle()

    def _toggle(self) -> None:
        options = self.query_one("#options", OptionList)
        option = options.highlighted_option
        if option is None or option.id is None:
            return
        if self.single:
            self.dismiss([option.id])
            return
        if option.id in self.chosen:
            self.chosen.remove(option.id)
        else:
            self.chosen.append(option.id)
        self._fill(self.query_one("#search", Input).value)

    def action_move(self, delta: int) -> None:
        options = self.query_one("#options", OptionList)
        if options.option_count:
            current = options.highlighted or 0
            options.highlighted = min(max(current + delta, 0), options.option_count - 1)

    def action_done(self) -> None:
        self.dismiss(None if self.single else list(self.chosen))

    def action_cancel(self) -> None:
        self.dismiss(None)


class Ask(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    Ask { align: center middle; }
    #box { width: 60; max-width: 100%; height: auto; border: round $accent; padding: 0 1; }
    """

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            yield Static(Text(safe_text(self.prompt)))
            yield Input(id="answer")

    @on(Input.Submitted, "#answer")
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    Confirm { align: center middle; }
    #box { width: 60; max-width: 100%; height: auto; border: round $error; padding: 0 1; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            yield Static(Text(f"{safe_text(self.question)}\n\ny: delete   n / Esc: keep"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


HELP_TEXT = """\
wbg ui — keys

Workspace
  g        grouping on/off (off: one row and one line per run)
  G        group by: config keys, group, job_type... (picked in order = nested)
  m        metrics to chart (search, Enter adds/removes, Esc applies)
  l        line: mean → median → min → max
  b        band: none → min-max → std → stderr
  x        x axis: step ↔ time since run start
  s        smoothing (EMA weight): 0 → 0.6 → 0.8 → 0.9 → 0.95 → 0.99
  space    expand/collapse a group row into its runs
  Enter    open the group's or the run's page
  Tab      table ↔ charts; Enter on a chart shows it full-screen
  f        first (or focused) chart full-screen
  [ ]      previous / next page of rows
  t M d    tag, move to another group, delete the run of the row
Chart full-screen
  + -      zoom in / out along x      ← → (h)  pan
  y        log / linear y             0        reset
  /        search another metric      Esc      back
Group and run pages
  1 2 3    tabs                       Esc      back
  t M d    (run page) tag, move, delete

The view follows the database while runs record (● marks running runs).
q or Ctrl-C quits, ? shows this help, Esc closes it.
"""


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close")]
    DEFAULT_CSS = """
    Help { align: center middle; }
    #box { width: 80; max-width: 100%; height: 100%; border: round $accent; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="box"):
            yield Static(HELP_TEXT, id="help")


# --- the app -------------------------------------------------------------------------------


class Workspace(App):
    """``wbg ui``."""

    TITLE = "wbg"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        # Ctrl-C leaves, as it does every other command (Textual's default only says to
        # press Ctrl-Q); a picker's own Ctrl-C still cancels the picker.
        Binding("ctrl+c", "quit", "Quit", show=False),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self, path: Path, settings: WorkspaceSettings, shown_path: str | None = None
    ) -> None:
        super().__init__()
        from wbg.db import as_location

        self.path = as_location(path)  # a file, or a server's URL
        self.shown_path = shown_path or str(path)
        self.settings = settings
        # The app's own connection makes the changes (tag, move, delete) and polls; a
        # read-only file or mount gets a reading one, and the changes say why they cannot.
        from wbg.db import connect
        from wbg.errors import DatabaseError

        try:
            self.conn = connect(self.path, create=False)
        except DatabaseError:
            self.conn = _connect(self.path)
        self.version = workspace.data_version(self.conn)
        self.polls = 0
        # The database stopped answering (a server gone, a damaged file): the command
        # reports it once the screen is closed, as any command does (one line, exit 1).
        self.failure: sqlite3.Error | None = None

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self.set_interval(POLL_S, self.poll)

    def on_unmount(self) -> None:
        self.conn.close()

    def poll(self) -> bool:
        """Reload the screen in view when another connection has committed.

        Every ``REAP_EVERY`` polls, running runs of this host whose process has gone are
        marked crashed (as every read does): a job killed with SIGKILL writes nothing, so
        the change counter alone would leave it running on screen."""
        self.polls += 1
        try:
            if self.polls % REAP_EVERY == 0 and runs.reap_crashed(self.conn):
                self.reload_all()
                return True
            version = workspace.data_version(self.conn)
        except sqlite3.Error as exc:
            self.lost(exc)
            return False
        if version == self.version:
            return False
        self.version = version
        self.reload_all()
        return True

    def lost(self, exc: sqlite3.Error) -> None:
        """Close the screen on a database error; ``wbg ui`` raises it afterwards."""
        if self.failure is None:
            self.failure = exc
            self.exit(return_code=1)

    def reload_all(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, DataScreen):
                if screen is self.screen:
                    screen.reload()
                else:
                    screen.stale = True

    def action_help(self) -> None:
        if not isinstance(self.screen, Help):
            self.push_screen(Help())

    @property
    def idle(self) -> bool:
        """No load running or queued on any screen (for tests and benchmarks)."""
        return all(s.idle for s in self.screen_stack if isinstance(s, DataScreen))
