"""What only a GPU can show about the perturbation probe (Experiment 3), with the stage's code.

    .venv/bin/python benchmarks/gpu_sensitivity_checks.py prepare --run runs/miniature-paper
    python benchmarks/gpu_sensitivity_checks.py check --data .gpu-sens     # on a GPU machine

`prepare` copies two checkpoints of a finished run (the first family's smallest and largest
budget), its held-out stream and the run's own (CPU) sensitivity records. `check`, on one GPU:

1. bf16 numerics. Hub checkpoints are perturbed in bf16 on a GPU (`load_probe_model`), the
   miniature's own in fp32. Each checkpoint is loaded three ways on the GPU: the native fp32
   model, transformers in fp32, and transformers in bf16 (the hub path), and every (scaling,
   gamma, seed) of the run is measured in each. Reported: the largest difference of a loss
   increase from the CPU value the run recorded; whether claim (a)'s direction (the larger
   budget's increase is larger) holds setting by setting in bf16; whether the weights are
   bit-identical after the probe (restoration in bf16).
2. Scale. An OLMo-1B-shaped model (random weights) in bf16: seconds for the noise scales, one
   `add_noise` (noise drawn on the CPU, by design), one loss over `--tokens` held-out tokens
   (the olmo-1b preset's retention_tokens) and one whole `perturbed_loss`; peak GPU memory
   over the weights' bytes.

Prints one JSON summary (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from overtrained.core import jsonio, provenance
from overtrained.evaluation import sensitivity
from overtrained.evaluation.probes import heldout_windows, pretrain_loss
from overtrained.models.loading import (
    HFProbeModel,
    load_causal_lm,
    load_probe_model,
    model_device,
)


def checkpoint_dirs(run: Path) -> tuple[str, list[Path]]:
    """The first family (alphabetically) with sensitivity records: its smallest and largest
    budget's base directories, in token order."""
    records = sorted(run.glob("results/*/*/sensitivity.json"))
    if not records:
        raise SystemExit(f"no results/*/*/sensitivity.json under {run}: finish the run first")
    family = records[0].parts[-3]
    ckpts = [r.parent for r in records if r.parts[-3] == family]
    ckpts.sort(key=lambda ckpt: jsonio.read_json(ckpt / "base" / "provenance.json")["tokens"])
    return family, [ckpts[0], ckpts[-1]]


def prepare(run: Path, out: Path) -> None:
    family, ckpts = checkpoint_dirs(run)
    for name, ckpt in zip(("small", "large"), ckpts, strict=True):
        shutil.copytree(ckpt / "base", out / name, dirs_exist_ok=True)
        shutil.copy(ckpt / "sensitivity.json", out / name / "sensitivity.json")
    shutil.copy(run / "results" / family / "corpus" / "heldout.npy", out / "heldout.npy")
    # parsed here: `check` runs where the workflow's own dependencies (jsonschema) may not be
    from overtrained.core.units import parse_tokens

    record = jsonio.read_json(ckpts[0] / "sensitivity.json")
    tokens = parse_tokens(record["params"]["retention_tokens"])
    provenance.write_json(out / "retention.json", {"retention_tokens": tokens})
    print(f"copied {family}: {[str(c) for c in ckpts]} -> {out}")


def loaders(model_dir: Path, device: str):
    """On a CPU `hf_bf16` loads in fp32 (load_probe_model's choice): a smoke test only."""
    import torch

    return {
        "native_fp32": lambda: load_probe_model(model_dir, device, native=True),
        "hf_fp32": lambda: HFProbeModel(load_causal_lm(model_dir, device, torch.float32)).eval(),
        "hf_bf16": lambda: load_probe_model(model_dir, device, native=False),
    }


def setting(row: dict) -> tuple[str, float, int]:
    return row["scaling"], row["gamma"], row["seed"]


def measure(model, record: dict, windows) -> dict:
    """The stage's loop (`sensitivity.perturbations`) over the settings a run recorded."""
    import torch

    gammas: dict[str, list[float]] = {}
    for row in record["perturbations"]:
        gammas.setdefault(row["scaling"], [])
        if row["gamma"] not in gammas[row["scaling"]]:
            gammas[row["scaling"]].append(row["gamma"])
    seeds = list(dict.fromkeys(row["seed"] for row in record["perturbations"]))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    base, _, rows = sensitivity.perturbations(model, windows, gammas, seeds)
    restored = all(torch.equal(before[name], p) for name, p in model.named_parameters())
    return {
        "base_loss": base,
        "increases": {setting(row): row["loss_increase"] for row in rows},
        "weights_restored_bit_identical": restored,
    }


