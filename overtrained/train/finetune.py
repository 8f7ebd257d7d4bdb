"""Supervised fine-tuning of one checkpoint on one task at one learning rate, with TRL.

Data are prompt/completion rows (raw pre-training checkpoints have no chat template),
so TRL masks the prompt and trains on the completion only by default.

Built for sweeps on shared GPUs:

* the effective batch (examples per optimizer step) is the config's `batch_size` whatever
  the number of processes: per-device batch x accumulation x world size;
* trainer checkpoints go to a scratch directory outside the rule's outputs (Snakemake
  deletes a failed job's outputs) every `save_steps`; a rerun after a kill, a timeout or a
  preemption resumes from the newest complete one and ends with the same weights as an
  uninterrupted run; SIGTERM/SIGUSR1 (Slurm's warning) save a checkpoint and stop;
* a run whose loss becomes NaN/inf or exceeds `divergence_factor` x its first loss stops
  early and is recorded with status "diverged": a result, not a crash.

`run` is one process's work; `launch` starts it, under torchrun when there are several GPUs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from overtrained.core import jsonio, provenance
from overtrained.core.errors import FixableError
from overtrained.core.jsonio import read_jsonl
from overtrained.models.loading import (
    load_causal_lm,
    load_tokenizer,
    verified_weights,
    weights_digest,
)

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
log = logging.getLogger(__name__)
CHECKPOINT_PREFIX = "checkpoint-"
# Shard every decoder layer; checkpoints hold full (unsharded) weights, loadable anywhere.
FSDP2_CONFIG = {
    "version": 2,
    "reshard_after_forward": True,
    "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "state_dict_type": "FULL_STATE_DICT",
}
RUN_RECORD = "run.json"
SESSIONS = "sessions.json"  # the step each session of a run started from


class DeviceError(FixableError, RuntimeError):
    """The job does not see the devices or number formats the config asks for."""


class Interrupted(RuntimeError):
    """Stopped by a signal after saving a checkpoint; rerunning the job resumes."""


def run_status(losses: list[float], factor: float) -> str:
    """'diverged' if a loss is NaN/inf or exceeds `factor` x the first one, else 'ok'."""
    if not losses or not all(math.isfinite(x) for x in losses):
        return "diverged"
    return "diverged" if max(losses) > factor * max(losses[0], 1e-8) else "ok"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def batch_layout(ft: dict, processes: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) giving ft['batch_size'] examples per step."""
    per_device = ft["per_device_batch_size"] or ft["batch_size"] // processes
    accumulation, rest = divmod(ft["batch_size"], per_device * processes)
    if per_device < 1 or accumulation < 1 or rest:
        raise ValueError(
            f"finetune.batch_size {ft['batch_size']} is not per_device_batch_size "
            f"{per_device} x {processes} processes x a whole number of accumulation steps"
        )
    return per_device, accumulation


def check_devices(ft: dict, cuda_available: bool, cuda_count: int, bf16_ok: bool) -> str:
    """The device type to train on; a clear error when the job lacks what the config asks."""
    if ft["gpus"] > 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
        if not cuda_available:
            raise DeviceError(
                f"finetune.gpus is {ft['gpus']} but this job sees no CUDA device "
                f"(CUDA_VISIBLE_DEVICES={visible}); run it where GPUs are allocated (the "
                "Slurm profile passes the rule's gpu resource) or set finetune.gpus: 0"
            )
        if cuda_count < ft["gpus"]:
            raise DeviceError(
                f"finetune.gpus is {ft['gpus']} but this job sees {cuda_count} GPU(s) "
                f"(CUDA_VISIBLE_DEVICES={visible}); ask the scheduler for {ft['gpus']} or "
                "lower finetune.gpus"
            )
    if ft["precision"] == "bf16" and not bf16_ok:
        raise DeviceError(
            "finetune.precision is bf16 but this device has no bf16 support; "
            "use precision: auto (bf16 where supported, else fp32)"
        )
    return "cuda" if ft["gpus"] > 0 else "cpu"


