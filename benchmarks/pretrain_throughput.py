"""Pre-training stage speed against a bare torch loop, and the fixed cost of one job.

    .venv/bin/python benchmarks/pretrain_throughput.py            # default config's model
    .venv/bin/python benchmarks/pretrain_throughput.py --steps 60 --repeats 3

1. Throughput: tokens/s of the stage's own loop (`overtrained.train.pretrain.train_steps`: data
   from the memory-mapped token stream, LR schedule, clipping, our AdamW) next to a bare
   torch loop on the same model and the same batch (`torch.optim.AdamW`, a fixed batch
   already in memory, no schedule, no clipping). Runs alternate (A B A B ...) so both see
   the same machine state; the ratio of medians is printed (target >= 0.9).
   The bare loop is also run with transformers' Olmo2ForCausalLM as a second reference.
2. Fixed cost: a real Snakemake `pretrain` job on a one-step budget, from the job's process
   start to the end of its first optimizer step (recorded by the job in provenance.json;
   target <= 3 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from overtrained.core import config as config_module
from overtrained.core import jsonio
from overtrained.train import pretrain
from tests.workflow_helpers import snakemake_command


def bare_loop(model, batch: torch.Tensor, steps: int, lr: float, hf: bool) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    inputs, targets = batch[:, :-1], batch[:, 1:]
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model(inputs).logits if hf else model(inputs)[0]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * targets.numel() / (time.perf_counter() - t0)


def stage_loop(family: dict, stream: Path, steps: int) -> float:
    train = family["training"]
    model = pretrain.build_model(family, 0)
    optimizer = pretrain.make_optimizer(model, train)
    sampler = pretrain.BlockSampler(stream, train["seq_len"], train["batch_size"], 0)
    schedule = pretrain._schedule(train, "cosine", steps)
    return pretrain.train_steps(model, optimizer, sampler, schedule, 0, steps, train, [])


def hf_model(family: dict):
    import transformers

    from overtrained.models.model import ModelShape, olmo2_config_dict

    shape = ModelShape.from_dict(
        {**family["model"], "max_position_embeddings": family["training"]["seq_len"]}
    )
    return transformers.Olmo2ForCausalLM(transformers.Olmo2Config(**olmo2_config_dict(shape)))


def throughput(family: dict, steps: int, repeats: int) -> None:
    train = family["training"]
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    vocab = family["model"]["vocab_size"]
    block = train["seq_len"] + 1
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "train.npy"
        np.save(
            stream,
            rng.integers(0, vocab, (steps + 2) * train["batch_size"] * block).astype(np.uint16),
        )
        batch = pretrain.BlockSampler(stream, train["seq_len"], train["batch_size"], 0).batch(0)
        stage_loop(family, stream, 5)  # warm up allocator and kernels
        ours, bare, bare_hf = [], [], []
        for _ in range(repeats):
            ours.append(stage_loop(family, stream, steps))
            bare.append(bare_loop(pretrain.build_model(family, 0), batch, steps, 1e-3, hf=False))
            bare_hf.append(bare_loop(hf_model(family), batch, steps, 1e-3, hf=True))
    m_ours, m_bare, m_hf = (statistics.median(x) for x in (ours, bare, bare_hf))
    n_params = pretrain.build_model(family, 0).num_parameters()
    shape = f"batch {train['batch_size']} x {train['seq_len']}"
    print(f"model: {n_params:,} parameters, {shape}, 1 thread")
    for label, median, runs in (
        ("pretrain stage loop", m_ours, ours),
        ("bare torch loop, same model", m_bare, bare),
        ("bare torch loop, HF Olmo2", m_hf, bare_hf),
    ):
        print(f"{label:30s} {median:10.0f} tokens/s  (runs: {[round(x) for x in runs]})")
    print(f"ratio stage / bare (target >= 0.9): {m_ours / m_bare:.3f}")
    print(f"ratio stage / bare HF Olmo2:        {m_ours / m_hf:.3f}")


def run_snakemake(command: list[str], work: Path) -> None:
    env = {**os.environ, "OVERTRAINED_JOB_SERVER": "off"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=work, env=env)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def fixed_cost(base_config: dict) -> None:
    """Run one real `pretrain` job through Snakemake and read its recorded start-up time."""
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    family = next(iter(cfg["families"].values()))
    train = family.setdefault("training", {})
    # One run per budget: with a trunk schedule (the default's constant LR) the `pretrain`
    # job only reads a checkpoint off the trunk and takes no optimizer step.
    train["schedule"] = "cosine"
    tokens_per_step = train.get("batch_size", 16) * train.get("seq_len", 128)
    family["budgets"] = [4 * tokens_per_step]
    train["warmup_tokens"] = tokens_per_step
    name = next(iter(cfg["families"]))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        budget = config_module.load(cfg)["families"][name]["budgets"][0]
        target = f"results/{name}/{budget}-seed0/base/provenance.json"
        snakemake = snakemake_command(work, "--cores", "1")
        run_snakemake(snakemake + [f"results/{name}/corpus/train.npy"], work)
        # "From the job's process start": a fresh process, not a worker of the job server.
        costs = []
        for _ in range(3):
            shutil.rmtree(work / f"results/{name}/{budget}-seed0", ignore_errors=True)
            run_snakemake(snakemake + [target], work)
            costs.append(jsonio.read_json(work / target)["first_step_seconds"])
    median = statistics.median(costs)
    runs = [round(c, 2) for c in costs]
    print(
        f"pretrain job, process start -> end of first step: median {median:.2f} s "
        f"(runs: {runs}; target <= 3 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raw = yaml.safe_load(Path(args.config).read_text())
    cfg = config_module.load(raw)
    family = next(iter(cfg["families"].values()))
    throughput(family, args.steps, args.repeats)
    fixed_cost(raw)


if __name__ == "__main__":
    main()
