"""What the Snakefile needs from the config: names, paths, targets, params.

Kept out of the .smk files so that it is unit-tested. Paths carry the identity
of what they hold (family / checkpoint / model / suite), so a number in the
tables can be traced to its file by eye.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from overtrained.analysis.figures import FIGURES  # noqa: F401 (the figures rule's outputs)
from overtrained.core.config import ID_PREFIX, MINI_PREFIX, is_repo_task
from overtrained.core.units import format_lr, format_tokens, parse_tokens


def plan_config(raw: dict | None, report=print) -> dict:
    """Every check the workflow makes before it plans a job, on a config as Snakemake (or
    `overtrained validate`) read it: the schema and cross-field rules, the lm-eval suites'
    task names, and the hub families' pins (read from, or written into, the manifest;
    `report` gets the lines about new or moved pins). Raises ConfigError."""
    from overtrained.core import config
    from overtrained.evaluation import lm_eval_index
    from overtrained.hub import pins

    if not raw:
        raise config.ConfigError(
            "the config is empty: it would run the schema's defaults, which is rarely meant; "
            "use config.yaml, or write the sections you want"
        )
    cfg = config.load(raw)
    check_room_for_completions(cfg)
    lm_eval_index.check_suites(cfg)
    for line in pins.pin_config(cfg):
        report(line)
    return cfg


def check_room_for_completions(cfg: dict) -> None:
    """config.check_room_for_completions for the generated tasks, before any job: they are a
    pure function of the config, and the byte-level BPE makes at least one token per word,
    so word counts bound token counts from below. The fine-tuning job checks the exact
    token counts (and dataset tasks) again before it trains."""
    from overtrained.core.config import check_room_for_completions as check
    from overtrained.data import corpus, task_data

    max_length = cfg["finetune"]["max_length"]
    for family in family_names(cfg, "pretrain"):
        spec = corpus.CorpusSpec.from_dict(corpus_spec_fields(cfg["families"][family]["corpus"]))
        for name in ft_tasks(cfg, family):
            task = cfg["finetune"]["tasks"][name]
            if task["kind"] == "dataset" or not cfg["finetune"]["lrs"].get(name):
                continue
            # 16 prompts first (0.01 s): one short enough settles it; else all (~0.5 s).
            sample, _ = task_data.make_task(
                task["kind"], spec, min(16, task["n_train"]), 0, task["seed"]
            )
            if min(len(row["prompt"].split()) for row in sample) < max_length:
                continue
            train, _ = task_data.make_task(
                task["kind"], spec, task["n_train"], task["n_test"], task["seed"]
            )
            words = [len(row["prompt"].split()) for row in train]
            examples = f"training example of task {name!r} of family {family!r}"
            check(max_length, words, examples, unit="words")


RESULTS = "results"
# The results layout, spelled once: the rules' outputs and the target lists below are these
# patterns, filled in by `path`. {model} is `base` or ft/{task}/lr{lr}/seed{seed}.
PATHS = {
    "corpus": f"{RESULTS}/{{family}}/corpus",  # train.npy, heldout.npy, corpus.json, tokenizer/
    "trunk": f"{RESULTS}/{{family}}/trunk/seed{{seed}}",  # optimizer states at each budget
    "generated_task": f"{RESULTS}/{{family}}/tasks/{{task}}",  # train.jsonl, test.jsonl, task.json
    "dataset_task": f"{RESULTS}/datasets/{{task}}",  # the same, plus prefetch.json
    "retention": f"{RESULTS}/{{family}}/retention",  # heldout.npy, retention.json
    "retention_prefetch": f"{RESULTS}/retention/prefetch.json",
    "suite_prefetch": f"{RESULTS}/suites/{{suite}}/prefetch.json",
    "hub_tokenizer": f"{RESULTS}/{{family}}/tokenizer",  # provenance.json and the files
    "checkpoint": f"{RESULTS}/{{family}}/{{ckpt}}",
    "model": f"{RESULTS}/{{family}}/{{ckpt}}/{{model}}",  # base/ or ft/.../: weights, record, eval/
    "evaluation": f"{RESULTS}/{{family}}/{{ckpt}}/{{model}}/eval/{{suite}}.json",
    "sensitivity": f"{RESULTS}/{{family}}/{{ckpt}}/sensitivity.json",
    "tables": f"{RESULTS}/tables",
    "figures": f"{RESULTS}/figures",
}


class _Wildcards(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"  # left for Snakemake


def path(name: str, **wildcards) -> str:
    """A PATHS pattern with these wildcards filled in; the others stay Snakemake wildcards."""
    return PATHS[name].format_map(_Wildcards(wildcards))


PACKAGE_DIR = Path(__file__).resolve().parent
PROBES = "probes"
JUDGE = "judge"

# The library files each stage runs. Their code hash is a `params:` entry of the stage's
# rule, so editing the fine-tuning code re-runs fine-tuning and what depends on it, and
# nothing upstream. Shared helpers (config, provenance, workflow) only record or route and
# are deliberately left out: editing them re-runs nothing. core/jsonio.py is in where a
# stage's outputs are written with it (task files, checkpoint configs).
STAGE_CODE = {  # stage (its rule, script and module share the name): files under overtrained/
    "corpus": ("data/corpus.py",),
    "task_data": ("data/task_data.py", "data/corpus.py", "core/jsonio.py"),
    "dataset_task": ("data/dataset_task.py", "core/jsonio.py"),
    "retention_stream": ("data/retention_stream.py", "data/dataset_task.py", "models/loading.py"),
    "pretrain": ("train/pretrain.py", "models/model.py", "core/jsonio.py"),
    "finetune": ("train/finetune.py", "models/loading.py"),
    "evaluate": ("evaluation/evaluate.py", "models/loading.py", "evaluation/lm_eval_tasks/*.yaml"),
    "probes": ("evaluation/probes.py", "models/model.py", "models/loading.py"),
    "sensitivity": (
        "evaluation/sensitivity.py",
        "evaluation/probes.py",
        "models/model.py",
        "models/loading.py",
    ),
    "aggregate": ("analysis/aggregate.py",),
    "analysis": ("analysis/analysis.py", "analysis/statistics.py", "analysis/vocabulary.py"),
    "figures": (
        "analysis/figures.py",
        "analysis/drawing.py",
        "analysis/report_pages.py",
        "analysis/vocabulary.py",
    ),
    "judge": ("evaluation/judge.py", "models/loading.py"),
    "theory": (
        "analysis/theory.py",
        "analysis/figures.py",
        "analysis/drawing.py",
        "analysis/vocabulary.py",
    ),
    "claims": (
        "analysis/claims.py",
        "analysis/analysis.py",
        "analysis/statistics.py",
        "analysis/vocabulary.py",
    ),
}


def code_fingerprint(source: bytes, suffix: str) -> bytes:
    """What a file makes the stage do, not where it or its imports live, nor how it is
    worded: for Python, the syntax tree written back as code, without docstrings (comments,
    blank lines and layout are not in the tree) and without the package's own import
    statements, every use of one of the package's modules written as `_` (so `tables.SCHEMA`
    and, after a move and rename, `aggregate.SCHEMA` are both `_.SCHEMA`; which of the
    package's files a stage runs is STAGE_CODE's business). Any other file as it is.
    Moving or renaming a module, or editing documentation, re-runs nothing. One cost: a new
    Python minor version may write the tree differently and re-run the stages once. YAML
    (lm-eval task files): its data, without comments or layout."""
    if suffix == ".yaml":
        return json.dumps(yaml.safe_load(source), sort_keys=True).encode()
    if suffix != ".py":
        return source
    tree = _WithoutPackageImports().visit(ast.parse(source))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree).encode()


class _WithoutPackageImports(ast.NodeTransformer):
    """Drops `from overtrained[.subpackage] import ...` statements; names they bind to the
    package's modules become `_` wherever they are used."""

    def __init__(self):
        self.modules: set[str] = set()

    def visit_Module(self, node: ast.Module) -> ast.Module:
        for child in ast.walk(node):  # bindings first: a use may precede a deferred import
            if (
                isinstance(child, ast.ImportFrom)
                and _is_package_import(child)
                and _names_modules(child.module)
            ):
                self.modules.update(alias.asname or alias.name for alias in child.names)
        return self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        return None if _is_package_import(node) else node

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name("_", node.ctx) if node.id in self.modules else node


