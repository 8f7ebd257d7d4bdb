"""Downloading hub checkpoints by pinned commit against the stand-in Hub: verified files linked
into the results tree, resume after a dropped connection, corruption caught and refetched,
the pickle policy, and one-line errors for what the user mistyped.

Each case runs `download.download` in a fresh process with HF_ENDPOINT pointing at the
stand-in (huggingface_hub reads it at import) and HF_HOME in tmp_path.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from overtrained.workflow import PICKLE_PATTERNS
from tests.hub_server import StandInHub

PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer*",
]
CHUNK = 10 * 1024 * 1024  # huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE: it resumes per chunk


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights(n: int, seed: int) -> bytes:
    """A safetensors file of n float32 values."""
    rng = np.random.default_rng(seed)
    return save({"w": rng.standard_normal(n, dtype=np.float32)})


def small_model(seed: int = 0) -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "llama", "seed": seed}).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "vocab": ["a", "b"]}).encode(),
        "model.safetensors": weights(60_000, seed),  # 240 KB
    }


def run_downloads(
    hub, tmp_path, cases: dict, after: str = "", before: str = ""
) -> tuple[dict, str]:
    """Run download(**kwargs) for each case in one fresh process; each result or error."""
    code = f"""
import json, logging
logging.basicConfig(level=logging.INFO)
{before}
from overtrained.hub import download
download.BACKOFF_SECONDS = 0
out = {{}}
for label, kwargs in {cases!r}.items():
    try:
        out[label] = download.download(**kwargs)
    except download.DownloadError as err:
        out[label] = {{"error": str(err)}}
{after}
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "home")}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def case(repo, sha, dest, patterns=PATTERNS, revision=None, **kwargs) -> dict:
    return {
        "repo": repo,
        "revision": revision,
        "sha": sha,
        "dest_dir": str(dest),
        "allow_patterns": list(patterns),
        **kwargs,
    }


@pytest.fixture(scope="module")
def tiny_llama() -> tuple[dict[str, bytes], float]:
    """A real (tiny) Llama's files as save_pretrained writes them, and its parameter sum."""
    import tempfile

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1024,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    total = float(sum(p.detach().double().sum() for p in model.parameters()))
    return files, total


def test_the_pinned_commit_is_downloaded_verified_and_linked_though_the_branch_moved(
    tiny_llama, tmp_path
):
    files, param_sum = tiny_llama
    files = {**files, "tokenizer.json": b'{"version": "1.0"}', "README.md": b"# tiny\n"}
    with StandInHub() as hub:
        repo = hub.repo("model", "acme/tiny-llama")
        pinned = repo.add_commit(files, branch="step1000-tokens4B")
        moved = repo.add_commit(
            {**files, "model.safetensors": weights(1000, 1)}, branch="step1000-tokens4B"
        )
        dest = tmp_path / "results" / "hubfam" / "step1000-tokens4B" / "base"
        (dest / "old").mkdir(parents=True)
        (dest / "old" / "shard.safetensors").symlink_to(tmp_path / "gone")  # stale, dangling
        (dest / "provenance.json").write_text("{}")  # the record: kept
        (dest / "eval").mkdir()
        (dest / "eval" / "probes.json").write_text('{"kept": true}')  # a result: kept
        load = (
            "import transformers; "
            f"m = transformers.AutoModelForCausalLM.from_pretrained({str(dest)!r}); "
            "out['param_sum'] = float(sum(p.detach().double().sum() for p in m.parameters()))"
        )
        out, stderr = run_downloads(
            hub,
            tmp_path,
            {"got": case("acme/tiny-llama", pinned, dest, revision="step1000-tokens4B")},
            after=load,
        )
        resolves = [r for r in hub.requests if "/resolve/" in r]
    got = out["got"]
    wanted = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
    assert sorted(f["name"] for f in got["files"]) == wanted  # README.md: no pattern
    for f in got["files"]:
        assert f["sha256"] == sha256(files[f["name"]]) and f["size"] == len(files[f["name"]])
        link = dest / f["name"]
        assert link.is_symlink() and os.path.isabs(os.readlink(link))
        assert link.read_bytes() == files[f["name"]]
    assert got["total_bytes"] == sum(len(files[n]) for n in wanted)
    assert got["sha"] == pinned and got["branch_head"] == moved != pinned
    assert got["retries"] == 0 and got["refetched"] == []
    assert got["cache"].startswith(str(tmp_path / "home" / "hub"))
    assert got["cache"].endswith(pinned)
    assert sorted(p.name for p in dest.iterdir()) == sorted([*wanted, "eval", "provenance.json"])
    assert (dest / "provenance.json").read_text() == "{}"
    assert (dest / "eval" / "probes.json").read_text() == '{"kept": true}'
    assert resolves and all(f"/resolve/{pinned}/" in r for r in resolves)  # never the branch
    assert f"now points at {moved}, results stay pinned to {pinned}" in stderr
    assert out["param_sum"] == pytest.approx(param_sum)  # from_pretrained reads the links
    assert "token" not in json.dumps(got).lower().replace("tokens4b", "").replace("tokenizer", "")


