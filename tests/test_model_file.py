"""A bad model file gets one line naming the file and what is wrong (issue 20, finding 9): truncated,
empty, random bytes, a training checkpoint given as the model, a config that does not match its
weights, a missing path, a device that is not there; through `prvr evaluate` too."""
import os

import pytest
import torch

from prvr import cli
from prvr.config import Config, to_dict
from prvr.errors import PrvrError
from prvr.models import create_model
from prvr.training.model_file import model_from_saved, read_model_file


def _model_pt(tmp_path, **model):
    cfg = Config()
    saved = {"config": to_dict(cfg), "model": create_model(cfg.model).state_dict(), "seed": 1}
    saved["config"]["model"].update(model)
    path = tmp_path / "model.pt"
    torch.save(saved, path)
    return path


def test_a_good_model_file_loads(tmp_path):
    path = _model_pt(tmp_path)
    model, cfg = model_from_saved(read_model_file(path), str(path), "cpu")
    assert not model.training and cfg.model.name == Config().model.name


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_a_damaged_file_is_one_line_naming_it(tmp_path, damage):
    good = _model_pt(tmp_path).read_bytes()
    bad = tmp_path / "t.pt"
    bad.write_bytes({"truncated": good[:len(good) // 2], "empty": b"", "random": os.urandom(4096)}[damage])
    with pytest.raises(PrvrError, match=rf"^{bad}: not a readable model file") as err:
        read_model_file(bad)
    assert "\n" not in str(err.value)


def test_a_checkpoint_given_as_the_model_says_so(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "optimizer": {}, "epoch": 3}, path)
    with pytest.raises(PrvrError, match="a training checkpoint .* give the run's model.pt"):
        read_model_file(path)


def test_a_missing_path_and_a_folder(tmp_path):
    with pytest.raises(PrvrError, match="model file not found"):
        read_model_file(tmp_path / "nope.pt")
    with pytest.raises(PrvrError, match="is a directory"):
        read_model_file(tmp_path)


def test_a_config_that_does_not_match_its_weights(tmp_path):
    path = _model_pt(tmp_path, hidden=2 * Config().model.hidden)
    with pytest.raises(PrvrError, match=rf"^{path}: its saved config does not match its weights"):
        model_from_saved(read_model_file(path), str(path), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: cuda is a device that exists")
def test_cuda_without_a_gpu_is_one_line(tmp_path):
    path = _model_pt(tmp_path)
    with pytest.raises(PrvrError, match=rf"^{path}: cannot put the model on device 'cuda'"):
        model_from_saved(read_model_file(path), str(path), "cuda")


def test_prvr_evaluate_on_a_truncated_model_prints_one_line(tmp_path, capsys):
    bad = tmp_path / "t.pt"
    bad.write_bytes(_model_pt(tmp_path).read_bytes()[:500])
    code = cli.main(["evaluate", "--model", str(bad), "--data", str(tmp_path), "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and str(bad) in err and "Traceback" not in err


def test_features_of_another_dimension_name_the_model_and_the_files(tmp_path):
    """A model trained on 64-dimensional features evaluated on 8-dimensional ones: one line naming
    the model and both feature files, not "frame_feats: expected (B, Nf, 64)" alone."""
    import numpy as np

    from prvr.stages import evaluate_run
    from prvr.store.feature_store import write_features

    rng = np.random.default_rng(0)
    write_features(tmp_path / "video.h5", [(f"v{i}", rng.normal(size=(6, 8)).astype(np.float32)) for i in range(3)])
    write_features(tmp_path / "text.h5", [(f"v{i}#enc#0", rng.normal(size=(4, 8)).astype(np.float32)) for i in range(3)])
    (tmp_path / "split.txt").write_text("".join(f"v{i}#enc#0 caption\n" for i in range(3)))
    model = _model_pt(tmp_path)  # input_dim 64, the default
    with pytest.raises(PrvrError, match=rf"^{model} does not fit {tmp_path / 'video.h5'} / {tmp_path / 'text.h5'}: "):
        evaluate_run(model, tmp_path / "split.txt", tmp_path / "video.h5", tmp_path / "text.h5", tmp_path / "m.json")


def test_clean_stale_lists_then_removes_only_set_aside_checkpoints(tmp_path, capsys):
    from prvr.training.checkpoint import set_aside

    run = tmp_path / "results/demo/runs/baseline/seed1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints/last.pt").write_bytes(b"x" * 1000)
    stale = set_aside(run / "checkpoints", "made by other inputs: video_feats sha256 changed")
    (run / "checkpoints").mkdir()  # the live one, kept
    (run / "checkpoints.stale-x").mkdir()  # no STALE.txt: not ours, kept
    assert cli.main(["clean-stale", "--results", str(tmp_path / "results"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {stale}" in out and "video_feats sha256 changed" in out and stale.exists()
    assert cli.main(["clean-stale", "--results", str(tmp_path / "results")]) == 0
    assert not stale.exists() and (run / "checkpoints").exists() and (run / "checkpoints.stale-x").exists()
