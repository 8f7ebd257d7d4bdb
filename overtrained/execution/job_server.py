"""A local job server: rule scripts run in forks of a process that has already imported
torch, transformers, TRL and lm-eval.

Why: the miniature's jobs are small, and a fresh interpreter spends ~2 s importing torch,
~4 s more for lm-eval and ~9 s for TRL's trainer before a job does any work (measured by
`benchmarks/job_overhead.py`). Here the first job of a run starts a server that imports
them once; every later job sends its `snakemake` object to the server, which forks a
worker that runs the job's own script, with the job's working directory, environment,
`sys.path` and standard streams, and reports its exit status back. The job itself is
unchanged: same rule, same script, same outputs and provenance; Snakemake still sees one
process per job (it waits for the worker and gets its exit status).

When it is used (`execution.job_server`, or the environment variable
OVERTRAINED_JOB_SERVER=auto|off, which wins):
* `auto` (default): for jobs that ask for no GPU and run outside a batch scheduler, on
  Linux; GPU jobs, Slurm jobs (whose memory and CPU limits belong to their own cgroup)
  and other platforms run as a fresh process, as before;
* `off`: every job runs as a fresh process.

Only what runs in the same way whatever the job is imported in the server: third-party
libraries. The workflow's own package (`overtrained`) is imported afresh by every worker,
so edited code is always what runs. A server serves one Python executable, one set of
library files and one environment (its key hashes them): a job with another environment
(other thread counts, another virtualenv) gets a server of its own. Workers never reach
the network (HF_HUB_OFFLINE and HF_DATASETS_OFFLINE are set), as compute jobs never do;
jobs that download (prefetch, hub download) do not use the server. A
server lives as long as the Snakemake processes that started or used it, and exits
`IDLE_SECONDS` after the last of them with no job running (after `MAX_IDLE_SECONDS` idle
where it knows of none); `python -m overtrained.execution.job_server stop` stops them now.

This module imports only the standard library: a job's client side must cost nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import importlib.util
import json
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

MODES = ("auto", "off")
ENV_MODE = "OVERTRAINED_JOB_SERVER"
ENV_WORKER = "OVERTRAINED_JOB_SERVER_WORKER"  # set in workers: the script runs there
ENV_DIR = "OVERTRAINED_JOB_SERVER_DIR"  # where servers live (tests keep theirs apart)
SCHEDULER_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "FLUX_JOB_ID")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# Imported once by the server, in this order (a module missing from the environment is
# skipped: the analysis environment has no torch, say).
PRELOAD = (
    "snakemake.script",  # a worker unpickles its job's `snakemake` object
    "numpy",
    "yaml",
    "jsonschema",  # the workflow's config module validates with it (0.1 s)
    "torch",
    "safetensors.torch",
    "tokenizers",
    "pandas",
    "pyarrow.parquet",
    "transformers",
    "transformers.models.olmo2.modeling_olmo2",
    "datasets",
    "trl",
    "lm_eval",
    "lm_eval.models.huggingface",
    "lm_eval.tasks",
    "matplotlib.pyplot",
)
# Attribute imports that pull in most of the rest lazily (transformers' Trainer: ~7 s).
PRELOAD_NAMES = (
    ("transformers", ("AutoModelForCausalLM", "AutoTokenizer", "Trainer", "TrainerCallback")),
    ("trl", ("SFTConfig", "SFTTrainer")),
)


def _transformers_weight_renamings() -> None:
    # Built on the first from_pretrained of a process (~1,000 regexes, 0.55 s), then cached.
    from transformers import conversion_mapping

    conversion_mapping.get_checkpoint_conversion_mapping("olmo2")


# Library caches every job would otherwise fill again, filled once in the server.
WARM_UPS = (_transformers_weight_renamings,)
IDLE_SECONDS = 30  # after the last Snakemake process it started for or served has ended
MAX_IDLE_SECONDS = 300  # idle, where no Snakemake process is known (not Linux's /proc)
STARTUP_SECONDS = 300  # a server must accept within this, or the job runs here
USAGE_PREFIX = "[job-server] "
HEADER = struct.Struct("!Q")


def mode(config: dict) -> str:
    """The configured mode; the environment variable wins (tests, one-off runs)."""
    value = os.environ.get(ENV_MODE) or (config.get("execution") or {}).get("job_server")
    value = value or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV_MODE}={value!r}: use one of {', '.join(MODES)}")
    return value


def wanted(config: dict, gpus: int) -> bool:
    """Whether a job with `gpus` GPUs runs through the server here."""
    if os.environ.get(ENV_WORKER) or mode(config) == "off":
        return False
    if sys.platform != "linux" or gpus > 0:
        return False
    return not any(os.environ.get(name) for name in SCHEDULER_VARIABLES)


def hand_over(smk, script: str, wait: bool = False) -> None:
    """Run the rule script `script` (its `__file__`) in a worker of the job server and exit
    with its status, when the server is wanted for this job; otherwise return, and the
    script goes on here. The first jobs of a run start the server; while it imports, a job
    runs in its own process unless `wait` (for jobs whose own imports cost more than the
    wait: fine-tuning and lm-eval)."""
    if not hasattr(smk, "config"):  # a stand-in (a test calling a rule script): run here
        return
    if not wanted(smk.config, int(smk.resources.get("gpu", 0) or 0)):
        return
    try:
        status, usage = run_in_server(smk, script, wait)
    except ServerStarting:
        return
    except ServerUnavailable as err:
        print(
            f"{USAGE_PREFIX}not used ({err}); running this job in its own process",
            file=sys.stderr,
            flush=True,
        )
        return
    record_usage(smk, usage)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def local_jobs_of(executor: str | None) -> None:
    """Called by the Snakefile once it runs (`onstart`): under a cluster executor the jobs
    Snakemake runs itself are light local rules on a login node, where a server holding
    ~0.5 GB for minutes is no good neighbour; they inherit OVERTRAINED_JOB_SERVER=off."""
    if executor not in (None, "local", "dryrun", "touch"):
        os.environ[ENV_MODE] = "off"


class ServerUnavailable(RuntimeError):
    """The job server could not be started or reached; the job runs in its own process."""


class ServerStarting(ServerUnavailable):
    """The job server is still importing; a job that need not wait runs in its own process."""


# --- identity and location ----------------------------------------------------------------


def server_key(env: dict | None = None) -> str:
    """What a server must share with a job to run it: interpreter, library files (their
    paths, sizes and times), this module's code and the environment."""
    env = dict(os.environ if env is None else env)
    digest = hashlib.sha256()
    digest.update(sys.executable.encode())
    digest.update(Path(__file__).read_bytes())
    for name in PRELOAD:
        top = name.split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec and spec.origin else ""
        stamp = ""
        with contextlib.suppress(OSError):
            st = os.stat(origin)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        digest.update(f"{top}={origin}:{stamp};".encode())
    env.pop("_", None)  # the shell's last command
    digest.update(json.dumps(sorted(env.items())).encode())
    return digest.hexdigest()[:20]


