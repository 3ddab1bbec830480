"""Training loop: determinism, resume after an interruption, early stopping, model.pt round trip."""

import h5py
import pytest
import torch

from prvr.config import Config, merge
from prvr.training.trainer import TrainData, load_trained, train

TINY = {"model": {"input_dim": 8, "hidden": 16, "heads": 2, "frame_tokens": 6, "clip_tokens": 3, "dropout": 0.1},
        "train": {"epochs": 4, "batch_size": 4, "early_stop": 10, "num_threads": 1}}


# `data`: the learnable training set of tests/conftest.py


def _cfg(loss=None, **train):
    return merge(Config(), {**TINY, "train": {**TINY["train"], **train}, "loss": loss or {}})


def interrupted_run(monkeypatch, cfg, seed, data, out_dir, at_epoch=2):
    """Train until epoch `at_epoch` starts, then die as a kill would (KeyboardInterrupt)."""
    import prvr.training.trainer as trainer
    real_epoch = trainer.train_epoch

    def dying(model, loss_fn, loader, optimizer, scheduler, epoch, cfg, seed):
        if epoch == at_epoch:
            raise KeyboardInterrupt
        return real_epoch(model, loss_fn, loader, optimizer, scheduler, epoch, cfg, seed)
    monkeypatch.setattr(trainer, "train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, seed, data, out_dir)
    monkeypatch.setattr(trainer, "train_epoch", real_epoch)


def test_same_seed_same_weights_and_log(tmp_path, data):
    a = train(_cfg(), 3, data, tmp_path / "a")
    b = train(_cfg(), 3, data, tmp_path / "b")
    assert a == b
    assert (tmp_path / "a/train_log.jsonl").read_text() == (tmp_path / "b/train_log.jsonl").read_text()
    wa = torch.load(tmp_path / "a/model.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b/model.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train(_cfg(), 4, data, tmp_path / "c")
    wc = torch.load(tmp_path / "c/model.pt", weights_only=False)["model"]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("loss", [None, {"cbva": {"enabled": True, "head": "linear"}}],
                         ids=["baseline", "cbva_head"])
def test_resume_is_exact_when_interrupted(tmp_path, data, monkeypatch, loss):
    """Kill training during epoch 2; the rerun continues from last.pt and ends with the same weights
    (the model's and the loss's own: CBVA's projection head)."""
    train(_cfg(loss), 6, data, tmp_path / "full")
    interrupted_run(monkeypatch, _cfg(loss), 6, data, tmp_path / "cut")
    assert not (tmp_path / "cut/model.pt").exists()
    train(_cfg(loss), 6, data, tmp_path / "cut")
    assert (tmp_path / "cut/train_log.jsonl").read_text() == (tmp_path / "full/train_log.jsonl").read_text()
    full = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=False)
    cut = torch.load(tmp_path / "cut/checkpoints/last.pt", weights_only=False)
    for part in ("model", "loss"):
        assert all(torch.equal(full[part][k], cut[part][k]) for k in full[part])
    assert ("head.weight" in str(list(full["loss"]))) == (loss is not None)


def test_checkpoint_of_another_seed_is_set_aside(tmp_path, data, capsys):
    train(_cfg(epochs=1), 1, data, tmp_path / "r")
    train(_cfg(epochs=1), 2, data, tmp_path / "r")
    assert "not resuming" in capsys.readouterr().out
    assert "another seed" in (tmp_path / "r/checkpoints.stale-1/STALE.txt").read_text()
    train(_cfg(epochs=1), 2, data, tmp_path / "clean")
    assert (tmp_path / "r/train_log.jsonl").read_text() == (tmp_path / "clean/train_log.jsonl").read_text()


def test_changed_input_byte_starts_over(tmp_path, data, monkeypatch, capsys):
    """Interrupted run, then one byte of an input file changes: the rerun must not continue the old
    checkpoint (issue 9: a stale resume gave the old weights under new provenance)."""
    import shutil
    from prvr.training.trainer import TrainData
    local = TrainData(*(shutil.copy(p, tmp_path / p.name) for p in vars(data).values()))
    interrupted_run(monkeypatch, _cfg(), 3, local, tmp_path / "run")
    with h5py.File(local.text_feats, "r+") as store:  # one caption token moves a little
        first = sorted(store)[0]
        values = store[first][...]
        values[0, 0] += 0.5
        store[first][...] = values
    capsys.readouterr()
    train(_cfg(), 3, local, tmp_path / "run")
    out = capsys.readouterr().out
    assert "not resuming" in out and "another text_feats" in out and "resuming after" not in out
    train(_cfg(), 3, local, tmp_path / "fresh")
    assert (tmp_path / "run/train_log.jsonl").read_text() == (tmp_path / "fresh/train_log.jsonl").read_text()
    assert sorted(p.name for p in tmp_path.glob("run/checkpoints*")) == ["checkpoints", "checkpoints.stale-1"]


def test_only_training_settings_decide_a_resume(tmp_path, data, monkeypatch, capsys):
    """Keys that do not change training (seeds list, analysis, clip batch size) resume the checkpoint;
    a model-selection key (eval.w_clip) sets it aside and the log names the key."""
    interrupted_run(monkeypatch, _cfg(), 3, data, tmp_path / "run")
    unrelated = merge(_cfg(), {"seeds": [3, 4], "analysis": {"tsne_seed": 5}, "clip": {"batch_size": 3}})
    interrupted_run(monkeypatch, unrelated, 3, data, tmp_path / "run", at_epoch=3)
    assert "resuming after epoch 1" in capsys.readouterr().out
    train(merge(_cfg(), {"eval": {"w_clip": 0.5}}), 3, data, tmp_path / "run")
    out = capsys.readouterr().out
    assert "not resuming" in out and "other training settings (eval.w_clip)" in out
    assert "eval.w_clip" in (tmp_path / "run/checkpoints.stale-1/STALE.txt").read_text()


def test_unreadable_checkpoint_is_set_aside(tmp_path, data, capsys):
    (tmp_path / "r/checkpoints").mkdir(parents=True)
    (tmp_path / "r/checkpoints/last.pt").write_bytes(b"not a checkpoint")
    train(_cfg(epochs=1), 1, data, tmp_path / "r")
    assert "cannot read checkpoint" in capsys.readouterr().out
    assert (tmp_path / "r/model.pt").exists()


def test_early_stopping_and_model_round_trip(tmp_path, data, monkeypatch):
    """early_stop=2 (authors' rule): the 3rd epoch in a row without a better val SumR is the last."""
    import prvr.training.trainer as trainer
    sumr = iter([10.0, 9.0, 10.0, 8.0, 50.0, 60.0])  # never beaten after epoch 0 until too late
    monkeypatch.setattr(trainer, "evaluate_split", lambda *args: {"SumR": next(sumr)})
    summary = train(_cfg(epochs=6, early_stop=2), 1, data, tmp_path / "r")
    assert summary["best_epoch"] == 0 and summary["epochs_run"] == 4
    model, cfg = load_trained(tmp_path / "r/model.pt")
    assert cfg.model.hidden == 16 and not model.training


def test_val_sharing_a_training_video_is_refused(tmp_path, data):
    """Model selection on a video the model trains on would flatter val SumR: an error naming both files."""
    from prvr.errors import AnnotationError
    leaky = tmp_path / "val.txt"
    leaky.write_text(data.val_captions.read_text() + data.train_captions.read_text().splitlines(True)[0])
    with pytest.raises(AnnotationError, match=r"val.txt: video 'train0' is also in .*train.txt"):
        train(_cfg(epochs=1), 1, TrainData(data.train_captions, leaky, data.video_feats, data.text_feats),
              tmp_path / "r")


def test_evaluation_runs_on_the_asked_device_not_the_training_one(tmp_path, data):
    """A model trained with train.device cuda is evaluated where eval.device says (default cpu): the
    rule asked SLURM for no GPU (issue 9: it was rebuilt on cuda on a CPU node)."""
    from prvr.stages import evaluate_run
    train(_cfg(epochs=1), 1, data, tmp_path / "r")
    saved = torch.load(tmp_path / "r/model.pt", weights_only=False)
    saved["config"]["train"]["device"] = "cuda"  # as if trained on a GPU node
    torch.save(saved, tmp_path / "gpu_model.pt")
    record = evaluate_run(tmp_path / "gpu_model.pt", data.val_captions, data.video_feats, data.text_feats,
                          tmp_path / "metrics.json", split="val")
    assert 0 < record["metrics"]["SumR"] <= 400


def test_a_train_split_of_one_video_is_refused_naming_the_file(tmp_path, data):
    """One video has no other to be contrasted with: it once trained without a word."""
    from prvr.errors import AnnotationError
    one = tmp_path / "train.txt"
    one.write_text("".join(data.train_captions.read_text().splitlines(True)[:2]))  # train0's two captions
    small = TrainData(one, data.val_captions, data.video_feats, data.text_feats)
    with pytest.raises(AnnotationError) as info:
        train(_cfg(), 1, small, tmp_path / "run")
    assert str(info.value).startswith(f"{one}: the train split has 1 video(s); training needs at least 2")
    assert not (tmp_path / "run/model.pt").exists()


def test_training_does_not_import_dynamo_and_stays_deterministic(data, tmp_path):
    """The optimiser's and the determinism switch's imports of torch._dynamo (seconds of every training
    process) are avoided; the deterministic flag is still set, warn-only."""
    import subprocess
    import sys
    code = ("import sys, torch\n"
            "from pathlib import Path\n"
            "from prvr.config import Config, merge\n"
            "from prvr.training.trainer import TrainData, train\n"
            f"cfg = merge(Config(), {TINY!r})\n"
            f"train(merge(cfg, {{'train': {{'epochs': 1}}}}), 1, TrainData(*map(Path, {[str(p) for p in vars(data).values()]!r})), "
            f"Path({str(tmp_path / 'run')!r}))\n"
            "print('dynamo', 'torch._dynamo' in sys.modules, torch.are_deterministic_algorithms_enabled(), "
            "torch.is_deterministic_algorithms_warn_only_enabled())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "dynamo False True True"
