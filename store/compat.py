"""The parts of wandb's module surface that scripts touch but wbg does not record in full.

``import wbg as wandb`` must not break a script that builds a ``wandb.Table``, calls
``wandb.watch(model)`` or passes ``settings=wandb.Settings(...)``. What wbg cannot honour
is accepted and named once on stderr (``note_once``); media objects are kept as a short
description in the run's summary (README, "Coming from W&B", lists exactly what).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wbg.errors import Error

_noted: set[str] = set()


def _silent() -> bool:
    return os.environ.get("WANDB_SILENT", "").lower() in ("1", "true", "yes")


def termlog(
    string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True
) -> None:
    """Print a message for the user on stderr, as ``wandb.termlog`` (``wbg: `` prefix)."""
    if _silent():
        return
    text = f"wbg: {string}" if prefix else str(string)
    sys.stderr.write(text + ("\n" if newline else ""))
    sys.stderr.flush()


def termwarn(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    termlog(f"WARNING {string}", newline=newline, repeat=repeat, prefix=prefix)


def termerror(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    termlog(f"ERROR {string}", newline=newline, repeat=repeat, prefix=prefix)


def note_once(what: str, message: str | None = None) -> None:
    """Name, once per process, a wandb feature wbg accepts without honouring."""
    if what in _noted:
        return
    _noted.add(what)
    termlog(message or f"{what} is not supported; ignored")


class Settings:
    """``wandb.Settings``: any keyword is accepted; wbg reads the ones it honours.

    Honoured: ``mode``, ``reinit``, ``resume``, ``run_id``, ``project``, ``entity``,
    ``run_name``, ``run_group``, ``run_job_type``, ``run_notes``, ``run_tags``,
    ``root_dir``, ``allow_val_change``. Arguments of ``init`` win over these.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def update(self, other: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.__dict__.update(dict(other or {}, **kwargs))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Settings({self.__dict__!r})"


def settings_dict(settings: Any) -> dict[str, Any]:
    if settings is None:
        return {}
    if isinstance(settings, Mapping):
        return dict(settings)
    if isinstance(settings, Settings):
        return settings.to_dict()
    try:  # a real wandb.Settings (pydantic) passed by a script that imports both
        return {k: v for k, v in dict(settings).items() if v is not None}
    except (TypeError, ValueError):
        return {k: v for k, v in vars(settings).items() if not k.startswith("_")}


def config_from(value: Any) -> dict[str, Any]:
    """A plain dict from what ``wandb.init(config=...)`` accepts.

    A mapping, an ``argparse.Namespace`` or any object with ``__dict__``, absl flags
    (``flag_values_dict``), an object with ``items()``, or the path of a YAML/JSON/TOML
    file.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, os.PathLike)):
        return _config_file(Path(value))
    flag_values = getattr(value, "flag_values_dict", None)
    if callable(flag_values):
        return dict(flag_values())
    items = getattr(value, "items", None)
    if callable(items):
        return dict(items())
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    kind = type(value).__name__
    raise TypeError(f"config must be a dict, a namespace or a file path, got {kind}")


def _config_file(path: Path) -> dict[str, Any]:
    from wbg import values

    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # wandb's own config format; PyYAML comes with wandb
        except ImportError:
            raise Error(f"reading {path} needs PyYAML (pip install pyyaml)") from None
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise Error(f"cannot read config file {path}: {exc}") from None
        # wandb's config-defaults.yaml form: {"lr": {"value": 0.1, "desc": ...}}
        return {
            k: v["value"] if isinstance(v, Mapping) and "value" in v else v
            for k, v in data.items()
            if k != "wandb_version"
        }
    return values.load_config_file(path)


def plain(value: Any) -> Any:
    """JSON-friendly form of a config or summary value (numpy/torch through ``item``/``tolist``)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, Media):
        return value.describe()
    shape = getattr(value, "shape", None)
    if shape == () or shape == []:
        item = getattr(value, "item", None)
        if callable(item):
            try:
                return plain(item())
            except (TypeError, ValueError):
                pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return plain(tolist())
        except (TypeError, ValueError):
            pass
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return plain(item())
        except (TypeError, ValueError):
            pass
    return str(value)


# --- media: accepted, kept as a description in the summary, never as history ---------


class Media:
    """A wandb media object (``Image``, ``Table``, ``Histogram``...): wbg keeps only a
    description of it in the summary (``{"_type": "image", ...}``), not the media."""

    _type = "media"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._caption = kwargs.get("caption")

    def describe(self) -> dict[str, Any]:
        note_once(
            f"media:{self._type}",
            f"{type(self).__name__} values are kept as a description in the summary, not as media",
        )
        out: dict[str, Any] = {"_type": self._type}
        if self._caption is not None:
            out["caption"] = str(self._caption)
        out.update(self._facts())
        return out

    def _facts(self) -> dict[str, Any]:
        return {}


class Image(Media):
    _type = "image"


class Video(Media):
    _type = "video"


