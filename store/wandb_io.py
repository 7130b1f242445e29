"""Working beside W&B: import W&B run logs, export wbg runs as W&B offline runs.

The work is in three modules: ``wbg.wandb_log`` reads W&B's record-log files (no
``wandb`` needed), ``wbg.wandb_import`` decodes and stores their runs, and
``wbg.wandb_export`` replays wbg runs through ``wandb``. This module keeps the names the
CLI and ``wbg.wandb_follow`` use.
"""

from wbg.wandb_export import ExportResult, existing_export, export_runs
from wbg.wandb_import import (
    DEFAULT_PROJECT,
    EXTRA_HINT,
    WBG_SUMMARY_KEY,
    ImportResult,
    RunDecoder,
    WandbRun,
    decode_run,
    exit_state,
    import_logs,
    read_run_header,
    require_wandb,
    store_run,
)
from wbg.wandb_log import BLOCK_LEN, FILE_HEADER, HEADER_LEN, RecordLog, RecordTail, find_run_logs

__all__ = [
    "BLOCK_LEN",
    "DEFAULT_PROJECT",
    "EXTRA_HINT",
    "FILE_HEADER",
    "HEADER_LEN",
    "WBG_SUMMARY_KEY",
    "ExportResult",
    "ImportResult",
    "RecordLog",
    "RecordTail",
    "RunDecoder",
    "WandbRun",
    "decode_run",
    "existing_export",
    "exit_state",
    "export_runs",
    "find_run_logs",
    "import_logs",
    "read_run_header",
    "require_wandb",
    "store_run",
]
