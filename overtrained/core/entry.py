"""Shared plumbing of the rule entry points in scripts/: logging into the rule's log file, and
a failure's cause as its last line (see core.errors)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

# The job's stderr before its log took it over (Snakemake's console, or Slurm's output file).
CONSOLE_FD: int | None = None
_STARTED = time.monotonic()  # (a served job imports this module afresh: its own start)


def log_to(path: str | Path, append: bool = False) -> None:
    """Send this process's stdout and stderr (Python and C level) to the rule's log file;
    `append` keeps the log of earlier attempts (a resumed run's interruption, say). An
    uncaught error then ends the log with errors.report's line (or its traceback)."""
    global CONSOLE_FD
    if CONSOLE_FD is None:
        CONSOLE_FD = os.dup(2)
    sys.excepthook = _report_uncaught
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stopped)  # (stages with their own handler keep it)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    mode = os.O_APPEND if append else os.O_TRUNC
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )


def params_dict(params) -> dict:
    """Snakemake's params object as a plain dict (what provenance records)."""
    return {key: value for key, value in params.items()}


def _report_uncaught(kind, error, tb) -> None:
    from overtrained.core import errors

    errors.report(error.with_traceback(tb), CONSOLE_FD)


def _stopped(signum, _frame) -> None:
    """SIGTERM (Slurm's time limit, scancel, a stopped Snakemake): say so in the log."""
    from overtrained.core.errors import Stopped

    raise Stopped(
        f"stopped by {signal.Signals(signum).name} after {time.monotonic() - _STARTED:.0f} s: "
        "under Slurm most often the job's time limit (raise the rule's runtime, "
        "<section>.resources.runtime in the config), otherwise scancel or a stopped snakemake; "
        "run snakemake again to redo this job"
    )
