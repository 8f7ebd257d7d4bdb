"""The code style the project keeps: ruff and snakefmt clean (what reviewers run)."""

import subprocess
import sys

from tests.workflow_helpers import REPO


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True)


def test_ruff_is_clean():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout


def test_snakefmt_is_clean():
    result = run("snakefmt", "--check", "Snakefile", "rules")
    assert result.returncode == 0, result.stderr
