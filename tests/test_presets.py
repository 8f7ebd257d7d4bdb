"""Each paper preset plans the whole sweep, pinned against a recorded branch list.

The branch lists in tests/data/hub_branches/ are served by the local stand-in Hub (each
branch a commit of its own), `overtrained pin` pins the preset through the real Hub client,
and the dry-run then plans offline from the manifest alone, as a compute node would.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.workflow_helpers import REPO, dry_run_jobs, job_counts

pytestmark = pytest.mark.workflow

RECORDINGS = REPO / "tests" / "data" / "hub_branches"


def env(**extra) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    return base | {"HF_HUB_DISABLE_TELEMETRY": "1"} | extra


@pytest.fixture(scope="module")
def hub(recorded_hub):
    return recorded_hub


def pin(workdir: Path, preset: Path, endpoint: str, *args: str):
    return subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "pin", str(preset), *args],
        cwd=workdir,
        env=env(HF_ENDPOINT=endpoint, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def expected_counts(preset: dict) -> dict:
    """Jobs per rule, counted from the preset's own numbers."""
    (family,) = preset["families"].values()
    ckpts = len(family["tokens"])
    runs = sum(len(grid) for grid in preset["finetune"]["lrs"].values())
    tasks = len(preset["finetune"]["tasks"])
    suites = len(preset["evaluate"]["suites"])
    models = ckpts * (1 + runs)
    return {
        "download": ckpts,
        "download_tokenizer": 1,
        "prefetch_dataset": tasks,
        "dataset_task": tasks,
        "prefetch_suite": suites,
        "prefetch_retention": 1,
        "retention_stream": 1,
        "finetune": ckpts * runs,
        "evaluate": models * suites,
        "probes": models,
        "sensitivity": ckpts,
        "aggregate": 1,
        "analysis": 1,
        "figures": 1,
        "claims": 1,
        "theory": int(preset.get("theory", {}).get("enabled", True)),
    }


@pytest.mark.parametrize("name", ["olmo-1b", "olmo2-7b", "amber-7b"])
def test_preset_pins_then_plans_offline(hub, tmp_path, name):
    path = REPO / "presets" / f"{name}.yaml"
    preset = yaml.safe_load(path.read_text())
    pinned = pin(tmp_path, path, hub.endpoint)
    assert pinned.returncode == 0, pinned.stderr
    manifest = json.loads((tmp_path / "pins" / f"{name}.json").read_text())
    (family,) = preset["families"].values()
    assert len(manifest["checkpoints"]) == len(family["tokens"])
    # every pin is a branch of the recording, within the 25% the resolver allows
    recording = json.loads((RECORDINGS / f"{family['repo'].replace('/', '__')}.json").read_text())
    for entry in manifest["checkpoints"]:
        assert entry["revision"] in recording["branches"]
        assert abs(entry["distance"]) <= 0.25
        assert len(entry["sha"]) == 40

    started = time.perf_counter()
    jobs = dry_run_jobs(
        tmp_path,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(path),
        env=env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9"),
    )
    seconds = time.perf_counter() - started
    print(f"{name}: dry-run of {len(jobs)} jobs in {seconds:.1f} s")
    assert dict(job_counts(jobs)) == expected_counts(preset)
    downloads = sorted(out for rule, out in jobs if rule == "download")
    assert downloads == sorted(
        f"results/{next(iter(preset['families']))}/{e['revision']}/base/provenance.json"
        for e in manifest["checkpoints"]
    )


def test_olmo1b_preset_pins_the_paper_checkpoints(hub, tmp_path):
    """The budgets around the paper's turning point resolve to distinct branches, and the
    last to OLMo-1B's final step (two branches share its 3094B suffix)."""
    pinned = pin(tmp_path, REPO / "presets" / "olmo-1b.yaml", hub.endpoint)
    assert pinned.returncode == 0, pinned.stderr
    rows = {
        e["request"]: e["revision"]
        for e in json.loads((tmp_path / "pins" / "olmo-1b.json").read_text())["checkpoints"]
    }
    assert rows["3.1T"] == "step738020-tokens3094B"
    assert rows["1.5T"] == "step369000-tokens1547B"
    assert rows["2.5T"] == "step593000-tokens2486B"
    assert len(set(rows.values())) == len(rows)
    printed = pinned.stdout
    assert "pinned 3.1T -> step738020-tokens3094B" in printed and "tokenizer: main" in printed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"repo": "allenai/OLMo-1B-fh"},
            "Config error: families.olmo-1b: no model repository 'allenai/OLMo-1B-fh' on the "
            "Hub (check the owner/name spelling, and HF_TOKEN for a gated or private one)",
        ),
        (
            {"tokens": ["3.1T", "6T"]},
            "Config error: families.olmo-1b: allenai/OLMo-1B-hf: budget 6T is -48% from the "
            "nearest checkpoint (step738020-tokens3094B, 3094B tokens); the repository spans "
            "4B to 3094B tokens",
        ),
        (
            {"tokens": None, "revisions": ["step738020-tokens3095B"]},
            "Config error: families.olmo-1b: allenai/OLMo-1B-hf: no branch named "
            "'step738020-tokens3095B'; nearest: step738020-tokens3094B, step738000-tokens3094B",
        ),
    ],
)
def test_user_mistakes_stop_the_plan_with_one_line(hub, tmp_path, change, message):
    """Before any job: the plan itself (Snakefile) pins, so it reports the mistake."""
    preset = yaml.safe_load((REPO / "presets" / "olmo-1b.yaml").read_text())
    preset["families"]["olmo-1b"].update(change)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(preset))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--configfile",
            str(path),
            "--directory",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env(HF_ENDPOINT=hub.endpoint),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Config error")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr[-2000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "pins").exists()


def test_the_first_plan_pins_by_itself(hub, tmp_path):
    """Without `overtrained pin`, the first `snakemake -n` resolves and writes the manifest
    (saying what it pinned); the next plan reads it and prints nothing about pins."""
    args = ["-n", "--snakefile", str(REPO / "Snakefile"), "--configfile"]
    args += [str(REPO / "presets/amber-7b.yaml"), "--directory", str(tmp_path)]

    def plan(**extra):
        return subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=tmp_path,
            env=env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = plan(HF_ENDPOINT=hub.endpoint)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "families.amber-7b: pinned 120B -> ckpt_033 (119B tokens, -0.8%)" in first.stderr
    manifest = json.loads((tmp_path / "pins/amber-7b.json").read_text())
    assert [e["revision"] for e in manifest["checkpoints"]][-1] == "ckpt_358"
    again = plan(HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "pinned" not in again.stderr