def socket_dir() -> Path:
    """The private folder (mode 0700) of this user's servers: their sockets, pid files and
    logs; $OVERTRAINED_JOB_SERVER_DIR, else a folder in the temporary directory."""
    path = os.environ.get(ENV_DIR)
    if not path:
        base = Path(tempfile.gettempdir())
        if len(str(base)) > 60:  # a Unix socket's path has room for ~100 bytes
            base = Path("/tmp")
        path = base / f"overtrained-job-server-{os.getuid()}"
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid() or path.stat().st_mode & 0o077:
        raise ServerUnavailable(f"{path} is not a private folder of this user")
    return path


# --- client ---------------------------------------------------------------------------------


def _send(sock: socket.socket, payload: bytes, fds: list[int] = ()) -> None:
    message = HEADER.pack(len(payload)) + payload
    if fds:
        socket.send_fds(sock, [message[: HEADER.size]], list(fds))
        sock.sendall(message[HEADER.size :])
    else:
        sock.sendall(message)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket, maxfds: int = 0) -> tuple[bytes, list[int]]:
    if maxfds:
        head, fds, _flags, _addr = socket.recv_fds(sock, HEADER.size, maxfds)
        if len(head) < HEADER.size:
            head += _recv_exact(sock, HEADER.size - len(head))
    else:
        head, fds = _recv_exact(sock, HEADER.size), []
    (size,) = HEADER.unpack(head)
    return _recv_exact(sock, size), fds


