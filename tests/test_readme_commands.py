"""Every command printed in README.md and docs/*.md runs as written: Snakemake commands as dry runs (the
real runs take minutes to hours), `--unlock` for real, `--report` on the tiny DAG's finished run
(test_workflow), pip commands checked against pyproject's extras, bench scripts through their `--help`
(every option the page uses must be one the script takes), `prvr --help`; the quick command builds
exactly what the README says, and the README's recovery after a kill works."""
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
PAGES = {"README.md": README, **{f"docs/{p.name}": p.read_text() for p in sorted((REPO / "docs").glob("*.md"))}}
BIN = Path(sys.executable).parent
TINY = REPO / "tests/data/tiny_config.yaml"
SKIPPED = {("python3.11", "-m", "venv", ".venv"), (".venv/bin/python", "-m", "pytest", "-q")}  # CI runs these
# commands that need a finished run: run for real by the test named (on the tiny DAG's finished run)
RUN_ELSEWHERE = {("snakemake", "--report", "report.html"): ("tests/test_workflow.py", '"--report", "report.html"')}
MAX_README_LINES = 250


def page_commands(text: str) -> list[str]:
    """Shell commands of a page: lines of ```bash blocks (split at &&) and the commands table."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    for line in text.splitlines():
        if line.startswith("| `"):
            commands += [c for c in re.findall(r"`([^`]*)`", line.split("|")[1]) if c.split()[0] in ("snakemake", "prvr")]
    return commands


def readme_commands() -> list[str]:
    return page_commands(README)


def all_commands() -> list[tuple[str, str]]:
    """(page, command) for every command of the README and the docs, each once."""
    return list(dict.fromkeys((page, c) for page, text in PAGES.items() for c in page_commands(text)))


def _argv(command: str) -> list[str]:
    """The command's argv with an optional part `[--config ...]` left out and a timeout prefix removed
    (a list value such as `ablations=[baseline]` stays)."""
    argv = shlex.split(re.sub(r"\s+\[--[^\]]*\]", "", command))
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


def _bench_help(argv: list[str]) -> None:
    """A bench run takes minutes to hours: its script's --help runs instead, and every option the
    command passes must be one the script declares."""
    module = argv[argv.index("-m") + 1]
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"{module} --help\n{result.stderr[-2000:]}"
    unknown = [arg for arg in argv if arg.startswith("--") and arg.split("=")[0] not in result.stdout]
    assert not unknown, f"{' '.join(argv)}: {module} has no option {unknown}"


@pytest.mark.parametrize("page, command", all_commands())
def test_command_runs_as_written(page, command, tmp_path):
    argv = _argv(command)
    if tuple(argv) in SKIPPED:
        return
    if tuple(argv) in RUN_ELSEWHERE:
        test_file, call = RUN_ELSEWHERE[tuple(argv)]
        assert call in (REPO / test_file).read_text(), f"{page}: {command}: {test_file} no longer runs it"
        return
    if argv[:3] == [".venv/bin/pip", "install", "-e"]:
        extras = re.fullmatch(r"\.(?:\[(.*)\])?", argv[3]).group(1)
        known = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert all(extra in known for extra in (extras or "").split(",") if extra), command
        return
    if argv[0].endswith("python") and "-m" in argv and argv[argv.index("-m") + 1].startswith("bench."):
        return _bench_help(argv)
    for dataset in re.findall(r"dataset=(\w+)", command):
        lay_out(tmp_path, dataset)  # the benchmark's files where its config expects them (real excerpts)
    result = _run(argv, tmp_path)
    assert result.returncode == 0, f"{page}: {command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def test_every_page_command_is_one_this_test_can_run():
    """A command this test does not know how to run would pass unchecked: each must be one of its kinds."""
    for page, command in all_commands():
        argv = _argv(command)
        tool = Path(argv[0]).name
        known = (tuple(argv) in SKIPPED or tool in ("snakemake", "prvr", "pip")
                 or (tool == "python" and argv[1:2] == ["-m"] and argv[2].startswith("bench.")))
        assert known, f"{page}: {command}"


def test_the_readme_is_short():
    assert len(README.splitlines()) <= MAX_README_LINES


def test_the_quick_command_builds_one_row_as_the_readme_says(tmp_path):
    """The README's first command builds the baseline row with one seed: one training, one evaluation,
    no other configuration (the main table's rows are not dragged in), and as many jobs as it says."""
    quick = next(c for c in readme_commands() if "ablations=[baseline]" in c)
    result = _run(_argv(quick), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats:")[1], re.M))
    assert stats["train"] == "1" and stats["evaluate"] == "1" and "main_table" not in stats, stats
    said = re.search(r"That is (\d+) jobs", README)
    assert said and stats["total"] == said.group(1), (said and said.group(0), stats["total"])


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_docs_link_only_pages_and_sections_that_exist():
    for page, text in PAGES.items():
        base = (REPO / page).parent
        for target, anchor in re.findall(r"\]\(([^)#]*)(?:#([^)]*))?\)", text):
            if "://" in target:
                continue
            path = (base / target) if target else REPO / page
            assert path.exists(), f"{page} links {target}, which does not exist"
            if anchor:
                assert anchor in _anchors(path.read_text()), f"{page} links {target}#{anchor}: no such heading"


def test_the_setup_commands_install_what_all_needs():
    """`all` draws t-SNE figures (scikit-learn, matplotlib): every install before a run has the extra."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("scikit-learn") for dep in extras["analysis"])
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        if "snakemake" in block and "pip install" in block:
            installs = re.findall(r"pip install -e '\.\[([^\]]*)\]'", block)
            assert installs and all("analysis" in found.split(",") for found in installs), block


def test_bench_scripts_named_exist():
    for name in {n for text in PAGES.values() for n in re.findall(r"bench[/.](\w+)", text)} - {"name"}:
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
