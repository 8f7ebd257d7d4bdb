"""Gaussian perturbation probe (the paper's Experiment 3).

theta' = theta + eps, eps ~ N(0, (gamma * s)^2) per tensor, with s either the tensor's
initialisation std (`init`, the paper's Sigma) or its current RMS (`rms`). Only matrices
are perturbed: norm weights are initialised to a constant (zero init variance), and
leaving them out under `rms` keeps the two scalings comparable. The loss increase is
measured with the same pre-training-loss probe as retention.

For hub checkpoints (transformers models), the `init` std is the config's
initializer_range: transformers initialises their Linear and Embedding weights from
N(0, initializer_range). Noise is drawn on the CPU in fp32 from one seeded generator, then
cast to each weight's device and dtype, so a seed means the same noise on any device.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from overtrained.core import jsonio, provenance
from overtrained.evaluation.probes import heldout_windows, pretrain_loss
from overtrained.models.loading import load_probe_model, verified_weights


def _rms(param: torch.Tensor) -> float:
    return param.detach().float().pow(2).mean().sqrt().item()  # fp32 even for bf16 weights


def noise_scales(model, scaling: str) -> dict[str, float]:
    """Per-matrix noise std for gamma = 1."""
    scales = {}
    for name, param in model.named_parameters():
        if param.ndim != 2:
            continue
        if scaling == "init":
            scales[name] = model.init_std(name)
        elif scaling == "rms":
            scales[name] = _rms(param)
        else:
            raise ValueError(f"unknown scaling {scaling!r} (use 'init' or 'rms')")
    return scales


@torch.no_grad()
def add_noise(model, scales: dict[str, float], gamma: float, seed: int) -> None:
    """theta += N(0, (gamma * scale)^2), tensor by tensor in name order (reproducible)."""
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    for name in sorted(scales):
        param = params[name]
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        param.add_((noise * (gamma * scales[name])).to(param.device, param.dtype))


@torch.no_grad()
def perturbed_loss(
    model, scales: dict[str, float], gamma: float, seed: int, windows: torch.Tensor
) -> float:
    """Loss of the model with noise added; the weights are restored afterwards (from a copy
    kept on the weights' own device)."""
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in scales}
    try:
        add_noise(model, scales, gamma, seed)
        loss, _ = pretrain_loss(model, windows)
    finally:
        for name, value in saved.items():
            params[name].copy_(value)
    return loss


def perturbations(
    model, windows: torch.Tensor, gammas: dict[str, list[float]], seeds: list[int]
) -> tuple[float, int, list[dict]]:
    """(unperturbed loss, positions scored, one row per (scaling, gamma, seed))."""
    base, n = pretrain_loss(model, windows)
    rows = []
    for scaling, grid in gammas.items():
        scales = noise_scales(model, scaling)
        for gamma in grid:
            for seed in seeds:
                loss = perturbed_loss(model, scales, gamma, seed, windows)
                rows.append(
                    {
                        "scaling": scaling,
                        "gamma": gamma,
                        "seed": seed,
                        "perturbed_loss": loss,
                        "loss_increase": loss - base,
                        "n": n,
                    }
                )
    return base, n, rows


def run(
    model_dir: str | Path,
    heldout_stream: str | Path,
    gammas: dict[str, list[float]],
    seeds: list[int],
    retention_tokens: int,
    out_json: str | Path,
    params: dict,
    loading: dict | None = None,
) -> dict:
    """Perturb one model along every (scaling, gamma, seed); `loading`: the family's loading
    options (workflow.loading_options)."""
    started, t0 = provenance.now(), time.perf_counter()
    digest = verified_weights(model_dir)  # before any work: a changed file stops here
    model = load_probe_model(model_dir, **(loading or {}))
    config = jsonio.read_json(Path(model_dir) / "config.json")
    windows = heldout_windows(heldout_stream, retention_tokens, config["max_position_embeddings"])
    base, n, rows = perturbations(model, windows, gammas, seeds)
    weight_rms = {name: _rms(p) for name, p in model.named_parameters() if p.ndim == 2}
    record = provenance.record(
        "sensitivity",
        params,
        started,
        time.perf_counter() - t0,
        base_loss=base,
        n=n,
        perturbations=rows,
        weight_rms=weight_rms,
        model_sha=digest,
        dtype=str(next(iter(model.parameters())).dtype).removeprefix("torch."),
    )
    record = provenance.write_json(out_json, record)  # as written: scrubbed, hashed
    return record
