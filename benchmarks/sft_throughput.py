"""Fine-tuning speed of our SFT configuration against TRL's default SFTConfig.

    .venv/bin/python benchmarks/sft_throughput.py                     # tiny model, CPU
    .venv/bin/python benchmarks/sft_throughput.py --model olmo-1b     # on a GPU
    .venv/bin/python benchmarks/sft_throughput.py --packed --repeats 3

Each variant is a separate `trl.SFTTrainer` on the same randomly initialised OLMo-2 weights
(seeded, checked by a checksum) and the same pre-tokenized synthetic prompt/completion rows,
with the same per-device batch, accumulation, max_length, learning rate and number of steps:

* trl-default: `trl.SFTConfig` with only the shared fields above plus bookkeeping (no saving,
  logging every step, no tqdm, the device) set; everything else at TRL's defaults, notably
  gradient checkpointing on and bf16 on (set off on CPU, where ours trains in fp32 too);
* ours-padded / ours-padding_free / ours-packed: `overtrained.train.finetune.sft_config` of the
  `finetune` config section with that `batching` (padding-free with the collator that
  `overtrained.train.finetune.run` builds). ours-packed (`--packed`) packs several rows into one
  sequence, so it consumes more rows per step than the others; its tokens/s still compare.

Every variant runs in its own process (so peak memory is its own) for `--warmup-steps` +
`--steps` optimizer steps; only the last `--steps` are timed. Tokens are the non-padding
tokens the timed steps consumed; ratios are tokens/s against trl-default measured in the same
run. With `--repeats` > 1 the variants alternate (A B C A B C ...) and medians are reported.
Results are printed and written to benchmarks/out/sft_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from overtrained.models.model import OLMO2_1B_SHAPE

BASELINE = "trl-default"
OURS = {"ours-padded": "padded", "ours-padding_free": "padding_free", "ours-packed": "packed"}
DEFAULT_VARIANTS = (BASELINE, "ours-padded", "ours-padding_free")
PRESETS = {
    # fields of overtrained.models.model.ModelShape; max_position_embeddings follows --max-length
    "tiny": {
        "vocab_size": 1024,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    },
    "olmo-1b": OLMO2_1B_SHAPE,  # random weights
}
DEFAULT_MAX_LENGTH = {"tiny": 128, "olmo-1b": 1024}
EOS, PAD, UNK = (
    0,
    1,
    2,
)  # overtrained.models.model.olmo2_config_dict's eos/pad ids; data use ids >= 3


# ----------------------------------------------------------------------------- worker side


def build_model(args):
    """The preset's Olmo2ForCausalLM in fp32 on `device`, initialised from `args.seed`."""
    import torch
    import transformers

    from overtrained.models.model import ModelShape, olmo2_config_dict

    shape = dict(PRESETS[args.model])
    shape["max_position_embeddings"] = max(shape.get("max_position_embeddings", 0), args.max_length)
    cfg = olmo2_config_dict(ModelShape.from_dict(shape), eos_token_id=EOS, pad_token_id=PAD)
    transformers.set_seed(args.seed)
    with torch.device(args.device):
        return transformers.Olmo2ForCausalLM(transformers.Olmo2Config(**cfg))


