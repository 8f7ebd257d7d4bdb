"""Benchmark evaluation with lm-eval's `simple_evaluate` on a loaded model.

Standard task names (arc_easy, ...) go through lm-eval's TaskManager; the miniature tasks
are YAMLs shipped in `lm_eval_tasks/`, whose data file is filled in here with the
held-out split of the family's fine-tuning task of that kind. Results are written to our
own path with normalised metric keys and our own record of the model's sha (lm-eval
reports "main" as the revision of a loaded model).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from pathlib import Path

import yaml

from overtrained.core import provenance
from overtrained.core.config import ID_PREFIX, MINI_PREFIX

TASK_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


def id_task_config(
    name: str, test_file: str | Path, answer_pattern: str | None, max_gen_toks: int = 256
) -> dict:
    """id_<task>: label accuracy (multiple choice) or, with an answer pattern, exact match of
    the answer in a greedy generation of at most `max_gen_toks` tokens, over a dataset
    task's held-out rows."""
    template = "id_generate" if answer_pattern else "id_choice"
    config = repo_task_config(template, test_file)
    config["task"] = name
    if answer_pattern:
        config["filter_list"][0]["filter"][0]["regex_pattern"] = answer_pattern
        config["generation_kwargs"]["max_gen_toks"] = max_gen_toks
    return config


def repo_task_config(name: str, test_file: str | Path) -> dict:
    """A shipped miniature task YAML as a dict, pointed at `test_file`."""
    path = TASK_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in TASK_DIR.glob("*.yaml"))
        raise ValueError(f"no miniature lm-eval task {name!r}; known: {', '.join(known)}")
    config = yaml.safe_load(path.read_text())
    config = copy.deepcopy(config)
    config["dataset_kwargs"]["data_files"]["test"] = str(Path(test_file).resolve())
    return config


def build_requests(task_config: dict) -> list:
    """The request instances lm-eval builds for one repo task config (no model needed)."""
    import warnings

    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_task_dict's deprecation notice
        task = get_task_dict([task_config], manager)[task_config["task"]]
    task.build_all_requests(limit=None, rank=0, world_size=1)
    return task.instances


def normalise(results: dict) -> list[dict]:
    """lm-eval's {'acc,none': x, 'acc_stderr,none': s} -> [{metric: acc, value, stderr}]."""
    rows = []
    n_samples = results.get("n-samples", {})
    for task, metrics in results["results"].items():
        n = n_samples.get(task, {}).get("effective")
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key:
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append(
                {
                    "task": task,
                    "metric": metric if filt == "none" else f"{metric}[{filt}]",
                    "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                    "n": n,
                }
            )
    return rows


@contextlib.contextmanager
def no_system_survey():
    """simple_evaluate adds torch's collect_env report to its results: it runs `pip list`,
    `nvidia-smi` and others in subprocesses (0.8 s per job). This workflow keeps none of it
    (each record has its own package versions), so lm-eval gets a one-line note instead."""
    from torch.utils import collect_env

    surveyed = collect_env.get_pretty_env_info
    collect_env.get_pretty_env_info = lambda: "not collected: see the record's versions"
    try:
        yield
    finally:
        collect_env.get_pretty_env_info = surveyed


# lm-eval's seeds (its own defaults, written out so that they are recorded with the code).
SEEDS = {
    "random_seed": 0,
    "numpy_random_seed": 1234,
    "torch_random_seed": 1234,
    "fewshot_random_seed": 1234,
}
CPU_BATCH_SIZE = 64  # what batch_size "auto" means without a GPU


def _load(dataset: dict):
    import datasets

    return datasets.load_dataset(dataset["path"], dataset["name"], **dataset["kwargs"])


def prefetch(datasets: list[dict]) -> dict:
    """Download every dataset a suite's lm-eval tasks read; return what was fetched."""
    fetched = []
    for dataset in datasets:
        splits = _load(dataset)
        fetched.append({**dataset, "rows": {split: len(rows) for split, rows in splits.items()}})
    return {"datasets": fetched}


def check_cached(datasets: list[dict]) -> None:
    """Offline, each dataset must load from the cache; else name it and say what to run."""
    for dataset in datasets:
        try:
            _load(dataset)
        except Exception as err:  # datasets raises many types for a cache miss
            import datasets as hf_datasets

            raise RuntimeError(
                f"dataset {dataset['path']!r} (name {dataset['name']!r}) is not in the "
                f"Hugging Face cache ({hf_datasets.config.HF_DATASETS_CACHE}) and this job "
                "is offline: run `snakemake prefetch` where there is internet access, with "
                f"the same HF_HOME. ({type(err).__name__}: {err})"
            ) from err


