"""Provenance records: config, seed, code version, input hashes."""
import hashlib
import json

from prvr.config import Config, config_hash
from prvr.provenance import sha256_file, write_provenance


def test_record_has_config_seed_code_and_input_hashes(tmp_path):
    data = tmp_path / "in.txt"
    data.write_bytes(b"hello")
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "x").write_bytes(b"1")
    record = write_provenance(tmp_path / "p.json", Config(), 7, {"data": data, "folder": folder})
    assert json.loads((tmp_path / "p.json").read_text()) == record
    assert record["seed"] == 7 and record["config_sha256"] == config_hash(Config())
    assert record["inputs"]["data"]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert len(record["code"]["source_sha256"]) == 16 and "torch" in record["code"]


def test_directory_hash_changes_with_content(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    before = sha256_file(tmp_path)
    (tmp_path / "a").write_bytes(b"2")
    assert sha256_file(tmp_path) != before


def test_record_names_the_machine_that_made_it(tmp_path):
    """Another CPU rounds differently (its kernels' instruction set) and training amplifies it, so a
    record says which CPU, which kernels torch dispatched to, and which library versions."""
    import os

    import torch

    record = write_provenance(tmp_path / "p.json", Config(), 1, {})
    m = record["machine"]
    assert m["cpu"] and m["cpu_cores"] == os.cpu_count() and m["torch"] == torch.__version__
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["torch_threads"] == torch.get_num_threads() and m["cuda"] == torch.version.cuda
    assert set(m["cpu_flags"]) <= {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile"}
    if torch.backends.mkldnn.is_available():
        assert m["onednn"] and m["onednn"][0].isdigit()
