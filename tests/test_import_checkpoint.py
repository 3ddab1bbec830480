"""`prvr import-checkpoint`: each release's checkpoint (written by its own code, tests/data/
released_checkpoints/HOW.md) maps onto prvr's model, whose scores on the same raw inputs equal the
scores their code computed (stored beside it), and every way a file can be wrong is one line."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prvr.checkpoints import FORMATS, import_checkpoint
from prvr.checkpoints.common import ForeignObject, load_release_file
from prvr.cli import build_parser, main
from prvr.config import Config, merge
from prvr.errors import PrvrError
from prvr.evaluation.model_scores import model_scores_chunked
from prvr.training.model_file import model_from_saved, read_model_file

DATA = Path(__file__).resolve().parent / "data" / "released_checkpoints"
FILES = {"msc": "msc_best.ckpt", "gmmformer_v2": "gmmformer_v2_best.ckpt", "gmmformer_v1": "gmmformer_v1_best.ckpt",
         "ms_sl": "ms_sl_model.ckpt", "dl_dkd": "dl_dkd_model.ckpt"}
TENSORS = {"msc": (299, 257), "gmmformer_v2": (297, 257), "gmmformer_v1": (193, 157), "ms_sl": (54, 42),
           "dl_dkd": (74, 54)}  # (theirs, prvr's)
NOT_USED = {"msc": {"vproj_clip.weight", "vproj_clip.bias"}, "dl_dkd": {
    f"A_query_input_proj.{p}" for p in ("LayerNorm.weight", "LayerNorm.bias", "net.1.weight", "net.1.bias")}}
TOLERANCE = 1e-5  # measured: at most 2.3e-7 (float32 rounding)


def prvr_scores(model_path: Path, inputs) -> np.ndarray:
    """(Q, V) scores of the imported model on the raw inputs their scores were computed from."""
    model, cfg = model_from_saved(read_model_file(model_path), str(model_path), device="cpu")
    with torch.no_grad():
        videos = model.encode_videos(torch.from_numpy(inputs["frames"]))
        queries = model.encode_queries(torch.from_numpy(inputs["query"]), torch.from_numpy(inputs["query_mask"]).bool())
        return model_scores_chunked(queries, videos, model.score_branches, (cfg.eval.w_clip, cfg.eval.w_frame)).numpy()


def test_the_registry_and_the_cli_know_the_same_formats():
    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["import-checkpoint"]._actions
                  if a.dest == "format")
    assert tuple(action.choices) == tuple(FORMATS) == tuple(FILES)


@pytest.mark.parametrize("fmt", FILES)
def test_prvr_scores_equal_the_release_scores(fmt, tmp_path):
    out = tmp_path / "model.pt"
    summary = import_checkpoint(fmt, DATA / FILES[fmt], out)
    assert (summary["tensors"], summary["prvr_tensors"]) == TENSORS[fmt]
    assert set(summary["not_used"]) == NOT_USED.get(fmt, set())
    saved = torch.load(out, map_location="cpu", weights_only=False)
    assert {"config", "model", "seed", "imported_from"} <= set(saved)
    assert saved["imported_from"]["format"] == fmt and len(saved["imported_from"]["sha256"]) == 64
    inputs = np.load(DATA / f"{fmt}_scores.npz")
    cfg_eval = saved["config"]["eval"]
    assert (cfg_eval["w_clip"], cfg_eval["w_frame"]) == tuple(inputs["weights"])  # their score weights
    np.testing.assert_allclose(prvr_scores(out, inputs), inputs["scores"], atol=TOLERANCE, rtol=0)


def test_settings_come_from_their_file():
    msc = FORMATS["msc"].read(load_release_file(DATA / FILES["msc"]), DATA)
    overrides, _ = FORMATS["msc"].settings(msc, DATA)
    model = overrides["model"]
    assert (model["input_dim"], model["text_input_dim"], model["hidden"], model["max_query_len"]) == (24, 20, 8, 12)
    assert (model["frame_tokens"], model["clip_tokens"], model["heads"]) == (128, 32, 2)
    assert model["merging"] == {"enabled": True, "stages": [80, 52, 32]}
    assert overrides["eval"] == {"w_clip": 0.4, "w_frame": 0.6}


def test_a_base_config_fills_what_their_file_does_not_say(tmp_path):
    base = merge(Config(), {"eval": {"w_clip": 0.5, "w_frame": 0.5}, "train": {"epochs": 3}})
    import_checkpoint("ms_sl", DATA / FILES["ms_sl"], tmp_path / "m.pt", base_config=base)
    saved = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=False)
    assert (saved["config"]["eval"]["w_clip"], saved["config"]["train"]["epochs"]) == (0.5, 3)
    assert saved["config"]["model"]["clip_tokens"] == 4  # their map_size, not the base's


def _rewrite(tmp_path: Path, fmt: str, change) -> Path:
    """Their file with `change(state_dict)` applied, saved again as plain data (their classes, read
    as stand-ins, become dicts; the optimizer state is left out)."""
    obj = load_release_file(DATA / FILES[fmt])
    key = "state_dict" if "state_dict" in obj else "model"
    change(obj[key])
    plain = {k: dict(v) if isinstance(v, ForeignObject) else v for k, v in obj.items() if k != "optimizer"}
    path = tmp_path / FILES[fmt]
    torch.save(plain, path)
    return path


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prvr: error: "), err
    return err


BAD_FILES = {
    "leftover": (lambda sd: sd.__setitem__("extra_head.weight", torch.zeros(3)), "'extra_head.weight' has no counterpart"),
    "missing": (lambda sd: sd.pop("frame_encoder.output.dense.bias"), "missing tensor 'frame_encoder.output.dense.bias'"),
    "shape": (lambda sd: sd.__setitem__("mapping_linear.1.weight", torch.zeros(32, 31)),
              "'mapping_linear.1.weight' has shape (32, 31)"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_tensor_is_one_line_naming_it(case, tmp_path, capsys):
    change, expected = BAD_FILES[case]
    path = _rewrite(tmp_path, "ms_sl", change)
    err = _one_line_error(capsys, ["import-checkpoint", "--format", "ms_sl", str(path), "--out", str(tmp_path / "m.pt")])
    assert expected in err and str(path) in err
    assert not (tmp_path / "m.pt").exists()


def test_a_data_parallel_prefix_is_stripped(tmp_path):
    def prefix(sd):
        items = list(sd.items())
        sd.clear()
        sd.update({f"module.{k}": v for k, v in items})
    path = _rewrite(tmp_path, "gmmformer_v1", prefix)
    assert import_checkpoint("gmmformer_v1", path, tmp_path / "m.pt")["prvr_tensors"] == TENSORS["gmmformer_v1"][1]


@pytest.mark.parametrize("argv, expected", [
    (["--format", "ms_sl", "README.md"], "not a readable torch checkpoint"),
    (["--format", "ms_sl", "tests/data/released_checkpoints/msc_best.ckpt"], "not a model.ckpt"),
    (["--format", "gmmformer_v2", "tests/data/released_checkpoints/msc_best.ckpt"], "use --format msc"),
    (["--format", "msc", "tests/data/released_checkpoints/gmmformer_v2_best.ckpt"], "use --format gmmformer_v2"),
    (["--format", "ms_sl", "no/such/model.ckpt"], "checkpoint file not found"),
])
def test_a_wrong_file_is_one_line(argv, expected, tmp_path, capsys):
    err = _one_line_error(capsys, ["import-checkpoint", *argv, "--out", str(tmp_path / "m.pt")])
    assert expected in err


def test_a_torch_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save([torch.zeros(2)], path)
    err = _one_line_error(capsys, ["import-checkpoint", "--format", "dl_dkd", str(path), "--out", str(tmp_path / "m.pt")])
    assert "not a model.ckpt" in err


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(PrvrError, match="unknown checkpoint format 'clip4clip'"):
        import_checkpoint("clip4clip", DATA / FILES["ms_sl"], tmp_path / "m.pt")
    result = subprocess.run([sys.executable, "-m", "prvr.cli", "import-checkpoint", "--format", "clip4clip",
                             str(DATA / FILES["ms_sl"]), "--out", str(tmp_path / "m.pt")], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_their_classes_are_never_imported():
    """Their EasyDict and BertAdam schedule come back as stand-ins; no module of theirs is loaded."""
    obj = load_release_file(DATA / FILES["msc"])
    schedule = obj["optimizer"]["param_groups"][0]["schedule"]
    assert type(schedule).__module__ == "foreign.Opts.optimization" and "Opts" not in sys.modules
    cfg = load_release_file(DATA / FILES["ms_sl"])["model_cfg"]
    assert type(cfg).__module__ == "foreign.easydict" and cfg["map_size"] == 4 and "easydict" not in sys.modules