def build_tokenizer(vocab_size: int):
    """A word-level tokenizer over the model's vocabulary, with pad and eos tokens: what
    SFTTrainer needs as processing_class (the data are already token ids). No network."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": EOS, "<pad>": PAD, "<unk>": UNK}
    vocab.update({f"t{i}": i for i in range(3, vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def build_dataset(args, rows: int, vocab_size: int):
    """Pre-tokenized prompt/completion rows: lengths uniform in [max_length/8, max_length],
    a third of each row prompt. TRL skips tokenization when `input_ids` is present and, with
    completion_only_loss, masks the tokens where `completion_mask` is 0. The `prompt` and
    `completion` columns (token ids, dropped before batching) make TRL's default resolve
    completion_only_loss=None to True, as it does for our real prompt/completion text rows."""
    import numpy as np
    from datasets import Dataset

    rng = np.random.default_rng(args.seed)
    low = max(2, args.max_length // 8)
    lengths = rng.integers(low, args.max_length + 1, rows)
    data = {"prompt": [], "completion": [], "input_ids": [], "completion_mask": []}
    for n in lengths.tolist():
        n_prompt = min(max(1, round(n / 3)), n - 1)
        ids = rng.integers(3, vocab_size, n).tolist()
        data["prompt"].append(ids[:n_prompt])
        data["completion"].append(ids[n_prompt:])
        data["input_ids"].append(ids)
        data["completion_mask"].append([0] * n_prompt + [1] * (n - n_prompt))
    return Dataset.from_dict(data)


def trainer_args(args, variant: str, output_dir: str, tokenizer):
    """(SFTConfig, collator or None, notes) of one variant."""
    import torch
    from trl import SFTConfig

    from overtrained.core import config as config_module
    from overtrained.train.finetune import data_collator, sft_config

    cpu = args.device == "cpu"
    bf16_ok = not cpu and torch.cuda.is_bf16_supported()
    if variant == BASELINE:
        # TRL defaults bf16=True. On a CPU that runs (bf16 autocast) but measures the CPU's
        # bf16 support; ours trains in fp32 there, so the baseline does too (and on a GPU
        # without bf16, where TRL's default would fail).
        kwargs = {} if bf16_ok else {"bf16": False}
        sft = SFTConfig(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=args.grad_accum,
            max_length=args.max_length,
            learning_rate=args.lr,
            max_steps=args.warmup_steps + args.steps,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            use_cpu=cpu,
            seed=args.seed,
            **kwargs,
        )
        return sft, None, {"attn_implementation": None}
    ft = dict(config_module.load({})["finetune"])
    ft.update(args.overrides)
    ft.update(
        batch_size=args.batch_size * args.grad_accum,
        per_device_batch_size=args.batch_size,
        max_length=args.max_length,
        batching=OURS[variant],
        save_steps=0,
        max_steps=args.warmup_steps + args.steps,
        gpus=0 if cpu else 1,
    )
    sft = sft_config(ft, args.lr, args.seed, output_dir, args.device, bf16_ok)
    collator = data_collator(ft, tokenizer)
    return sft, collator, {"attn_implementation": ft["attn_implementation"], "finetune": ft}


def make_timer(args):
    """A TrainerCallback recording the wall time at the end of every optimizer step."""
    import torch
    from transformers import TrainerCallback

    cuda = args.device == "cuda"

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends = {}

        def on_step_end(self, train_args, state, control, **kwargs):
            # The step's kernels are queued asynchronously on a GPU: wait for them so the
            # boundary is where the work ends, not where it was queued.
            if cuda:
                torch.cuda.synchronize()
            self.ends[state.global_step] = time.perf_counter()

    return StepTimer()


def weights_checksum(model) -> float:
    import torch

    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in model.parameters()))


def worker(args) -> dict:
    """Train one variant and return its measurements (runs in its own process)."""
    import torch
    import transformers
    from trl import SFTTrainer

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    model = build_model(args)
    checksum = weights_checksum(model)
    n_params = model.num_parameters()
    # MFU counts the parameters that do a matmul per token; the input embedding is a lookup.
    n_matmul = n_params - model.get_input_embeddings().weight.numel()
    examples = (args.warmup_steps + args.steps) * args.batch_size * args.grad_accum
    if args.variant == "ours-packed":
        examples *= 4  # packed sequences hold ~2 rows of average length max_length * 9/16
    tokenizer = build_tokenizer(model.config.vocab_size)
    dataset = build_dataset(args, examples, model.config.vocab_size)
    timer = make_timer(args)
    with tempfile.TemporaryDirectory() as tmp:
        sft, collator, notes = trainer_args(args, args.variant, tmp, tokenizer)
        if notes["attn_implementation"]:
            model.set_attn_implementation(notes["attn_implementation"])
        trainer = SFTTrainer(
            model=model,
            args=sft,
            train_dataset=dataset,
            processing_class=tokenizer,
            data_collator=collator,
            callbacks=[timer],
        )
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    history = {e["step"]: e for e in trainer.state.log_history if "loss" in e}
    first, last = args.warmup_steps, args.warmup_steps + args.steps
    seconds = timer.ends[last] - timer.ends[first]
    # Tokens: TRL's cumulative `num_tokens`, logged every step (logging_steps=1). TRL adds
    # attention_mask.sum() per micro-batch for padded batches (the non-padding tokens) and
    # position_ids.size(1) for padding-free/packed ones, i.e. the length of the flattened
    # sequence, which has no padding since neither config sets pad_to_multiple_of. Either
    # way: the real tokens the forward pass consumed, prompt tokens included.
    tokens = history[last]["num_tokens"] - history[first]["num_tokens"]
    result = {
        "variant": args.variant,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "seconds_per_step": seconds / args.steps,
        "tokens_per_step": tokens / args.steps,
        "first_step_loss": history[1]["loss"],
        "n_params": n_params,
        "n_matmul_params": n_matmul,
        "weights_checksum": checksum,
        "examples_in_dataset": examples,
        "effective": {
            "activation_checkpointing": bool(sft.activation_checkpointing),
            "bf16": bool(sft.bf16),
            "packing": bool(sft.packing),
            "padding_free": collator is not None or bool(trainer.padding_free),
            "optim": str(getattr(sft.optim, "value", sft.optim)),
            "lr_scheduler": str(getattr(sft.lr_scheduler_type, "value", sft.lr_scheduler_type)),
            "completion_only_loss": trainer.completion_only_loss,
            "attn_implementation": model.config._attn_implementation,
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.device == "cuda":
        result["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["mfu"] = 6 * n_matmul * result["tokens_per_second"] / (args.peak_tflops * 1e12)
    if "finetune" in notes:
        result["finetune"] = notes["finetune"]
    return result


# ----------------------------------------------------------------------------- parent side


def run_variant(args, variant: str) -> dict:
    """One variant in a fresh process; a failure (say, out of memory) is recorded, not fatal."""
    spec = {**vars(args), "variant": variant}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        command = [sys.executable, __file__, "--worker", str(spec_path), str(out_path)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        if proc.returncode or not out_path.exists():
            print(f"variant {variant} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            return {"variant": variant, "error": lines[-1]}
        return json.loads(out_path.read_text())


def environment(args) -> dict:
    import datasets
    import torch
    import transformers
    import trl

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "datasets": datasets.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    env["device_name"] = (
        torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    )
    return env


def summarise(args, runs: dict[str, list[dict]]) -> dict:
    """Medians over repeats of each variant's successful runs, and ratios to the baseline."""
    summary = {}
    for variant, all_results in runs.items():
        results = [r for r in all_results if "error" not in r]
        if not results:
            summary[variant] = {"error": all_results[0]["error"]}
            continue
        row = {
            "tokens_per_second": statistics.median(r["tokens_per_second"] for r in results),
            "seconds_per_step": statistics.median(r["seconds_per_step"] for r in results),
            "tokens_per_step": statistics.median(r["tokens_per_step"] for r in results),
            "first_step_loss": results[0]["first_step_loss"],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "runs_tokens_per_second": [r["tokens_per_second"] for r in results],
            "failed_runs": len(all_results) - len(results),
        }
        if args.device == "cuda":
            row["peak_gpu_memory_mib"] = max(r["peak_gpu_memory_mib"] for r in results)
            row["mfu"] = statistics.median(r["mfu"] for r in results)
        summary[variant] = row
    base = summary[BASELINE].get("tokens_per_second")
    for row in summary.values():
        if "error" not in row:
            row["ratio_to_baseline"] = row["tokens_per_second"] / base if base else None
    return summary