def sft_config(ft: dict, lr: float, seed: int, output_dir: str, device: str, bf16_ok: bool):
    """The SFTConfig of one run. Every field TRL defaults differently from what the config
    says (gradient checkpointing and bf16 are on in TRL's defaults) is set explicitly."""
    from trl import SFTConfig

    per_device, accumulation = batch_layout(ft, world_size())
    bf16 = device == "cuda" and (ft["precision"] == "bf16" or ft["precision"] == "auto" and bf16_ok)
    save = ft["save_steps"] > 0
    checkpointing = ft["gradient_checkpointing"]
    return SFTConfig(
        output_dir=output_dir,
        learning_rate=lr,
        num_train_epochs=ft["epochs"],
        max_steps=ft["max_steps"] or -1,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        max_length=ft["max_length"],
        warmup_steps=ft["warmup_ratio"],  # transformers 5: a float < 1 is a ratio
        lr_scheduler_type=ft["lr_scheduler"],
        weight_decay=ft["weight_decay"],
        max_grad_norm=ft["max_grad_norm"],
        completion_only_loss=ft["completion_only_loss"],
        packing=ft["batching"] == "packed",
        # FSDP recomputes activations itself (the Trainer's flag would all-gather twice).
        activation_checkpointing=checkpointing and not ft["fsdp"],
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        fp16=False,
        fsdp=ft["fsdp"],
        fsdp_config=FSDP2_CONFIG | {"activation_checkpointing": checkpointing}
        if ft["fsdp"]
        else None,
        report_to="none",
        # The default filter logs a NaN/inf step loss as the running mean: divergence unseen.
        logging_nan_inf_filter=False,
        save_strategy="steps" if save else "no",
        save_steps=ft["save_steps"] if save else 500,
        # Two, so that a kill while writing the newest leaves a complete one to resume from.
        save_total_limit=2,
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )


def input_shas(base_dir, train_jsonl) -> dict:
    """The identity of a run's inputs: the base checkpoint's sha and the training data's."""
    return {
        "base_sha": jsonio.read_json(Path(base_dir) / "provenance.json").get("sha"),
        "dataset_sha": provenance.sha256_file(train_jsonl),
    }


def run_fingerprint(inputs: dict, lr, seed, params, processes: int) -> dict:
    """What a trainer checkpoint must share with this run to be resumed by it."""
    return {
        **inputs,
        "lr": lr,
        "seed": seed,
        "params": params,
        "world_size": processes,
    }


def data_collator(ft: dict, tokenizer):
    """The collator for `ft['batching']`, or None for TRL's default (padded, or packed).

    TRL's own padding_free flag refuses max_length without packing; its collator in
    padding-free mode, after TRL's truncation, gives the same rows flattened into one.
    """
    if ft["batching"] != "padding_free":
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)


def latest_checkpoint(scratch: Path) -> Path | None:
    """The newest complete trainer checkpoint: the Trainer writes trainer_state.json last."""
    candidates = sorted(
        scratch.glob(f"{CHECKPOINT_PREFIX}*"),
        key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX) or -1),
        reverse=True,
    )
    for path in candidates:
        try:
            json.loads((path / "trainer_state.json").read_text())
            return path
        except (OSError, ValueError):
            log.warning("ignoring incomplete trainer checkpoint %s", path)
    return None


def prepare_scratch(scratch: Path, fingerprint: dict) -> Path | None:
    """The checkpoint to resume from, if the scratch dir holds one of this very run.
    Checkpoints of a run with other inputs or settings are deleted, never resumed."""
    record = scratch / RUN_RECORD
    if scratch.exists():
        try:
            same = json.loads(record.read_text()) == fingerprint
        except (OSError, ValueError):
            same = False
        if same:
            checkpoint = latest_checkpoint(scratch)
            if checkpoint is not None:
                starts = session_starts(scratch)
                starts.append(checkpoint_step(checkpoint))
                (scratch / SESSIONS).write_text(json.dumps(starts))
            return checkpoint
        log.warning("discarding trainer checkpoints of a different run in %s", scratch)
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(fingerprint, sort_keys=True))
    return None


@contextlib.contextmanager
def naming_the_disk(folder: Path):
    """A write that fails for lack of space names no file; say which folder it was."""
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT) and not error.filename:
            error.filename = str(folder)
        raise


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix(CHECKPOINT_PREFIX))


