"""Gaussian perturbation probe: noise scale, restoration, monotonicity in gamma."""

import pytest
import torch

from overtrained import probes, sensitivity
from overtrained.model import load_checkpoint


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
