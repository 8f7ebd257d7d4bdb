"""The local job server: jobs run in forked workers of a warm process, as if fresh.

The integration tests share one server (one environment, one copy of the package), which
imports torch, transformers, TRL and lm-eval once (~15 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from overtrained.execution import job_server

REPO = Path(__file__).resolve().parent.parent
CLIENT = REPO / "tests/drivers/job_server_client.py"

# A rule script: hands itself over, then reports where and how it ran.
SCRIPT = textwrap.dedent(
    """
    import gc, json, os, signal, sys, time
    from pathlib import Path

    from overtrained.execution.job_server import hand_over

    hand_over(snakemake, __file__)

    from overtrained import _probe_marker

    mode = snakemake.params["mode"]
    if mode == "wait":
        def stop(signum, _frame):
            Path("stopped").write_text(str(signum))
            sys.exit(5)
        signal.signal(signal.SIGTERM, stop)
    Path("report.json").write_text(json.dumps({
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "path": sys.path,
        "torch_loaded_before_the_job": "torch" in sys.modules,
        "frozen_objects": gc.get_freeze_count(),
        "weight_renamings_cached": (
            sys.modules["transformers.conversion_mapping"]._checkpoint_conversion_mapping_cache
            is not None
        ) if "transformers.conversion_mapping" in sys.modules else None,
        "marker": _probe_marker.VALUE,
    }))
    print("to stdout")
    print("to stderr", file=sys.stderr)
    if mode == "exit":
        sys.exit(7)
    if mode == "raise":
        raise RuntimeError("boom in the job")
    if mode == "wait":
        time.sleep(120)
    """
)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A copy of the package (so a test may edit it) and a private server folder."""
    root = tmp_path_factory.mktemp("js")
    shutil.copytree(
        REPO / "overtrained", root / "lib/overtrained", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "lib/overtrained/_probe_marker.py").write_text("VALUE = 1\n")
    (root / "script.py").write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "lib"),
        job_server.ENV_DIR: str(root / "servers"),
        job_server.ENV_MODE: "auto",
    }
    for name in (*job_server.SCHEDULER_VARIABLES, job_server.ENV_WORKER):
        env.pop(name, None)
    yield root, env
    subprocess.run(
        [sys.executable, "-m", "overtrained.execution.job_server", "stop"],
        env=env,
        check=False,
        capture_output=True,
    )


def client(package, work: Path, mode: str = "ok", *extra: str, **popen):
    root, env = package
    work.mkdir(exist_ok=True)
    command = [sys.executable, str(CLIENT), str(root / "script.py"), str(work / "job.log"), mode]
    command += extra
    return subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(path: Path, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_job_runs_in_a_warm_worker_with_its_own_folder_streams_and_environment(package, tmp_path):
    code, out, err = finish(client(package, tmp_path / "job"))
    assert code == 0, err
    report = json.loads((tmp_path / "job/report.json").read_text())
    assert report["torch_loaded_before_the_job"]  # the worker is a fork of the warm server
    # What the server preloaded is frozen out of the worker's garbage collections, and the
    # library caches it warmed are the worker's (each once cost every job 0.2-0.5 s).
    assert report["frozen_objects"] > 100_000
    assert report["weight_renamings_cached"] is True
    assert report["cwd"] == str(tmp_path / "job")
    assert out == "to stdout\n" and err == "to stderr\n"  # the client's own streams
    _, env = package
    worker_env = {k: v for k, v in report["env"].items() if k != job_server.ENV_WORKER}
    assert worker_env == {**env, **job_server.OFFLINE}
    assert str(Path(package[0], "lib")) in report["path"]
    usage = job_server.read_usage(tmp_path / "job/job.log")
    assert usage["worker_pid"] == report["pid"] != os.getpid()
    assert usage["peak_rss_mib"] > 100  # the server's imports are counted in a fork's peak
    assert 0 < usage["worker_seconds"] <= usage["job_seconds"]


def test_exit_codes_and_tracebacks_reach_the_client(package, tmp_path):
    code, _, _ = finish(client(package, tmp_path / "exit", "exit"))
    assert code == 7
    code, _, err = finish(client(package, tmp_path / "raise", "raise"))
    assert code == 1
    assert "RuntimeError: boom in the job" in err and "Traceback" in err


def test_edited_workflow_code_is_what_the_next_job_runs(package, tmp_path):
    root, _ = package
    marker = root / "lib/overtrained/_probe_marker.py"
    assert finish(client(package, tmp_path / "a"))[0] == 0
    first = json.loads((tmp_path / "a/report.json").read_text())
    marker.write_text("VALUE = 2\n")
    try:
        assert finish(client(package, tmp_path / "b"))[0] == 0
    finally:
        marker.write_text("VALUE = 1\n")
    second = json.loads((tmp_path / "b/report.json").read_text())
    assert (first["marker"], second["marker"]) == (1, 2)
    assert second["torch_loaded_before_the_job"]  # the same warm server, not a new process


def test_a_signal_to_the_client_reaches_the_worker(package, tmp_path):
    process = client(package, tmp_path / "term", "wait")
    wait_for(tmp_path / "term/report.json")
    process.send_signal(signal.SIGTERM)
    code, _, _ = finish(process, timeout=60)
    assert code == 5  # the job's own SIGTERM handler ran and chose the status
    assert (tmp_path / "term/stopped").read_text() == str(int(signal.SIGTERM))


def test_a_killed_client_does_not_leave_its_job_running(package, tmp_path):
    process = client(package, tmp_path / "kill", "wait")
    wait_for(tmp_path / "kill/report.json")
    process.kill()
    process.communicate()
    wait_for(tmp_path / "kill/stopped", timeout=60)  # the worker got SIGTERM


def test_while_a_server_starts_a_job_that_need_not_wait_runs_in_its_own_process(package, tmp_path):
    root, env = package
    folder = tmp_path / "servers"
    folder.mkdir(mode=0o700)
    env = {**env, job_server.ENV_DIR: str(folder)}
    # A server still importing: its pid file names a live job-server process, no socket yet.
    starting = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "overtrained.execution.job_server"]
    )
    try:
        (folder / f"{job_server.server_key(env)}.pid").write_text(str(starting.pid))
        code, out, err = finish(client((root, env), tmp_path / "job", "ok", "nowait"))
    finally:
        starting.kill()
        starting.wait()
    assert (code, out, err) == (0, "ran here\n", "")  # silently, as before the server existed
    assert len(list(folder.glob("*.pid"))) == 1  # no second server was started