def _is_package_import(node: ast.ImportFrom) -> bool:
    return node.level == 0 and (node.module or "").split(".")[0] == __name__.split(".")[0]


def _names_modules(module: str) -> bool:
    """`from overtrained import x` and `from overtrained.<subpackage> import x` import
    modules; `from overtrained[.sub].module import x` imports what a module defines."""
    parts = module.split(".")[1:]
    return not parts or (len(parts) == 1 and (PACKAGE_DIR / parts[0]).is_dir())


@functools.cache
def stage_code_hash(stage: str) -> str:
    """Hash of the stage's files' fingerprints, in an order that does not depend on paths."""
    files = []
    for pattern in STAGE_CODE[stage]:
        matched = sorted(PACKAGE_DIR.glob(pattern))
        if not matched:  # a moved file must be moved here too, not dropped from the hash
            raise FileNotFoundError(f"STAGE_CODE[{stage!r}]: no file matches {pattern!r}")
        files += matched
    prints = sorted(
        hashlib.sha256(code_fingerprint(path.read_bytes(), path.suffix)).hexdigest()
        for path in files
    )
    return hashlib.sha256("\n".join(prints).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    family: str
    name: str  # budget-seed for pretrain families, the branch for hub families
    budget: str
    tokens: int
    seed: int | None  # pre-training seed (None: a hub checkpoint)


def checkpoint_name(budget: str, seed: int) -> str:
    return f"{budget}-seed{seed}"


def checkpoints(cfg: dict, family: str) -> list[Checkpoint]:
    fam = cfg["families"][family]
    if fam["source"] == "hub":  # pinned by overtrained.hub.pins, in token order
        return [
            Checkpoint(family, e["revision"], format_tokens(e["tokens"]), e["tokens"], None)
            for e in fam["pinned"]
        ]
    return [
        Checkpoint(family, checkpoint_name(b, s), b, parse_tokens(b), s)
        for s in fam["seeds"]
        for b in fam["budgets"]
    ]


def checkpoint(cfg: dict, family: str, name: str) -> Checkpoint:
    for ckpt in checkpoints(cfg, family):
        if ckpt.name == name:
            return ckpt
    raise KeyError(f"no checkpoint {name!r} in family {family!r}")


def family_names(cfg: dict, source: str) -> list[str]:
    return [name for name, fam in cfg["families"].items() if fam["source"] == source]


def hub_pin(cfg: dict, family: str, ckpt: str) -> dict:
    """The manifest entry of a hub checkpoint (revision, tokens, sha)."""
    for entry in cfg["families"][family]["pinned"]:
        if entry["revision"] == ckpt:
            return entry
    raise KeyError(f"no checkpoint {ckpt!r} in hub family {family!r}")


def checkpoint_pin(cfg: dict, family: str, ckpt: str) -> str | None:
    """The commit a base model comes from: a `params:` entry of every rule that reads it, so
    re-pinning a branch makes exactly its jobs stale (None for pretrain families)."""
    if cfg["families"][family]["source"] != "hub":
        return None
    return hub_pin(cfg, family, ckpt)["sha"]


def download_params(cfg: dict, family: str, ckpt: str | None = None) -> dict:
    """What the download of a hub checkpoint (or, ckpt None, of its tokenizer) fetches."""
    fam = cfg["families"][family]
    pin = fam["tokenizer_pin"] if ckpt is None else hub_pin(cfg, family, ckpt)
    patterns = list(fam["allow_patterns"])
    if ckpt is None:  # the family's patterns less the weights
        patterns = [p for p in patterns if "safetensors" not in p and not p.endswith(".bin")]
    elif fam["allow_pickle"]:
        patterns += PICKLE_PATTERNS
    return {
        "repo": fam["repo"],
        "revision": pin["revision"],
        "sha": pin["sha"],
        "allow_patterns": patterns,
        "allow_pickle": fam["allow_pickle"],
        "trust_remote_code": fam["trust_remote_code"],
        "require_weights": ckpt is not None,
        "tokens": pin.get("tokens"),
        "budget": format_tokens(pin["tokens"]) if ckpt is not None else None,
    }


PICKLE_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


def loading_options(cfg: dict, family: str) -> dict:
    """What model loading may do for a family (pretrain families: safetensors, no remote code)."""
    fam = cfg["families"][family]
    return {
        "allow_pickle": fam.get("allow_pickle", False),
        "trust_remote_code": fam.get("trust_remote_code", False),
    }


def probe_loading(cfg: dict, family: str) -> dict:
    """loading_options for the probes: the workflow's own checkpoints load natively (fp32)."""
    native = cfg["families"][family]["source"] == "pretrain"
    return {**loading_options(cfg, family), "native": native}


def lr_value(cfg: dict, task: str, lr: str) -> float:
    for value in cfg["finetune"]["lrs"][task]:
        if format_lr(value) == lr:
            return value
    raise KeyError(f"learning rate {lr!r} is not in finetune.lrs.{task}")


def ft_tasks(cfg: dict, family: str | None = None) -> list[str]:
    """The fine-tuning tasks run on a family's checkpoints (every task when family is None
    or the family names none)."""
    chosen = cfg["families"][family].get("finetune_tasks") if family else None
    return [task for task in cfg["finetune"]["tasks"] if chosen is None or task in chosen]


def ft_models(cfg: dict, family: str | None = None) -> list[str]:
    """Fine-tuned model ids, as used in paths: ft/{task}/lr{lr}/seed{seed} (of one family's
    tasks, or of every task)."""
    ft = cfg["finetune"]
    return [
        f"ft/{task}/lr{format_lr(lr)}/seed{seed}"
        for task in ft_tasks(cfg, family)
        for lr in ft["lrs"][task]
        for seed in ft["seeds"]
    ]


def parse_ft_model(model: str) -> tuple[str, str, int]:
    match = re.fullmatch(r"ft/([^/]+)/lr([^/]+)/seed(\d+)", model)
    if not match:
        raise ValueError(f"not a fine-tuned model id: {model!r}")
    return match[1], match[2], int(match[3])


def suites(cfg: dict) -> list[str]:
    return [*cfg["evaluate"]["suites"], PROBES]


def ckpt_dir(family: str, ckpt: str) -> str:
    return path("checkpoint", family=family, ckpt=ckpt)


def evaluation_files(cfg: dict) -> list[str]:
    """Every evaluation output: each model (base and fine-tuned) x each suite, and the
    judge's score of the fine-tuned models of the judged tasks when a judge is configured."""
    judge = cfg["evaluate"]["judge"]
    judged = set(judge["tasks"]) if judge["command"] else set()
    out = []
    for family in cfg["families"]:
        for ckpt in checkpoints(cfg, family):
            for model in ["base", *ft_models(cfg, family)]:
                for suite in suites(cfg):
                    out.append(
                        path("evaluation", family=family, ckpt=ckpt.name, model=model, suite=suite)
                    )
                if model != "base" and parse_ft_model(model)[0] in judged:
                    out.append(
                        path("evaluation", family=family, ckpt=ckpt.name, model=model, suite=JUDGE)
                    )
    return out


def train_files(cfg: dict) -> list[str]:
    return [
        model_record(family, ckpt.name, model)
        for family in cfg["families"]
        for ckpt in checkpoints(cfg, family)
        for model in ft_models(cfg, family)
    ]


def sensitivity_files(cfg: dict) -> list[str]:
    return [
        path("sensitivity", family=family, ckpt=ckpt.name)
        for family in cfg["families"]
        for ckpt in checkpoints(cfg, family)
    ]


def download_files(cfg: dict) -> list[str]:
    """The download records of every hub checkpoint and hub tokenizer."""
    out = []
    for family in family_names(cfg, "hub"):
        out.append(f"{tokenizer_dir(cfg, family)}/provenance.json")
        out += [model_record(family, c.name, "base") for c in checkpoints(cfg, family)]
    return out


def tokenizer_dir(cfg: dict, family: str) -> str:
    """Where a family's tokenizer lives: its corpus's, or a hub family's pinned download."""
    if cfg["families"][family]["source"] == "hub":
        return path("hub_tokenizer", family=family)
    return f"{path('corpus', family=family)}/tokenizer"


def base_provenance_files(cfg: dict) -> list[str]:
    return [
        model_record(family, ckpt.name, "base")
        for family in cfg["families"]
        for ckpt in checkpoints(cfg, family)
    ]


def alternatives(names) -> str:
    """A regex matching exactly these names (one that matches nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def dataset_task_names(cfg: dict) -> list[str]:
    return [name for name, t in cfg["finetune"]["tasks"].items() if t["kind"] == "dataset"]


def generated_task_names(cfg: dict) -> list[str]:
    return [name for name, t in cfg["finetune"]["tasks"].items() if t["kind"] != "dataset"]


def task_dir(cfg: dict, family: str, task: str) -> str:
    """Dataset tasks are the same for every family; generated ones speak the family's language."""
    if cfg["finetune"]["tasks"][task]["kind"] == "dataset":
        return path("dataset_task", task=task)
    return path("generated_task", family=family, task=task)


def suites_with_standard_tasks(cfg: dict) -> list[str]:
    """Suites naming lm-eval's own tasks, whose datasets come from the Hub."""
    return [
        name
        for name, suite in cfg["evaluate"]["suites"].items()
        if any(not is_repo_task(task) for task in suite["tasks"])
    ]


RETENTION_PREFETCH = PATHS["retention_prefetch"]


def suite_prefetch_file(suite: str) -> str:
    return path("suite_prefetch", suite=suite)


THEORY_TABLES = (f"{PATHS['tables']}/theory.parquet", f"{PATHS['tables']}/theory_summary.parquet")
THEORY_FIGURE = f"{PATHS['figures']}/theory"


def theory_files(cfg: dict) -> list[str]:
    """The theory stage's outputs when it is enabled (part of the default target)."""
    if not cfg["theory"]["enabled"]:
        return []
    return [*THEORY_TABLES, *(f"{THEORY_FIGURE}.{ext}" for ext in ("png", "svg", "json"))]


def prefetch_files(cfg: dict) -> list[str]:
    """Everything that needs internet: hub checkpoints, dataset tasks, lm-eval suites."""
    return [
        *download_files(cfg),
        *(f"{path('dataset_task', task=task)}/prefetch.json" for task in dataset_task_names(cfg)),
        *(suite_prefetch_file(suite) for suite in suites_with_standard_tasks(cfg)),
        *([RETENTION_PREFETCH] if cfg["evaluate"]["retention_text"] is not None else []),
    ]


def dataset_local_files(cfg: dict, task: str) -> list[str]:
    """Local data files a dataset task reads: inputs of its prefetch, so editing one re-runs it."""
    from overtrained.data import dataset_task

    return dataset_task.local_files(cfg["finetune"]["tasks"][task]["dataset"])


def retention_local_files(cfg: dict) -> list[str]:
    """Local files of evaluate.retention_text: inputs of its prefetch."""
    from overtrained.data import dataset_task

    text = cfg["evaluate"]["retention_text"]
    return dataset_task.local_files(text) if text is not None else []


def wildcard_constraints(cfg: dict) -> dict[str, str]:
    return {
        "family": alternatives(cfg["families"]),
        "ckpt": alternatives(
            sorted({c.name for family in cfg["families"] for c in checkpoints(cfg, family)})
        ),
        "task": alternatives(cfg["finetune"]["tasks"]),
        "lr": r"[0-9][0-9.e+-]*",
        "seed": r"\d+",
        "suite": alternatives([*suites(cfg), JUDGE]),
        "model": r"base|ft/[^/]+/lr[^/]+/seed\d+",
        "budget": alternatives(
            sorted({b for fam in cfg["families"].values() for b in fam.get("budgets", ())})
        ),
    }


def training_params(training: dict) -> dict:
    """The training settings a checkpoint depends on (decay_fraction only matters for wsd)."""
    if training["schedule"] == "wsd":
        return training
    return {k: v for k, v in training.items() if k != "decay_fraction"}


def mini_test_files(cfg: dict, family: str, suite: str) -> dict[str, str]:
    """Held-out split behind each repo lm-eval task of a suite: the fine-tuning task of that
    kind for mini_<kind> (config validation guarantees exactly one), the dataset task for
    id_<task>."""
    by_kind = {t["kind"]: name for name, t in cfg["finetune"]["tasks"].items()}
    files = {}
    for name in cfg["evaluate"]["suites"][suite]["tasks"]:
        if name.startswith(MINI_PREFIX):
            task = by_kind[name.removeprefix(MINI_PREFIX)]
            files[name] = f"{task_dir(cfg, family, task)}/test.jsonl"
        elif name.startswith(ID_PREFIX):
            files[name] = f"{task_dir(cfg, family, name.removeprefix(ID_PREFIX))}/test.jsonl"
    return files


def answer_patterns(cfg: dict, suite: str) -> dict[str, str]:
    """id_<task> evaluations scored by exact match: their answer patterns."""
    tasks = cfg["finetune"]["tasks"]
    return {
        name: tasks[name.removeprefix(ID_PREFIX)]["dataset"]["answer_pattern"]
        for name in cfg["evaluate"]["suites"][suite]["tasks"]
        if name.startswith(ID_PREFIX)
        and tasks[name.removeprefix(ID_PREFIX)]["dataset"]["answer_pattern"]
    }


def corpus_files(cfg: dict) -> list[str]:
    return [f"{path('corpus', family=f)}/corpus.json" for f in family_names(cfg, "pretrain")]


def max_budget_tokens(cfg: dict, family: str) -> int:
    return max(parse_tokens(b) for b in cfg["families"][family]["budgets"])


def train_stream_tokens(cfg: dict, family: str) -> int:
    """Tokens of pre-training text to generate so that no budget repeats data.

    Rounded up to a power of two of optimizer steps, so that adding a budget below the
    largest one does not regenerate the corpus (which would re-run the whole family).
    """
    train = cfg["families"][family]["training"]
    seq, batch = train["seq_len"], train["batch_size"]
    steps = -(-max_budget_tokens(cfg, family) // (seq * batch))
    return (1 << steps.bit_length()) * batch * (seq + 1)


def corpus_spec_fields(corpus_cfg: dict) -> dict:
    """The corpus config minus the keys the workflow (not the generator) uses."""
    return {
        k: v for k, v in corpus_cfg.items() if k not in ("heldout_tokens", "tokenizer_documents")
    }


def export_library_path(basedir: str) -> None:
    """Put this checkout first on the PYTHONPATH of every job (local, conda or Slurm)."""
    paths = [basedir, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


# Left out of the tables' config hash: no table depends on them. Editing the theory re-runs
# only the theory stage; editing how jobs execute re-runs nothing.
UNHASHED_SECTIONS = ("theory", "execution")


def config_hash(cfg: dict) -> str:
    """The config's hash, a `params:` entry of the tables' rules (UNHASHED_SECTIONS aside)."""
    measured = {key: value for key, value in cfg.items() if key not in UNHASHED_SECTIONS}
    digest = hashlib.sha256(json.dumps(measured, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def model_dir(family: str, ckpt: str, model: str) -> str:
    """Directory of a model's weights: the base checkpoint or a fine-tuned model."""
    where = path("model", family=family, ckpt=ckpt, model=model)
    return where if model == "base" else f"{where}/model"


def model_record(family: str, ckpt: str, model: str) -> str:
    """The JSON that describes how a model was made (pre-training or fine-tuning record)."""
    where = path("model", family=family, ckpt=ckpt, model=model)
    return f"{where}/provenance.json" if model == "base" else f"{where}/train.json"


# How a fine-tuning run executes, not what it computes: changing these re-runs nothing (a
# different GPU count keeps the effective batch). Recorded in train.json all the same.
FINETUNE_EXECUTION = (
    "gpus",
    "per_device_batch_size",
    "fsdp",
    "gradient_checkpointing",
    "save_steps",
    "scratch_dir",
    "resources",
    "keep_weights",
)


def finetune_hyperparameters(cfg: dict) -> dict:
    """The finetune settings every run shares that can change its result (the grid axes
    and FINETUNE_EXECUTION excluded)."""
    skip = ("tasks", "lrs", "seeds", *FINETUNE_EXECUTION)
    return {k: v for k, v in cfg["finetune"].items() if k not in skip}


def finetune_settings(cfg: dict) -> dict:
    """Everything a fine-tuning job reads: hyperparameters and execution settings."""
    return {k: v for k, v in cfg["finetune"].items() if k not in ("tasks", "lrs", "seeds")}


def scratch_dir(cfg: dict, ft_record: str, workdir: str | None = None) -> str:
    """Trainer checkpoints of the run whose train.json is `ft_record`: under
    finetune.scratch_dir (outside the outputs, so a failed job keeps them), in a folder
    named after the working directory, so workflows sharing one scratch never meet."""
    workdir = os.path.abspath(workdir or os.getcwd())
    tag = f"{Path(workdir).name}-{hashlib.sha256(workdir.encode()).hexdigest()[:8]}"
    run = Path(ft_record).parent.relative_to(RESULTS)
    return str(Path(cfg["finetune"]["scratch_dir"]) / tag / run)
