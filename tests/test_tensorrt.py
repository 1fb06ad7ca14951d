"""The GPU path: pure logic everywhere (cache keys, profiles, fallback and errors); parity on a real GPU only."""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from engines.backends import registry as backend_mod
from engines.backends.base import BackendUnavailable
from engines.backends.engine_cache import EngineCache, EngineKey, profile_for
from engines.backends.registry import resolve_backend, tensorrt_available
from engines.factory import detector_profile, embedder_profile

TRT_OK, TRT_WHY = tensorrt_available()
needs_gpu = pytest.mark.skipif(not TRT_OK, reason=f"TensorRT path not runnable here: {TRT_WHY}")


def key(**change) -> EngineKey:
    base = EngineKey("ab" * 32, "10.3.0", "NVIDIA H100 80GB HBM3", "9.0", "fp16",
                     embedder_profile(128, opt_batch=32))
    return dataclasses.replace(base, **change)


# ----------------------------------------------------------------------------- profiles
def test_profiles_min_one_opt_configured_max_and_fixed_detector_input():
    p = detector_profile(8, 4, (640, 640))
    assert p.shapes() == ((1, 3, 640, 640), (4, 3, 640, 640), (8, 3, 640, 640))
    e = embedder_profile(32)
    assert e.shapes()[0] == (1, 3, 150, 150) and e.opt_batch == 32 and e.max_batch == 32
    with pytest.raises(ValueError, match="opt batch"):
        profile_for("embedder", max_batch=8, opt_batch=16, input_hw=(150, 150))
    with pytest.raises(ValueError, match="multiples of 32"):
        detector_profile(8, 8, (640, 630))
    with pytest.raises(ValueError, match="max batch"):
        embedder_profile(0)
    with pytest.raises(ValueError, match="unknown model kind"):
        profile_for("landmarks", max_batch=1, input_hw=(112, 112))


# ----------------------------------------------------------------------------- cache keys
def test_engine_key_changes_with_everything_an_engine_depends_on():
    k = key()
    assert k.digest() == key().digest()  # stable
    changes = [dict(onnx_sha256="cd" * 32), dict(trt_version="10.4.0"), dict(gpu_name="NVIDIA H200"),
               dict(compute_capability="8.9"), dict(precision="fp32"),
               dict(profile=embedder_profile(64, opt_batch=32)),
               dict(profile=embedder_profile(128, opt_batch=8))]
    digests = {key(**c).digest() for c in changes}
    assert len(digests) == len(changes) and k.digest() not in digests


def test_cache_returns_only_an_exact_intact_engine(tmp_path, caplog):
    cache = EngineCache(tmp_path)
    k = key()
    assert cache.lookup("emb", k) is None  # nothing built yet
    path = cache.store("emb", k, b"engine-bytes", 12.5)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert cache.lookup("emb", k) == b"engine-bytes"
    # stale: another TensorRT version or GPU never finds this engine
    assert cache.lookup("emb", key(trt_version="10.4.0")) is None
    assert cache.lookup("emb", key(gpu_name="NVIDIA A100", compute_capability="8.0")) is None
    # foreign: an engine file put under this key's name but recorded for another key
    other = key(precision="fp32")
    cache.store("emb", other, b"fp32-engine", 1.0)
    eng_o, meta_o = cache.paths("emb", other)
    eng, meta = cache.paths("emb", k)
    meta.write_text(meta_o.read_text())
    with caplog.at_level(logging.WARNING):
        assert cache.lookup("emb", k) is None
    assert "precision" in caplog.text
    # damaged: bytes that do not match the recorded checksum
    cache.store("emb", k, b"engine-bytes", 12.5)
    eng.write_bytes(b"engine-bytez")
    assert cache.lookup("emb", k) is None
    meta.write_text("{not json")
    assert cache.lookup("emb", k) is None
    info = json.loads(meta_o.read_text())
    assert info["bytes"] == len(b"fp32-engine") and info["key"]["precision"] == "fp32"


