"""The documentation's links: every relative link in README.md, CHANGELOG.md and docs/
points at a file of the repository, and every #anchor at a heading of its target (GitHub's
slug rules), so moving a page or renaming a heading cannot leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from tests.workflow_helpers import REPO

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"\s*(```+|~~~+)")


def prose_lines(text: str, blank_code: bool = True) -> list[str]:
    """The lines outside fenced code, with inline code blanked (links there are not links)."""
    out, fence = [], None
    for line in text.split("\n"):
        opened = FENCE.match(line)
        if opened:
            if fence is None:
                fence = opened.group(1)[0] * 3
            elif line.strip().startswith(fence):
                fence = None
            out.append("")
            continue
        blanked = re.sub(r"`[^`]*`", "``", line) if blank_code else line
        out.append("" if fence else blanked)
    return out


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text(), blank_code=False):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_every_relative_link_resolves():
    pages = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken, checked = [], 0
    for page in pages:
        for number, line in enumerate(prose_lines(page.read_text()), 1):
            for link in LINK.finditer(line):
                target = link.group(1)
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto:
                    continue
                checked += 1
                path, _, anchor = target.partition("#")
                dest = (page.parent / unquote(path)).resolve() if path else page
                where = f"{page.relative_to(REPO)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where}: no such heading")
    assert checked > 50
    assert not broken, "\n".join(broken)