def _process_start(pid: int) -> str | None:
    """The start time of a process (with its pid, a process's identity), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def snakemake_ancestors() -> list[tuple[int, str]]:
    """The Snakemake processes above this job (the server lives while one of them does)."""
    owners, pid = [], os.getppid()
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        if b"snakemake" in cmdline:
            owners.append((pid, _process_start(pid)))
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return owners


def connect(key: str, wait: bool) -> socket.socket:
    """A connection to the server for `key`. With none running, start one; a server that is
    still importing is waited for only if `wait` (else ServerStarting: the job runs here)."""
    folder = socket_dir()
    path, pid_file = folder / f"{key}.sock", folder / f"{key}.pid"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one client starts a server, the others see it
        with contextlib.suppress(OSError):
            return _connect(path)
        if server_pid(pid_file) is None:
            path.unlink(missing_ok=True)  # left by a server that did not stop cleanly
            with open(folder / f"{key}.log", "ab") as log:
                # It lives while the Snakemake run that starts it does, even if the jobs
                # that start meanwhile all run in their own processes.
                owners = json.dumps(snakemake_ancestors())
                server = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "overtrained.execution.job_server",
                        "serve",
                        str(path),
                        owners,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C in the terminal reaches jobs, not it
                    env={**os.environ, **OFFLINE},
                    close_fds=True,
                )
            pid_file.write_text(str(server.pid))
    if not wait:
        raise ServerStarting("the job server is starting")
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            return _connect(path)
        if server_pid(pid_file) is None:
            raise ServerUnavailable(f"the job server exited; see {folder / key}.log")
        time.sleep(0.05)
    raise ServerUnavailable(f"the job server did not start in time; see {folder / key}.log")


def server_pid(pid_file: Path) -> int | None:
    """The pid of the server `pid_file` names, if that process is alive and is a server."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"overtrained.execution.job_server" in cmdline else None


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def run_in_server(smk, script: str, wait: bool = True) -> tuple[int, dict]:
    """Send this job to the server; forward signals to its worker; (exit status, usage)."""
    started = time.perf_counter()
    try:
        sock = connect(server_key(), wait)
    except OSError as err:
        raise ServerUnavailable(str(err)) from err
    request = pickle.dumps(
        {
            "smk": pickle.dumps(smk),
            "script": str(Path(script).resolve()),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "path": list(sys.path),
            "umask": _umask(),
        }
    )
    header = json.dumps({"owners": snakemake_ancestors()}).encode()
    try:
        _send(sock, header, fds=[0, 1, 2])
        _send(sock, request)
    except OSError as err:
        raise ServerUnavailable(f"could not send the job: {err}") from err
    forwarded = {}

    def forward(signum, _frame):
        with contextlib.suppress(OSError):
            sock.sendall(bytes([signum]))

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        forwarded[sig] = signal.signal(sig, forward)
    # A job runs as long as it runs: no time limit here (Snakemake's own, or a signal, ends
    # the wait).
    try:
        reply, _ = _recv(sock)
        result = json.loads(reply)
    except (EOFError, OSError, ValueError):
        result = {"status": 1, "usage": {"error": "the worker ended without a status"}}
        why = (
            f"{USAGE_PREFIX}error: this job's process was killed before it could report "
            "(most often by the kernel's out-of-memory killer: `dmesg` or `journalctl -k` "
            "says); give the job more memory or run fewer jobs at once (--cores), then "
            "re-run snakemake"
        )
        print(why, file=sys.stderr, flush=True)
        _append_to_log(smk, why)  # the job's own log says it too
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)
        sock.close()
    usage = result.get("usage", {})
    usage["job_seconds"] = round(time.perf_counter() - started, 3)
    return int(result["status"]), usage


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def record_usage(smk, usage: dict) -> None:
    """One line in the job's log: what its worker used (Snakemake's benchmark measures
    this client process only). `benchmarks/job_resources.py` reads it back."""
    _append_to_log(smk, USAGE_PREFIX + json.dumps(usage, sort_keys=True))


