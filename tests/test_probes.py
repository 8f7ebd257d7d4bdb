"""Loss probes: exact agreement with a hand computation, masking of prompts."""

import hashlib

import numpy as np
import pytest
import torch

from overtrained.core import provenance
from overtrained.evaluation import probes
from overtrained.models.model import load_checkpoint
from tests.builders import hand_mean_nll


def test_pretrain_loss_equals_hand_computation(checkpoint_dir, corpus_dir):
    model = load_checkpoint(checkpoint_dir).eval()
    seq_len = model.config.max_position_embeddings if hasattr(model, "config") else 128
    windows = probes.heldout_windows(corpus_dir / "heldout.npy", 3 * seq_len, seq_len)
    assert windows.shape == (3, seq_len + 1)
    value, n = probes.pretrain_loss(model, windows, batch_size=2)
    expected, expected_n = hand_mean_nll(model, windows)
    assert n == expected_n == 3 * seq_len
    assert value == pytest.approx(expected, rel=1e-6)


def test_heldout_windows_refuses_a_short_stream(corpus_dir):
    with pytest.raises(ValueError, match="heldout_tokens"):
        probes.heldout_windows(corpus_dir / "heldout.npy", 10**7, 128)


def test_id_loss_scores_completion_and_eos_only(checkpoint_dir):
    from tokenizers import Tokenizer

    rows = [{"prompt": "12 + 30 =", "completion": " 42"}, {"prompt": "a b c", "completion": " d e"}]
    encoded = probes.encode_completion_rows(checkpoint_dir / "tokenizer.json", rows, 0, 128)
    tok = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    for row, (ids, labels) in zip(rows, encoded, strict=True):
        n_prompt = len(tok.encode(row["prompt"]).ids)
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:]
        assert ids[-1] == 0  # EOS is scored, as TRL appends it to the completion
        assert tok.decode(ids[:-1]) == row["prompt"] + row["completion"]
    model = load_checkpoint(checkpoint_dir).eval()
    value, n = probes.id_loss(model, encoded, pad_id=1, batch_size=1)
    batched, n_batched = probes.id_loss(model, encoded, pad_id=1, batch_size=2)
    assert n == n_batched == sum(sum(1 for x in lab if x != -100) for _, lab in encoded)
    assert batched == pytest.approx(value, rel=1e-5)  # padding does not change the loss
    assert np.isfinite(value) and value > 0


# ----------------------------------------------------------------- hub checkpoints, one loader


@pytest.fixture(scope="module")
def task_tests(tmp_path_factory):
    """Two tasks' held-out rows; 40 rows of one, so the probe's batches of 32 split them."""
    from overtrained.data import task_data
    from overtrained.data.corpus import CorpusSpec

    out = tmp_path_factory.mktemp("tasks")
    for kind, n_test in (("arithmetic", 6), ("corpus_language", 40)):
        task_data.write_task(out / kind, kind, CorpusSpec(), n_train=2, n_test=n_test, seed=0)
    return {kind: out / kind / "test.jsonl" for kind in ("arithmetic", "corpus_language")}


def run_probes(model_dir, corpus_dir, task_tests, out, seq_len, **kwargs):
    record = probes.run(
        model_dir,
        corpus_dir / "heldout.npy",
        task_tests,
        retention_tokens=5 * seq_len,
        max_length=96,
        out_json=out,
        params={"code": "t"},
        **kwargs,
    )
    return {(m["metric"], m["task"]): (m["value"], m["n"]) for m in record["metrics"]}, record


def probes_before_hub_checkpoints(checkpoint_dir, heldout, task_tests, retention_tokens, max_len):
    """The probes as computed before this loader: native model, raw tokenizers, batches of 32."""
    import json

    from tokenizers import Tokenizer

    from overtrained.core.jsonio import read_jsonl
    from overtrained.models.model import sequence_nll

    def mean_nll(pairs):
        total, count = 0.0, 0
        for i in range(0, len(pairs), 32):
            chunk = pairs[i : i + 32]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), config["pad_token_id"], dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            for j, (row_ids, row_labels) in enumerate(chunk):
                ids[j, : len(row_ids)] = torch.tensor(row_ids)
                labels[j, : len(row_labels)] = torch.tensor(row_labels)
            nll, n = sequence_nll(model, ids, labels)
            total, count = total + nll, count + n
        return total / count, count

    model = load_checkpoint(checkpoint_dir).eval()
    config = json.loads((checkpoint_dir / "config.json").read_text())
    windows = probes.heldout_windows(heldout, retention_tokens, config["max_position_embeddings"])
    total, count = 0.0, 0
    for i in range(0, len(windows), 32):
        nll, n = sequence_nll(model, windows[i : i + 32], windows[i : i + 32])
        total, count = total + nll, count + n
    out = {("pretrain_loss", ""): (total / count, count)}
    tok = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    for task, path in task_tests.items():
        pairs = []
        for row in read_jsonl(path):
            prompt = tok.encode(row["prompt"], add_special_tokens=False).ids
            full = tok.encode(row["prompt"] + row["completion"], add_special_tokens=False).ids
            full = (full + [config["eos_token_id"]])[:max_len]
            labels = [-100] * min(len(prompt), len(full)) + full[len(prompt) :]
            pairs.append((full, labels[: len(full)]))
        out[("id_loss", task)] = mean_nll(pairs)
    return out


