"""The real Hub client code (huggingface_hub, datasets) against a local stand-in endpoint.

Each case runs in a fresh process with HF_ENDPOINT pointing at the stand-in: the endpoint
and offline mode are read when huggingface_hub is imported.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.hub_server import StandInHub

HH = [
    json.dumps({"chosen": f"\n\nHuman: question {i}?\n\nAssistant: answer {i}."}) + "\n"
    for i in range(30)
]


def python(code: str, tmp_path, endpoint: str, offline: bool = False):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env |= {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "home")}
    if offline:
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def hub():
    with StandInHub() as server:
        repo = server.repo("dataset", "acme/hh-rlhf")
        server.sha = repo.add_commit(
            {
                "data/train.jsonl": "".join(HH[:24]).encode(),
                "data/test.jsonl": "".join(HH).encode(),
                "README.md": b"# stand-in\n",
            },
            branch="main",
        )
        repo.add_commit({"data/train.jsonl": b"", "README.md": b"# moved on\n"}, branch="main")
        model = server.repo("model", "acme/olmo-tiny")
        for step, tokens in ((1000, 4), (2000, 8), (4000, 17)):
            model.add_commit({"config.json": b"{}"}, branch=f"step{step}-tokens{tokens}B")
        yield server


def definition(sha: str) -> dict:
    return {
        "path": "acme/hh-rlhf",
        "revision": sha,
        "format": "transcript",
        "column": "chosen",
        "test_split": "test",
    }


def test_prefetch_online_then_build_offline_reads_the_pinned_commit(hub, tmp_path):
    """The pinned commit, not `main` (which has moved on), is downloaded and later read with
    the network off."""
    defn = definition(hub.sha)
    cache = str(tmp_path / "cache")
    fetched = python(
        "import json; from overtrained.data import dataset_task as d; "
        f"print(json.dumps(d.prefetch(d.resolve({defn!r}), cache_dir={cache!r})))",
        tmp_path,
        hub.endpoint,
    )
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    assert json.loads(fetched.stdout.strip().splitlines()[-1])["rows"] == {"train": 24, "test": 30}
    built = python(
        "import json; from overtrained.data import dataset_task as d; "
        f"train, test, _ = d.build(d.resolve({defn!r}), 10, 5, 0, cache_dir={cache!r}); "
        "print(json.dumps([len(train), len(test), train[0]['prompt'][:9]]))",
        tmp_path,
        "http://127.0.0.1:9",
        offline=True,  # nothing listens there
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert json.loads(built.stdout.strip().splitlines()[-1]) == [10, 5, "\n\nHuman: "]


def test_a_missing_revision_or_repo_is_a_clear_error(hub, tmp_path):
    missing = python(
        "from overtrained.data import dataset_task as d; "
        f"d.prefetch(d.resolve({definition('0' * 40)!r}), cache_dir={str(tmp_path)!r})",
        tmp_path,
        hub.endpoint,
    )
    assert "dataset 'acme/hh-rlhf' has no revision '0000" in missing.stderr
    wrong = {**definition(hub.sha), "path": "acme/hh-rlfh"}
    typo = python(
        "from overtrained.data import dataset_task as d; "
        f"d.prefetch(d.resolve({wrong!r}), cache_dir={str(tmp_path)!r})",
        tmp_path,
        hub.endpoint,
    )
    assert "no dataset 'acme/hh-rlfh' on the Hub" in typo.stderr


def test_checkpoints_cli_reads_the_real_branch_list(hub, tmp_path):
    listed = python(
        "from overtrained import cli; "
        "cli.main(['checkpoints', 'acme/olmo-tiny', '--tokens', '8B'])",
        tmp_path,
        hub.endpoint,
    )
    assert "acme/olmo-tiny: 3 checkpoint branches of 3" in listed.stdout, listed.stderr
    assert "revisions: [step2000-tokens8B]" in listed.stdout
    typo = python(
        "import sys; from overtrained import cli; "
        "sys.exit(cli.main(['checkpoints', 'acme/olmo-tiy']))",
        tmp_path,
        hub.endpoint,
    )
    assert typo.returncode == 2 and "no model repository 'acme/olmo-tiy'" in typo.stderr
