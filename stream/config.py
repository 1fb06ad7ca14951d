"""The whole configuration as one pydantic model, validated before anything starts.

Why up front: a typo in a camera URL or a negative batch size should stop ``facewatch run`` with one
line naming the field, not crash a stage minutes later. Unknown keys are errors for the same reason.
``config/default.yaml`` documents every field; it is loaded as the base and user files override it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_DEFAULT = Path(__file__).resolve().parent.parent / "config" / "default.yaml"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EngineConfig(_Strict):
    engine: Literal["auto", "onnxruntime", "tensorrt"] = "auto"
    threads: int = Field(0, ge=0, le=256, description="ONNX Runtime intra-op threads; 0 = library default")
    precision: Literal["fp16", "fp32"] = "fp16"
    detector_input: tuple[int, int] = (640, 640)


class DetectorConfig(_Strict):
    score_threshold: float = Field(0.8, gt=0, lt=1)
    nms_threshold: float = Field(0.4, gt=0, lt=1)
    max_side: int = Field(1920, ge=64, le=16384)


class QualityConfig(_Strict):
    min_face: int = Field(40, ge=0, description="min(width, height) of a face box in pixels")
    min_det_score: float = Field(0.9, ge=0, le=1)
    min_sharpness: float = Field(15.0, ge=0, description="variance of the Laplacian of the chip")


class MatchingConfig(_Strict):
    gallery: Path = Path("gallery")
    threshold: float = Field(..., ge=-1, le=1, description="cosine similarity to accept an identity")
    threshold_far: float | None = Field(None, gt=0, lt=1)
    threshold_source: str = ""
    top_k: int = Field(20, ge=1, le=1000)
    votes: int = Field(2, ge=1, description="matching embeddings of a track needed before an identity alert")
    max_embeddings_per_track: int = Field(5, ge=1, le=100)
    reload_interval_s: float = Field(2.0, gt=0)


class CameraConfig(_Strict):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    source: str | int
    fps: float = Field(5.0, gt=0, le=120, description="frames per second processed; the rest are skipped")
    min_face: int | None = Field(None, ge=0)
    alert_on: Literal["watchlist", "unknown", "both"] = "watchlist"
    enabled: bool = True
    replay: bool = Field(False, description="play a video file as a live camera: at its own fps, looping")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | int) -> str | int:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("a webcam index must be >= 0")
            return v
        if not v.strip():
            raise ValueError("empty source")
        if "://" in v and not v.startswith(("rtsp://", "rtsps://", "http://", "https://", "file://")):
            raise ValueError(f"unsupported source scheme in {v.split('://')[0]!r}")
        return v


class BatchConfig(_Strict):
    max_batch: int = Field(8, ge=1, le=1024)
    max_wait_ms: float = Field(10.0, ge=0, le=10_000)


class DetectBatchConfig(BatchConfig):
    live_budget_ms: float = Field(50.0, gt=0, le=10_000,
                                  description="live: a batch is cut to what the detector processes in this time")


class WebhookConfig(_Strict):
    url: str = Field(..., pattern=r"^https?://")
    secret_env: str | None = Field(None, description="name of the env var holding the HMAC-SHA256 key")
    timeout_s: float = Field(3.0, gt=0)
    retries: int = Field(5, ge=0)
    backoff_s: float = Field(0.5, gt=0)


class SinksConfig(_Strict):
    console: bool = True
    jsonl: Path | None = None
    webhook: WebhookConfig | None = None
    zmq_pub: str | None = None


class AlertConfig(_Strict):
    cooldown_s: float = Field(30.0, ge=0)
    store: Path = Path("events.sqlite")
    snapshots: Path = Path("snapshots")
    sinks: SinksConfig = SinksConfig()


class MetricsConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    log_interval_s: float = Field(30.0, gt=0)


class SocketsConfig(_Strict):
    """ZeroMQ endpoints between stages. ipc:// under ``run_dir`` by default; tcp:// allowed."""

    run_dir: Path | None = None
    frames: str | None = None
    faces: str | None = None
    embeddings: str | None = None
    decisions: str | None = None
    control: str | None = None

    @field_validator("frames", "faces", "embeddings", "decisions", "control")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("ipc://", "tcp://", "inproc://")):
            raise ValueError("endpoint must start with ipc://, tcp:// or inproc://")
        return v


class SupervisorConfig(_Strict):
    heartbeat_timeout_s: float = Field(10.0, gt=0)
    restart_backoff_s: float = Field(1.0, gt=0)


class Config(_Strict):
    home: Path | None = Field(None, description="FACEWATCH_HOME: model cache; default user data dir")
    data_dir: Path = Field(Path("."), description="base of the relative paths below; default: the working dir")
    engines: EngineConfig = EngineConfig()
    detector: DetectorConfig = DetectorConfig()
    quality: QualityConfig = QualityConfig()
    matching: MatchingConfig
    cameras: list[CameraConfig] = []
    detect_batch: DetectBatchConfig = DetectBatchConfig()
    embed_batch: BatchConfig = BatchConfig(max_batch=32, max_wait_ms=10.0)
    alerts: AlertConfig = AlertConfig()
    metrics: MetricsConfig = MetricsConfig()
    sockets: SocketsConfig = SocketsConfig()
    supervisor: SupervisorConfig = SupervisorConfig()

    @model_validator(mode="after")
    def _unique_cameras(self) -> "Config":
        names = [c.name for c in self.cameras]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"camera names must be unique: {sorted(dup)}")
        return self

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config are relative to ``data_dir``."""
        return path if path.is_absolute() else (self.data_dir / path)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def default_data() -> dict[str, Any]:
    return _read_yaml(REPO_DEFAULT)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults from ``config/default.yaml``, overridden by ``path`` and then ``overrides``."""
    data = default_data()
    src = "config/default.yaml"
    if path is not None:
        p = Path(path)
        data = _merge(data, _read_yaml(p))
        src = str(p)
    if overrides:
        data = _merge(data, overrides)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{src}: {where}: {first['msg']}{more}") from None
    if cfg.home is not None:
        os.environ.setdefault("FACEWATCH_HOME", str(cfg.home))
    return cfg