def _append_to_log(smk, line: str) -> None:
    if smk.log:
        with contextlib.suppress(OSError), open(smk.log[0], "a") as log:
            log.write(line + "\n")


def read_usage(log_path: str | Path) -> dict | None:
    """The worker usage line of a job log, or None (the job ran in its own process)."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith(USAGE_PREFIX + "{"):
            return json.loads(line.removeprefix(USAGE_PREFIX))
    return None


# --- server ---------------------------------------------------------------------------------


def preload() -> dict:
    """Import PRELOAD (and PRELOAD_NAMES); seconds per module, or the error."""
    import importlib

    took = {}
    for name in PRELOAD:
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
            took[name] = round(time.perf_counter() - t0, 3)
        except Exception as err:  # a library this environment lacks
            took[name] = f"{type(err).__name__}: {err}"
    for module, names in PRELOAD_NAMES:
        if module in sys.modules:
            for attribute in names:
                with contextlib.suppress(Exception):
                    getattr(sys.modules[module], attribute)
    for warm_up in WARM_UPS:
        with contextlib.suppress(Exception):  # another library version: no warm-up
            warm_up()
    if "torch" in sys.modules:
        # A worker may use CUDA only if the server never touched it.
        cuda = sys.modules["torch"].cuda
        took["cuda_initialized"] = bool(cuda.is_initialized())
    took["threads"] = threading.active_count()
    return took


def serve(path: str, owners_json: str = "[]") -> None:
    """Accept jobs on `path` and fork a worker for each, until idle (see the module doc)."""
    path = Path(path)
    os.environ.update(OFFLINE)
    print(f"{time.strftime('%F %T')} job server {os.getpid()} starting", flush=True)
    print(f"preloaded: {json.dumps(preload())}", flush=True)
    # What preloading made is never garbage: keep it out of every worker's collections
    # (a full gc.collect() in a worker took 0.23 s) and its pages shared after fork.
    gc.freeze()
    # The socket appears only now: until then clients see a server starting (its pid file).
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    print(f"{time.strftime('%F %T')} serving on {path}", flush=True)
    workers: set[int] = set()
    owners = {tuple(owner) for owner in json.loads(owners_json)}
    owners_known = bool(owners)
    last_active = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: _stop(listener, path, workers))
    while True:
        ready, _, _ = select.select([listener], [], [], 1.0)
        for pid in list(workers):
            with contextlib.suppress(ChildProcessError):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            workers.discard(pid)
            last_active = time.monotonic()
        if ready:
            conn, _ = listener.accept()
            conn.settimeout(30)  # a client sends its job at once; never hang the server
            try:
                header, fds = _recv(conn, maxfds=3)
                request, _ = _recv(conn)
            except (OSError, EOFError, ValueError) as err:
                print(f"dropped a request: {err}", flush=True)
                conn.close()
                continue
            conn.settimeout(None)
            owners.update(tuple(owner) for owner in json.loads(header)["owners"])
            owners_known = owners_known or bool(owners)
            pid = os.fork()
            if pid == 0:
                listener.close()
                _worker(conn, fds, request)  # never returns
            conn.close()
            for fd in fds:
                os.close(fd)
            workers.add(pid)
            last_active = time.monotonic()
            continue
        owners = {o for o in owners if _process_start(o[0]) == o[1]}
        if idle_out(len(workers), owners_known, len(owners), time.monotonic() - last_active):
            _stop(listener, path, workers)


def idle_out(workers: int, owners_known: bool, owners_alive: int, idle: float) -> bool:
    """Whether a server should exit: no job running, and its Snakemake processes gone for
    IDLE_SECONDS (or, knowing of none, MAX_IDLE_SECONDS idle)."""
    if workers or owners_alive:
        return False
    return idle > (IDLE_SECONDS if owners_known else MAX_IDLE_SECONDS)


def _stop(listener: socket.socket, path: Path, workers: set[int]) -> None:
    for pid in workers:  # only on SIGTERM: an idle server has none
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    listener.close()
    path.unlink(missing_ok=True)
    path.with_suffix(".pid").unlink(missing_ok=True)
    print(f"{time.strftime('%F %T')} job server {os.getpid()} stopped", flush=True)
    os._exit(0)


def _worker(conn: socket.socket, fds: list[int], request_bytes: bytes) -> None:
    """A forked worker: become the job (its streams, folder, environment, path) and run its
    script as `__main__`; then report the status and resource use, and exit."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    forked = time.perf_counter()
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    status = 1
    try:
        request = pickle.loads(request_bytes)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update(OFFLINE)
        os.environ[ENV_WORKER] = str(os.getpid())
        os.umask(request["umask"])
        sys.path[:] = request["path"]
        sys.argv = [request["script"]]
        # The workflow's own code, afresh from disk: a job runs the code it was planned with.
        for name in [m for m in sys.modules if m == "overtrained" or m.startswith("overtrained.")]:
            del sys.modules[name]
        threading.Thread(target=_watch_client, args=(conn,), daemon=True).start()
        smk = pickle.loads(request["smk"])
        status = _run_script(request["script"], smk)
    except BaseException:  # noqa: BLE001 (reported, then the worker exits)
        traceback.print_exc()
        status = 1
    # The job is over: its client hanging up (the watcher then sends SIGTERM) or a late
    # signal must not interrupt the report, nor run the job's own handlers (log_to's).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    usage = _usage(forked)
    with contextlib.suppress(Exception):
        import logging

        logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        _send(conn, json.dumps({"status": status, "usage": usage}).encode())
    os._exit(status)


