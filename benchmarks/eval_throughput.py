"""Evaluation speed of our lm-eval configuration against lm-eval's defaults.

    .venv/bin/python benchmarks/eval_throughput.py                      # tiny checkpoint, CPU
    .venv/bin/python benchmarks/eval_throughput.py --model-dir results/mini/1M-seed0/base
    .venv/bin/python benchmarks/eval_throughput.py --model olmo-1b      # on a GPU

Both variants score the same loglikelihood requests (the instances lm-eval builds for one of
the shipped multiple-choice miniature tasks, `--task`, over `--n-test` documents) with the
same checkpoint directory, in the same process:

* lm-eval-default: `HFLM(pretrained=<checkpoint dir>, batch_size=1, device=<device>)`, every
  other HFLM argument at its default (lm_eval/models/huggingface.py, lm-eval 0.4.13): lm-eval
  loads the model itself with `dtype="auto"` (the dtype the checkpoint's config declares;
  float32 for ours and for the olmo-1b stand-in), `max_batch_size=64`, `logits_cache=True`,
  `add_bos_token=None`, `max_length=None` (from the config). Batch size 1 is the default of
  both HFLM and the lm-eval CLI's `--batch_size`.
* ours: `overtrained.evaluation.evaluate.load_lm(checkpoint dir, "auto", --precision)`, what
  the evaluate stage runs: on a CPU fp32 and `evaluate.CPU_BATCH_SIZE`; on a GPU bf16 (where
  supported) and lm-eval's automatic batch size, which HFLM detects again at every
  `loglikelihood` call (5 trial forward passes of the longest request at `max_batch_size`):
  that detection is inside the timed call, as it is inside every real evaluation.

Timing (default `--mode loglikelihood`): `lm.loglikelihood(instances)` on the task's built
instances, after an untimed warm-up call on the first `--warmup-requests` of them; with
`--mode simple_evaluate`, the whole `lm_eval.simple_evaluate` call on the task (task building,
dataset reading, metrics; log_samples off, no bootstrap), after an untimed warm-up call with
a small limit. Requests are loglikelihood instances (documents x choices); requests/s ratios
are against lm-eval-default measured in the same run. With `--repeats` > 1 the variants
alternate (A B A B ...) and medians are reported. Sanity columns: accuracy of each variant
and, in loglikelihood mode, the largest absolute difference of a request's loglikelihood
from lm-eval-default's (bf16 against fp32 on a GPU differs a little, and can flip near-ties).
Results are printed and written to benchmarks/out/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

# Read by huggingface_hub/datasets at import time: nothing here may wait on the network.
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars of datasets, transformers, lm-eval

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from overtrained.models.model import OLMO2_1B_SHAPE

BASELINE = "lm-eval-default"
OURS = "ours"
TASKS = {"mini_topic_classification": "topic_classification", "mini_arithmetic": "arithmetic"}
PRETRAIN_BUDGET = "250K"  # tokens of the `checkpoint` model's short pre-training
# OLMo-2-1B's shape with random weights; vocab_size is the real model's (the tokenizer's
# ids, < 1024, all fall inside it), so the LM head costs what it costs there.
OLMO_1B = OLMO2_1B_SHAPE
DEFAULT_N_TEST = {"checkpoint": 500, "olmo-1b": 200}
DEFAULT_REPEATS = {"checkpoint": 3, "olmo-1b": 1}


# ----------------------------------------------------------------------------- preparation


def mini_family() -> dict:
    from overtrained.core import config

    return config.load_file(REPO / "config.yaml")["families"]["mini"]


def corpus_spec():
    from overtrained.data import corpus
    from overtrained.workflow import corpus_spec_fields

    return corpus.CorpusSpec.from_dict(corpus_spec_fields(mini_family()["corpus"]))


def make_tokenizer(out: Path) -> Path:
    """The `mini` family's byte-level BPE tokenizer (fewer training documents than the
    workflow uses: only its vocabulary matters here)."""
    from overtrained.data import corpus

    tokenizer = out / "corpus" / "tokenizer"
    if not (tokenizer / "tokenizer.json").exists():
        corpus.train_tokenizer(
            corpus_spec(), mini_family()["model"]["vocab_size"], tokenizer, n_documents=500
        )
    return tokenizer


def make_checkpoint(out: Path) -> Path:
    """The `mini` family (config.yaml) pre-trained for PRETRAIN_BUDGET tokens, as the
    pretrain stage writes it (model.safetensors, config.json, tokenizer)."""
    from overtrained.core import provenance
    from overtrained.core.units import parse_tokens
    from overtrained.data import corpus
    from overtrained.train import pretrain

    model_dir = out / "checkpoint"
    if (model_dir / "provenance.json").exists():
        return model_dir
    family = mini_family()
    data = out / "corpus"
    make_tokenizer(out)
    spec = corpus_spec()
    train = family["training"]
    steps = pretrain.steps_for(parse_tokens(PRETRAIN_BUDGET), train)
    train_tokens = (steps + 1) * train["batch_size"] * (train["seq_len"] + 1)
    corpus.write_token_stream(spec, data / "tokenizer", "train", train_tokens, data / "train.npy")
    provenance.write_json(data / "corpus.json", {"fingerprint": corpus.corpus_fingerprint(spec)})
    pretrain.run_checkpoint(
        family, PRETRAIN_BUDGET, 0, data, model_dir, params={"code": "eval-throughput"}
    )
    return model_dir


def make_olmo_1b(out: Path, device: str) -> Path:
    """A randomly initialised OLMo-2-1B-shaped Olmo2ForCausalLM saved with save_pretrained in
    float32 (so dtype "auto" loads float32, as for our checkpoints), with the mini tokenizer."""
    import torch
    import transformers

    from overtrained.data.corpus import EOS_ID, PAD_ID

    model_dir = out / "olmo-1b"
    if (model_dir / "tokenizer.json").exists():
        return model_dir
    tokenizer = make_tokenizer(out)
    config = transformers.Olmo2Config(
        **OLMO_1B, bos_token_id=EOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID
    )
    transformers.set_seed(0)
    with torch.device(device):  # initialising 1.5B parameters is much faster on the GPU
        model = transformers.Olmo2ForCausalLM(config)
    model.save_pretrained(model_dir)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    for item in tokenizer.iterdir():
        shutil.copy2(item, model_dir / item.name)
    return model_dir


def write_test_file(out: Path, task: str, n_test: int) -> Path:
    from overtrained.data import task_data

    task_dir = out / "tasks" / f"{task}-{n_test}"
    if not (task_dir / "test.jsonl").exists():
        task_data.write_task(task_dir, TASKS[task], corpus_spec(), n_train=0, n_test=n_test, seed=0)
    return task_dir / "test.jsonl"


# ----------------------------------------------------------------------------- measurement


def load_variant(variant: str, model_dir: Path, args):
    import torch
    from lm_eval.models.huggingface import HFLM

    from overtrained.evaluation import evaluate

    if variant == OURS:
        return evaluate.load_lm(model_dir, "auto", args.precision)
    # lm-eval's defaults: lm-eval loads the checkpoint itself (dtype "auto") and places it.
    lm = HFLM(pretrained=str(model_dir), batch_size=1, device=args.device)
    assert lm.model.device.type == torch.device(args.device).type, lm.model.device
    return lm


def sync(args) -> None:
    # CUDA kernels are queued asynchronously: wait for them at every timing boundary.
    if args.device == "cuda":
        import torch

        torch.cuda.synchronize()


def accuracy(instances, loglikelihoods: list[float]) -> float:
    """lm-eval's `acc` of a multiple-choice task: argmax of the choices' loglikelihoods."""
    targets: dict[int, int] = {}
    lls: dict[int, dict[int, float]] = {}
    for inst, ll in zip(instances, loglikelihoods, strict=True):
        targets[inst.doc_id] = inst.doc["target"]
        lls.setdefault(inst.doc_id, {})[inst.idx] = ll
    hits = [max(choices, key=choices.get) == targets[doc] for doc, choices in lls.items()]
    return sum(hits) / len(hits)


def time_loglikelihood(lm, instances, args) -> dict:
    sync(args)
    t0 = time.perf_counter()
    out = lm.loglikelihood(instances, disable_tqdm=True)
    sync(args)
    seconds = time.perf_counter() - t0
    lls = [float(ll) for ll, _ in out]
    return {"seconds": seconds, "loglikelihoods": lls, "accuracy": accuracy(instances, lls)}


def run_simple_evaluate(lm, task_config: dict, limit: int | None):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from overtrained.evaluation import evaluate

    return lm_eval.simple_evaluate(
        model=lm,
        tasks=[task_config],
        task_manager=TaskManager(include_path=str(evaluate.TASK_DIR), include_defaults=False),
        limit=limit,
        log_samples=False,
        bootstrap_iters=0,
        **evaluate.SEEDS,
    )


def time_simple_evaluate(lm, task_config: dict, task: str, args) -> dict:
    sync(args)
    t0 = time.perf_counter()
    results = run_simple_evaluate(lm, task_config, None)
    sync(args)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "accuracy": results["results"][task]["acc,none"],
        "n_docs": results["n-samples"][task]["effective"],
    }


def environment(args) -> dict:
    import torch

    from overtrained.core import provenance

    env = {
        **provenance.package_versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    for name in ("lm_eval", "datasets", "accelerate"):
        with contextlib.suppress(metadata.PackageNotFoundError):  # not installed
            env[name] = metadata.version(name.replace("_", "-"))
    env["device_name"] = (
        torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    )
    return env


def measure(args, model_dir: Path, test_file: Path) -> tuple[dict, dict]:
    import torch

    from overtrained.evaluation import evaluate

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()  # not the olmo-1b stand-in's initialisation
    instances = evaluate.build_requests(evaluate.repo_task_config(args.task, test_file))
    n_docs = len({inst.doc_id for inst in instances})
    task_config = evaluate.repo_task_config(args.task, test_file)
    lms = {}
    info = {}
    for variant in (BASELINE, OURS):
        t0 = time.perf_counter()
        lm = load_variant(variant, model_dir, args)
        lms[variant] = lm
        info[variant] = {
            "batch_size": lm.batch_size_per_gpu,
            "dtype": str(lm.model.dtype).removeprefix("torch."),
            "device": str(lm.model.device),
            "load_seconds": time.perf_counter() - t0,
        }
    n_params = lms[OURS].model.num_parameters()
    # Warm-up (untimed): kernels, allocator, tokenizer caches; auto batch-size detection.
    for lm in lms.values():
        if args.mode == "loglikelihood":
            lm.loglikelihood(instances[: args.warmup_requests], disable_tqdm=True)
        else:
            n = max(1, args.warmup_requests // max(1, len(instances) // n_docs))
            run_simple_evaluate(lm, task_config, n)
        sync(args)
    runs: dict[str, list[dict]] = {v: [] for v in lms}
    for _ in range(args.repeats):
        for variant, lm in lms.items():
            if args.mode == "loglikelihood":
                runs[variant].append(time_loglikelihood(lm, instances, args))
            else:
                runs[variant].append(time_simple_evaluate(lm, task_config, args.task, args))
    for variant, lm in lms.items():
        # batch size "auto": what HFLM detected in the last (timed) call
        info[variant]["detected_batch_sizes"] = sorted(set(lm.batch_sizes.values()))
    if args.device == "cuda":
        info["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    info.update(n_params=n_params, n_docs=n_docs, requests=len(instances))
    # lm-eval's one-token-continuation cache (logits_cache) scores requests that share the
    # context and all but the last continuation token in one row: the rows it really runs.
    pairs = [lms[OURS]._encode_pair(*inst.args) for inst in instances]
    info["distinct_forward_rows"] = len({tuple(c + k[:-1]) for c, k in pairs})
    info["mean_tokens_per_request"] = statistics.mean(len(c) + len(k) for c, k in pairs)
    return runs, info


def summarise(args, runs: dict[str, list[dict]], info: dict) -> dict:
    summary = {}
    for variant, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        batch = info[variant]["batch_size"]
        if batch == "auto":
            batch = "auto:" + "/".join(str(b) for b in info[variant]["detected_batch_sizes"])
        summary[variant] = {
            "batch_size": batch,
            "dtype": info[variant]["dtype"],
            "requests": info["requests"],
            "seconds": seconds,
            "requests_per_second": info["requests"] / seconds,
            "runs_seconds": [r["seconds"] for r in results],
            "accuracy": results[0]["accuracy"],
        }
        if args.mode == "loglikelihood":
            base = runs[BASELINE][0]["loglikelihoods"]
            mine = results[0]["loglikelihoods"]
            summary[variant]["max_abs_loglikelihood_difference"] = max(
                abs(a - b) for a, b in zip(mine, base, strict=True)
            )
        if args.mode == "simple_evaluate" and any(r["n_docs"] != info["n_docs"] for r in results):
            print(f"WARNING: {variant}: simple_evaluate scored a different number of documents")
    base_rate = summary[BASELINE]["requests_per_second"]
    for row in summary.values():
        row["ratio_to_baseline"] = row["requests_per_second"] / base_rate
    return summary


def print_table(args, info: dict, summary: dict) -> None:
    threads = args.threads if args.device == "cpu" else "default"
    timed = "lm.loglikelihood(instances)" if args.mode == "loglikelihood" else "simple_evaluate"
    model = "model-dir" if args.model_dir else args.model
    print(
        f"model: {model} ({info['n_params']:,} parameters) from {info['model_dir']}; "
        f"device {args.device}; task {args.task}, {info['n_docs']} documents, "
        f"{info['requests']} loglikelihood requests ({info['distinct_forward_rows']} distinct "
        f"forward rows after lm-eval's one-token cache, {info['mean_tokens_per_request']:.0f} "
        f"tokens each on average); {threads} torch thread(s); timed: {timed} after an "
        f"untimed warm-up; {args.repeats} repeat(s), medians"
    )
    head = (
        f"{'variant':16s} {'batch':>8s} {'dtype':>9s} {'requests':>9s} {'seconds':>9s} "
        f"{'requests/s':>11s} {'vs ' + BASELINE:>18s} {'accuracy':>9s}"
    )
    if args.mode == "loglikelihood":
        head += f" {'max |dLL|':>10s}"
    print(head)
    for variant, row in summary.items():
        line = (
            f"{variant:16s} {str(row['batch_size']):>8s} {row['dtype']:>9s} "
            f"{row['requests']:9d} {row['seconds']:9.2f} {row['requests_per_second']:11.1f} "
            f"{row['ratio_to_baseline']:18.2f} {row['accuracy']:9.4f}"
        )
        if args.mode == "loglikelihood":
            line += f" {row['max_abs_loglikelihood_difference']:10.2e}"
        print(line)
    if summary[BASELINE]["accuracy"] != summary[OURS]["accuracy"]:
        print(
            "note: the accuracies differ "
            f"({summary[OURS]['accuracy']:.4f} vs {summary[BASELINE]['accuracy']:.4f}); "
            "expected only where the dtypes differ (near-ties flip)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        choices=("checkpoint", "olmo-1b"),
        default="checkpoint",
        help="checkpoint: the mini family briefly pre-trained here on CPU; olmo-1b: an "
        "OLMo-2-1B-shaped model with random weights (for a GPU)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="an existing HF checkpoint dir (with tokenizer) instead; sizes follow --model",
    )
    parser.add_argument("--task", choices=sorted(TASKS), default="mini_topic_classification")
    parser.add_argument("--n-test", type=int, default=None, help="documents (500; olmo-1b 200)")
    parser.add_argument(
        "--mode", choices=("loglikelihood", "simple_evaluate"), default="loglikelihood"
    )
    parser.add_argument("--warmup-requests", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None, help="3; olmo-1b 1")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32"), default="auto", help="ours")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument(
        "--work", type=Path, help="keep the checkpoint and task files here (default: temporary)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "out" / "eval_throughput.json"
    )
    args = parser.parse_args()

    import torch
    import transformers

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    if args.device == "cpu" and torch.cuda.is_available():
        # load_lm puts our model on the GPU whenever there is one.
        parser.error("a GPU is visible: ours would run on it; hide it (CUDA_VISIBLE_DEVICES=)")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    if args.model == "olmo-1b" and args.device == "cpu":
        print("warning: olmo-1b on a CPU is very slow; it is meant for a GPU", file=sys.stderr)
    if args.n_test is None:
        args.n_test = DEFAULT_N_TEST[args.model]
    if args.repeats is None:
        args.repeats = DEFAULT_REPEATS[args.model]
    if args.repeats < 1 or args.n_test < 1 or args.warmup_requests < 1:
        parser.error("--repeats, --n-test and --warmup-requests must be >= 1")
    transformers.logging.set_verbosity_error()
    for name in ("lm-eval", "lm_eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        t0 = time.perf_counter()
        if args.model_dir:
            model_dir = args.model_dir.resolve()
        elif args.model == "olmo-1b":
            model_dir = make_olmo_1b(work, args.device)
        else:
            model_dir = make_checkpoint(work)
        test_file = write_test_file(work, args.task, args.n_test)
        prepare_seconds = time.perf_counter() - t0
        runs, info = measure(args, model_dir, test_file)
        info["model_dir"] = str(args.model_dir or f"<work>/{model_dir.name}")
        info["prepare_seconds"] = prepare_seconds

    summary = summarise(args, runs, info)
    print_table(args, info, summary)
    for run in (r for rs in runs.values() for r in rs):
        run.pop("loglikelihoods", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "eval_throughput",
        "baseline": BASELINE,
        "args": vars(args),
        "environment": environment(args),
        "info": info,
        "summary": summary,
        "runs": runs,
    }
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
