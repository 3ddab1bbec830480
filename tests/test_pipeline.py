"""run_step, the glue of every Snakemake script: the rule's log gets Python and C output, the console
gets one line on bad input."""
import os
import sys
from types import SimpleNamespace

import pytest

from prvr.config import Config, to_dict
from prvr.errors import PrvrError
from prvr.pipeline import run_step


def _smk(tmp_path):
    return SimpleNamespace(log=[str(tmp_path / "logs/rule.log")], config=to_dict(Config()), rule="demo_rule")


def test_log_gets_python_and_native_output_console_gets_one_line(tmp_path, capfd):
    def main(smk, cfg):
        print("python says hi")
        print("python warns", file=sys.stderr)
        os.write(2, b"[h264 @ 0x1] error while decoding MB 3 4\n")  # as FFmpeg does, from C
        raise PrvrError("v.mp4: corrupt or unreadable video")
    with pytest.raises(SystemExit):
        run_step(_smk(tmp_path), main)
    console = capfd.readouterr()
    log = (tmp_path / "logs/rule.log").read_text()
    for line in ("python says hi", "python warns", "error while decoding MB", "prvr error in rule demo_rule"):
        assert line in log
    assert console.err.strip() == "prvr error in rule demo_rule: v.mp4: corrupt or unreadable video"
    assert console.out == ""


def test_log_starts_fresh_each_run(tmp_path):
    smk = _smk(tmp_path)
    run_step(smk, lambda smk, cfg: print("first"))
    run_step(smk, lambda smk, cfg: print("second"))
    assert (tmp_path / "logs/rule.log").read_text() == "second\n"
