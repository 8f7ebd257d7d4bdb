"""Supervised fine-tuning of one checkpoint on one task at one learning rate, with TRL.

Data are prompt/completion rows (raw pre-training checkpoints have no chat template),
so TRL masks the prompt and trains on the completion only by default. A run whose loss
becomes NaN/inf is a result, not a crash: it is recorded with status "diverged".
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

from overtrained import provenance
from overtrained.tasks import read_jsonl

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def run_status(losses: list[float], factor: float) -> str:
    """'diverged' if a loss is NaN/inf or exceeds `factor` x the first one, else 'ok'."""
    if not losses or not all(math.isfinite(x) for x in losses):
        return "diverged"
    return "diverged" if max(losses) > factor * max(losses[0], 1e-8) else "ok"


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def sft_config(ft: dict, lr: float, seed: int, output_dir: str, use_cpu: bool):
    """The SFTConfig of one run, from the config's finetune section."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir,
        learning_rate=lr,
        num_train_epochs=ft["epochs"],
        per_device_train_batch_size=ft["batch_size"],
        gradient_accumulation_steps=1,
        max_length=ft["max_length"],
        warmup_steps=ft["warmup_ratio"],  # TRL/transformers 5: a float < 1 is a ratio
        lr_scheduler_type=ft["lr_scheduler"],
        weight_decay=ft["weight_decay"],
        completion_only_loss=ft["completion_only_loss"],
        seed=seed,
        data_seed=seed,
        use_cpu=use_cpu,
        bf16=not use_cpu and _bf16_supported(),
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def run(
    base_dir: str | Path,
    train_jsonl: str | Path,
    out_model_dir: str | Path,
    out_train_json: str | Path,
    ft: dict,
    lr: float,
    seed: int,
    params: dict,
    threads: int = 1,
) -> dict:
    """Fine-tune `base_dir` on `train_jsonl`; save weights (safetensors) and train.json."""
    started, t0 = provenance.now(), time.perf_counter()
    import torch
    import transformers
    from datasets import Dataset
    from trl import SFTTrainer

    torch.set_num_threads(threads)
    transformers.set_seed(seed)
    use_cpu = not torch.cuda.is_available()
    rows = read_jsonl(train_jsonl)
    dataset = Dataset.from_list(
        [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_dir)
    out_model_dir = Path(out_model_dir)
    args = sft_config(ft, lr, seed, str(out_model_dir.parent / "trainer"), use_cpu)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    train_start = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - train_start
    curve = [
        [entry["step"], entry["learning_rate"], entry["loss"]]
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    final_loss = result.training_loss
    status = run_status([c[2] for c in curve] + [final_loss], ft["divergence_factor"])
    # save_pretrained writes safetensors + config only; Trainer.save_model would also
    # pickle the training arguments (training_args.bin), and we keep no pickles.
    trainer.model.save_pretrained(str(out_model_dir))
    tokenizer.save_pretrained(str(out_model_dir))
    shutil.rmtree(args.output_dir, ignore_errors=True)
    # TRL logs the cumulative number of tokens trained on with every loss entry.
    tokens_seen = int(max((e.get("num_tokens", 0) for e in trainer.state.log_history), default=0))
    base_prov = provenance.read_json(Path(base_dir) / "provenance.json")
    record = provenance.record(
        "finetune",
        params,
        started,
        time.perf_counter() - t0,
        status=status,
        lr=lr,
        seed=seed,
        base_sha=base_prov.get("sha"),
        dataset_sha=provenance.sha256_file(train_jsonl),
        examples=len(rows),
        steps=trainer.state.global_step,
        loss_curve=curve,
        final_train_loss=final_loss,
        tokens_seen=tokens_seen,
        tokens_per_second=tokens_seen / train_seconds if train_seconds > 0 else None,
        train_seconds=train_seconds,
    )
    provenance.write_json(out_train_json, record)
    return record
