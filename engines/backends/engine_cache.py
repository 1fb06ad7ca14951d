"""TensorRT engine profiles and the on-disk engine cache: pure logic, no TensorRT import.

A serialized TensorRT engine is only valid for the exact ONNX file, TensorRT version, GPU model
(compute capability) and build options it came from; loading a foreign one fails at best and gives
wrong numbers at worst. So every engine is stored under a key hashed from all of those, with a sidecar
JSON listing them and the engine file's own sha256. ``lookup`` returns an engine only when the sidecar
matches the wanted key field by field and the bytes are intact; anything else is rebuilt, never loaded.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from engines.files import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the way engines are built changes


@dataclass(frozen=True)
class EngineProfile:
    """One optimization profile: dynamic batch (min, opt, max) and fixed C, H, W of the single input."""

    min_batch: int
    opt_batch: int
    max_batch: int
    chw: tuple[int, int, int]

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((b, *self.chw) for b in (self.min_batch, self.opt_batch, self.max_batch))  # type: ignore[return-value]


def profile_for(kind: str, *, max_batch: int, input_hw: tuple[int, int], opt_batch: int | None = None) -> EngineProfile:
    """The profile for ``kind`` ('detector' or 'embedder'): min 1, opt = the usual batch, max = the largest,
    and the model's one fixed input size ``input_hw`` (given by the caller, who owns the model).

    The detector gets one fixed letterboxed input size so RetinaFace's shape arithmetic (FPN up-sampling)
    folds into constants at build time, so it must divide by the largest stride (32).
    """
    if kind not in ("detector", "embedder"):
        raise ValueError(f"unknown model kind {kind!r}")
    if max_batch < 1:
        raise ValueError(f"max batch must be >= 1, got {max_batch}")
    opt = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise ValueError(f"opt batch {opt} must be within 1..{max_batch}")
    h, w = input_hw
    if kind == "detector" and (h % 32 or w % 32 or h < 32 or w < 32):
        raise ValueError(f"detector input {h}x{w} must be positive multiples of 32 (RetinaFace strides)")
    return EngineProfile(1, opt, max_batch, (3, h, w))


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two keys are equal only if an engine may be shared between them."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    precision: str  # fp16 | fp32
    profile: EngineProfile
    cache_version: int = CACHE_VERSION

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"]["chw"] = list(self.profile.chw)
        return d


class EngineCache:
    """``<dir>/<model>-<digest[:20]>.engine`` plus ``.json``; files 0600, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def paths(self, model: str, key: EngineKey) -> tuple[Path, Path]:
        stem = f"{model}-{key.digest()[:20]}"
        return self.dir / f"{stem}.engine", self.dir / f"{stem}.json"

    def lookup(self, model: str, key: EngineKey) -> bytes | None:
        """The cached engine for exactly ``key``, or None (missing, stale, foreign or damaged)."""
        engine, meta = self.paths(model, key)
        if not engine.is_file() or not meta.is_file():
            return None
        try:
            info = json.loads(meta.read_text())
            data = engine.read_bytes()
        except (OSError, ValueError) as exc:
            log.warning("engine cache %s unreadable (%s); rebuilding", engine.name, exc)
            return None
        if info.get("key") != key.to_dict():
            log.warning("engine %s was built for something else (%s); rebuilding", engine.name,
                        _first_difference(info.get("key"), key.to_dict()))
            return None
        if hashlib.sha256(data).hexdigest() != info.get("engine_sha256"):
            log.warning("engine %s is damaged (checksum mismatch); rebuilding", engine.name)
            return None
        return data

    def store(self, model: str, key: EngineKey, data: bytes, build_seconds: float) -> Path:
        engine, meta = self.paths(model, key)
        atomic_write_bytes(engine, data, mode=0o600)
        info = {"key": key.to_dict(), "engine_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                "build_seconds": round(build_seconds, 2)}
        atomic_write_bytes(meta, json.dumps(info, indent=1).encode(), mode=0o600)
        return engine


def _first_difference(have: object, want: dict) -> str:
    if not isinstance(have, dict):
        return "no key recorded"
    for k, v in want.items():
        if have.get(k) != v:
            return f"{k}: cached {have.get(k)!r}, wanted {v!r}"
    return "extra fields"