def load_lm(
    model_dir: str | Path,
    batch_size: int | str,
    precision: str = "auto",
    loading: dict | None = None,
):
    """lm-eval's HFLM around our loaded model: on a GPU, bf16 (precision auto, where
    supported) and lm-eval's automatic batch size; on a CPU, fp32 and CPU_BATCH_SIZE.
    `loading`: the family's loading options (workflow.loading_options)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    from overtrained.models.loading import load_causal_lm, load_tokenizer

    loading = loading or {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = device == "cuda" and precision != "fp32" and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    # HFLM keeps a loaded model where it is (it ignores device=), so place it here.
    model = load_causal_lm(model_dir, device, dtype, **loading)
    tokenizer = load_tokenizer(model_dir, loading.get("trust_remote_code", False))
    if batch_size == "auto" and device == "cpu":
        batch_size = CPU_BATCH_SIZE
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)


def run(
    model_dir: str | Path,
    suite: dict,
    mini_test_files: dict[str, str | Path],
    out_json: str | Path,
    params: dict,
    threads: int = 1,
    status: str = "ok",
    datasets: list[dict] = (),
    precision: str = "auto",
    answer_patterns: dict[str, str] | None = None,
    model_source: dict | None = None,
    loading: dict | None = None,
) -> dict:
    """Evaluate one model on one suite and write the normalised results. Offline: the
    datasets of the suite's lm-eval tasks must be in the cache (the prefetch rule).
    `loading`: the family's loading options (workflow.loading_options)."""
    started, t0 = provenance.now(), time.perf_counter()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Read by datasets/huggingface_hub at import time: set before importing lm_eval.
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    check_cached(datasets)
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    from overtrained.models.loading import verified_weights

    torch.set_num_threads(threads)
    digest = verified_weights(model_dir)  # before any work: a changed file stops here
    lm = load_lm(model_dir, suite["batch_size"], precision, loading)
    tasks = []
    for name in suite["tasks"]:
        if name.startswith(MINI_PREFIX):
            tasks.append(repo_task_config(name, mini_test_files[name]))
        elif name.startswith(ID_PREFIX):
            pattern = (answer_patterns or {}).get(name)
            # Half the context at most: the prompt needs room too.
            max_gen = min(256, lm.max_length // 2)
            tasks.append(id_task_config(name, mini_test_files[name], pattern, max_gen))
        else:
            tasks.append(name)
    failure = None
    try:
        with no_system_survey():
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=tasks,
                num_fewshot=suite["num_fewshot"],
                limit=suite["limit"],
                # Indexing lm-eval's ~26k bundled task YAMLs takes ~12 s: only if a suite needs it.
                task_manager=TaskManager(
                    include_path=str(TASK_DIR),
                    include_defaults=any(isinstance(task, str) for task in tasks),
                ),
                log_samples=False,
                bootstrap_iters=100,
                **SEEDS,
            )
    except (OverflowError, FloatingPointError) as error:
        # A diverged model's losses are astronomically large: lm-eval's perplexities overflow.
        # That is a result of the sweep, not a reason to stop it: no metrics, and why.
        failure = f"{type(error).__name__}: {error}"
        status = "diverged" if status == "diverged" else "non-finite"
        print(f"no metrics for this model ({status}): lm-eval raised {failure}", flush=True)
        results = {"results": {}}
    record = provenance.record(
        "evaluate",
        params,
        started,
        time.perf_counter() - t0,
        status=status,
        failure=failure,
        metrics=normalise(results),
        lm_eval_version=results.get("lm_eval_version"),
        task_versions=results.get("versions", {}),
        task_configs={k: v for k, v in results.get("configs", {}).items()},
        n_shot=results.get("n-shot", {}),
        model_sha=digest,
        # lm-eval reports revision "main" for a loaded model: ours says what it really is.
        model_source=model_source or {},
        dtype=str(lm.model.dtype).removeprefix("torch."),
        batch_size=suite["batch_size"],
    )
    record = provenance.write_json(out_json, record)  # as written: scrubbed, hashed
    return record
