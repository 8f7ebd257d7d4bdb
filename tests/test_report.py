"""`snakemake --report results/report.html`: one self-contained HTML page with every figure
(PNG and SVG, embedded as base64 data URIs in its `results` JSON), each figure's caption, the
verdict tables and the run's provenance, and the workflow description with this run's
config; headless Chromium renders it.

Chromium is the Debian package `chromium`; without it the browser checks skip, unless
OVERTRAINED_REQUIRE_CHROMIUM=1 (CI) makes them fail."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from docutils.core import publish_parts
from docutils.writers.html4css1 import Writer
from jinja2 import Environment

from overtrained import workflow
from overtrained.analysis import figures
from overtrained.core import config as C
from tests.workflow_helpers import REPO, copy_repo, snakemake

CAPTIONS = REPO / "report"
CATEGORIES = ("Figures", "Tables", "Provenance")
# The Snakefile's global `report:` description and the rule's captions are Jinja templates
# rendered like this, then reStructuredText; these targets are what Snakemake appends.
LINKS = "\n\n" + "\n".join(f".. _{name}: javascript:void(0)" for name in CATEGORIES)


def rst_to_html(text: str) -> str:
    """reStructuredText as Snakemake renders it, a warning being an error."""
    settings = {"halt_level": 2}
    return publish_parts(text, writer=Writer(), settings_overrides=settings)["body"]


def visible_text(markup: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def first_sentence(caption: Path) -> str:
    """A caption's first line, its opening sentence, as the report shows it."""
    line = caption.read_text().splitlines()[0]
    return re.sub(r"\s+", " ", line.replace("**", "").replace("``", "")).strip()


def report_blob(text: str, name: str):
    """One of the report's embedded JSON objects (`var x = {...};` in <script id=name>)."""
    match = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\s*</script>', text, re.S)
    assert match, f"no {name} in the report"
    return json.loads(match[1])


# --- without running the workflow ------------------------------------------------------------


# Each figure of the report, with the rule that draws it.
REPORT_FIGURES = [*((name, "figures") for name in workflow.FIGURES), ("theory", "theory")]


@pytest.mark.parametrize("name", [*figures.FIGURES, *figures.PAGES, "theory"])
def test_every_result_has_a_caption_that_renders_cleanly(name):
    caption = CAPTIONS / f"{name}.rst"
    body = rst_to_html(Environment().from_string(caption.read_text()).render() + LINKS)
    assert first_sentence(caption) in visible_text(body)
    assert len(visible_text(body)) > 200  # what it shows and what to look for


SHIPPED_CONFIGS = sorted(
    [
        REPO / "config.yaml",
        *(REPO / "tests/configs").glob("*.yaml"),
        *(REPO / "presets").glob("*.yaml"),
    ]
)


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_workflow_description_renders_for_every_shipped_config(path):
    try:
        cfg = C.load_file(path)
    except C.ConfigError:
        pytest.skip("not a complete config on its own")

    class Snakemake:
        config = cfg

    env = Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string((CAPTIONS / "workflow.rst").read_text()).render(snakemake=Snakemake)
    body = visible_text(rst_to_html(text + LINKS))
    for family in cfg["families"]:
        assert f"Family {family}" in body
    for task in cfg["finetune"]["tasks"]:
        assert f"Fine-tuning task {task}" in body


# --- the report of a finished run ------------------------------------------------------------


def report_config() -> dict:
    """tests/configs/tiny.yaml cut to one task at two LRs and one lm-eval task: every
    figure gets data at the least cost."""
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["finetune"]["tasks"] = {"arith": cfg["finetune"]["tasks"]["arith"]}
    cfg["finetune"]["lrs"] = {"arith": [1.0e-3, 1.0e-2]}
    cfg["evaluate"]["suites"]["mini"]["tasks"] = ["mini_arithmetic"]
    return cfg


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    work = copy_repo(tmp_path_factory.mktemp("report") / "overtrained")
    (work / "config.yaml").write_text(yaml.safe_dump(report_config()))
    snakemake(work, "--cores", "2")
    snakemake(work, "--report", "results/report.html")
    return work


