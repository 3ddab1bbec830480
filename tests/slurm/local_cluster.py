"""A throwaway one-node SLURM cluster on localhost, for tests/test_slurm.py and for trying profiles/slurm by hand.

    sudo python3 tests/slurm/local_cluster.py    # prints `export SLURM_CONF=...`; Ctrl-C stops it

Needs root and Debian's slurm-wlm + munge (.ci/slurm-setup.sh). Everything lives in one temporary
directory: munged (run as the munge user) gets its own key and socket, slurmctld and slurmd (root) their
own slurm.conf, state and free ports. Client commands find the cluster through SLURM_CONF in `env`.

slurmd runs in a private mount namespace where that directory's etc/ is bind-mounted on /etc/slurm,
because the executor plugin's job step removes SLURM_CONF from the environment of the `srun` it starts
inside each job; the host's /etc/slurm is never touched. Stopping cancels every job, waits for them to
end, then ends only the daemons started here, by PID.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
REQUIRED = DAEMONS + CLIENTS + ("unshare", "mount")


class ClusterError(RuntimeError):
    """The local cluster could not be started or stopped; the message names the log to read."""


def search_path() -> str:
    """PATH plus the sbin directories, where Debian puts the daemons."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def missing_binaries() -> list[str]:
    """The programs this cluster needs that cannot be found."""
    return [name for name in REQUIRED if shutil.which(name, path=search_path()) is None]


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports free right now (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def node_hardware() -> str:
    """The node line slurmd itself detects, e.g. 'CPUs=2 Boards=1 ... RealMemory=24105'."""
    first = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return " ".join(field for field in first.split() if not field.startswith("NodeName="))


def tail(path: Path, n: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


class LocalSlurm:
    """munged + slurmctld + slurmd on 127.0.0.1; use `start()`, `run(...)`, `stop()`."""

    def __init__(self, root: Path):
        self.root = root
        self.node = socket.gethostname().split(".")[0]  # slurmd registers as `hostname -s`
        self.conf = root / "etc" / "slurm.conf"
        self.env = {**os.environ, "PATH": search_path(), "SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}

    @classmethod
    def start(cls, timeout: float = 60) -> "LocalSlurm":
        if os.geteuid() != 0:
            raise ClusterError("the local SLURM cluster needs root (munged runs as munge, slurmd as root)")
        if not Path("/etc/slurm").is_dir():
            raise ClusterError("/etc/slurm is missing: install slurm-client (.ci/slurm-setup.sh)")
        root = Path(tempfile.mkdtemp(prefix="prvr-slurm-"))
        root.chmod(0o755)  # munged, running as munge, must reach its socket below
        cluster = cls(root)
        try:
            cluster._write_files()
            cluster._start_daemons(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _write_files(self) -> None:
        for sub in ("etc", "state", "spool", "log"):
            (self.root / sub).mkdir()
        munge = self.root / "munge"
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for path in (munge, key):
            shutil.chown(path, "munge", "munge")
        ctld_port, slurmd_port = free_ports(2)
        text = Template((HERE / "slurm.conf.in").read_text()).substitute(
            root=self.root, node=self.node, ctld_port=ctld_port, slurmd_port=slurmd_port, hardware=node_hardware())
        self.conf.write_text(text)
        # A GPU with /dev/null as its device file: allocatable, never usable.
        (self.root / "etc" / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File=/dev/null\n")
        (self.root / "etc" / "plugstack.conf").write_text("")

    def _spawn(self, name: str, cmd: list[str], **kwargs) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=self.env,
                                            start_new_session=True, **kwargs)
        log.close()

    def _start_daemons(self, timeout: float) -> None:
        munge = self.root / "munge"
        self._spawn("munged", ["munged", "--foreground", f"--key-file={munge / 'munge.key'}",
                               f"--socket={munge / 'munge.socket'}", f"--pid-file={munge / 'munged.pid'}",
                               f"--seed-file={munge / 'munged.seed'}", f"--log-file={munge / 'munged.log'}"],
                    user="munge", group="munge", extra_groups=[])
        self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        # `exec` keeps one PID through unshare, sh and slurmd, so stop() ends slurmd itself.
        self._spawn("slurmd", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               'mount --bind "$1" /etc/slurm && exec slurmd -D -f "$1/slurm.conf"',
                               "sh", str(self.root / "etc")])
        self._wait(lambda: self.run("sinfo", "-h", "-n", self.node, "-o", "%t", check=False).strip() == "idle",
                   timeout, "slurmd")

    def _wait(self, ready, timeout: float, name: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise ClusterError(f"{dead[0]} exited early; see {self.root / 'log' / (dead[0] + '.out')}:\n"
                                   + tail(self.root / "log" / f"{dead[0]}.out"))
            if ready():
                return
            time.sleep(0.3)
        raise ClusterError(f"{name} not ready after {timeout:.0f} s; see {self.root / 'log'}:\n"
                           + tail(self.root / "log" / f"{name}.out"))

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        """A SLURM client command against this cluster; returns its stdout."""
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def job_ids(self) -> list[str]:
        """Jobs that are pending, running or completing."""
        return self.run("squeue", "-h", "-o", "%i", check=False).split()

    def leftover_processes(self) -> list[int]:
        """PIDs still alive that were started here: our daemons, and job processes (their env names our conf)."""
        mine = [p.pid for p in self.procs.values() if p.poll() is None]
        marker = f"SLURM_CONF={self.conf}".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        mine.append(int(entry.name))
                except OSError:  # gone meanwhile, or a kernel thread
                    pass
        return sorted(set(mine))

    def stop(self, timeout: float = 30) -> None:
        """Cancel all jobs, wait for them, end slurmd, slurmctld and munged by PID; idempotent."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None and self.procs.get("slurmd", ctld).poll() is None:
            ids = self.job_ids()
            if ids:
                self.run("scancel", *ids, check=False)
            deadline = time.monotonic() + timeout
            while self.job_ids() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def remove(self) -> None:
        """Delete the cluster's directory (after stop())."""
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> int:
    missing = missing_binaries()
    if missing:
        print(f"missing: {', '.join(missing)} (run .ci/slurm-setup.sh)", file=sys.stderr)
        return 1
    cluster = LocalSlurm.start()
    print(f"cluster up; logs in {cluster.root / 'log'}\nexport SLURM_CONF={cluster.conf}\nCtrl-C stops it.")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        cluster.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