def numerics(data: Path, device: str = "cuda") -> dict:
    config = jsonio.read_json(data / "small" / "config.json")
    windows = heldout_windows(  # one held-out stream and token count for both checkpoints
        data / "heldout.npy",
        jsonio.read_json(data / "retention.json")["retention_tokens"],
        config["max_position_embeddings"],
    )
    cpu, runs = {}, {}
    for name in ("small", "large"):
        record = jsonio.read_json(data / name / "sensitivity.json")
        cpu[name] = {setting(row): row["loss_increase"] for row in record["perturbations"]}
        runs[name] = {
            way: measure(load(), record, windows)
            for way, load in loaders(data / name, device).items()
        }
    all_cpu = [value for per_setting in cpu.values() for value in per_setting.values()]
    summary = {}
    for way in ("native_fp32", "hf_fp32", "hf_bf16"):
        diffs = [abs(runs[n][way]["increases"][k] - cpu[n][k]) for n in cpu for k in cpu[n]]
        large_wins = [
            runs["large"][way]["increases"][k] > runs["small"][way]["increases"][k]
            for k in cpu["small"]
        ]
        summary[way] = {
            "base_loss": {n: runs[n][way]["base_loss"] for n in cpu},
            "max_abs_diff_from_cpu_increase": max(diffs),
            "mean_cpu_increase": sum(all_cpu) / len(all_cpu),
            "settings_where_large_budget_rises_more": f"{sum(large_wins)}/{len(large_wins)}",
            "weights_restored_bit_identical": all(
                runs[n][way]["weights_restored_bit_identical"] for n in cpu
            ),
        }
    cpu_wins = [cpu["large"][k] > cpu["small"][k] for k in cpu["small"]]
    summary["cpu_settings_where_large_budget_rises_more"] = f"{sum(cpu_wins)}/{len(cpu_wins)}"
    summary["per_setting"] = [
        {
            "checkpoint": n,
            "scaling": k[0],
            "gamma": k[1],
            "seed": k[2],
            "cpu": cpu[n][k],
            **{way: runs[n][way]["increases"][k] for way in runs[n]},
        }
        for n in cpu
        for k in cpu[n]
    ]
    return summary


def seconds(fn) -> tuple[float, object]:
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    sync()
    t0 = time.perf_counter()
    value = fn()
    sync()
    return time.perf_counter() - t0, value


def scale(tokens: int, seq_len: int, shape_fields: dict | None = None) -> dict:
    """`shape_fields`: OLMO2_1B_SHAPE by default; another shape runs on the CPU (smoke test)."""
    import torch
    import transformers

    from overtrained.models.model import OLMO2_1B_SHAPE, ModelShape, olmo2_config_dict

    fields = shape_fields or OLMO2_1B_SHAPE
    shape = ModelShape.from_dict({**fields, "max_position_embeddings": seq_len})
    cuda = torch.cuda.is_available()
    transformers.set_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        hf = transformers.Olmo2ForCausalLM(transformers.Olmo2Config(**olmo2_config_dict(shape)))
    model = HFProbeModel(hf.to(torch.bfloat16)).eval()
    weight_bytes = sum(p.numel() * p.element_size() for _, p in model.named_parameters())
    generator = torch.Generator().manual_seed(0)
    windows = torch.randint(
        3, shape.vocab_size, (max(1, tokens // seq_len), seq_len + 1), generator=generator
    )
    out = {
        "parameters": sum(p.numel() for _, p in model.named_parameters()),
        "weight_gib": weight_bytes / 2**30,
        "tokens": windows.shape[0] * seq_len,
        "seq_len": seq_len,
    }
    out["noise_scales_s"], scales = seconds(lambda: sensitivity.noise_scales(model, "rms"))
    out["base_loss_s"], _ = seconds(lambda: pretrain_loss(model, windows))
    out["add_noise_s"], _ = seconds(lambda: sensitivity.add_noise(model, scales, 0.1, 0))
    # Reference: the same draws made on the device (would tie the noise to the device type).
    device_generator = torch.Generator(model_device(model)).manual_seed(0)
    out["same_draws_on_device_s"], _ = seconds(
        lambda: [
            torch.randn(p.shape, generator=device_generator, device=p.device)
            for name, p in model.named_parameters()
            if name in scales
        ]
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out["perturbed_loss_s"], _ = seconds(
        lambda: sensitivity.perturbed_loss(model, scales, 0.1, 1, windows)
    )
    if cuda:
        out["peak_gpu_gib_during_perturbed_loss"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_over_weights"] = out["peak_gpu_gib_during_perturbed_loss"] / out["weight_gib"]
    out["torch_threads"] = torch.get_num_threads()
    return out


def check(data: Path, tokens: int, seq_len: int) -> dict:
    import torch

    summary = {"device": torch.cuda.get_device_name(0), "versions": provenance.package_versions()}
    summary["numerics"] = numerics(data)
    summary["scale_olmo_1b_bf16"] = scale(tokens, seq_len)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    preparer = sub.add_parser("prepare")
    preparer.add_argument("--run", type=Path, default=Path("runs/miniature-paper"))
    preparer.add_argument("--out", type=Path, default=Path(".gpu-sens"))
    checker = sub.add_parser("check")
    checker.add_argument("--data", type=Path, default=Path(".gpu-sens"))
    checker.add_argument("--tokens", type=int, default=1_000_000, help="olmo-1b's retention")
    checker.add_argument("--seq-len", type=int, default=2048, help="OLMo-1B's context")
    checker.add_argument("--out", type=Path, default=REPO / "benchmarks/out/gpu_sensitivity.json")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.run, args.out)
        return
    summary = check(args.data, args.tokens, args.seq_len)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
