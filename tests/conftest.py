"""Shared fixtures: a tiny corpus, tokenizer and checkpoint made by the project itself."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# The job servers that the tests' workflow runs start live in a folder of this session's,
# and are stopped when it ends (a developer's own runs keep theirs).
os.environ["OVERTRAINED_JOB_SERVER_DIR"] = tempfile.mkdtemp(prefix="ot-job-servers-")

REPO = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    """A Slurm config left by an interrupted Slurm test would slow every snakemake start."""
    from tests.slurm_cluster import remove_config

    with contextlib.suppress(OSError):
        remove_config()


def pytest_sessionfinish(session, exitstatus):
    from overtrained.execution import job_server

    job_server.stop_all()
    shutil.rmtree(os.environ["OVERTRAINED_JOB_SERVER_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


def tiny_config() -> dict:
    """The smallest config that exercises every stage (tests/configs/tiny.yaml), validated."""
    from overtrained.core import config

    return config.load_file(TINY_CONFIG)


def tiny_family() -> dict:
    """A pretrain family small enough to train in a second."""
    return tiny_config()["families"]["tiny"]


@pytest.fixture
def family() -> dict:
    return copy.deepcopy(tiny_family())


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """tokenizer/ + train.npy + heldout.npy + corpus.json, as the corpus rule writes them."""
    from overtrained.core import provenance
    from overtrained.data import corpus
    from overtrained.workflow import corpus_spec_fields

    fam = tiny_family()
    out = tmp_path_factory.mktemp("corpus")
    spec = corpus.CorpusSpec.from_dict(corpus_spec_fields(fam["corpus"]))
    corpus.train_tokenizer(spec, fam["model"]["vocab_size"], out / "tokenizer", 50)
    corpus.write_token_stream(spec, out / "tokenizer", "train", 80_000, out / "train.npy")
    corpus.write_token_stream(spec, out / "tokenizer", "heldout", 8_000, out / "heldout.npy")
    provenance.write_json(out / "corpus.json", {"fingerprint": corpus.corpus_fingerprint(spec)})
    return out


@pytest.fixture(scope="session")
def checkpoint_dir(corpus_dir, tmp_path_factory) -> Path:
    """A pre-trained tiny checkpoint in Hugging Face format."""
    from overtrained.train import pretrain

    out = tmp_path_factory.mktemp("ckpt") / "base"
    pretrain.run_checkpoint(tiny_family(), "16K", 0, corpus_dir, out, params={"code": "test"})
    return out


def load_yaml(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def recorded_hub():
    """The local stand-in Hub serving the recorded branch lists of tests/data/hub_branches/
    (each branch a commit of its own)."""
    import json

    from tests.hub_server import StandInHub

    with StandInHub() as server:
        for path in (REPO / "tests" / "data" / "hub_branches").glob("*.json"):
            recording = json.loads(path.read_text())
            repo = server.repo("model", recording["repo"])
            for branch in recording["branches"]:
                repo.add_commit({"config.json": branch.encode()}, branch=branch)
        yield server
