"""The Slurm profile: `overtrained install-profile`, the resource check the Snakefile runs
before any submission, and the sbatch lines the executor plugin builds for each preset.

No Slurm here: plans are dry-runs, sbatch lines come from the plugin's own code
(submit_string.get_submit_command + utils.set_gres_string) on jobs carrying the resources a
plan reports, and the sbatch, squeue, ... on PATH are fakes that record every call.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from overtrained import cli
from overtrained.core import config as config_module
from overtrained.core.config import ConfigError
from overtrained.execution import slurm_profile
from overtrained.execution.slurm_profile import DYNAMIC, check_resources
from tests.workflow_helpers import REPO, expected_counts

PROFILE = REPO / "profiles" / "slurm"
RECORDINGS = REPO / "tests" / "data" / "hub_branches"
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "sinfo", "sacctmgr", "sshare", "srun")

# (gpus, mem_mb, runtime, threads) each preset's rules declare (presets/*.yaml; the CPU rules'
# own numbers in rules/finetune.smk and rules/evaluate.smk).
EXPECTED = {
    "olmo-1b": {"finetune": (1, 64000, 180, 8), "evaluate": (1, 32000, 120, 8)},
    "olmo2-7b": {"finetune": (8, 400000, 360, 32), "evaluate": (1, 96000, 240, 8)},
    "amber-7b": {"finetune": (8, 400000, 360, 32), "evaluate": (1, 96000, 240, 8)},
}
CPU_RULES = {"dataset_task": (0, 4000, 60, 1), "retention_stream": (0, 4000, 30, 1)}


@pytest.fixture(scope="module")
def fake_slurm(tmp_path_factory) -> Path:
    """A bin/ of Slurm commands that append their command line to $FAKE_SLURM_LOG and fail,
    but for sinfo, which names a default partition (so that the plugin gets as far as sbatch
    where nothing stops it before)."""
    bin_dir = tmp_path_factory.mktemp("fake-slurm") / "bin"
    bin_dir.mkdir()
    for command in SLURM_COMMANDS:
        answer = 'echo "cpu*"; exit 0' if command == "sinfo" else "exit 1"
        path = bin_dir / command
        path.write_text(f'#!/bin/sh\necho "{command} $*" >> "$FAKE_SLURM_LOG"\n{answer}\n')
        path.chmod(0o755)
    return bin_dir


@pytest.fixture(scope="module", autouse=True)
def plugin(fake_slurm):
    """The slurm executor plugin, imported with the fake Slurm commands first on PATH: its
    settings class runs `scontrol show config` when imported, which waits ~10 s for a
    controller wherever slurm-client is installed and no cluster answers."""
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{fake_slurm}{os.pathsep}{path}"
    try:
        import snakemake_executor_plugin_slurm
    finally:
        os.environ["PATH"] = path
    return snakemake_executor_plugin_slurm


# --- install-profile ---------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A HOME of its own, without XDG_CONFIG_HOME: profiles go to HOME/.config/snakemake."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


def test_install_profile_links_it_once(home, capsys):
    link = home / ".config" / "snakemake" / "slurm"
    assert cli.main(["install-profile"]) == 0
    assert link.is_symlink() and os.readlink(link) == str(PROFILE.resolve())
    out = capsys.readouterr().out
    assert out == f"linked {link} -> {PROFILE}: `snakemake --profile slurm` now uses it\n"

    assert cli.main(["install-profile"]) == 0
    assert capsys.readouterr().out == f"{link} already links to {PROFILE}: nothing to do\n"
    assert os.readlink(link) == str(PROFILE.resolve())
    assert sorted(p.name for p in link.parent.iterdir()) == ["slurm"]

    assert cli.main(["install-profile", "--name", "overtrained"]) == 0
    assert (link.parent / "overtrained").resolve() == PROFILE.resolve()


def test_install_profile_goes_where_snakemake_looks(tmp_path, monkeypatch):
    """$XDG_CONFIG_HOME is honoured, as Snakemake's own lookup (get_appdirs) honours it."""
    from snakemake.common import get_appdirs

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert slurm_profile.user_profile_dir() == Path(get_appdirs().user_config_dir)
    assert slurm_profile.user_profile_dir() == tmp_path / "xdg" / "snakemake"
    assert cli.main(["install-profile"]) == 0
    assert (tmp_path / "xdg" / "snakemake" / "slurm").resolve() == PROFILE.resolve()