class Audio(Media):
    _type = "audio"


class Html(Media):
    _type = "html"


class Object3D(Media):
    _type = "object3D"


class Molecule(Media):
    _type = "molecule"


class Plotly(Media):
    _type = "plotly"


class Graph(Media):
    _type = "graph"


class Histogram(Media):
    """Kept as its count, min, max and mean (from the sequence or the bins given)."""

    _type = "histogram"

    def __init__(
        self,
        sequence: Sequence[Any] | None = None,
        np_histogram: tuple[Any, Any] | None = None,
        num_bins: int = 64,
    ) -> None:
        super().__init__()
        self._stats: dict[str, Any] = {}
        if sequence is not None:
            numbers = [float(v) for v in _flat(plain(sequence))]
            finite = [v for v in numbers if math.isfinite(v)]
            if finite:
                self._stats = {
                    "n": len(finite),
                    "min": min(finite),
                    "max": max(finite),
                    "mean": math.fsum(finite) / len(finite),
                }
        elif np_histogram is not None:
            counts, bins = (plain(part) for part in np_histogram)
            total = sum(counts)
            centres = [(a + b) / 2 for a, b in zip(bins, bins[1:], strict=False)]
            self._stats = {"n": total, "min": bins[0], "max": bins[-1]}
            if total:
                self._stats["mean"] = (
                    sum(c * x for c, x in zip(counts, centres, strict=False)) / total
                )

    def _facts(self) -> dict[str, Any]:
        return dict(self._stats)


def _flat(value: Any) -> Iterable[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _flat(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


class Table(Media):
    """Kept as its column names and row count."""

    _type = "table"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        dataframe: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        self.columns = list(columns or [])
        self.data = [list(row) for row in (data if data is not None else rows or [])]
        if not self.columns and self.data:
            self.columns = [f"c{i}" for i in range(len(self.data[0]))]

    def add_data(self, *row: Any) -> None:
        self.data.append(list(row))

    def add_column(self, name: str, data: Sequence[Any], optional: bool = False) -> None:
        self.columns.append(name)
        for row, value in zip(self.data, data, strict=False):
            row.append(value)

    def get_column(self, name: str, convert_to: str | None = None) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.data]

    def _facts(self) -> dict[str, Any]:
        return {"columns": list(map(str, self.columns)), "nrows": len(self.data)}


class _CustomCharts:
    """``wandb.plot.line(...)`` and friends: a chart is accepted as a described object."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def chart(*args: Any, **kwargs: Any) -> Media:
            media = Media(caption=kwargs.get("title"))
            media._type = f"plot.{name}"
            return media

        return chart


plot = _CustomCharts()


class Artifact:
    """``wandb.Artifact``: accepted so scripts run; wbg stores no files or versions."""

    def __init__(
        self,
        name: str,
        type: str,  # noqa: A002 - wandb's keyword
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.name = name
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})
        self.aliases: list[str] = []
        self.files: list[str] = []

    def add_file(self, local_path: str, name: str | None = None, **kwargs: Any) -> None:
        self.files.append(str(local_path))

    def add_dir(self, local_path: str, name: str | None = None, **kwargs: Any) -> None:
        self.files.append(str(local_path))

    def add_reference(self, uri: str, name: str | None = None, **kwargs: Any) -> None:
        self.files.append(str(uri))

    def add(self, obj: Any, name: str, **kwargs: Any) -> None:
        self.files.append(name)

    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> Any:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="wbg-artifact-"))
        self.files.append(name)
        return open(folder / Path(name).name, "w" if "b" not in mode else "wb")  # noqa: SIM115

    def save(self, *args: Any, **kwargs: Any) -> None:
        note_once("artifacts", "artifacts are not stored by wbg; ignored")

    def wait(self, *args: Any, **kwargs: Any) -> Artifact:
        return self

    def download(self, *args: Any, **kwargs: Any) -> str:
        raise Error(f"artifact {self.name!r} cannot be downloaded: wbg stores no artifacts")

    def get_entry(self, name: str) -> Any:
        raise Error(f"artifact {self.name!r} has no stored files: wbg stores no artifacts")

    def __repr__(self) -> str:
        return f"<wbg.Artifact {self.name}:{self.type} (not stored)>"


class AlertLevel:
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def login(*args: Any, **kwargs: Any) -> bool:
    """``wandb.login``: nothing to log in to; always True."""
    return True


class PreInit:
    """What ``wbg.config`` and ``wbg.summary`` are before ``init``: any use raises, as wandb."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __getitem__(self, key: str) -> Any:
        raise Error(f"You must call wbg.init() before {self._name}[{key!r}]")

    def __setitem__(self, key: str, value: Any) -> None:
        raise Error(f"You must call wbg.init() before {self._name}[{key!r}]")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        raise Error(f"You must call wbg.init() before {self._name}.{key}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise Error(f"You must call wbg.init() before {self._name}.{key}")

    def __repr__(self) -> str:
        return f"<{self._name} before wbg.init()>"