def session_starts(scratch: Path) -> list[int]:
    """The step each session of a run started from: 0, then every checkpoint resumed."""
    try:
        return json.loads((scratch / SESSIONS).read_text())
    except (OSError, ValueError):
        return [0]


def tokens_from_log(history: list[dict], starts: list[int]) -> tuple[int, int | None]:
    """(tokens over all sessions, tokens in the last one, None if it trained no step).

    TRL's `num_tokens` counts from zero in each session; session i covers the steps after
    starts[i] up to the checkpoint the next one resumed from (later entries of a killed
    session are not in the restored history)."""
    totals = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        logged = [
            e["num_tokens"] for e in history if "num_tokens" in e and start < e["step"] <= end
        ]
        totals.append(int(logged[-1]) if logged else None)
    return sum(t or 0 for t in totals), totals[-1]


def job_deadline(runtime_minutes: int, margin_seconds: float) -> float | None:
    """When a Slurm job should save and stop: its end time (SLURM_JOB_END_TIME, or start +
    runtime) minus `margin_seconds`. None outside Slurm: local runs have no time limit."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    end = os.environ.get("SLURM_JOB_END_TIME")
    if end and end.isdigit():
        limit = float(end)
    else:
        started = time.time() - provenance.seconds_since_process_start()
        limit = started + runtime_minutes * 60
    return limit - margin_seconds


def _callbacks(factor: float, deadline: float | None):
    """Divergence stop, signal-triggered and deadline-triggered saves, as TrainerCallbacks."""
    from transformers import TrainerCallback

    class StopOnDivergence(TrainerCallback):
        """Stop at the first logged loss that is NaN/inf or `factor` x the first loss."""

        def __init__(self):
            self.step = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            losses = [e["loss"] for e in state.log_history if "loss" in e]
            if losses and run_status(losses, factor) == "diverged":
                self.step = state.global_step
                control.should_training_stop = True
                control.should_save = False

    class SaveAndStop(TrainerCallback):
        """Finish the step, save a checkpoint and stop when the job must end: on SIGTERM
        (Slurm's time limit or preemption) or SIGUSR1, or, under Slurm, at `deadline` (signals
        may not reach this process: torchrun forwards only some). Ranks agree on it at every
        step, so none stops alone and leaves the others waiting in a collective."""

        def __init__(self, deadline: float | None):
            self.deadline = deadline
            self.signal = 0
            self.deadline_reached = False
            self.previous = {}

        def _handle(self, signum, _frame):
            self.signal = signum

        def on_train_begin(self, args, state, control, **kwargs):
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                self.previous[sig] = signal.signal(sig, self._handle)

        def on_train_end(self, args, state, control, **kwargs):
            for sig, handler in self.previous.items():
                signal.signal(sig, handler)

        def on_step_end(self, args, state, control, **kwargs):
            import torch.distributed as dist

            late = self.deadline is not None and time.time() >= self.deadline
            flags = [self.signal, int(late)]
            if dist.is_available() and dist.is_initialized():
                import torch

                tensor = torch.tensor(flags, device="cpu" if args.use_cpu else "cuda")
                dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
                flags = [int(x) for x in tensor.tolist()]
            if any(flags):
                self.signal, self.deadline_reached = flags[0], bool(flags[1])
                control.should_save = True  # whatever save_strategy says
                control.should_training_stop = True

    return StopOnDivergence(), SaveAndStop(deadline)


def _peak_memory_mib(device: str) -> dict:
    import torch

    peak = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device == "cuda":
        peak["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def run(
    base_dir: str | Path,
    train_jsonl: str | Path,
    out_model_dir: str | Path,
    out_train_json: str | Path,
    ft: dict,
    lr: float,
    seed: int,
    params: dict,
    scratch_dir: str | Path | None = None,
    threads: int = 1,
    callbacks: tuple = (),
    resume_from: str | None = "auto",
    loading: dict | None = None,
) -> dict | None:
    """Fine-tune `base_dir` on `train_jsonl`; save weights (safetensors) and train.json.
    `loading`: the family's loading options (workflow.loading_options).

    Returns the record on the main process (None on the others). With resume_from="auto",
    resumes from the newest checkpoint in `scratch_dir` left by an interrupted run of the
    same inputs and settings (`launch` decides this once for all processes instead).
    """
    started, t0 = provenance.now(), time.perf_counter()
    import torch
    import transformers

    torch.set_num_threads(threads)
    bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    device = check_devices(ft, torch.cuda.is_available(), torch.cuda.device_count(), bf16_ok)
    transformers.set_seed(seed)
    out_model_dir = Path(out_model_dir)
    scratch = Path(scratch_dir) if scratch_dir else out_model_dir.parent / "trainer"
    verified_weights(base_dir)  # a changed base checkpoint stops here, before training
    inputs = input_shas(base_dir, train_jsonl)  # hashed once: training data can be large
    if resume_from == "auto":
        fingerprint = run_fingerprint(inputs, lr, seed, params, world_size())
        with naming_the_disk(scratch):
            resume_from = prepare_scratch(scratch, fingerprint)
    resume_from = Path(resume_from) if resume_from else None
    rows = read_jsonl(train_jsonl)
    session = _session(
        base_dir, rows, ft, lr, seed, scratch, device, bf16_ok, loading or {}, callbacks
    )
    trainer = session.trainer
    if resume_from:
        log.info("resuming from %s", resume_from)
    train_start = time.perf_counter()
    with naming_the_disk(scratch):  # trainer checkpoints go there
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.perf_counter() - train_start
    _raise_if_interrupted(trainer, session.stopper, scratch)
    history = trainer.state.log_history
    curve = [[e["step"], e["learning_rate"], e["loss"]] for e in history if "loss" in e]
    status, finite = _status(trainer, curve, session.divergence, ft["divergence_factor"])
    # Full weights from every rank (FSDP shards them); safetensors + config only, since
    # Trainer.save_model would also pickle the training arguments (training_args.bin).
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if ft["fsdp"] else None
    if not trainer.is_world_process_zero():
        return None
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    unwrapped.save_pretrained(str(out_model_dir), state_dict=state_dict)
    session.tokenizer.save_pretrained(str(out_model_dir))
    model_sha = weights_digest(out_model_dir)  # what every reader of these weights checks
    tokens_seen, session_tokens = tokens_from_log(history, session_starts(scratch))
    per_device, accumulation = batch_layout(ft, world_size())
    record = provenance.record(
        "finetune",
        params,
        started,
        time.perf_counter() - t0,
        status=status,
        diverged_at_step=session.divergence.step,
        finite_weights=finite,
        lr=lr,
        seed=seed,
        model_sha=model_sha,
        **inputs,
        examples=len(rows),
        # TRL drops rows whose completion truncation to max_length removed entirely.
        examples_trained=len(trainer.train_dataset),
        steps=trainer.state.global_step,
        resumed_from_step=checkpoint_step(resume_from) if resume_from else None,
        loss_curve=curve,
        final_train_loss=curve[-1][2] if curve else float("nan"),
        tokens_seen=tokens_seen,
        tokens_per_second=session_tokens / train_seconds if session_tokens else None,
        train_seconds=train_seconds,
        hyperparameters={
            **ft,
            "learning_rate": lr,
            "world_size": world_size(),
            "per_device_batch_size": per_device,
            "gradient_accumulation_steps": accumulation,
            "bf16": session.args.bf16,
            "fsdp_enabled": trainer.is_fsdp_enabled,
        },
        **_peak_memory_mib(device),
    )
    record = provenance.write_json(out_train_json, record)  # as written: scrubbed, hashed
    shutil.rmtree(scratch, ignore_errors=True)
    return record


@dataclass
class _Session:
    """What one fine-tuning run trains with: the trainer and what `run` reads back from it."""

    trainer: object  # trl.SFTTrainer
    tokenizer: object
    args: object  # trl.SFTConfig
    divergence: object  # _DivergenceStop
    stopper: object  # _GracefulStop


def _session(
    base_dir, rows, ft, lr, seed, scratch, device, bf16_ok, loading, callbacks
) -> _Session:
    """The model, tokenizer, data, arguments and callbacks of one run, in an SFTTrainer;
    checks that TRL kept enough examples and that FSDP is on where it was asked for."""
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from overtrained.core.config import check_room_for_completions

    dataset = Dataset.from_list(
        [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    )
    model = load_causal_lm(
        base_dir, None, torch.float32, attn_implementation=ft["attn_implementation"], **loading
    )
    tokenizer = load_tokenizer(base_dir, loading.get("trust_remote_code", False))
    check_room_for_completions(
        ft["max_length"],
        [len(ids) for ids in tokenizer([r["prompt"] for r in rows])["input_ids"]],
        f"of the {len(rows)} training examples",
    )
    args = sft_config(ft, lr, seed, str(scratch), device, bf16_ok)
    deadline = job_deadline(ft["resources"]["runtime"], ft["resources"]["save_margin_minutes"] * 60)
    divergence, stopper = _callbacks(ft["divergence_factor"], deadline)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=data_collator(ft, tokenizer),
        callbacks=[divergence, stopper, *callbacks],
    )
    if len(trainer.train_dataset) < 0.9 * len(rows):
        log.warning(
            "only %d of %d examples keep a completion token within max_length %d: raise "
            "finetune.max_length",
            len(trainer.train_dataset),
            len(rows),
            ft["max_length"],
        )
    if ft["fsdp"] and not trainer.is_fsdp_enabled:
        # accelerate enables FSDP on several GPUs only; never train unsharded silently.
        raise DeviceError(
            f"finetune.fsdp is on but FSDP is not active in this job ({world_size()} "
            f"process(es) on {device}): FSDP shards over 2 or more GPUs; set finetune.gpus >= 2 "
            "or fsdp: false"
        )
    return _Session(trainer, tokenizer, args, divergence, stopper)


def _raise_if_interrupted(trainer, stopper, scratch: Path) -> None:
    """A run stopped early by a signal or the approaching time limit is not a result: its
    checkpoint stays in `scratch` for the next attempt to resume."""
    if trainer.state.global_step >= trainer.state.max_steps:
        return
    if stopper.signal or stopper.deadline_reached:
        cause = (
            f"signal {signal.Signals(stopper.signal).name}"
            if stopper.signal
            else "the job's time limit approaching"
        )
        raise Interrupted(
            f"stopped by {cause} at step {trainer.state.global_step}; a checkpoint is in "
            f"{scratch}: rerun to resume"
        )


def _status(trainer, curve: list, divergence, factor: float) -> tuple[str, bool]:
    """'diverged' when training stopped on a diverging loss, the logged curve diverged, or a
    weight is not finite (a NaN can enter between two logged losses); else 'ok'."""
    import torch

    status = "diverged" if divergence.step is not None else "ok"
    if run_status([c[2] for c in curve], factor) == "diverged":
        status = "diverged"
    finite = all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())
    return ("diverged" if not finite else status), finite


def prune_empty_parents(path: Path, root: Path) -> None:
    """Remove the empty folders between a finished run's scratch folder and the scratch root
    (never the root itself, nor anything outside it)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty: another run's checkpoints live below
            return


