"""The SLURM run of .test/config_basic that tests/test_slurm.py checks, started in the background.

Most of that run's 3 minutes is waiting: on the scheduler, and on the executor plugin's status queries (it polls at
5 s, then 10 s longer after every query that finds nothing finished). conftest.py starts the cluster and the run in
a thread when the session starts, so the waiting overlaps the rest of the suite; the test then only collects the
finished run. Runs where BBQREC_SLURM=1 (CI: .ci/slurm-up.sh installs the cluster, root and apt) or a SLURM cluster
is already up; notes: ../shared/notes/slurm-on-localhost.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from workflow_runs import BASIC_CONFIG, BIN, REPO, copy_workflow

# SIGINT, not SIGTERM: a snakemake waiting on jobs ignores SIGTERM.
TIMEOUT = ("timeout", "-s", "INT", "-k", "60", "900")


def _succeeds(*command: str) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def cluster_running() -> bool:
    return shutil.which("scontrol") is not None and _succeeds("scontrol", "ping")


def slurm_enabled() -> bool:
    return os.environ.get("BBQREC_SLURM") == "1" or cluster_running()


class BackgroundSlurmRun:
    """Starts a cluster unless one is up, then runs the workflow through profiles/slurm in workdir, in a thread.

    result() waits for it and returns snakemake's output (also in workdir/snakemake.out); stop() interrupts a run
    still going (SIGINT, on which snakemake cancels its SLURM jobs) and stops a cluster started here.
    """

    def __init__(self, workdir: Path, data_root: Path):
        self.workdir = workdir
        self.data_root = data_root
        self.started_cluster = False
        self.since = ""  # sacct --starttime of the run's jobs
        self._process: subprocess.Popen | None = None
        self._output = ""
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slurm-run", daemon=True)

    def start(self) -> BackgroundSlurmRun:
        self._thread.start()
        return self

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._output

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # `timeout` passes it on to snakemake
        self._thread.join()
        if self.started_cluster:
            subprocess.run(["bash", str(REPO / ".ci" / "slurm-down.sh")], timeout=120, check=True)

    def _run(self) -> None:
        try:
            self._start_cluster()
            if not self._stopping.is_set():
                self._output = self._snakemake()
        except BaseException as error:  # re-raised in the test's thread by result()
            self._error = error

    def _start_cluster(self) -> None:
        if not cluster_running():
            self.started_cluster = True
            up = subprocess.run(
                ["bash", str(REPO / ".ci" / "slurm-up.sh")], capture_output=True, text=True, timeout=600
            )
            assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout}\n{up.stderr}"
        # The plugin reads job states from sacct: without slurmdbd it would wait forever.
        assert _succeeds("sacct", "-X", "-n"), "the running SLURM cluster has no accounting (sacct fails)"

    def _snakemake(self) -> str:
        """`--workflow-profile none`: profiles/default would be loaded as the workflow profile and replace the
        SLURM profile's default-resources (partition, account, cpus_per_task). The plugin's 40 s wait before its
        first status query suits a real cluster, not a test: 5 s here."""
        copy_workflow(self.workdir)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
        command = [
            *TIMEOUT,
            str(BIN / "snakemake"),
            "--workflow-profile",
            "none",
            "--configfile",
            BASIC_CONFIG,
            "--config",
            f"data_root={self.data_root}",
            "--profile",
            "profiles/slurm",
            "--slurm-init-seconds-before-status-checks",
            "5",
        ]
        self.since = time.strftime("%Y-%m-%dT%H:%M:%S")
        log = self.workdir / "snakemake.out"
        with open(log, "w") as out:
            self._process = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
            if self._stopping.is_set():  # stop() came between the check in _run and the Popen
                self._process.send_signal(signal.SIGINT)
            returncode = self._process.wait()
        output = log.read_text()
        assert returncode == 0, f"snakemake in {self.workdir} exited with {returncode}:\n{output[-6000:]}"
        return output
