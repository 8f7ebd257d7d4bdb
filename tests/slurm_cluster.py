"""A real single-node Slurm on the test machine, from Debian's packages (slurm-wlm, munge).

`.ci/run` installs the packages; the tests start the daemons as root and stop them after:

    with SlurmCluster() as cluster:
        ...  # sbatch, squeue, scontrol, snakemake --profile profiles/slurm
        cluster.jobs()  # what slurmctld recorded of every job

The configuration follows what was checked on this kind of machine (the design notes, "Facts
learned the hard way"): daemons as root, proctrack/linuxproc, task/none, no accounting
(so jobs are watched with squeue and finished ones stay listed for MinJobAge seconds), the
config at /etc/slurm/slurm.conf (job steps do not see SLURM_CONF), and one fake GPU
(gres.conf File=/dev/null) so GPU requests are accepted and scheduled.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

HEADER = "# written by overtrained's tests (tests/slurm_cluster.py); safe to delete\n"
CONF_DIR = Path("/etc/slurm")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


def missing() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    absent = [name for name in DAEMONS if not shutil.which(name, path=_PATH)]
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the Slurm daemons need root"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and not conf.read_text().startswith(HEADER):
        return f"{conf} belongs to a real Slurm installation; not touching it"
    return None


_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _run(*args: str, check: bool = True, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        env={**os.environ, "PATH": _PATH},
    )


class SlurmCluster:
    """slurmctld + slurmd for this host: `cpus` cores, `memory_mb`, one fake GPU."""

    def __init__(self, state_dir: Path, cpus: int | None = None, memory_mb: int = 16000):
        self.host = socket.gethostname().split(".")[0]
        self.state = Path(state_dir)
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self.started_munge = False

    # ------------------------------------------------------------------ configuration
    def config(self) -> str:
        s = self.state
        return HEADER + "\n".join(
            [
                "ClusterName=overtrained-test",
                f"SlurmctldHost={self.host}",
                "SlurmUser=root",
                "AuthType=auth/munge",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "JobCompType=jobcomp/none",
                "MinJobAge=86400",  # finished jobs stay in scontrol/squeue's view
                "KillWait=5",  # seconds between scancel's SIGTERM and SIGKILL
                "GresTypes=gpu",
                f"StateSaveLocation={s}/ctld",
                f"SlurmdSpoolDir={s}/d",
                f"SlurmctldPidFile={s}/slurmctld.pid",
                f"SlurmdPidFile={s}/slurmd.pid",
                f"SlurmctldLogFile={s}/slurmctld.log",
                f"SlurmdLogFile={s}/slurmd.log",
                f"NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} "
                "Gres=gpu:1 State=UNKNOWN",
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> SlurmCluster:
        reason = missing()
        if reason:
            raise RuntimeError(f"cannot start Slurm: {reason}")
        for sub in ("ctld", "d"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        (CONF_DIR / "slurm.conf").write_text(self.config())
        (CONF_DIR / "gres.conf").write_text(HEADER + "Name=gpu File=/dev/null\n")
        self._start_munge()
        self._stop_daemons()  # leftovers of an earlier run
        _run("slurmctld", "-c")  # -c: a clean start, no saved jobs
        _run("slurmd", "-c")
        self._wait_idle()
        return self

    def __exit__(self, *exc) -> None:
        _run("scancel", "--user", "root", check=False)
        self._stop_daemons()
        if self.started_munge:
            _run("pkill", "-x", "munged", check=False)
        remove_config()

    def _start_munge(self) -> None:
        if _run("pgrep", "-x", "munged", check=False).returncode == 0:
            return
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            _run("mungekey", "--create", check=False)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        _run("runuser", "-u", "munge", "--", shutil.which("munged", path=_PATH))
        self.started_munge = True

    def _stop_daemons(self) -> None:
        for name in ("slurmd", "slurmctld"):
            _run("pkill", "-x", name, check=False)
        deadline = time.time() + 20
        while time.time() < deadline:
            alive = [
                n
                for n in ("slurmd", "slurmctld")
                if _run("pgrep", "-x", n, check=False).returncode == 0
            ]
            if not alive:
                return
            time.sleep(0.2)
        raise RuntimeError(f"Slurm daemons did not stop: {alive}")

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            state = _run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        log = (
            (self.state / "slurmctld.log").read_text()[-2000:]
            if (self.state / "slurmctld.log").exists()
            else ""
        )
        raise RuntimeError(f"the Slurm node is {state!r}, not idle, after {timeout} s\n{log}")

    # ------------------------------------------------------------------ what happened
    def jobs(self) -> list[dict]:
        """Every job slurmctld knows (finished ones included, MinJobAge), as key=value dicts."""
        out = _run("scontrol", "show", "job", "--oneliner", check=False).stdout
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            fields = {}
            for token in line.split():
                key, sep, value = token.partition("=")
                if sep:
                    fields[key] = value
            jobs.append(fields)
        return jobs

    def cancel(self, job_id: str) -> None:
        _run("scancel", job_id)


def remove_config() -> None:
    """Delete the config files these tests wrote. Left behind, they make every later
    `snakemake` start ~9 s slower: the Slurm plugin runs `scontrol show config` when it is
    imported, which waits for a controller that is no longer there."""
    for name in ("slurm.conf", "gres.conf"):
        path = CONF_DIR / name
        if path.is_file() and path.read_text().startswith(HEADER):
            path.unlink()