def test_a_dropped_connection_resumes_with_a_range_request(tmp_path):
    """huggingface_hub resumes a body cut short inside the call, from its last whole 10 MiB
    chunk (so only files over 10 MiB send a Range request)."""
    big = weights(CHUNK // 4 + 100_000, 2)  # 10.4 MiB
    with StandInHub() as hub:
        sha = hub.repo("model", "acme/big").add_commit({"model.safetensors": big})
        hub.drop[("acme/big", "model.safetensors")] = (CHUNK + 200_000, 1)
        out, _ = run_downloads(hub, tmp_path, {"big": case("acme/big", sha, tmp_path / "b")})
        gets = hub.gets("acme/big", "model.safetensors")
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == big
    assert out["big"]["files"][0]["sha256"] == sha256(big)
    assert len(gets) == 2 and gets[1].endswith(f"Range=bytes={CHUNK}-")  # resumed
    assert out["big"]["retries"] == 0  # resumed by huggingface_hub, not by our retry


def test_a_reset_connection_is_retried_and_that_file_starts_over(tmp_path):
    """A connection reset escapes huggingface_hub; our retry downloads the file again from
    the start (its partial temporary file is gone), keeping the files already complete."""
    files = small_model()
    with StandInHub() as hub:
        flaky = hub.repo("model", "acme/flaky").add_commit(files)
        down = hub.repo("model", "acme/down").add_commit(files)
        hub.drop[("acme/flaky", "model.safetensors")] = (100_000, 1, "reset")
        hub.drop[("acme/flaky", "config.json")] = (5, 1)  # under 10 MiB: restarts, no Range
        hub.drop[("acme/down", "model.safetensors")] = (100_000, 99, "reset")
        out, stderr = run_downloads(
            hub,
            tmp_path,
            {
                "flaky": case("acme/flaky", flaky, tmp_path / "f"),
                "down": case("acme/down", down, tmp_path / "d", retries=1),
            },
        )
        flaky_gets = hub.gets("acme/flaky", "model.safetensors")
        config_gets = hub.gets("acme/flaky", "config.json")
        down_gets = hub.gets("acme/down", "model.safetensors")
    assert (tmp_path / "f" / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert out["flaky"]["retries"] == 1
    assert len(flaky_gets) == 2 and "Range" not in flaky_gets[1]  # started over
    assert len(config_gets) == 2 and "Range" not in config_gets[1]
    assert len(hub.gets("acme/flaky", "tokenizer.json")) == 1  # complete: not fetched again
    error = out["down"]["error"]
    assert "acme/down: download of" in error and "could not be reached after 1 retries" in error
    assert "ReadError" in error and len(down_gets) == 2 and "\n" not in error


def test_corruption_is_detected_and_refetched_once(tmp_path):
    files = small_model()
    with StandInHub() as hub:
        sha = hub.repo("model", "acme/tiny").add_commit(files)
        rotten = hub.repo("model", "acme/rotten").add_commit(files)
        hub.corrupt[("acme/tiny", "model.safetensors")] = 1  # LFS: checked by sha256
        hub.corrupt[("acme/tiny", "config.json")] = 1  # git blob sha1
        hub.corrupt[("acme/rotten", "model.safetensors")] = 99
        out, _ = run_downloads(
            hub,
            tmp_path,
            {
                "tiny": case("acme/tiny", sha, tmp_path / "t"),
                "rotten": case("acme/rotten", rotten, tmp_path / "r"),
            },
        )
        gets = {n: len(hub.gets("acme/tiny", n)) for n in files}
        rotten_gets = hub.gets("acme/rotten", "model.safetensors")
    tiny = out["tiny"]
    assert sorted(tiny["refetched"]) == ["config.json", "model.safetensors"]
    assert gets == {"config.json": 2, "model.safetensors": 2, "tokenizer.json": 1}
    for name, data in files.items():
        assert (tmp_path / "t" / name).read_bytes() == data
    assert {f["name"]: f["sha256"] for f in tiny["files"]} == {
        n: sha256(d) for n, d in files.items()
    }
    error = out["rotten"]["error"]
    flipped = bytes(b ^ 0xFF for b in files["model.safetensors"])
    assert "acme/rotten: model.safetensors at" in error
    assert f"expected sha256 {sha256(files['model.safetensors'])}" in error
    assert f"got {sha256(flipped)}" in error
    assert len(rotten_gets) == 2  # the first download and one refetch
    snapshots = tmp_path / "home" / "hub" / "models--acme--rotten" / "snapshots" / rotten
    assert not (snapshots / "model.safetensors").exists()  # the bad copy is not kept
    assert not (tmp_path / "r").exists()  # nothing linked


def test_pickle_weights_need_allow_pickle_and_lose_to_safetensors(tmp_path):
    pickle = io.BytesIO()
    np.save(pickle, np.arange(1000))  # the bytes are never unpickled here
    files = {"config.json": b"{}", "pytorch_model.bin": pickle.getvalue()}
    with StandInHub() as hub:
        pickled = hub.repo("model", "acme/pickled").add_commit(files)
        both = hub.repo("model", "acme/both").add_commit({**files, **small_model()})
        with_pickles = [*PATTERNS, *PICKLE_PATTERNS]
        out, _ = run_downloads(
            hub,
            tmp_path,
            {
                "refused": case("acme/pickled", pickled, tmp_path / "a"),
                "matched_refused": case("acme/pickled", pickled, tmp_path / "b", with_pickles),
                "allowed": case(
                    "acme/pickled", pickled, tmp_path / "c", with_pickles, allow_pickle=True
                ),
                "both": case("acme/both", both, tmp_path / "d", with_pickles, allow_pickle=True),
                "nothing": case("acme/pickled", pickled, tmp_path / "e", ["*.gguf", "w/*"]),
                "tokenizer": case(
                    "acme/pickled",
                    pickled,
                    tmp_path / "f",
                    ["config.json", "tokenizer*"],
                    require_weights=False,
                ),
            },
        )
        both_pickle_gets = hub.gets("acme/both", "pytorch_model.bin")
    for label in ("refused", "matched_refused"):
        error = out[label]["error"]
        assert f"acme/pickled at {pickled[:12]} holds only pickle weights (pytorch_model.bin)" in (
            error
        )
        assert "families.<name>.allow_pickle: true" in error and "another repository" in error
    assert [f["name"] for f in out["allowed"]["files"]] == ["config.json", "pytorch_model.bin"]
    assert (tmp_path / "c" / "pytorch_model.bin").read_bytes() == files["pytorch_model.bin"]
    assert "pytorch_model.bin" not in [f["name"] for f in out["both"]["files"]]
    assert both_pickle_gets == [] and not (tmp_path / "d" / "pytorch_model.bin").exists()
    assert out["nothing"]["error"] == (
        f"acme/pickled at {pickled[:12]}: allow_patterns ['*.gguf', 'w/*'] matched nothing; "
        "the revision has 2 files: config.json, pytorch_model.bin"
    )
    assert [f["name"] for f in out["tokenizer"]["files"]] == ["config.json"]


def test_a_missing_repo_or_commit_is_a_one_line_error_naming_it(tmp_path):
    files = small_model()
    with StandInHub() as hub:
        repo = hub.repo("model", "acme/olmo-tiny")
        for step, tokens in ((1000, 4), (2000, 8), (4000, 17)):
            head = repo.add_commit(files, branch=f"step{step}-tokens{tokens}B")
        gone = "0" * 40
        out, _ = run_downloads(
            hub,
            tmp_path,
            {
                "repo": case("acme/olmo-tiy", gone, tmp_path / "a", revision="main"),
                "typo": case("acme/olmo-tiny", gone, tmp_path / "b", revision="step400-tokens17B"),
                "rewritten": case(
                    "acme/olmo-tiny", gone, tmp_path / "c", revision="step4000-tokens17B"
                ),
                "unpinned": case("acme/olmo-tiny", "step4000-tokens17B", tmp_path / "d"),
            },
        )
    errors = {label: result["error"] for label, result in out.items()}
    assert all("\n" not in e for e in errors.values())
    assert errors["repo"] == (
        "no model repository 'acme/olmo-tiy' on the Hub (check the owner/name spelling, and "
        "HF_TOKEN for a gated or private one)"
    )
    assert errors["typo"].startswith(f"model repository 'acme/olmo-tiny' has no commit {gone}")
    assert "no branch named 'step400-tokens17B'; nearest: step4000-tokens17B" in errors["typo"]
    assert f"branch 'step4000-tokens17B' now points at {head}" in errors["rewritten"]
    assert "overtrained pin --repin" in errors["rewritten"]
    assert "'step4000-tokens17B' is not a 40-hex commit sha" in errors["unpinned"]


def test_the_rule_script_records_provenance_without_the_token(tmp_path):
    files = small_model()
    with StandInHub() as hub:
        sha = hub.repo("model", "acme/tiny").add_commit(files, branch="step1000-tokens4B")
        record = tmp_path / "results" / "hubfam" / "step1000-tokens4B" / "base" / "provenance.json"
        params = {
            "download": {
                "repo": "acme/tiny",
                "revision": "step1000-tokens4B",
                "sha": sha,
                "allow_patterns": PATTERNS,
                "allow_pickle": False,
                "trust_remote_code": False,
                "require_weights": True,
                "budget": "4B",
                "tokens": 4_000_000_000,
            },
            "code": "abc",
        }
        code = f"""
import runpy, types
class Params(dict):
    __getattr__ = dict.__getitem__
smk = types.SimpleNamespace(
    params=Params({params!r}),
    output=types.SimpleNamespace(record={str(record)!r}),
    log=[{str(tmp_path / "download.log")!r}],
)
runpy.run_path("scripts/download.py", init_globals={{"snakemake": smk}})
"""
        env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
        env |= {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(tmp_path / "home"),
            "HF_TOKEN": "hf_SecretSecretSecret1234",
        }
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, (tmp_path / "download.log").read_text()[-3000:]
    written = json.loads(record.read_text())
    assert written["stage"] == "download" and written["family_source"] == "hub"
    assert (written["sha"], written["budget"], written["tokens"]) == (sha, "4B", 4_000_000_000)
    assert written["seed"] is None and written["branch_head"] == sha
    assert {f["name"]: f["sha256"] for f in written["files"]} == {
        n: sha256(d) for n, d in files.items()
    }
    assert (record.parent / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert "SecretSecret" not in record.read_text()
    assert "SecretSecret" not in (tmp_path / "download.log").read_text()


def test_remote_code_and_a_full_disk_are_refused_before_the_weights_move(tmp_path):
    """On the login node, once: not on every GPU job that would load the checkpoint."""
    files = small_model()
    remote = {**files, "config.json": json.dumps({"auto_map": {"AutoModel": "m.M"}}).encode()}
    with StandInHub() as hub:
        sha = hub.repo("model", "acme/remote").add_commit(remote)
        ok = hub.repo("model", "acme/fine").add_commit(files)
        out, _ = run_downloads(
            hub,
            tmp_path,
            {
                "refused": case("acme/remote", sha, tmp_path / "a"),
                "trusted": case("acme/remote", sha, tmp_path / "b", trust_remote_code=True),
            },
        )
        remote_weight_gets = len(hub.gets("acme/remote", "model.safetensors"))
        full, _ = run_downloads(
            hub,
            tmp_path,
            {"full": case("acme/fine", ok, tmp_path / "c")},
            before="import shutil, collections; shutil.disk_usage = lambda p: "
            "collections.namedtuple('u', 'total used free')(10**6, 10**6 - 1000, 1000)",
        )
        full_weight_gets = hub.gets("acme/fine", "model.safetensors")
    assert out["refused"]["error"].startswith(
        f"acme/remote@{sha[:12]}/config.json maps to code in the model's repository"
    )
    assert "trust_remote_code: true" in out["refused"]["error"]
    assert remote_weight_gets == 1  # the trusted download only
    assert "model.safetensors" in [f["name"] for f in out["trusted"]["files"]]
    assert full["full"]["error"].startswith(f"acme/fine: {ok} needs 0.0 GB more")
    assert "which has 0.0 GB free" in full["full"]["error"] and full_weight_gets == []