def test_jobs_with_gpus_or_under_a_scheduler_run_in_their_own_process(monkeypatch):
    for name in (*job_server.SCHEDULER_VARIABLES, job_server.ENV_WORKER, job_server.ENV_MODE):
        monkeypatch.delenv(name, raising=False)
    auto = {"execution": {"job_server": "auto"}}
    assert job_server.wanted(auto, gpus=0) == (sys.platform == "linux")
    assert not job_server.wanted(auto, gpus=1)
    assert not job_server.wanted({"execution": {"job_server": "off"}}, gpus=0)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert not job_server.wanted(auto, gpus=0)
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv(job_server.ENV_MODE, "off")  # the environment wins over the config
    assert not job_server.wanted(auto, gpus=0)
    monkeypatch.setenv(job_server.ENV_MODE, "sometimes")
    with pytest.raises(ValueError, match="OVERTRAINED_JOB_SERVER='sometimes'"):
        job_server.wanted(auto, gpus=0)
    monkeypatch.setenv(job_server.ENV_MODE, "auto")
    monkeypatch.setenv(job_server.ENV_WORKER, "1")  # inside a worker: run here
    assert not job_server.wanted(auto, gpus=0)


def test_a_server_lives_while_its_snakemake_run_does():
    idle_out = job_server.idle_out
    long = job_server.MAX_IDLE_SECONDS + 1
    # The run that started it is alive: it stays, however long no job came (a trunk being
    # pre-trained in a job that started before it was ready, say).
    assert not idle_out(workers=0, owners_known=True, owners_alive=1, idle=long)
    assert not idle_out(workers=1, owners_known=True, owners_alive=0, idle=long)
    assert not idle_out(workers=0, owners_known=True, owners_alive=0, idle=5)
    assert idle_out(workers=0, owners_known=True, owners_alive=0, idle=31)
    # No Snakemake process known (started by hand, or no /proc): idle minutes only.
    assert not idle_out(workers=0, owners_known=False, owners_alive=0, idle=31)
    assert idle_out(workers=0, owners_known=False, owners_alive=0, idle=long)


def test_a_server_serves_one_environment():
    env = {"PATH": "/bin", "OMP_NUM_THREADS": "1"}
    assert job_server.server_key(env) == job_server.server_key(dict(env))
    assert job_server.server_key(env) != job_server.server_key({**env, "OMP_NUM_THREADS": "2"})
    assert job_server.server_key(env) == job_server.server_key({**env, "_": "/usr/bin/env"})


def test_usage_lines_are_read_back_and_other_logs_have_none(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("training...\n" + job_server.USAGE_PREFIX + '{"peak_rss_mib": 12.5}\n')
    assert job_server.read_usage(log) == {"peak_rss_mib": 12.5}
    log.write_text("a job that ran in its own process\n")
    assert job_server.read_usage(log) is None
    assert job_server.read_usage(tmp_path / "missing.log") is None


def test_the_cli_lists_and_stops_the_servers(package, monkeypatch, capsys):
    """Last in this file: it stops the server the tests above shared."""
    from overtrained import cli

    _, env = package
    monkeypatch.setenv(job_server.ENV_DIR, env[job_server.ENV_DIR])
    running = job_server.servers()
    assert len(running) == 1 and Path(running[0]["log"]).is_file()
    assert cli.main(["job-server"]) == 0
    assert "1 job server(s) running" in capsys.readouterr().out
    assert cli.main(["job-server", "stop"]) == 0
    assert "stopped 1 job server(s)" in capsys.readouterr().out
    deadline = time.monotonic() + 30
    while job_server.servers():
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.1)
    assert not list(Path(env[job_server.ENV_DIR]).glob("*.sock"))