@pytest.mark.workflow
def test_the_report_embeds_every_figure_as_png_and_svg_with_its_caption(reported):
    text = (reported / "results/report.html").read_text()
    results = report_blob(text, "results")
    categories = report_blob(text, "categories")
    for i, (name, rule) in enumerate(REPORT_FIGURES, 1):
        for suffix, mime in (("png", "image/png"), ("svg", "image/svg+xml")):
            path = f"results/figures/{name}.{suffix}"
            entry = results[path]
            assert entry["mime_type"] == mime
            assert entry["labels"] == {"figure": f"{i}. {name}", "format": suffix.upper()}
            assert path in categories["Figures"]["Other"]
            header, _, payload = entry["data_uri"].partition(";base64,")
            assert header.startswith(f"data:{mime};")
            assert base64.b64decode(payload) == (reported / path).read_bytes()
            assert first_sentence(CAPTIONS / f"{name}.rst") in visible_text(entry["caption"])
            assert entry["job_properties"]["rule"] == rule
        drawn = json.loads((reported / f"results/figures/{name}.json").read_text())
        assert drawn, f"{name} drew nothing from a run that has data for it"
    assert "System Message" not in text  # no reStructuredText warning anywhere


@pytest.mark.workflow
def test_the_report_has_the_tables_the_provenance_and_this_runs_description(reported):
    text = (reported / "results/report.html").read_text()
    results = report_blob(text, "results")
    categories = report_blob(text, "categories")
    assert set(categories) == set(CATEGORIES)
    for name in figures.PAGES:
        entry = results[f"results/figures/{name}.html"]
        assert entry["mime_type"] == "text/html"  # shown in the report, in a frame
        assert first_sentence(CAPTIONS / f"{name}.rst") in visible_text(entry["caption"])
        page = base64.b64decode(entry["data_uri"].partition(";base64,")[2]).decode()
        assert "<table>" in page
    over = base64.b64decode(
        results["results/figures/overtraining.html"]["data_uri"].partition(";base64,")[2]
    ).decode()
    assert "pretrain_loss" in over and "verdict" in over
    description = visible_text(report_blob(text, "workflow-desc"))
    assert "does more pre-training make a model harder to fine-tune?" in description
    assert "Family tiny (pretrain): budgets 16K, 32K" in description
    assert "Fine-tuning task arith (arithmetic): learning rates 0.001, 0.01." in description


def chromium() -> str | None:
    found = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
    )
    if found is None and os.environ.get("OVERTRAINED_REQUIRE_CHROMIUM") == "1":
        pytest.fail("OVERTRAINED_REQUIRE_CHROMIUM=1 but no chromium on PATH")
    if found is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    return found


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--virtual-time-budget=5000",  # let the report's scripts (React) finish rendering
    ]
    return subprocess.run(
        [chromium(), *flags, *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )


def screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    result = browse(page, profile, f"--screenshot={out}")
    assert out.exists(), result.stderr[-3000:]
    assert out.stat().st_size > 20_000
    from PIL import Image

    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not a blank page
    return pixels


# Shows one result the way a click on it would: the figure, its caption in the side bar.
SHOW = """<script>
(function show() {
  if (typeof app === "undefined" || !app) { setTimeout(show, 20); return; }
  app.setView({navbarMode: "resultinfo", content: "img",
               contentPath: results["%s"].data_uri, resultPath: "%s"});
})();
</script>
"""


@pytest.mark.workflow
def test_chromium_renders_the_report_and_a_figure_in_it(reported, tmp_path):
    report = reported / "results/report.html"
    landing = screenshot(report, tmp_path / "landing.png", tmp_path / "profile1")
    dom = browse(report, tmp_path / "profile2", "--dump-dom").stdout
    assert "does more pre-training make a model harder to fine-tune?" in dom
    assert all(category in dom for category in CATEGORIES)  # the menu, drawn by the script

    # The headline figure as SVG, opened inside the report by the report's own code.
    path = "results/figures/benchmarks.svg"
    text = report.read_text()
    cut = text.rindex("</body>")
    shown = tmp_path / "shown.html"
    shown.write_text(text[:cut] + SHOW % (path, path) + text[cut:])
    figure = screenshot(shown, tmp_path / "figure.png", tmp_path / "profile3")
    assert figure.shape == landing.shape and (figure != landing).any(axis=2).mean() > 0.1
    dom = browse(shown, tmp_path / "profile4", "--dump-dom").stdout
    assert '<img src="data:image/svg+xml;' in dom
    assert first_sentence(CAPTIONS / "benchmarks.rst") in visible_text(dom)
