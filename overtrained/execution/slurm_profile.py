"""The Slurm profile: installing it by name, and checking job resources before any submission.

`install_profile()` links this checkout's profiles/slurm into Snakemake's user profile folder,
so that `snakemake --profile slurm` finds it (`overtrained install-profile`).

`check_workflow(workflow, config)` is called by the Snakefile while it reads the config. Under
the slurm executor it checks the resources the profile and the command line set
(default-resources, set-resources, resources) together with those the rules declare from the
config, and raises a `ConfigError` with a one-line message for settings the executor plugin
would turn into a wrong or refused sbatch call: options in `slurm_extra` the plugin sets
itself, a `gpu` that is not a whole number, `tasks` on a rule that asks for GPUs, a global
`gpu` limit below a rule's GPUs, a `gpu_model` for rules without GPUs. The logic is
`check_resources()`, on plain dicts.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import os
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from overtrained.core.config import ConfigError
from overtrained.core.errors import FixableError

PROFILE_DIR = Path(__file__).resolve().parents[2] / "profiles" / "slurm"

# Rules that ask for GPUs, and the config section their resources come from (rules/*.smk:
# `gpu=config["finetune"]["gpus"]`, `gpu=config["evaluate"]["resources"]["gpus"]`, and the
# section's threads, mem_mb (x attempt) and runtime). Every other rule asks for none.
GPU_RULES = {
    "finetune": "finetune",
    "evaluate": "evaluate",
    "probes": "evaluate",
    "sensitivity": "evaluate",
    "judge": "evaluate",
}
GPU_KEYS = {"finetune": "finetune.gpus", "evaluate": "evaluate.resources.gpus"}

# Options the plugin sets itself, besides its own list (validation.get_forbidden_slurm_options):
# other spellings of the GPU request, and --mem-per-gpu, which sbatch refuses next to --mem.
EXTRA_FORBIDDEN = {
    r"(?:^|\s)-G(?:\s|\d|$)": "GPU allocation",
    r"--gpus-per-(?:node|task|socket)[=\s]": "GPU allocation",
    r"--mem-per-gpu[=\s]": "memory per GPU",
}

# What to do instead of an option in slurm_extra, by the plugin's name for the option.
_MANAGED = " (the plugin names each job, and writes its log under slurm-logdir)"
_INSTEAD = {
    "job name": _MANAGED,
    "output file": _MANAGED,
    "error file": _MANAGED,
    "parsable output": _MANAGED,
    "environment export": _MANAGED,
    "job comment": _MANAGED,
    "working directory": _MANAGED,
    "account": " and use the slurm_account resource instead",
    "partition": " and use the slurm_partition resource instead",
    "memory": " and use the mem_mb resource instead",
    "memory per CPU": " and use the mem_mb_per_cpu resource instead",
    "memory per GPU": " and use the mem_mb resource instead",
    "number of tasks": " and use the tasks resource instead (never on a GPU rule)",
    "tasks per GPU": " (a multi-GPU job is one task that starts one process per GPU)",
    "CPUs per task": " and use threads (or the cpus_per_task resource) instead",
    "CPUs per GPU": " and use threads (or the cpus_per_gpu resource) instead",
    "runtime/time limit": " and use the runtime resource (minutes) instead",
    "node constraints": " and use the constraint resource instead",
    "quality of service": " and use slurm-qos in the profile (or the qos resource) instead",
    "number of nodes": " and use the nodes resource instead",
    "cluster specification": " and use the clusters resource instead",
    "generic resources (GRES)": " and use the gpu resource (gpu_model for the GPU type) instead",
    "GPU allocation": " and use the gpu resource (gpu_model for the GPU type) instead",
}
_GPU_MODEL = re.compile(r"^[a-zA-Z0-9_.]+$")  # the plugin's own check (utils.set_gres_string)
_MODEL_AND_COUNT = re.compile(r"^([a-zA-Z0-9_.]+):(\d+)$")

# A value that depends on the job (a function, or an expression of attempt, input, ...).
DYNAMIC = object()
# Names a resource expression from the command line or a profile may use (snakemake.resources
# cli_evaluator); any other bare word fails to evaluate and Snakemake keeps it as text.
_EXPRESSION_NAMES = {
    "wildcards",
    "input",
    "attempt",
    "threads",
    "system_tmpdir",
    "shutil",
    "async_run",
}


def forbidden_slurm_options() -> dict[str, str]:
    """Regex -> option name, for the sbatch options that must not be in slurm_extra."""
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    return get_forbidden_slurm_options() | EXTRA_FORBIDDEN


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _known(value: Any) -> bool:
    return value is not None and value is not DYNAMIC and not callable(value)


def _loc(where: str, key: str) -> str:
    """Where a value was set, for a message: a profile key path, a config key, or a rule."""
    if where == "default-resources" or where.startswith("set-resources."):
        return f"{where}.{key}"
    if where.startswith("rule "):
        return f"{where}, resource {key}"
    return where  # a config key (finetune.gpus)


def _check_slurm_extra(where: str, extra: Any) -> None:
    if not isinstance(extra, str):
        return
    for pattern, option in forbidden_slurm_options().items():
        found = re.search(pattern, extra)
        if found:
            flag = found.group(0).strip().rstrip("=")
            instead = _INSTEAD.get(option, " and use the matching resource instead")
            raise ConfigError(
                f"{_loc(where, 'slurm_extra')}: {extra!r} sets the {option} ({flag}), which the "
                f"Slurm executor plugin sets itself; remove it from slurm_extra{instead}"
            )


def _check_gpu(where: str, gpu: Any) -> None:
    if not _known(gpu) or _is_count(gpu):
        return
    at = _loc(where, "gpu")
    if isinstance(gpu, str) and _MODEL_AND_COUNT.match(gpu):
        model, count = _MODEL_AND_COUNT.match(gpu).groups()
        raise ConfigError(
            f"{at}: {gpu!r} is not a number of GPUs; give the type separately: "
            f"gpu: {count} and gpu_model: {model}"
        )
    if isinstance(gpu, str) and gpu.strip().isdigit():
        raise ConfigError(
            f"{at}: {gpu!r} is text, not a number of GPUs; write it unquoted (gpu: {gpu.strip()})"
        )
    raise ConfigError(
        f"{at}: {gpu!r} is not a number of GPUs; use a whole number, 0 or more (the GPU type "
        "goes in gpu_model)"
    )


def _check_scope(where: str, resources: Mapping[str, Any], gpu_where: str | None = None) -> None:
    """What one mapping of resources (default-resources, or one rule's) must not hold."""
    _check_slurm_extra(where, resources.get("slurm_extra"))
    _check_gpu(gpu_where or where, resources.get("gpu"))
    if _known(resources.get("gpus")):
        raise ConfigError(
            f"{_loc(where, 'gpus')}: the Slurm executor plugin takes the GPU count from the gpu "
            "resource, not gpus; rename it to gpu"
        )
    model = resources.get("gpu_model")
    if _known(model) and not (isinstance(model, str) and _GPU_MODEL.match(model)):
        raise ConfigError(
            f"{_loc(where, 'gpu_model')}: {model!r} is not a GPU type (letters, digits, _ and . "
            "only, as `sinfo -o %G` lists them); the count goes in gpu"
        )


def check_resources(
    default_resources: Mapping[str, Any],
    set_resources: Mapping[str, Mapping[str, Any]],
    rules: Mapping[str, Mapping[str, Any]] | None = None,
    limits: Mapping[str, Any] | None = None,
    origins: Mapping[str, str] | None = None,
) -> None:
    """Raise ConfigError for resources the Slurm executor plugin would submit wrongly.

    default_resources: `default-resources` (every rule); set_resources: `set-resources`, rule ->
    resources (they override the rule's own); rules: the static resources each rule declares
    (the GPU rules': `rule_resources`); limits: the global `resources` (--resources), which cap
    every job's; origins: rule -> the config key its own gpu comes from, for messages.
    Values are plain (int, str, ...); DYNAMIC or a function stands for a value that depends on
    the job, and is not checked.
    """
    rules = rules or {}
    limits = limits or {}
    origins = origins or {}
    _check_scope("default-resources", default_resources)
    for rule, resources in set_resources.items():
        _check_scope(f"set-resources.{rule}", resources)
    for rule, resources in rules.items():
        _check_scope(f"rule {rule}", resources, origins.get(rule))

    model = default_resources.get("gpu_model")
    if _known(model):
        raise ConfigError(
            "default-resources.gpu_model: applies to every rule, and the Slurm executor plugin "
            f"asks for a {model} GPU for each rule that sets no gpu (the CPU rules too); set "
            "gpu_model under set-resources for the rules that ask for GPUs only "
            f"({', '.join(GPU_RULES)})"
        )

    # Each rule's resources as Snakemake merges them (default < rule < set-resources), with
    # where each came from; "" stands for every rule that declares and sets nothing.
    for rule in ["", *dict.fromkeys([*rules, *set_resources])]:
        merged = {key: (value, "default-resources") for key, value in default_resources.items()}
        for key, value in rules.get(rule, {}).items():
            where = origins.get(rule) if key == "gpu" else None
            merged[key] = (value, where or f"rule {rule}")
        for key, value in set_resources.get(rule, {}).items():
            merged[key] = (value, f"set-resources.{rule}")
        _check_merged(f"rule {rule}" if rule else "every rule", merged, limits)


def _check_merged(name: str, merged: dict, limits: Mapping[str, Any]) -> None:
    gpu, gpu_from = merged.get("gpu", (None, ""))
    if gpu is not None and not _is_count(gpu):
        return  # depends on the job (or reported above)
    if not gpu:
        model, model_from = merged.get("gpu_model", (None, ""))
        if _known(model) and model_from.startswith("set-resources"):
            raise ConfigError(
                f"{_loc(model_from, 'gpu_model')}: {name} asks for no GPUs, but with gpu_model "
                f"the Slurm executor plugin asks for --gpus={model}:{1 if gpu is None else gpu}; "
                "set gpu_model only for rules that ask for GPUs"
            )
        return
    gpus = f"{gpu} GPU{'s' * (gpu > 1)} ({_loc(gpu_from, 'gpu')})"
    for key in ("tasks", "tasks_per_gpu"):
        tasks, tasks_from = merged.get(key, (None, ""))
        if _known(tasks) and tasks != 0:
            only = ", or set it only for CPU rules" if tasks_from == "default-resources" else ""
            raise ConfigError(
                f"{_loc(tasks_from, key)}: {name} asks for {gpus}, and the Slurm executor "
                f"plugin turns {key}={tasks} into --ntasks-per-gpu={tasks} ({tasks} on each "
                f"GPU); remove {key}{only}: a multi-GPU job is one task that starts one process "
                "per GPU"
            )
    limit = limits.get("gpu")
    if _is_count(limit) and gpu > limit:
        raise ConfigError(
            f"resources.gpu: the global limit gpu={limit} caps every job's gpu, whatever its "
            f"scope, so {name} would ask Slurm for {limit} GPU{'s' * (limit != 1)} instead of "
            f"{gpus}; raise the limit to gpu={gpu} or more, or drop it (to run a group's jobs "
            "one at a time, limit a local-scoped resource that only the grouped rules set)"
        )


def rule_resources(cfg: dict) -> dict[str, dict[str, int]]:
    """Resources the GPU rules declare for this config (mem_mb: the first attempt's)."""
    out = {}
    for rule, section in GPU_RULES.items():
        res = cfg[section]["resources"]
        gpus = cfg["finetune"]["gpus"] if section == "finetune" else res["gpus"]
        out[rule] = {
            "gpu": gpus,
            "threads": res["threads"],
            "mem_mb": res["mem_mb"],
            "runtime": res["runtime"],
        }
    return out


def static_value(resource: Any) -> Any:
    """A Snakemake resource's value where it does not depend on the job, else DYNAMIC.

    Values from the command line or a profile are Python expressions (`'--gpus=2'`, `1.5`);
    one that is not valid Python (`a100:2`) or names nothing (`two`) is kept as its text, as
    Snakemake keeps it.
    """
    if not hasattr(resource, "is_evaluable"):  # a plain value
        return DYNAMIC if callable(resource) else resource
    if not resource.is_evaluable():
        return resource.value
    raw = resource.raw
    if not isinstance(raw, str):
        return DYNAMIC
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        compile(raw, "<resource>", "eval")
    except SyntaxError:
        return raw
    if raw.isidentifier() and raw not in _EXPRESSION_NAMES and not hasattr(builtins, raw):
        return raw
    return DYNAMIC


def plain(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Snakemake resources as plain values (internal ones, like _cores, left out)."""
    return {
        key: static_value(value)
        for key, value in (resources or {}).items()
        if not key.startswith("_")
    }


def executor_name(workflow) -> str | None:
    """The executor of the snakemake command reading this Snakefile.

    `workflow.executor_plugin` is the supported source, but Snakemake 9 reads the Snakefile
    before it sets it (the DAG API is made in snakemake.cli.args_to_api, before
    execute_workflow), and a dry run never sets it. So where it is not set yet this takes the
    executor the command line or a profile gave from args_to_api's arguments, and warns when
    it cannot find them (the checks then run only at `onstart`, for real runs). None inside
    a job (remote or subprocess mode), where nothing is checked.
    """
    if workflow.remote_exec or workflow.subprocess_exec:
        return None
    plugin = workflow.executor_plugin
    if plugin is not None:
        return plugin.name
    frame = inspect.currentframe()
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == "args_to_api" and module.startswith("snakemake"):
            return getattr(frame.f_locals.get("args"), "executor", None)
        frame = frame.f_back
    warnings.warn(
        "overtrained: cannot tell which executor reads this Snakefile (not run from the "
        "snakemake command line, or its internals changed), so the Slurm resource checks "
        "wait for the run's start and a dry run is not checked",
        stacklevel=2,
    )
    return None


def check_cores(cores: Any, rules: Mapping[str, Mapping[str, Any]]) -> None:
    """Snakemake caps every job's threads at --cores, remote jobs included, and the workflow
    profile (profiles/default, `cores: all`) applies under Slurm too: on a small login node
    that would shrink a 32-thread fine-tuning job's --cpus-per-task silently."""
    if not _is_count(cores):
        return
    wanted = {rule: res["threads"] for rule, res in rules.items() if _is_count(res.get("threads"))}
    if not wanted:
        return
    rule = max(wanted, key=wanted.get)
    if wanted[rule] > cores:
        raise ConfigError(
            f"--cores {cores} caps every Slurm job's threads (profiles/default sets cores: all, "
            f"this machine's cores), but rule {rule} asks for {wanted[rule]} threads; run with "
            f"--cores {wanted[rule]} or more"
        )


def check_workflow(workflow, cfg: dict) -> None:
    """The Snakefile's check: under the slurm executor, `check_resources` on the profile's and
    command line's resources and the GPU rules' for this config (a validated config)."""
    if executor_name(workflow) != "slurm":
        return
    settings = workflow.resource_settings
    check_resources(
        plain(settings.default_resources),
        {rule: plain(res) for rule, res in (settings.overwrite_resources or {}).items()},
        rules=rule_resources(cfg),
        limits=plain(settings.resources),
        origins={rule: GPU_KEYS[section] for rule, section in GPU_RULES.items()},
    )
    check_cores(settings.cores, rule_resources(cfg))


class ProfileError(FixableError):
    """A profile could not be installed; the one-line message says why and what to do."""


def user_profile_dir() -> Path:
    """Where `snakemake --profile NAME` looks for NAME after the working directory: Snakemake's
    user config folder (snakemake.common.get_appdirs: $XDG_CONFIG_HOME/snakemake, else
    ~/.config/snakemake, on Linux). The site folder (/etc/xdg/snakemake) comes after it."""
    import platformdirs

    return Path(platformdirs.user_config_dir("snakemake", "snakemake"))


def _describe(path: Path) -> str:
    if path.is_symlink():
        dest = os.readlink(path)
        return f"a link to {dest}" + ("" if path.exists() else " (which does not exist)")
    if path.is_dir():
        return "a directory (a profile of your own?)"
    return "a file"


def install_profile(
    name: str = "slurm",
    force: bool = False,
    source: Path = PROFILE_DIR,
    config_dir: Path | None = None,
) -> list[str]:
    """Link config_dir/name to the profile folder `source`; the lines say what was done.

    Does nothing where the link is already there. Anything else at that path is left alone
    (ProfileError) unless force, which moves it aside to name.bak-<timestamp>.
    """
    if not name or "/" in name or name in (".", "..") or name.startswith("-"):
        raise ProfileError(f"--name {name!r} is not a folder name (no '/', not '.' or '..')")
    source = Path(source).resolve()
    if not (source / "profile.yaml").is_file():
        raise ProfileError(f"{source}/profile.yaml not found: is this a complete checkout?")
    config_dir = Path(config_dir) if config_dir is not None else user_profile_dir()
    target = config_dir / name
    lines = []
    if target.exists() or target.is_symlink():
        if target.exists() and target.resolve() == source:
            return [f"{target} already links to {source}: nothing to do"]
        what = _describe(target)
        if not force:
            raise ProfileError(
                f"{target} is {what}, not a link to {source}; pass --force to move it aside "
                f"to {name}.bak-<timestamp> (nothing is deleted), or --name to install under "
                "another name"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = config_dir / f"{name}.bak-{stamp}"
        n = 1
        while backup.exists() or backup.is_symlink():
            n += 1
            backup = config_dir / f"{name}.bak-{stamp}-{n}"
        target.rename(backup)
        lines.append(f"moved {target} ({what}) aside to {backup}")
    config_dir.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source, target_is_directory=True)
    lines.append(f"linked {target} -> {source}: `snakemake --profile {name}` now uses it")
    if (Path.cwd() / name).is_dir() and (Path.cwd() / name).resolve() != source:
        lines.append(
            f"note: ./{name} in this directory takes precedence over it (Snakemake looks in "
            "the working directory first)"
        )
    return lines
