"""A hub family end to end, against the local stand-in Hub.

A tiny Llama (transformers' architecture, not the native OLMo-2 path) is published under
two checkpoint branches. The workflow pins them, downloads them on the "login node"
(`snakemake prefetch`, online), then runs everything else with the network off: fine-tuning,
probes, perturbation, aggregation. Moving one branch and re-pinning makes exactly that
checkpoint's jobs stale.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.builders import LOCAL_HH_TASK
from tests.hub_server import StandInHub
from tests.workflow_helpers import copy_repo, dry_run_jobs, job_counts, snakemake

pytestmark = pytest.mark.workflow

REPO_ID = "acme/tiny-llama"
SECRET = "hf_SecretTokenThatMustNotLeak0123"
BRANCHES = {"step1000-tokens4B": 1, "step2000-tokens8B": 2}  # branch -> init seed


def tiny_llama(tokenizer_dir: Path, seed: int) -> dict[str, bytes]:
    """The files of a 2-layer Llama with the test corpus's tokenizer, random init `seed`."""
    import tempfile

    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=300,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    with tempfile.TemporaryDirectory() as tmp:
        transformers.LlamaForCausalLM(config).save_pretrained(tmp)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    for path in tokenizer_dir.iterdir():
        files[path.name] = path.read_bytes()
    return files


