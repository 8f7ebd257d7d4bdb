"""Loss probes: exact agreement with a hand computation, masking of prompts."""

import numpy as np
import pytest
import torch

from overtrained import probes
from overtrained.model import load_checkpoint


def hand_mean_nll(model, windows):
    """One window at a time, one position at a time: the definition of mean token NLL."""
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            logits, _ = model(window[:-1].unsqueeze(0))
            logp = torch.log_softmax(logits[0].double(), dim=-1)
            for pos in range(len(window) - 1):
                total -= logp[pos, window[pos + 1]].item()
                count += 1
    return total / count, count


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