def _run_script(script: str, smk) -> int:
    import runpy

    try:
        runpy.run_path(script, init_globals={"snakemake": smk}, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException as error:  # noqa: BLE001 (a fresh interpreter would print it too)
        try:  # the job's own (freshly imported) modules, as its fresh process would use
            from overtrained.core import entry, errors

            errors.report(error, entry.CONSOLE_FD)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        return 1
    return 0


def _watch_client(conn: socket.socket) -> None:
    """Signals forwarded by the job's client; if the client goes away (killed), the job
    ends as if Snakemake had terminated it."""
    while True:
        try:
            data = conn.recv(16)
        except OSError:
            data = b""
        if not data:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        for signum in data:
            os.kill(os.getpid(), signum)


def _usage(forked: float) -> dict:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "worker_pid": os.getpid(),
        "worker_seconds": round(time.perf_counter() - forked, 3),
        "cpu_seconds": round(
            own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 3
        ),
        # Linux counts the pages shared with the server (its imports) in a fork's peak.
        "peak_rss_mib": round(max(own.ru_maxrss, children.ru_maxrss) / 1024, 1),
    }


def stop_all() -> int:
    """Stop every job server of this user (their running jobs get SIGTERM); how many."""
    stopped = 0
    with contextlib.suppress(ServerUnavailable):
        for pid_file in socket_dir().glob("*.pid"):
            pid = server_pid(pid_file)
            if pid is None:
                pid_file.unlink(missing_ok=True)
                pid_file.with_suffix(".sock").unlink(missing_ok=True)
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                stopped += 1
    return stopped


def servers() -> list[dict]:
    """This user's running servers (ready or starting): pid, socket and log."""
    found = []
    with contextlib.suppress(ServerUnavailable):
        for pid_file in sorted(socket_dir().glob("*.pid")):
            pid = server_pid(pid_file)
            if pid is not None:
                found.append(
                    {
                        "pid": pid,
                        "socket": str(pid_file.with_suffix(".sock")),
                        "log": str(pid_file.with_suffix(".log")),
                    }
                )
    return found


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) in (2, 3):
        serve(*argv[1:])
        return 0
    if argv == ["stop"]:
        print(f"stopped {stop_all()} job server(s)")
        return 0
    print(
        "usage: python -m overtrained.execution.job_server serve SOCKET [OWNERS] | stop",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
