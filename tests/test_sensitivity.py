"""Gaussian perturbation probe: noise scale, restoration, monotonicity in gamma."""

import copy

import pytest
import torch

from overtrained.core import provenance
from overtrained.evaluation import probes, sensitivity
from overtrained.models.model import load_checkpoint


@pytest.fixture
def model(checkpoint_dir):
    return load_checkpoint(checkpoint_dir).eval()


@pytest.fixture
def windows(corpus_dir):
    return probes.heldout_windows(corpus_dir / "heldout.npy", 4 * 128, 128)


def test_init_scaling_uses_init_std_and_skips_norms(model):
    scales = sensitivity.noise_scales(model, "init")
    matrices = {n for n, p in model.named_parameters() if p.ndim == 2}
    assert set(scales) == matrices
    assert set(scales.values()) == {model.init_std(next(iter(matrices)))}


def test_rms_scaling_is_each_matrix_rms(model):
    scales = sensitivity.noise_scales(model, "rms")
    params = dict(model.named_parameters())
    for name, value in scales.items():
        assert value == pytest.approx(params[name].detach().pow(2).mean().sqrt().item())
    with pytest.raises(ValueError, match="unknown scaling"):
        sensitivity.noise_scales(model, "fisher")


def test_noise_has_the_requested_std(model):
    scales = sensitivity.noise_scales(model, "init")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sensitivity.add_noise(model, scales, gamma=2.0, seed=0)
    for name, param in model.named_parameters():
        delta = param.detach() - before[name]
        if name not in scales:
            assert torch.equal(delta, torch.zeros_like(delta))
            continue
        target = 2.0 * scales[name]
        n = delta.numel()
        # The sample std of n Gaussian draws is within 5 standard errors of the true std.
        assert abs(delta.std().item() - target) < 5 * target / (2 * n) ** 0.5, name


def test_perturbed_loss_restores_weights_and_is_reproducible(model, windows):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    scales = sensitivity.noise_scales(model, "init")
    first = sensitivity.perturbed_loss(model, scales, 4.0, 7, windows)
    second = sensitivity.perturbed_loss(model, scales, 4.0, 7, windows)
    other = sensitivity.perturbed_loss(model, scales, 4.0, 8, windows)
    assert first == second != other
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name])


def test_loss_increase_vanishes_for_tiny_noise_and_grows_with_gamma(model, windows):
    base, _ = probes.pretrain_loss(model, windows)
    scales = sensitivity.noise_scales(model, "rms")
    increases = [
        sensitivity.perturbed_loss(model, scales, gamma, 0, windows) - base
        for gamma in (1e-5, 0.3, 3.0)
    ]
    assert abs(increases[0]) < 1e-3
    assert increases[0] < increases[1] < increases[2]


# ----------------------------------------------------------------- hub checkpoints, one loader


def run_sensitivity(model_dir, corpus_dir, out, seq_len, gammas, **kwargs):
    return sensitivity.run(
        model_dir,
        corpus_dir / "heldout.npy",
        gammas=gammas,
        seeds=[0, 1],
        retention_tokens=3 * seq_len,
        out_json=out,
        params={"code": "t"},
        **kwargs,
    )


def sensitivity_before_hub_checkpoints(checkpoint_dir, heldout, gammas, seeds, retention_tokens):
    """The perturbed losses as computed before this loader: noise drawn in the weights' dtype,
    fixed batches of 32."""
    from overtrained.models.model import sequence_nll

    def loss(model, windows):
        total, count = 0.0, 0
        for i in range(0, len(windows), 32):
            nll, n = sequence_nll(model, windows[i : i + 32], windows[i : i + 32])
            total, count = total + nll, count + n
        return total / count

    model = load_checkpoint(checkpoint_dir).eval()
    windows = probes.heldout_windows(heldout, retention_tokens, model.shape.max_position_embeddings)
    base = loss(model, windows)
    out = []
    for scaling, grid in gammas.items():
        for gamma in grid:
            for seed in seeds:
                fresh = load_checkpoint(checkpoint_dir).eval()
                params = dict(fresh.named_parameters())
                generator = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    for name in sorted(n for n, p in params.items() if p.ndim == 2):
                        param = params[name]
                        scale = (
                            fresh.init_std(name)
                            if scaling == "init"
                            else param.detach().pow(2).mean().sqrt().item()
                        )
                        noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
                        param.add_(noise * (gamma * scale))
                out.append((scaling, gamma, seed, loss(fresh, windows) - base))
    return base, out


def test_miniature_sensitivity_is_unchanged(checkpoint_dir, corpus_dir, tmp_path):
    gammas = {"init": [2.0], "rms": [0.1]}
    record = run_sensitivity(checkpoint_dir, corpus_dir, tmp_path / "s.json", 128, gammas)
    base, before = sensitivity_before_hub_checkpoints(
        checkpoint_dir, corpus_dir / "heldout.npy", gammas, [0, 1], 3 * 128
    )
    assert record["base_loss"] == base
    got = [
        (r["scaling"], r["gamma"], r["seed"], r["loss_increase"]) for r in record["perturbations"]
    ]
    assert got == before  # exactly
    assert record["model_sha"] == provenance.sha256_file(checkpoint_dir / "model.safetensors")


def test_noise_is_drawn_in_fp32_whatever_the_weights_dtype(model):
    low = copy.deepcopy(model).to(torch.bfloat16)
    scales = sensitivity.noise_scales(model, "init")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    before_low = {n: p.detach().clone() for n, p in low.named_parameters()}
    sensitivity.add_noise(model, scales, 3.0, seed=5)
    sensitivity.add_noise(low, scales, 3.0, seed=5)
    for name, param in low.named_parameters():
        delta = model.get_parameter(name).detach() - before[name]
        delta_low = (param.detach() - before_low[name]).float()
        # The same draws, rounded to bf16 (weights and noise ~0.1: bf16 steps of ~1e-3).
        torch.testing.assert_close(delta_low, delta, rtol=0, atol=2e-3)


def test_init_scaling_of_a_hub_model_is_its_initializer_range(corpus_dir, tmp_path):
    from overtrained.models.loading import load_probe_model
    from tests.test_loading import save_model_dir, tiny_hf_model

    path = save_model_dir(tiny_hf_model("llama"), tmp_path / "llama", corpus_dir / "tokenizer")
    hub = load_probe_model(path)
    scales = sensitivity.noise_scales(hub, "init")
    assert set(scales) == {n for n, p in hub.named_parameters() if p.ndim == 2}
    assert set(scales.values()) == {hub.config.initializer_range} == {0.05}


def test_hub_sensitivity_is_reproducible_across_runs_and_layouts(corpus_dir, tmp_path):
    from tests.test_loading import save_model_dir, tiny_hf_model

    model = tiny_hf_model("llama")
    gammas = {"init": [1.0, 4.0], "rms": [0.2]}
    records = []
    for i, layout in enumerate(("single", "single", "sharded")):
        path = tmp_path / f"{layout}{i}"
        save_model_dir(model, path, corpus_dir / "tokenizer", layout)
        records.append(run_sensitivity(path, corpus_dir, tmp_path / f"{i}.json", 64, gammas))
    first = records[0]
    assert all(r["perturbations"] == first["perturbations"] for r in records)
    assert all(r["base_loss"] == first["base_loss"] for r in records)
    increases = [r["loss_increase"] for r in first["perturbations"] if r["scaling"] == "init"]
    assert increases[0] < increases[-1] and first["dtype"] == "float32"
    assert records[0]["model_sha"] != records[2]["model_sha"]  # single file vs shard listing