def launch(spec: dict, processes: int) -> dict | None:
    """Run `run(**spec)` here, or under torchrun with one process per GPU (`processes` > 1).
    Multi-process runs check the GPU count first, so a bad allocation fails in seconds."""
    if processes <= 1:
        return run(**spec)
    if spec["ft"]["gpus"] > 0:
        import torch

        check_devices(spec["ft"], torch.cuda.is_available(), torch.cuda.device_count(), True)
    scratch = Path(spec["scratch_dir"])
    inputs = input_shas(spec["base_dir"], spec["train_jsonl"])
    fingerprint = run_fingerprint(inputs, spec["lr"], spec["seed"], spec["params"], processes)
    resume_from = prepare_scratch(scratch, fingerprint)
    spec = {**spec, "resume_from": str(resume_from) if resume_from else None}
    spec_path = scratch / "launch.json"
    spec_path.write_text(json.dumps(spec, default=str))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        __spec__.name,  # this module, wherever it lives
        str(spec_path),
    ]
    log.info("launching %s", " ".join(command))
    # torchrun dies of SIGUSR1 (it forwards only TERM, INT, HUP, QUIT); workers inherit the
    # ignore and install their own handler when training starts.
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        subprocess.run(command, check=True)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        spec_path.unlink(missing_ok=True)
    return jsonio.read_json(spec["out_train_json"])


if __name__ == "__main__":  # one torchrun worker
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(**json.loads(Path(sys.argv[1]).read_text()))