# ----------------------------------------------------------------------------- choosing a backend
def test_auto_falls_back_to_onnxruntime_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(backend_mod, "tensorrt_available", lambda: (False, "tensorrt does not import (test)"))
    with caplog.at_level(logging.INFO, logger="engines.backends.registry"):
        assert resolve_backend("auto") == "onnxruntime"
    assert "onnxruntime" in caplog.text and "tensorrt does not import (test)" in caplog.text
    with pytest.raises(BackendUnavailable, match="requested but is unavailable: tensorrt does not import"):
        resolve_backend("tensorrt")
    assert resolve_backend("onnxruntime") == "onnxruntime"
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_backend("cuda")


@pytest.mark.skipif(TRT_OK, reason="this machine can run TensorRT")
def test_asking_for_tensorrt_without_it_is_a_clear_error(tmp_path):
    from stream.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("engines: {engine: tensorrt}\n")
    res = CliRunner().invoke(main, ["-c", str(cfg), "models", "build-engines"])
    assert res.exit_code == 2
    assert "tensorrt" in res.stderr and "unavailable" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- on a GPU
@pytest.fixture(scope="module")
def onnx_paths(fw_home):
    from engines.model_store import DETECTOR_FILE, EMBEDDER_FILE, ModelStore

    store = ModelStore()
    store.prepare()
    return store.path(DETECTOR_FILE), store.path(EMBEDDER_FILE)


@pytest.mark.gpu
@needs_gpu
def test_gpu_embeddings_match_onnxruntime_in_fp16(onnx_paths, tmp_path, analyzer, astronaut_bgr):
    from engines.backends.registry import create_backend
    from engines.embedder import Embedder

    face = analyzer.analyze(astronaut_bgr)[0]
    chip = Embedder.align(astronaut_bgr, face.landmarks)
    rng = np.random.default_rng(0)
    chips = np.stack([chip] + [np.clip(chip.astype(int) + rng.integers(-20, 20, chip.shape), 0, 255).astype(np.uint8)
                               for _ in range(39)])
    cpu = Embedder(create_backend(onnx_paths[1], "onnxruntime")).embed(chips)
    trt_backend = create_backend(onnx_paths[1], "tensorrt", trt_options={
        "precision": "fp16", "profile": embedder_profile(32, opt_batch=8), "cache_dir": tmp_path})
    gpu = Embedder(trt_backend, max_batch=32).embed(chips)  # 40 chips: a full batch of 32, then 8
    cos = np.sum(cpu * gpu, axis=1)
    assert cos.min() >= 0.999, cos.min()
    assert trt_backend.build_seconds is not None
    again = create_backend(onnx_paths[1], "tensorrt", trt_options={
        "precision": "fp16", "profile": embedder_profile(32, opt_batch=8), "cache_dir": tmp_path})
    assert again.build_seconds is None  # loaded from the cache, not rebuilt


@pytest.mark.gpu
@needs_gpu
def test_gpu_detections_match_onnxruntime_within_one_pixel(onnx_paths, tmp_path, astronaut_bgr):
    from engines.backends.registry import create_backend
    from engines.detector import Detector

    hw = (640, 640)
    params = dict(score_threshold=0.8, nms_threshold=0.4, max_side=1920, fixed_input=hw)
    cpu = Detector(create_backend(onnx_paths[0], "onnxruntime"), **params)
    gpu = Detector(create_backend(onnx_paths[0], "tensorrt", trt_options={
        "precision": "fp16", "profile": detector_profile(4, 1, hw),
        "cache_dir": tmp_path}), **params)
    frames = [astronaut_bgr, np.ascontiguousarray(astronaut_bgr[:, ::-1])]
    for a, b in zip(cpu.detect_batch(frames), gpu.detect_batch(frames)):
        assert len(a) == len(b) >= 1
        assert np.abs(a.boxes - b.boxes).max() <= 1.0
        assert np.abs(a.landmarks - b.landmarks).max() <= 1.0
