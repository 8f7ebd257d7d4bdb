"""A failed job says why in one line: errors whose message says what to fix, a full disk,
exhausted memory; anything else keeps its traceback."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from overtrained.core import errors
from overtrained.core.schema import ConfigError
from tests.workflow_helpers import REPO


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConfigError("finetune.max_length: raise it"), "error: finetune.max_length: raise it"),
        (OSError(errno.ENOSPC, "No space left on device", "/scratch/x"), "no space left"),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/home/x"), "df -h /home"),
        (MemoryError(), "out of memory (MemoryError"),
        (RuntimeError("DefaultCPUAllocator: not enough memory: you tried"), "mem_mb"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "per_device_batch_size"),
    ],
)
def test_errors_a_user_fixes_are_one_line(error, words):
    line = errors.explain(error)
    assert line.startswith("error: ") and words in line and "\n" not in line


@pytest.mark.parametrize(
    "error", [KeyError("x"), OSError(errno.ENOENT, "No such file"), RuntimeError("shape")]
)
def test_other_errors_keep_their_traceback(error):
    assert errors.explain(error) is None


def job(tmp_path, body: str) -> tuple[subprocess.CompletedProcess, str]:
    """A rule-script-like process: log_to, then `body`; (its result, its log)."""
    script = tmp_path / "job.py"
    log = tmp_path / "logs/job.log"
    script.write_text(
        f"from overtrained.core.entry import log_to\nlog_to({str(log)!r})\n" + textwrap.dedent(body)
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    return result, log.read_text()


def test_a_full_disk_is_named_in_the_log_and_on_the_console(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full scratch or results disk does."""
    result, log = job(
        tmp_path,
        """
        print("training...")
        with open("/dev/full", "w") as f:
            f.write("x" * 100_000)
        """,
    )
    assert result.returncode != 0
    assert log.splitlines()[-1].startswith("error: no space left on the device")
    assert "Traceback" not in log
    assert "error: no space left" in result.stderr  # Snakemake's console hears it too


def test_a_fixable_error_is_one_line_and_a_bug_keeps_its_traceback(tmp_path):
    result, log = job(
        tmp_path,
        """
        from overtrained.core.schema import ConfigError
        raise ConfigError("finetune.max_length: 8 tokens ...; raise finetune.max_length")
        """,
    )
    assert result.returncode == 1
    assert log.strip() == "error: finetune.max_length: 8 tokens ...; raise finetune.max_length"
    result, log = job(tmp_path, "{}['missing']\n")
    assert result.returncode == 1 and "Traceback" in log and "KeyError" in log


def test_a_stopped_job_says_it_was_stopped(tmp_path):
    """SIGTERM (Slurm's time limit, scancel) ends the log with one line saying so."""
    script = tmp_path / "job.py"
    log = tmp_path / "job.log"
    script.write_text(
        "import time\nfrom overtrained.core.entry import log_to\n"
        f"log_to({str(log)!r})\nprint('working', flush=True)\ntime.sleep(60)\n"
    )
    job = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while "working" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, console = job.communicate(timeout=60)
    last = log.read_text().splitlines()[-1]
    assert job.returncode == 1 and last.startswith("error: stopped by SIGTERM after")
    assert "time limit" in last and "Traceback" not in log.read_text()
    assert last in console


def test_a_job_that_runs_out_of_memory_says_so(tmp_path):
    """torch's CPU allocator refusing 40 TB: the log's last line names the cause and the fix."""
    result, log = job(tmp_path, "import torch\ntorch.empty(10**13)\n")
    assert result.returncode == 1 and "Traceback" not in log
    last = log.splitlines()[-1]
    assert last.startswith("error: out of memory (RuntimeError: ") and "mem_mb" in last
    assert "can't allocate memory" in last
