"""Pre-training of tiny OLMo-2 models on the synthetic corpus, per token budget.

Three schedules (the schedule is an experimental variable, see docs/paper.md):
- cosine: one run per budget, warmup then cosine to min_lr at the budget (the paper);
- wsd: one warmup-stable trunk; each budget branches off it at (1 - decay_fraction) x budget
  and decays linearly to min_lr at the budget;
- constant: one warmup-constant trunk, checkpointed at each budget.

The training loop is a bare torch loop (nanoGPT style) over our own OLMo-2 module, so a job
reaches its first step within a couple of seconds and no framework overhead is paid per step.
Checkpoints are written in Hugging Face format (safetensors + config + tokenizer).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from overtrained.core import jsonio, provenance
from overtrained.core.units import parse_tokens
from overtrained.models.model import ModelShape, Olmo2LM, save_checkpoint

STARTUP: dict[str, float] = {}
PROGRESS_SECONDS = 30.0  # a long run says how far it is at least this often


class Progress:
    """A line in the job's log at most every PROGRESS_SECONDS (step, tokens, last logged loss,
    speed, time left), so that a slow job can be told from a hung one. Timing only: what
    the run computes is the same with or without it."""

    def __init__(self, label: str, total_steps: int, train: dict):
        self.label, self.total = label, total_steps
        self.tokens_per_step = train["batch_size"] * train["seq_len"]
        self.every = PROGRESS_SECONDS
        self.t0 = self.last = time.monotonic()
        self.first_step: int | None = None

    def update(self, step: int, curve: list) -> None:
        """After `step` steps (of total_steps) are done."""
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = step - 1  # a resumed run's speed counts its own steps only
        if now - self.last < self.every and step < self.total:
            return
        self.last = now
        rate = (step - self.first_step) / max(now - self.t0, 1e-9)
        left = (self.total - step) / rate if rate > 0 else float("nan")
        loss = f"{curve[-1][2]:.4f}" if curve else "n/a"
        print(
            f"{time.strftime('%F %T')} {self.label}: step {step:,}/{self.total:,} "
            f"({100 * step / self.total:.1f}%), {step * self.tokens_per_step / 1e6:.2f}M "
            f"tokens, loss {loss}, {rate * self.tokens_per_step:,.0f} tokens/s, "
            f"about {left / 60:.1f} min left",
            flush=True,
        )


@dataclass(frozen=True)
class Schedule:
    """Learning rate as a function of the optimizer step."""

    kind: str
    peak_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    decay_start: int = 0  # wsd: first step of the decay branch

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.peak_lr
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        if self.kind == "wsd":
            if step < self.decay_start:
                return self.peak_lr
            span = max(1, self.total_steps - self.decay_start)
            progress = min(1.0, (step - self.decay_start + 1) / span)
            return self.peak_lr + (self.min_lr - self.peak_lr) * progress
        raise ValueError(f"unknown schedule {self.kind!r}")


class BlockSampler:
    """Batches of (seq_len + 1)-token blocks, in a seed-dependent order without repetition."""

    def __init__(self, stream_path: str | Path, seq_len: int, batch_size: int, seed: int):
        self.data = np.load(stream_path, mmap_mode="r")
        self.block = seq_len + 1
        self.batch_size = batch_size
        n_blocks = len(self.data) // self.block
        self.order = np.random.default_rng(seed).permutation(n_blocks)

    def max_steps(self) -> int:
        return len(self.order) // self.batch_size

    def batch(self, step: int) -> torch.Tensor:
        if step >= self.max_steps():
            raise ValueError(
                f"the corpus stream holds {self.max_steps()} steps of data, step {step} was "
                "asked for: the corpus must be regenerated for larger budgets"
            )
        idx = np.sort(self.order[step * self.batch_size : (step + 1) * self.batch_size])
        rows = [self.data[i * self.block : (i + 1) * self.block] for i in idx]
        return torch.from_numpy(np.stack(rows).astype(np.int64))


def steps_for(tokens: int, train: dict) -> int:
    return max(1, round(tokens / (train["batch_size"] * train["seq_len"])))


class AdamW:
    """AdamW (decoupled weight decay), numerically the same as torch.optim.AdamW.

    Written out because the first step of torch.optim.AdamW imports torch._dynamo, about
    1.2 s of start-up for every pre-training job; this one needs only torch._foreach ops.
    """

    def __init__(self, groups: list[dict], lr: float, betas: tuple[float, float], eps=1e-8):
        self.param_groups = [{**g, "lr": lr} for g in groups]
        self.betas, self.eps = betas, eps
        self.state: dict = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p not in self.state:
                    self.state[p] = {
                        "step": torch.tensor(0.0),
                        "exp_avg": torch.zeros_like(p),
                        "exp_avg_sq": torch.zeros_like(p),
                    }
            states = [self.state[p] for p in params]
            grads = [p.grad for p in params]
            m = [s["exp_avg"] for s in states]
            v = [s["exp_avg_sq"] for s in states]
            for s in states:
                s["step"] += 1
            step = states[0]["step"].item()
            lr, wd = group["lr"], group["weight_decay"]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
            bias1, bias2 = 1 - beta1**step, 1 - beta2**step
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(bias2))
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, m, denom, -lr / bias1)


def make_optimizer(model: Olmo2LM, train: dict) -> AdamW:
    # Decay matrices only; embeddings and norm weights are not decayed (as in OLMo-2).
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (decay if param.ndim == 2 and "embed_tokens" not in name else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": train["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return AdamW(groups, lr=train["peak_lr"], betas=(train["adam_beta1"], train["adam_beta2"]))


def build_model(family: dict, seed: int) -> Olmo2LM:
    shape = ModelShape.from_dict(
        {**family["model"], "max_position_embeddings": family["training"]["seq_len"]}
    )
    model = Olmo2LM(shape)
    model.init_weights(seed)
    return model


def train_steps(
    model: Olmo2LM,
    optimizer: AdamW,
    sampler: BlockSampler,
    schedule: Schedule,
    start: int,
    end: int,
    train: dict,
    curve: list,
    progress: Progress | None = None,
) -> float:
    """Run optimizer steps [start, end); append (step, lr, loss) to `curve`; return tokens/s."""
    model.train()
    t0 = time.perf_counter()
    tokens = 0
    for step in range(start, end):
        lr = schedule.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        block = sampler.batch(step)
        inputs, targets = block[:, :-1], block[:, 1:]
        logits, _ = model(inputs)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
        optimizer.step()
        if step == start:
            # The fixed cost of a job: process start to the end of its first optimizer step.
            STARTUP.setdefault("first_step_seconds", provenance.seconds_since_process_start())
        tokens += targets.numel()
        if step % train["log_every_steps"] == 0 or step == end - 1:
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"pre-training loss became {value} at step {step} (lr {lr:g}); lower "
                    "training.peak_lr"
                )
            curve.append([step, lr, round(value, 5)])
        if progress is not None:
            progress.update(step + 1, curve)
    elapsed = time.perf_counter() - t0
    return tokens / elapsed if elapsed > 0 else float("nan")


# --- trunk states (wsd, constant): model + AdamW moments, safetensors, no pickle ----------


def save_state(model: Olmo2LM, optimizer: AdamW, step: int, path: Path) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    adam_steps = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if "exp_avg" in state:
                name = names[id(param)]
                tensors[f"exp_avg.{name}"] = state["exp_avg"].contiguous()
                tensors[f"exp_avg_sq.{name}"] = state["exp_avg_sq"].contiguous()
                adam_steps.append(float(state["step"]))
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "adam_step": str(max(adam_steps))})
    tmp.replace(path)


def load_state(model: Olmo2LM, optimizer: AdamW, path: Path) -> int:
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    adam_step = torch.tensor(float(meta["adam_step"]))
    for name, param in model.named_parameters():
        if f"exp_avg.{name}" in tensors:
            optimizer.state[param] = {
                "step": adam_step.clone(),
                "exp_avg": tensors[f"exp_avg.{name}"],
                "exp_avg_sq": tensors[f"exp_avg_sq.{name}"],
            }
    return int(meta["step"])


# --- stage entry points ---------------------------------------------------------------


def _schedule(train: dict, kind: str, total: int, decay_start: int = 0) -> Schedule:
    warmup = max(1, steps_for(parse_tokens(train["warmup_tokens"]), train))
    return Schedule(
        kind=kind,
        peak_lr=train["peak_lr"],
        min_lr=train["peak_lr"] * train["min_lr_ratio"],
        warmup_steps=warmup,
        total_steps=total,
        decay_start=decay_start,
    )


def branch_step(budget: str, train: dict) -> int:
    """Step at which a budget's checkpoint leaves the trunk (wsd: decay start; constant: end)."""
    total = steps_for(parse_tokens(budget), train)
    if train["schedule"] == "wsd":
        return max(1, round(total * (1 - train["decay_fraction"])))
    return total