def test_miniature_probes_are_unchanged(checkpoint_dir, corpus_dir, task_tests, tmp_path):
    got, record = run_probes(checkpoint_dir, corpus_dir, task_tests, tmp_path / "p.json", 128)
    before = probes_before_hub_checkpoints(
        checkpoint_dir, corpus_dir / "heldout.npy", task_tests, 5 * 128, 96
    )
    assert got == before  # exactly: same model, ids, batches and float64 sums
    assert record["model_sha"] == provenance.sha256_file(checkpoint_dir / "model.safetensors")
    assert record["dtype"] == "float32"


def test_batch_is_bounded_by_the_logit_budget():
    assert probes.batch_rows(129, 300) == probes.MAX_BATCH  # the miniature: as before
    assert probes.batch_rows(4097, 100_352) == 1  # OLMo-2: 1.6 GB of fp32 logits a row
    assert probes.batch_rows(2049, 50_304) == 2  # OLMo-1B


def test_batch_size_changes_nothing_but_float_error(checkpoint_dir, corpus_dir):
    model = load_checkpoint(checkpoint_dir).eval()
    windows = probes.heldout_windows(corpus_dir / "heldout.npy", 6 * 128, 128)
    one, n = probes.pretrain_loss(model, windows, batch_size=1)
    default, n_default = probes.pretrain_loss(model, windows)
    assert n == n_default and default == pytest.approx(one, rel=1e-6)


def transformers_nll(model_dir, corpus_dir, task_tests, seq_len, retention_tokens, max_length):
    """The same probes computed with transformers directly: its model, tokenizer and loss."""
    import transformers

    from overtrained.core.jsonio import read_jsonl

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    windows = probes.heldout_windows(corpus_dir / "heldout.npy", retention_tokens, seq_len)
    out = {("pretrain_loss", ""): hand_mean_nll(lambda ids: (model(ids).logits, None), windows)}
    for task, path in task_tests.items():
        total, count = 0.0, 0
        for row in read_jsonl(path):
            prompt = tokenizer(row["prompt"]).input_ids
            ids = tokenizer(row["prompt"] + row["completion"]).input_ids
            ids = (ids + [tokenizer.eos_token_id])[:max_length]
            labels = torch.tensor([-100] * len(prompt) + ids[len(prompt) :])[: len(ids)]
            n = int((labels[1:] != -100).sum())
            if n == 0:  # completion truncated away: nothing scored
                continue
            with torch.no_grad():  # transformers' own shifted mean cross-entropy
                loss = model(torch.tensor([ids]), labels=labels[None]).loss
            total, count = total + loss.double().item() * n, count + n
        out[("id_loss", task)] = (total / count, count)
    return out


def test_hub_probes_match_a_transformers_computation(corpus_dir, task_tests, tmp_path):
    from tests.test_loading import save_model_dir, tiny_hf_model

    model_dir = save_model_dir(tiny_hf_model("llama"), tmp_path / "llama", corpus_dir / "tokenizer")
    got, record = run_probes(model_dir, corpus_dir, task_tests, tmp_path / "p.json", 64)
    expected = transformers_nll(model_dir, corpus_dir, task_tests, 64, 5 * 64, 96)
    assert got.keys() == expected.keys()
    for key, (value, n) in expected.items():
        assert got[key][1] == n, key
        assert got[key][0] == pytest.approx(value, rel=1e-5), key
    assert record["model_sha"] == provenance.sha256_file(model_dir / "model.safetensors")


def test_sharded_and_single_file_give_identical_probes(corpus_dir, task_tests, tmp_path):
    from tests.test_loading import save_model_dir, tiny_hf_model

    model = tiny_hf_model("olmo")
    results = {}
    for layout in ("single", "sharded"):
        path = save_model_dir(model, tmp_path / layout, corpus_dir / "tokenizer", layout)
        results[layout] = run_probes(path, corpus_dir, task_tests, tmp_path / f"{layout}.json", 64)
    assert results["single"][0] == results["sharded"][0]
    assert results["single"][1]["model_sha"] != results["sharded"][1]["model_sha"]


def test_probes_apply_the_loading_policy(corpus_dir, task_tests, tmp_path):
    from overtrained.models.loading import LoadingError
    from tests.test_loading import save_model_dir, tiny_hf_model

    model = tiny_hf_model("llama")
    path = save_model_dir(model, tmp_path / "pickle", corpus_dir / "tokenizer", "pickle")
    with pytest.raises(LoadingError, match="allow_pickle"):
        run_probes(path, corpus_dir, task_tests, tmp_path / "p.json", 64)
    allowed = {"allow_pickle": True, "trust_remote_code": False}
    got, record = run_probes(path, corpus_dir, task_tests, tmp_path / "p.json", 64, loading=allowed)
    listing = f"{provenance.sha256_file(path / 'pytorch_model.bin')}  pytorch_model.bin\n"
    assert record["model_sha"] == hashlib.sha256(listing.encode()).hexdigest()
    assert (
        got
        == run_probes(
            save_model_dir(model, tmp_path / "single", corpus_dir / "tokenizer"),
            corpus_dir,
            task_tests,
            tmp_path / "s.json",
            64,
        )[0]
    )
