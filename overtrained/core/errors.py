"""How a failed job says why: one line for an error whose message says what to fix, and for
a full disk or exhausted memory; the traceback for anything else (a bug to report)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback


class FixableError(Exception):
    """An error whose message names what is wrong and how to fix it: shown as one line,
    without a traceback. The workflow's own error types (ConfigError, LoadingError, ...)
    derive from it."""


class Stopped(FixableError):
    """The job was told to stop (SIGTERM) before it finished."""


# What the message of torch's CPU and CUDA allocators says when memory runs out.
_OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory", "not enough memory")


def explain(error: BaseException) -> str | None:
    """The one line for `error`, or None where its traceback is what helps."""
    if isinstance(error, FixableError):
        return f"error: {error}"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = error.filename or "this job's outputs or scratch"
        folder = str(where) if os.path.isdir(str(where)) else os.path.dirname(str(where))
        return (
            f"error: no space left on the device holding {where} ({error.strerror}): free "
            f"space there (`df -h {folder or '.'}`), or move the "
            "outputs (--directory) or finetune.scratch_dir to a larger filesystem, then "
            "re-run snakemake: only this job and the ones after it run again"
        )
    text = str(error).lower()
    if isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and any(word in text for word in _OUT_OF_MEMORY_WORDS)
    ):
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return (
            f"error: out of memory ({type(error).__name__}: {first}): give the job more "
            "(the rule's mem_mb; on a GPU, a smaller finetune.per_device_batch_size or "
            "gradient checkpointing), or run fewer jobs at once (--cores, --jobs)"
        )
    return None


def report(error: BaseException, console_fd: int | None = None) -> None:
    """Write the one-line explanation, or the traceback, to stderr (the job's log); a one-line
    explanation also goes to `console_fd` (the job's stderr before its log took over),
    so a full disk that cannot take the log's last line still says why."""
    line = explain(error)
    if line is None:
        traceback.print_exception(error, file=sys.stderr)
        return
    with contextlib.suppress(OSError):  # the log's own disk may be the full one
        print(line, file=sys.stderr, flush=True)
    if console_fd is not None:
        with contextlib.suppress(OSError):
            os.write(console_fd, (line + "\n").encode())