def hub_env(hub, home: Path, offline: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env["HF_TOKEN"] = SECRET  # what a gated repository needs; it must never be written down
    if offline:
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return env


def pin(work: Path, env: dict, *args: str):
    result = subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "pin", "config.yaml", *args],
        cwd=work,
        env=env | {"PYTHONPATH": str(work)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus_dir):
    root = tmp_path_factory.mktemp("hubwf")
    work = copy_repo(root / "overtrained")
    cfg = {
        "families": {
            "llama": {"source": "hub", "repo": REPO_ID, "revisions": list(BRANCHES)},
        },
        "finetune": {
            "tasks": {"hh": LOCAL_HH_TASK},
            "lrs": {"hh": [1.0e-3]},
            "batch_size": 8,
            "max_length": 128,
        },
        "evaluate": {
            "suites": {},
            "retention_text": {
                "path": "tests/data/hh_local",
                "format": "transcript",
                "column": "chosen",
            },
            "retention_documents": 20,
            "retention_tokens": 512,
        },
        "sensitivity": {"gammas": {"init": [1.0], "rms": [0.1]}, "seeds": [0]},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    with StandInHub() as hub:
        repo = hub.repo("model", REPO_ID)
        for branch, seed in BRANCHES.items():
            repo.add_commit(tiny_llama(corpus_dir / "tokenizer", seed), branch=branch)
        repo.branches["main"] = repo.branches["step2000-tokens8B"]
        home = root / "hf"
        online, offline = hub_env(hub, home, False), hub_env(hub, home, True)
        printed = pin(work, online)
        planned = job_counts(dry_run_jobs(work, "prefetch", env=offline))
        snakemake(work, "prefetch", "--cores", "1", env=online)
        snakemake(work, "--cores", "2", env=offline)
        yield {
            "work": work,
            "hub": hub,
            "online": online,
            "offline": offline,
            "printed": printed,
            "planned": planned,
            "home": home,
        }


def test_pins_are_written_and_prefetch_plans_only_downloads(run):
    manifest = json.loads((run["work"] / "pins/llama.json").read_text())
    repo = run["hub"].repo("model", REPO_ID)
    assert {e["revision"]: e["sha"] for e in manifest["checkpoints"]} == {
        b: repo.branches[b] for b in BRANCHES
    }
    assert [e["tokens"] for e in manifest["checkpoints"]] == [4 * 10**9, 8 * 10**9]
    assert "tokenizer: main" in run["printed"]
    assert dict(run["planned"]) == {
        "download": 2,
        "download_tokenizer": 1,
        "prefetch_dataset": 1,
        "prefetch_retention": 1,
        "prefetch": 1,
    }


def test_downloads_are_linked_from_the_shared_cache_with_provenance(run):
    repo = run["hub"].repo("model", REPO_ID)
    for branch in BRANCHES:
        base = run["work"] / f"results/llama/{branch}/base"
        record = json.loads((base / "provenance.json").read_text())
        assert (record["repo"], record["revision"], record["sha"]) == (
            REPO_ID,
            branch,
            repo.branches[branch],
        )
        weights = base / "model.safetensors"
        assert weights.is_symlink() and Path(os.readlink(weights)).is_relative_to(run["home"])
        files = {f["name"]: f for f in record["files"]}
        served = repo.commits[repo.branches[branch]]
        assert set(files) == set(served)
        import hashlib

        for name, data in served.items():
            assert files[name]["sha256"] == hashlib.sha256(data).hexdigest()
    written = [
        p
        for p in [*run["work"].glob("results/**/*.json"), *run["work"].glob("logs/**/*")]
        if p.is_file()
    ]
    assert len(written) > 20
    assert not [p for p in written if SECRET in p.read_text(errors="replace")]


def test_metrics_carry_the_commit_each_number_came_from(run):
    metrics = pd.read_parquet(run["work"] / "results/tables/metrics.parquet")
    rows = metrics[metrics.family == "llama"]
    repo = run["hub"].repo("model", REPO_ID)
    for branch in BRANCHES:
        mine = rows[rows.checkpoint == branch]
        assert set(mine.checkpoint_sha) == {repo.branches[branch]}
        assert set(mine.repo) == {REPO_ID} and set(mine.revision) == {branch}
        assert set(mine.source) == {"hub"}
        finetuned = mine[(mine.model == "finetuned") & (mine.metric == "pretrain_loss")]
        assert len(finetuned) == 1 and finetuned.value.notna().all()
        perturbed = mine[mine.model == "perturbed"]
        assert set(perturbed.scaling) == {"init", "rms"}
    tokens = rows.drop_duplicates("checkpoint").set_index("checkpoint").tokens
    assert tokens.to_dict() == {"step1000-tokens4B": 4 * 10**9, "step2000-tokens8B": 8 * 10**9}


def test_a_moved_branch_reruns_nothing_until_repinned_then_only_its_jobs(run):
    work, repo = run["work"], run["hub"].repo("model", REPO_ID)
    assert dry_run_jobs(work, env=run["offline"]) == []
    old = repo.branches["step1000-tokens4B"]
    files = dict(repo.commits[old])
    files["generation_config.json"] = b'{"moved": true}'
    new = repo.add_commit(files, branch="step1000-tokens4B")

    printed = pin(work, run["online"])  # checks, reports, moves nothing
    assert f"branch step1000-tokens4B has moved to {new[:12]}" in printed
    assert dry_run_jobs(work, env=run["offline"]) == []

    printed = pin(work, run["online"], "--repin")
    assert f"re-pinned step1000-tokens4B {old[:12]} -> {new[:12]}" in printed
    # The sha is a params entry of every job reading the checkpoint, not only the
    # download's: with the download left out, its readers are stale by params alone.
    readers = ("finetune", "probes", "sensitivity", "aggregate", "analysis", "figures", "claims")
    only_params = dry_run_jobs(
        work, "--rerun-triggers", "params", "--allowed-rules", *readers, env=run["offline"]
    )
    per_model = {"finetune", "probes", "sensitivity"}
    stale = {
        (rule, out.split(", ")[-1].removeprefix("results/"))
        for rule, out in only_params
        if rule in per_model
    }
    ckpt = "llama/step1000-tokens4B"
    assert stale == {
        # (finetune: also pulled in to remake the temporary weights its stale probe reads)
        ("finetune", f"{ckpt}/ft/hh/lr0.001/seed0/train.json"),
        ("probes", f"{ckpt}/base/eval/probes.json"),
        ("probes", f"{ckpt}/ft/hh/lr0.001/seed0/eval/probes.json"),
        ("sensitivity", f"{ckpt}/sensitivity.json"),
    }
    # the tables and figures follow (the config hash covers the pins)
    assert {rule for rule, _ in only_params} - per_model == {
        "aggregate",
        "analysis",
        "figures",
        "claims",
    }
    jobs = dry_run_jobs(work, env=run["offline"])
    assert dict(job_counts(jobs)) == {
        "download": 1,
        "finetune": 1,
        "probes": 2,
        "sensitivity": 1,
        "aggregate": 1,
        "analysis": 1,
        "figures": 1,
        "claims": 1,
    }
    assert all("step2000" not in out for _, out in jobs)