def run_trunk(family: dict, seed: int, corpus_dir: Path, out_states: dict[str, Path]) -> dict:
    """Train the shared warmup-stable trunk, saving a state at every budget's branch point."""
    train = family["training"]
    model = build_model(family, seed)
    optimizer = make_optimizer(model, train)
    sampler = BlockSampler(corpus_dir / "train.npy", train["seq_len"], train["batch_size"], seed)
    points = sorted((branch_step(b, train), b) for b in out_states)
    schedule = _schedule(train, "constant", points[-1][0])
    curve: list = []
    step, rates = 0, []
    progress = Progress(f"trunk seed {seed}", points[-1][0], train)
    for stop, budget in points:
        rates.append(
            train_steps(model, optimizer, sampler, schedule, step, stop, train, curve, progress)
        )
        step = stop
        save_state(model, optimizer, step, Path(out_states[budget]))
        print(f"{time.strftime('%F %T')} saved the {budget} state (step {step:,})", flush=True)
    return {"loss_curve": curve, "tokens_per_second": float(np.nanmean(rates)), "steps": step}


def run_checkpoint(
    family: dict,
    budget: str,
    seed: int,
    corpus_dir: Path,
    out_dir: Path,
    params: dict,
    trunk_state: Path | None = None,
) -> dict:
    """Produce the checkpoint of one budget and seed, with its provenance.json."""
    started, t0 = provenance.now(), time.perf_counter()
    train = family["training"]
    kind = train["schedule"]
    total = steps_for(parse_tokens(budget), train)
    model = build_model(family, seed)
    optimizer = make_optimizer(model, train)
    sampler = BlockSampler(corpus_dir / "train.npy", train["seq_len"], train["batch_size"], seed)
    curve: list = []
    start = 0
    if kind != "cosine":
        if trunk_state is None:
            raise ValueError(f"schedule {kind!r} needs the trunk state of budget {budget}")
        start = load_state(model, optimizer, Path(trunk_state))
    schedule = _schedule(train, kind, total, decay_start=start)
    tokens_per_second = None  # constant schedule: the checkpoint is the trunk state as is
    if start < total:
        progress = Progress(f"{budget} seed {seed}", total, train)
        tokens_per_second = train_steps(
            model, optimizer, sampler, schedule, start, total, train, curve, progress
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out_dir)
    for item in (corpus_dir / "tokenizer").iterdir():
        shutil.copy2(item, out_dir / item.name)
    corpus_meta = jsonio.read_json(corpus_dir / "corpus.json")
    tokens = total * train["batch_size"] * train["seq_len"]
    record = provenance.record(
        "pretrain",
        params,
        started,
        time.perf_counter() - t0,
        family_source="pretrain",
        budget=budget,
        tokens=tokens,
        seed=seed,
        schedule=kind,
        branch_step=start,
        steps=total,
        corpus_fingerprint=corpus_meta["fingerprint"],
        tokens_per_second=tokens_per_second,
        first_step_seconds=STARTUP.get("first_step_seconds"),
        num_parameters=model.num_parameters(),
        loss_curve=curve,
        final_train_loss=curve[-1][2] if curve else None,
        sha=provenance.sha256_file(out_dir / "model.safetensors"),
    )
    record = provenance.write_json(out_dir / "provenance.json", record)  # as written
    return record
