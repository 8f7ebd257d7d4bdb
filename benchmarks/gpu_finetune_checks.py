"""What only a GPU can show about the fine-tuning stage, with the stage's own code.

    python benchmarks/gpu_finetune_checks.py prepare --out .gpu     # here, on CPU (~1 min)
    python benchmarks/gpu_finetune_checks.py check --data .gpu      # on a GPU machine

`prepare` pre-trains the default miniature model (config.yaml's `mini` family) for 1M tokens
and writes the arithmetic task. `check` then, on one GPU:

1. fine-tunes it in fp32 and in bf16 mixed precision (`precision: auto`) and compares the
   loss curves (bf16 numerics);
2. kills a bf16 run with SIGKILL after its step-4 checkpoint, resumes it, and compares it
   with the uninterrupted run (resumption on CUDA kernels);
3. asks for two GPUs on a one-GPU machine and records the error (the GPU-count check).

Prints one JSON summary (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from overtrained.core import config, provenance
from overtrained.data import (
    corpus,
    task_data,
)
from overtrained.train import finetune, pretrain
from overtrained.workflow import corpus_spec_fields

DRIVER = REPO / "tests" / "drivers" / "finetune_until.py"


def prepare(out: Path) -> None:
    family = config.load_file(REPO / "config.yaml")["families"]["mini"]
    spec = corpus.CorpusSpec.from_dict(corpus_spec_fields(family["corpus"]))
    data = out / "corpus"
    corpus.train_tokenizer(spec, family["model"]["vocab_size"], data / "tokenizer", 2000)
    corpus.write_token_stream(spec, data / "tokenizer", "train", 1_200_000, data / "train.npy")
    corpus.write_token_stream(spec, data / "tokenizer", "heldout", 70_000, data / "heldout.npy")
    provenance.write_json(data / "corpus.json", {"fingerprint": corpus.corpus_fingerprint(spec)})
    pretrain.run_checkpoint(family, "1M", 0, data, out / "base", params={"code": "gpu-check"})
    task_data.write_task(out / "task", "arithmetic", spec, n_train=512, n_test=64, seed=0)


def run_spec(data: Path, out: Path, **ft) -> dict:
    settings = {**config.load({})["finetune"], "batch_size": 16, "gpus": 1, "save_steps": 4, **ft}
    return {
        "base_dir": str(data / "base"),
        "train_jsonl": str(data / "task" / "train.jsonl"),
        "out_model_dir": str(out / "model"),
        "out_train_json": str(out / "train.json"),
        "ft": settings,
        "lr": 1e-3,
        "seed": 0,
        "params": {"code": "gpu-check", **{k: str(v) for k, v in ft.items()}},
        "scratch_dir": str(out / "scratch"),
    }


def losses(record: dict) -> list[float]:
    return [entry[2] for entry in record["loss_curve"]]


def max_relative_difference(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


def check(data: Path, work: Path) -> dict:
    import torch

    summary = {"device": torch.cuda.get_device_name(0), "versions": provenance.package_versions()}
    fp32 = finetune.run(**run_spec(data, work / "fp32", precision="fp32"))
    bf16 = finetune.run(**run_spec(data, work / "bf16", precision="auto"))
    summary["precision"] = {
        name: {
            "bf16": record["hyperparameters"]["bf16"],
            "status": record["status"],
            "steps": record["steps"],
            "final_train_loss": record["final_train_loss"],
            "tokens_per_second": record["tokens_per_second"],
            "peak_gpu_memory_mib": record["peak_gpu_memory_mib"],
        }
        for name, record in (("fp32", fp32), ("bf16", bf16))
    }
    summary["bf16_vs_fp32_max_relative_loss_difference"] = max_relative_difference(
        losses(bf16), losses(fp32)
    )

    killed_spec = run_spec(data, work / "killed", precision="auto")
    spec_file = work / "killed.json"
    spec_file.write_text(json.dumps(killed_spec))
    killed = subprocess.run(
        [sys.executable, str(DRIVER), str(spec_file), "6", "KILL"], capture_output=True, text=True
    )
    resumed = finetune.run(**killed_spec)
    weights = [
        (work / name / "model" / "model.safetensors").read_bytes() for name in ("bf16", "killed")
    ]
    summary["resume"] = {
        "killed_returncode": killed.returncode,
        "resumed_from_step": resumed["resumed_from_step"],
        "loss_curves_identical": losses(resumed) == losses(bf16),
        "max_relative_loss_difference": max_relative_difference(losses(resumed), losses(bf16)),
        "weights_bit_identical": weights[0] == weights[1],
    }

    two = run_spec(data, work / "two", gpus=2)
    try:
        finetune.launch(two, processes=2)
        summary["gpu_count_check"] = "no error (machine has >= 2 GPUs)"
    except finetune.DeviceError as error:
        summary["gpu_count_check"] = str(error)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").add_argument("--out", type=Path, default=Path(".gpu"))
    checker = sub.add_parser("check")
    checker.add_argument("--data", type=Path, default=Path(".gpu"))
    checker.add_argument("--work", type=Path, default=Path("/tmp/gpu_finetune_checks"))
    checker.add_argument("--out", type=Path, default=REPO / "benchmarks/out/gpu_finetune.json")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out)
        return
    summary = check(args.data, args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