@pytest.mark.parametrize("kind", ["directory", "link"])
def test_install_profile_leaves_another_profile_alone_unless_forced(home, capsys, kind):
    profiles = home / ".config" / "snakemake"
    profiles.mkdir(parents=True)
    theirs = home / "their-profile"
    theirs.mkdir()
    (theirs / "profile.yaml").write_text("executor: local\n")
    existing = profiles / "slurm"
    if kind == "directory":
        shutil.copytree(theirs, existing)
        what = "a directory (a profile of your own?)"
    else:
        existing.symlink_to(theirs)
        what = f"a link to {theirs}"

    assert cli.main(["install-profile"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"Error: {existing} is {what}, not a link to {PROFILE}; pass --force to move it aside "
        "to slurm.bak-<timestamp> (nothing is deleted), or --name to install under another "
        "name\n"
    )
    assert (existing / "profile.yaml").read_text() == "executor: local\n"
    assert existing.is_symlink() == (kind == "link")

    assert cli.main(["install-profile", "--force"]) == 0
    (backup,) = [p for p in profiles.iterdir() if p.name != "slurm"]
    assert re.fullmatch(r"slurm\.bak-\d{8}-\d{6}", backup.name)
    assert (backup / "profile.yaml").read_text() == "executor: local\n"
    assert existing.resolve() == PROFILE.resolve()
    assert (theirs / "profile.yaml").exists()  # a link moved aside, its target untouched
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"moved {existing} ({what}) aside to {backup}"
    assert out[1].startswith(f"linked {existing} -> {PROFILE}")


# --- Snakemake with the profile, by name -------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory, fake_slurm) -> dict:
    """Environment for snakemake: a HOME where `overtrained install-profile` linked the
    profile (run as a user would), and the fake Slurm commands first on PATH."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"} | {"HOME": str(home)}
    # the user's caches all the same (the lm-eval task index takes seconds to build)
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    result = subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "install-profile"],
        env=env | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return env | {"PATH": f"{fake_slurm}{os.pathsep}{env['PATH']}"}


def snakemake(workdir: Path, env: dict, *args: str, timeout: int = 120):
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
        + ["--directory", str(workdir), *args],
        cwd=workdir,
        env=env | {"FAKE_SLURM_LOG": str(workdir / "slurm-calls.log")},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sbatch_calls(workdir: Path) -> list[str]:
    """The sbatch calls of a snakemake run in workdir (the plugin itself runs `scontrol show
    config` even for a dry-run, for the array size limit)."""
    log = workdir / "slurm-calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith("sbatch")]


def planned_jobs(text: str) -> list[dict]:
    """Every job of a dry-run's output (group members too): rule, threads, resources."""
    jobs = []
    for line in text.splitlines():
        header = re.fullmatch(r"\s*(?:local)?rule (\w+):", line)
        if header:
            jobs.append({"rule": header[1], "threads": 1, "resources": {}})
        elif jobs and (found := re.fullmatch(r"\s+threads: (\d+)", line)):
            jobs[-1]["threads"] = int(found[1])
        elif jobs and (found := re.fullmatch(r"\s+resources: (.*)", line)):
            for item in found[1].split(", "):
                key, _, value = item.partition("=")
                jobs[-1]["resources"][key] = int(value) if value.isdigit() else value
    return jobs


def test_profile_by_name_plans_the_default_config(installed, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")  # the embedded default
    result = snakemake(workdir, installed, "--profile", "slurm", "-n")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    text = result.stdout + result.stderr
    assert "Using profiles slurm and workflow specific profile" in text
    assert "Job stats" in text
    jobs = planned_jobs(text)
    cfg = config_module.load_file(REPO / "config.yaml")
    planned = Counter(job["rule"] for job in jobs if job["rule"] != "all")
    assert planned == expected_counts(cfg)
    # The profile's settings: its default-resources for rules that set none, and its
    # "evals" groups of evaluations and probes.
    task_data = next(job for job in jobs if job["rule"] == "task_data")
    assert task_data["resources"]["mem_mb"] == 4000 and task_data["resources"]["runtime"] == 60
    assert "Group job evals" in text
    assert sbatch_calls(workdir) == []


# --- resources that would be submitted wrongly stop the plan -----------------------------


def profile_copy(tmp_path: Path, **changes) -> Path:
    """The shipped profile with some keys replaced (a folder, as `--profile` takes it)."""
    profile = yaml.safe_load((PROFILE / "profile.yaml").read_text())
    profile.update(changes)
    folder = tmp_path / "profiles" / "bad-slurm"
    folder.mkdir(parents=True)
    (folder / "profile.yaml").write_text(yaml.safe_dump(profile))
    return folder


DEFAULTS = {"mem_mb": 4000, "runtime": 60}
DROP_IT = (
    ", or drop it (to run a group's jobs one at a time, limit a local-scoped resource that "
    "only the grouped rules set)"
)
BAD_PROFILES = {
    "slurm_extra": (
        {"default-resources": DEFAULTS | {"slurm_extra": "'--gpus=2'"}},
        "Config error: default-resources.slurm_extra: '--gpus=2' sets the GPU allocation "
        "(--gpus), which the Slurm executor plugin sets itself; remove it from slurm_extra and "
        "use the gpu resource (gpu_model for the GPU type) instead",
    ),
    "gpu": (
        {"set-resources": {"finetune": {"gpu": "two"}}},
        "Config error: set-resources.finetune.gpu: 'two' is not a number of GPUs; use a whole "
        "number, 0 or more (the GPU type goes in gpu_model)",
    ),
    "tasks": (
        {"set-resources": {"finetune": {"gpu": 1, "tasks": 2}}},
        "Config error: set-resources.finetune.tasks: rule finetune asks for 1 GPU "
        "(set-resources.finetune.gpu), and the Slurm executor plugin turns tasks=2 into "
        "--ntasks-per-gpu=2 (2 on each GPU); remove tasks: a multi-GPU job is one task that "
        "starts one process per GPU",
    ),
    "limit": (
        {"set-resources": {"finetune": {"gpu": 2}}, "resources": ["gpu=1"]},
        "Config error: resources.gpu: the global limit gpu=1 caps every job's gpu, whatever "
        "its scope, so rule finetune would ask Slurm for 1 GPU instead of 2 GPUs "
        "(set-resources.finetune.gpu); raise the limit to gpu=2 or more" + DROP_IT,
    ),
}


def assert_stopped(result, workdir: Path, message: str):
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Config error")]
    assert errors == [message], result.stderr[-3000:]
    assert sbatch_calls(workdir) == []
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("case", BAD_PROFILES)
def test_bad_resources_stop_the_plan_with_one_line(installed, tmp_path, case):
    changes, message = BAD_PROFILES[case]
    profile = profile_copy(tmp_path, **changes)
    workdir = tmp_path / "run"
    result = snakemake(
        workdir,
        installed,
        "--profile",
        str(profile),
        "-n",
        "--configfile",
        str(REPO / "config.yaml"),
    )
    assert_stopped(result, workdir, message)


def test_bad_resources_stop_a_real_run_before_any_submission(installed, tmp_path):
    """Not a dry-run: the plugin itself would submit `--gpus=two`; the check stops it first.
    Also by profile name, with the mistake on the command line."""
    workdir = tmp_path / "run"
    result = snakemake(
        workdir,
        installed,
        "--profile",
        "slurm",
        "--set-resources",
        "finetune:gpu=two",
        "--retries",
        "0",
        "--configfile",
        str(REPO / "config.yaml"),
    )
    assert_stopped(result, workdir, BAD_PROFILES["gpu"][1])


# --- sbatch lines for each preset ---------------------------------------------------------


class FakeJob:
    """What get_submit_command and set_gres_string read of a Snakemake job."""

    class Resources(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

    def __init__(self, rule: str, threads: int, resources: dict):
        self.name = rule
        self.threads = threads
        self.resources = self.Resources(resources)
        self.wildcards = {}

    def is_group(self):
        return False


def sbatch_line(job: FakeJob) -> str:
    """The sbatch call the slurm executor plugin makes for a job (Executor.run_job's steps)."""
    from snakemake_executor_plugin_slurm import ExecutorSettings
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    params = {
        "run_uuid": "run",
        "slurm_logfile": f"logs/slurm/rule_{job.name}/%j.log",
        "comment_str": f"rule_{job.name}",
        "account": "",  # from slurm_account (unset in the profile: the plugin asks sacct)
        "partition": "",  # from slurm_partition (likewise: sinfo's default partition)
        "workdir": "/work",
    }
    return get_submit_command(job, params, settings=ExecutorSettings()) + set_gres_string(job)


def assert_sbatch(line: str, gpus: int, mem_mb: int, runtime: int, threads: int):
    args = shlex.split(line)
    assert args[args.index("--mem") + 1] == str(mem_mb), line
    assert args[args.index("-t") + 1] == str(runtime), line
    assert f"--cpus-per-task={threads}" in args, line
    if gpus:
        assert f"--gpus={gpus}" in args, line
        assert not [a for a in args if a.startswith("--ntasks")], line
    else:
        assert not [a for a in args if a.startswith(("--gpus", "--gres"))], line
        assert "--ntasks=1" in args, line


@pytest.mark.parametrize("name", EXPECTED)
def test_sbatch_lines_of_the_rules_each_preset_declares(name):
    cfg = config_module.load_file(REPO / "presets" / f"{name}.yaml")
    declared = slurm_profile.rule_resources(cfg)
    for rule, (gpus, mem_mb, runtime, threads) in EXPECTED[name].items():
        resources = {k: v for k, v in declared[rule].items() if k != "threads"}
        line = sbatch_line(FakeJob(rule, declared[rule]["threads"], resources))
        assert_sbatch(line, gpus, mem_mb, runtime, threads)
    for rule in ("probes", "sensitivity", "judge"):  # evaluate.resources, like evaluate
        assert declared[rule] == declared["evaluate"]
    check_resources(DEFAULTS, {}, declared, {"gpu": max(e[0] for e in EXPECTED[name].values())})


@pytest.fixture(scope="module")
def hub(recorded_hub):
    return recorded_hub


def profile_gpu_limit() -> int | None:
    for item in yaml.safe_load((PROFILE / "profile.yaml").read_text()).get("resources") or []:
        key, _, value = item.partition("=")
        if key.strip() == "gpu":
            return int(value)
    return None


@pytest.mark.parametrize("name", EXPECTED)
def test_sbatch_lines_of_each_preset_plan(installed, hub, tmp_path, name):
    """The preset planned under the profile (pinned against the stand-in Hub on the way), and
    the sbatch lines of the resources the plan gives its jobs. --cores: profiles/default's
    `cores: all` caps every job's threads at this machine's CPU count, even under Slurm."""
    workdir = tmp_path / "run"
    env = {k: v for k, v in installed.items() if not k.endswith("_OFFLINE")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
    preset = str(REPO / "presets" / f"{name}.yaml")
    plan = ["--profile", "slurm", "-n", "--cores", "64", "--configfile", preset]
    result = snakemake(workdir, env, *plan)
    gpus = EXPECTED[name]["finetune"][0]
    limit = profile_gpu_limit()
    capped = limit is not None and limit < gpus
    if capped:
        assert_stopped(
            result,
            workdir,
            f"Config error: resources.gpu: the global limit gpu={limit} caps every job's gpu, "
            f"whatever its scope, so rule finetune would ask Slurm for {limit} GPU instead of "
            f"{gpus} GPUs (finetune.gpus); raise the limit to gpu={gpus} or more" + DROP_IT,
        )
        # the fix the message names, on the command line
        result = snakemake(workdir, env, *plan, "--resources", f"gpu={gpus}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs = {job["rule"]: job for job in planned_jobs(result.stdout + result.stderr)}
    for rule, expected in (EXPECTED[name] | CPU_RULES).items():
        job = jobs[rule]
        line = sbatch_line(FakeJob(rule, job["threads"], job["resources"]))
        assert_sbatch(line, *expected)
    # what the check takes the GPU rules to declare is what they do (judge is off here)
    declared = slurm_profile.rule_resources(config_module.load_file(preset))
    for rule in ("finetune", "evaluate", "probes", "sensitivity"):
        planned = jobs[rule]["resources"] | {"threads": jobs[rule]["threads"]}
        assert {key: planned[key] for key in declared[rule]} == declared[rule]
    assert sbatch_calls(workdir) == []
    if capped:
        pytest.xfail(
            f"profiles/slurm/profile.yaml `resources: gpu={limit}` caps every job's gpu: "
            f"{name}'s finetune would be submitted with --gpus={limit}, not {gpus}; the plan "
            f"stops (with --resources gpu={gpus} it passes)"
        )


# --- the check itself, on plain dicts ----------------------------------------------------


def olmo2_rules() -> dict:
    return slurm_profile.rule_resources(config_module.load_file(REPO / "presets/olmo2-7b.yaml"))


ORIGINS = {
    rule: slurm_profile.GPU_KEYS[section] for rule, section in slurm_profile.GPU_RULES.items()
}


def test_sound_resources_pass():
    check_resources({}, {})
    check_resources(DEFAULTS, {}, olmo2_rules(), {"gpu": 8}, ORIGINS)
    check_resources(
        DEFAULTS | {"slurm_extra": "--mail-type=END --signal=B:USR1@600 --exclusive"},
        {
            "finetune": {"slurm_partition": "gpu", "gpu_model": "a100", "gpu": 4},
            "dataset_task": {"tasks": 1, "gpu": 0},  # tasks on a CPU rule
        },
        olmo2_rules(),
        {"gpu": 8},
        ORIGINS,
    )
    # values that depend on the job are not checked
    check_resources({"gpu": DYNAMIC, "slurm_extra": lambda wildcards: "--gpus=2"}, {})


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        ("--gpus=2", "GPU allocation (--gpus)"),
        ("--gres=gpu:a100:2", "generic resources (GRES) (--gres)"),
        ("-G 2", "GPU allocation (-G)"),
        ("--gpus-per-node=4", "GPU allocation (--gpus-per-node)"),
        ("--ntasks-per-gpu=1", "tasks per GPU (--ntasks-per-gpu)"),
        ("--mem=64G", "memory (--mem)"),
        ("--mem-per-gpu=80G", "memory per GPU (--mem-per-gpu)"),
        ("--time=6:00:00", "runtime/time limit (--time)"),
        ("--mail-type=END -t 360", "runtime/time limit (-t)"),
        ("--cpus-per-task=32", "CPUs per task (--cpus-per-task)"),
        ("--partition=gpu", "partition (--partition)"),
        ("--job-name=ft", "job name (--job-name)"),
    ],
)
def test_slurm_extra_may_not_set_what_the_plugin_sets(extra, option):
    with pytest.raises(ConfigError) as error:
        check_resources({}, {"finetune": {"slurm_extra": extra}})
    message = str(error.value)
    assert message.startswith(f"set-resources.finetune.slurm_extra: {extra!r} sets the {option}")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        (
            "two",
            "default-resources.gpu: 'two' is not a number of GPUs; use a whole number, 0 or more "
            "(the GPU type goes in gpu_model)",
        ),
        (1.5, "default-resources.gpu: 1.5 is not a number of GPUs"),
        (True, "default-resources.gpu: True is not a number of GPUs"),
        (-1, "default-resources.gpu: -1 is not a number of GPUs"),
        (
            "a100:2",
            "default-resources.gpu: 'a100:2' is not a number of GPUs; give the type separately: "
            "gpu: 2 and gpu_model: a100",
        ),
        (
            "2",
            "default-resources.gpu: '2' is text, not a number of GPUs; write it unquoted (gpu: 2)",
        ),
    ],
)
def test_gpu_is_a_whole_number(gpu, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        check_resources({"gpu": gpu}, {})


def test_tasks_on_a_gpu_rule():
    with pytest.raises(ConfigError) as error:
        check_resources({}, {"finetune": {"tasks": 2}}, olmo2_rules(), {"gpu": 8}, ORIGINS)
    assert str(error.value) == (
        "set-resources.finetune.tasks: rule finetune asks for 8 GPUs (finetune.gpus), and the "
        "Slurm executor plugin turns tasks=2 into --ntasks-per-gpu=2 (2 on each GPU); remove "
        "tasks: a multi-GPU job is one task that starts one process per GPU"
    )
    with pytest.raises(ConfigError) as error:
        check_resources({"tasks_per_gpu": 1}, {}, olmo2_rules(), {"gpu": 8}, ORIGINS)
    assert str(error.value).startswith(
        "default-resources.tasks_per_gpu: rule finetune asks for 8 GPUs (finetune.gpus)"
    )
    assert "remove tasks_per_gpu, or set it only for CPU rules:" in str(error.value)
    cpu = slurm_profile.rule_resources(config_module.load({}))  # the default: no GPUs
    check_resources({"tasks": 2}, {}, cpu, {"gpu": 1}, ORIGINS)


def test_a_global_gpu_limit_below_a_rule_s_gpus():
    with pytest.raises(ConfigError) as error:
        check_resources(DEFAULTS, {}, olmo2_rules(), {"gpu": 1}, ORIGINS)
    assert str(error.value) == (
        "resources.gpu: the global limit gpu=1 caps every job's gpu, whatever its scope, so "
        "rule finetune would ask Slurm for 1 GPU instead of 8 GPUs (finetune.gpus); raise the "
        "limit to gpu=8 or more" + DROP_IT
    )


@pytest.mark.parametrize(
    ("default", "set_resources", "message"),
    [
        (
            {"gpu_model": "a100"},
            {},
            "default-resources.gpu_model: applies to every rule, and the Slurm executor plugin "
            "asks for a a100 GPU for each rule that sets no gpu",
        ),
        (
            {},
            {"dataset_task": {"gpu_model": "a100"}},
            "set-resources.dataset_task.gpu_model: rule dataset_task asks for no GPUs, but with "
            "gpu_model the Slurm executor plugin asks for --gpus=a100:1",
        ),
        (
            {},
            {"finetune": {"gpu_model": "a100:8"}},
            "set-resources.finetune.gpu_model: 'a100:8' is not a GPU type",
        ),
        (
            {},
            {"finetune": {"gpus": 8}},
            "set-resources.finetune.gpus: the Slurm executor plugin takes the GPU count from "
            "the gpu resource, not gpus; rename it to gpu",
        ),
    ],
)
def test_gpu_model_and_gpus(default, set_resources, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        check_resources(default, set_resources, olmo2_rules(), {"gpu": 8}, ORIGINS)


def test_static_values_of_profile_and_command_line_resources():
    """Resources as Snakemake parses `--default-resources`/`--set-resources` (and profiles)."""
    from snakemake.resources import Resources

    parsed = Resources.parse(
        [
            "slurm_extra='--gpus=2'",  # a quoted string, as the profile comment says
            "bare=--qos=high",  # not Python: Snakemake keeps the text
            "gpu=two",  # a name that is not defined: the text too
            "model=a100:2",
            "half=1.5",
            "count=2",
            "tmpdir=system_tmpdir",  # an expression of what a job has
            "grows=2*attempt",
        ],
        allow_expressions=True,
    )
    assert slurm_profile.plain(parsed) == {
        "slurm_extra": "--gpus=2",
        "bare": "--qos=high",
        "gpu": "two",
        "model": "a100:2",
        "half": 1.5,
        "count": 2,
        "tmpdir": DYNAMIC,
        "grows": DYNAMIC,
    }


def test_cores_below_a_rules_threads_stop_a_slurm_plan():
    rules = {"finetune": {"threads": 32}, "evaluate": {"threads": 8}}
    with pytest.raises(ConfigError) as err:
        slurm_profile.check_cores(2, rules)
    assert str(err.value) == (
        "--cores 2 caps every Slurm job's threads (profiles/default sets cores: all, this "
        "machine's cores), but rule finetune asks for 32 threads; run with --cores 32 or more"
    )
    slurm_profile.check_cores(32, rules)
    slurm_profile.check_cores(None, rules)


def test_an_unknown_executor_warns_instead_of_skipping_the_checks_silently():
    """Outside the snakemake command line (no args_to_api frame, no executor plugin yet) the
    executor cannot be known: the user is told the dry run goes unchecked."""
    from types import SimpleNamespace

    workflow = SimpleNamespace(remote_exec=False, subprocess_exec=False, executor_plugin=None)
    with pytest.warns(UserWarning, match="cannot tell which executor"):
        assert slurm_profile.executor_name(workflow) is None
    workflow.executor_plugin = SimpleNamespace(name="slurm")  # set by Snakemake at onstart
    assert slurm_profile.executor_name(workflow) == "slurm"
    inside_a_job = SimpleNamespace(remote_exec=True, subprocess_exec=False, executor_plugin=None)
    assert slurm_profile.executor_name(inside_a_job) is None
