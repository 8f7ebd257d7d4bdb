"""The code style the project keeps: ruff and snakefmt clean (what reviewers run)."""

import re
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


def test_ruff_format_is_clean():
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout


def test_nothing_points_outside_the_repository():
    """A clone has no design notes or paper summary beside it: every fact the project cites
    is written into docs/ (docs/paper.md, docs/design.md)."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    outside = re.compile(r"\.\./shared|\b(?:PAPER|DESIGN)\.md\b")
    hits = []
    for name in filter(None, tracked):
        path = REPO / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        hits += [f"{name}: {match}" for match in outside.findall(text)]
    assert not hits, "\n".join(hits)