def print_table(args, runs, summary) -> None:
    done = [r for rs in runs.values() for r in rs if "error" not in r]
    params = f"{done[0]['n_params']:,} parameters" if done else "no run finished"
    print(
        f"model: {args.model}, {params}; device {args.device}; per-device batch "
        f"{args.batch_size} x accumulation {args.grad_accum}, max_length {args.max_length}; "
        f"{args.steps} timed steps after {args.warmup_steps} warm-up; "
        f"{args.threads if args.device == 'cpu' else 'default'} torch thread(s); "
        f"{args.repeats} repeat(s)"
    )
    if args.device == "cpu":
        print(
            "note: trl-default runs with bf16=False on CPU, like ours (TRL defaults bf16=True, "
            "bf16 autocast on the CPU); everything else at TRL's defaults"
        )
    cuda = args.device == "cuda"
    mem = "peak GPU MiB" if cuda else "peak RSS MiB"
    head = f"{'variant':18s} {'tokens/s':>10s} {'s/step':>8s} {'tok/step':>9s} {mem:>12s}"
    head += f" {'MFU':>6s}" if cuda else ""
    head += f" {'1st loss':>10s} {'ckpt':>5s} {'bf16':>5s} {'vs ' + BASELINE:>16s}"
    print(head)
    for variant, row in summary.items():
        if "error" in row:
            print(f"{variant:18s} FAILED: {row['error'][:100]}")
            continue
        eff = next(r for r in runs[variant] if "error" not in r)["effective"]
        memory = row["peak_gpu_memory_mib"] if cuda else row["peak_rss_mib"]
        ratio = row["ratio_to_baseline"]
        line = (
            f"{variant:18s} {row['tokens_per_second']:10.0f} {row['seconds_per_step']:8.4f} "
            f"{row['tokens_per_step']:9.0f} {memory:12.0f}"
        )
        line += f" {row['mfu']:6.1%}" if cuda else ""
        line += (
            f" {row['first_step_loss']:10.6f} {str(eff['activation_checkpointing']):>5s} "
            f"{str(eff['bf16']):>5s} {'-' if ratio is None else f'{ratio:.3f}':>16s}"
        )
        print(line)
    checksums = {r["weights_checksum"] for r in done}
    if len(checksums) > 1:
        print(f"WARNING: initial weights differ between variants (checksums {sorted(checksums)})")
    same_data = [v for v in summary if v != "ours-packed" and "error" not in summary[v]]
    if len({summary[v]["tokens_per_step"] for v in same_data}) > 1:
        print("WARNING: unpacked variants consumed different numbers of tokens per step")
    # Same weights, same first batch, same loss definition: step 1's loss must agree (up to
    # float rounding, and bf16 autocast on a GPU) whatever the batching.
    losses = [summary[v]["first_step_loss"] for v in same_data]
    if len(losses) > 1:
        print(
            f"first-step loss, max difference between unpacked variants: "
            f"{max(losses) - min(losses):.2e}"
        )


