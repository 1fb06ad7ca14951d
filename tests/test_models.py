"""Model cache: extracted/converted once, checksummed, rebuilt when damaged, never loaded corrupt."""
from __future__ import annotations

import json

from engines.model_store import DETECTOR_FILE, EMBEDDER_FILE, ModelStore, sha256_file


def test_prepare_reports_files_and_checksums(tmp_path):
    files = ModelStore(tmp_path).prepare()
    assert {f.name for f in files} == {DETECTOR_FILE, EMBEDDER_FILE}
    manifest = json.loads((tmp_path / "models" / "manifest.json").read_text())
    for f in files:
        assert f.size > 1_000_000
        assert sha256_file(f.path) == f.sha256 == manifest[f.name]


def test_damaged_file_is_rebuilt(tmp_path):
    store = ModelStore(tmp_path)
    path = store.path(DETECTOR_FILE)
    good = sha256_file(path)
    with open(path, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff" * 64)
    assert sha256_file(path) != good
    assert sha256_file(store.path(DETECTOR_FILE)) == good
    assert not list((tmp_path / "models").glob(".*.tmp"))
