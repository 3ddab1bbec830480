"""Every command printed in README.md runs as written: Snakemake commands as dry runs (the real runs
take minutes to hours), `--unlock` for real, `--report` on the tiny DAG's finished run (test_workflow),
pip commands checked against pyproject's extras, `prvr --help` and the bench scripts it names; and the
README's recovery after a kill works."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from test_benchmark_dag import _lay_out as lay_out

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent
TINY = REPO / "tests/data/tiny_config.yaml"
SKIPPED = {("python3.11", "-m", "venv", ".venv"), (".venv/bin/python", "-m", "pytest", "-q")}  # CI runs these
# commands that need a finished run: run for real by the test named (on the tiny DAG's finished run)
RUN_ELSEWHERE = {("snakemake", "--report", "report.html"): ("tests/test_workflow.py", '"--report", "report.html"')}


def readme_commands() -> list[str]:
    """Shell commands of the README: lines of ```bash blocks (split at &&) and the commands table."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    for line in README.splitlines():
        if line.startswith("| `"):
            commands += [c for c in re.findall(r"`([^`]*)`", line.split("|")[1]) if c.split()[0] in ("snakemake", "prvr")]
    return commands


def _argv(command: str) -> list[str]:
    """The command's argv with the optional `[--config ...]` left out and a timeout prefix removed."""
    argv = shlex.split(re.sub(r"\s*\[[^\]]*\]", "", command))
    if argv[0] == "timeout":  # timeout -s INT -k 120 48h <command>
        argv = argv[argv.index("48h") + 1:]
    return argv


def _run(argv: list[str], workdir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    tool = Path(argv[0]).name
    argv = [str(BIN / tool), *argv[1:]]
    if tool == "snakemake":
        argv += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
        if "--unlock" not in argv:
            argv.append("--dry-run")
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_readme_lists_the_commands_this_test_knows():
    commands = readme_commands()
    assert any(c.startswith(".venv/bin/pip install") for c in commands)
    assert sum(_argv(c)[0].endswith("snakemake") for c in commands) >= 9


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs_as_written(command, tmp_path):
    argv = _argv(command)
    if tuple(argv) in SKIPPED:
        return
    if tuple(argv) in RUN_ELSEWHERE:
        test_file, call = RUN_ELSEWHERE[tuple(argv)]
        assert call in (REPO / test_file).read_text(), f"{command}: {test_file} no longer runs it"
        return
    if argv[:3] == [".venv/bin/pip", "install", "-e"]:
        extras = re.fullmatch(r"\.(?:\[(.*)\])?", argv[3]).group(1)
        known = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert all(extra in known for extra in (extras or "").split(",") if extra), command
        return
    for dataset in re.findall(r"dataset=(\w+)", command):
        lay_out(tmp_path, dataset)  # the benchmark's files where its config expects them (real excerpts)
    result = _run(argv, tmp_path)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def test_the_setup_commands_install_what_all_needs():
    """`all` draws t-SNE figures (scikit-learn, matplotlib): every install before a run has the extra."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("scikit-learn") for dep in extras["analysis"])
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        if "snakemake" in block and "pip install" in block:
            installs = re.findall(r"pip install -e '\.\[([^\]]*)\]'", block)
            assert installs and all("analysis" in found.split(",") for found in installs), block


def test_readme_bench_scripts_exist():
    for name in set(re.findall(r"bench[/.](\w+)", README)) - {"name"}:
        assert (REPO / "bench" / f"{name}.py").exists() or (REPO / "bench" / name).exists(), name


def test_recovery_after_kill_is_as_the_readme_says(tmp_path):
    """kill -9 during a run, then the README's two commands: unlock, rerun with --rerun-incomplete."""
    assert "snakemake --unlock" in README and "--rerun-incomplete" in README
    base = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(TINY), "--cores", "1"]
    proc = subprocess.Popen([*base, "results/demo/clip/tiny_clip.pt"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "logs/pretrain_clip.log").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results/demo/clip/tiny_clip.pt").exists(), "the run ended before the kill"
    stuck = subprocess.run([*base, "results/demo/clip/tiny_clip.pt"], capture_output=True, text=True, timeout=120)
    assert stuck.returncode != 0 and "cannot be locked" in stuck.stdout + stuck.stderr
    unlock = subprocess.run([*base, "--unlock"], capture_output=True, text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr
    rerun = subprocess.run([*base, "-n", "--rerun-incomplete", "results/demo/clip/tiny_clip.pt"],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and "pretrain_clip" in rerun.stdout, rerun.stdout + rerun.stderr