def parse_override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set wants KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        spec = json.loads(Path(sys.argv[2]).read_text())
        result = worker(argparse.Namespace(**spec))
        Path(sys.argv[3]).write_text(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (20 CPU, 30 GPU)")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="per device")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=None, help="128 tiny, 1024 olmo-1b")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from {BASELINE},{','.join(OURS)} ({BASELINE} always runs)",
    )
    parser.add_argument("--packed", action="store_true", help="also run ours-packed")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100 SXM)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        type=parse_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a finetune config key for ours-*, e.g. --set gradient_checkpointing=true",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "sft_throughput.json"))
    args = parser.parse_args()

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    if args.steps is None:
        args.steps = 20 if args.device == "cpu" else 30
    if args.max_length is None:
        args.max_length = DEFAULT_MAX_LENGTH[args.model]
    if args.steps < 1 or args.warmup_steps < 1:
        parser.error("--steps and --warmup-steps must be >= 1 (step 1's loss is reported)")
    args.overrides = dict(args.overrides)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.packed and "ours-packed" not in variants:
        variants.append("ours-packed")
    unknown = [v for v in variants if v != BASELINE and v not in OURS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {BASELINE}, {', '.join(OURS)}")
    variants = [BASELINE] + [v for v in dict.fromkeys(variants) if v != BASELINE]

    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            runs[variant].append(run_variant(args, variant))
    summary = summarise(args, runs)
    print_table(args, runs, summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "sft_throughput",
        "baseline": BASELINE,
        "args": {**vars(args), "variants": variants},
        "environment": environment(args),
        "summary": summary,
        "runs": runs,
    }
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
