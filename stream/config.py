"""The whole configuration as one pydantic model, validated before anything starts.

Why up front: a typo in a camera URL or a negative batch size should stop ``facewatch run`` with one
line naming the field, not crash a stage minutes later. Unknown keys are errors for the same reason.

This model is the one source of every default. ``config/default.yaml`` and the README's configuration
table are generated from it (``python tools/gen_config_docs.py``) and a test checks they are current,
so the defaults ship inside the package and a wheel install needs no file from the source tree.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator, model_validator

from engines.backends.base import BackendName
from engines.profiles import ProfileName, profile


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EngineConfig(_Strict):
    """Inference backends (``engines/backends``)."""

    engine: BackendName = Field("auto", description="auto = TensorRT when it imports and a GPU is present, else ONNX Runtime")
    threads: int = Field(0, ge=0, le=256, description="ONNX Runtime intra-op threads per model; 0 = automatic: half the cores (at least 2, at most all) in a live pipeline, all cores for recorded video and photos")
    precision: Literal["fp16", "fp32"] = Field("fp16", description="TensorRT only: engine precision")
    detector_input: tuple[int, int] = Field((640, 640), description="TensorRT only: fixed letterboxed detector input (H, W), multiples of 32")


class RetinaFaceConfig(_Strict):
    """RetinaFace MobileNet-0.25 (the default): 5 landmarks, small faces found at native resolution."""

    model: Literal["retinaface"] = Field("retinaface", description="the face detector: retinaface (default) | mediapipe (BlazeFace, the mediapipe extra; README Models says when to choose it)")
    score_threshold: float = Field(0.8, gt=0, lt=1, description="detections below this score are dropped (dev detection set: 18/18 faces, 0 false positives at 0.7-0.9)")
    nms_threshold: float = Field(0.4, gt=0, lt=1, description="IoU above which overlapping detections are merged (non-maximum suppression)")
    max_side: int = Field(1920, ge=64, le=16384, description="larger images are downscaled for detection; boxes are mapped back")


class MediaPipeConfig(_Strict):
    """MediaPipe BlazeFace (``pip install 'facewatch[mediapipe]'``, then ``facewatch models prepare --detector
    mediapipe``): faster, for faces that fill a good part of the frame (doors, kiosks)."""

    model: Literal["mediapipe"] = Field("mediapipe", description="the face detector: retinaface (default) | mediapipe")
    range: Literal["full", "short"] = Field("full", description="full = faces up to ~5 m from the camera; short = close faces only (within ~2 m: doors, kiosks)")
    score_threshold: float = Field(0.6, gt=0, lt=1, description="detections below this score are dropped (see README Models for the rates measured at it)")
    nms_threshold: float = Field(0.3, gt=0, lt=1, description="IoU above which overlapping detections are merged")


def _detector_tag(value: Any) -> str:
    """The ``model`` of a detector section; a section that names none is RetinaFace (configs from before the choice)."""
    if isinstance(value, dict):
        return str(value.get("model", "retinaface"))
    return str(getattr(value, "model", "retinaface"))


#: ``detector``: one section per model, chosen by ``detector.model`` (a discriminated union, as Frigate's detectors).
DetectorConfig = Annotated[Union[Annotated[RetinaFaceConfig, Tag("retinaface")], Annotated[MediaPipeConfig, Tag("mediapipe")]],
                           Discriminator(_detector_tag)]


class QualityConfig(_Strict):
    """Gate before embedding in the pipeline; gated faces are counted in the metrics."""

    min_face: int = Field(40, ge=0, description="px, min(width, height) of a face box; faces under ~100 px recognise less well")
    min_det_score: float = Field(0.9, ge=0, le=1, description="detection score a face needs to be embedded (only a value above detector.score_threshold has an effect)")
    min_sharpness: float = Field(15.0, ge=0, description="variance of the Laplacian of the aligned chip (blur)")
    max_clipped: float = Field(0.2, ge=0, le=1, description="fraction of the lower inner face (cheeks, nose, mouth) that may be near black or near white (shadow, glare) and still be embedded; also drops such photos from calibration and evaluation, so the promise is measured on the faces that decide")


class Calibration(_Strict):
    """One calibration: the thresholds, the promise they keep, what backs it, and what it was calibrated for.

    Written whole by ``facewatch calibrate --write``. A threshold belongs to one recognition profile (the
    embedders and fusion weights that make the vectors, ``embedder``) and to one decision rule: a record for
    another profile is refused when the config is loaded, never used.
    """

    profile: ProfileName = Field(..., description="recognition profile the thresholds were calibrated for (fast | accurate | arcface)")
    embedder: str = Field(..., min_length=1, description="profile id of the vectors the thresholds were calibrated on (engines/profiles.py); must match recognition.profile's")
    threshold: float = Field(..., ge=-1, le=1, description="one photo against one enrolled sample (verify, identify, the votes rule): score at or above which it is that person")
    track_threshold: float | None = Field(None, ge=-1, le=1, description="the track rule: cosine of a track's quality-weighted mean embedding with a person's template at or above which the track is that person; null = not calibrated (the track rule is then refused)")
    far: float = Field(..., gt=0, lt=1, description="the claim: false-accept rate per comparison (photos) and per track pass (track rule)")
    far_upper: float | None = Field(None, ge=0, le=1, description="upper end of the exact 95% interval of the per-photo-pair FAR measured at threshold")
    impostors: int | None = Field(None, ge=0, description="impostor photo pairs threshold was calibrated on")
    track_far_upper: float | None = Field(None, ge=0, le=1, description="upper end of the exact 95% interval of the pass FAR measured at track_threshold")
    track_impostors: int | None = Field(None, ge=0, description="impostor passes track_threshold was calibrated on")
    votes_threshold: float | None = Field(None, ge=-1, le=1, description="the votes rule: score at or above which a look of a track votes for a person (>= threshold: the higher of the per-photo threshold and the one calibrated on impostor passes plus its margin); null = threshold (a record from before it)")
    votes_far_upper: float | None = Field(None, ge=0, le=1, description="the votes rule: upper end of the exact 95% interval of the pass FAR measured at votes_threshold (matching.votes of matching.max_embeddings_per_track looks of one person)")
    votes_impostors: int | None = Field(None, ge=0, description="impostor passes the votes rule was measured on")
    gallery_size: int = Field(10, ge=1, description="watchlist size N the thresholds are meant for (FPIR is measured at this N)")
    data: str = Field("", description="how the thresholds were obtained: command, data, measured rates")


class MatchingConfig(_Strict):
    """1:N matching against the gallery and the per-track decision."""

    gallery: Path = Field(Path("gallery"), description="gallery directory (SQLite + HNSW index)")
    calibration: Calibration | None = Field(None, description="the thresholds and their promise (facewatch calibrate --write); null = the shipped calibration of recognition.profile (README Accuracy)")
    top_k: int = Field(20, ge=1, le=1000, description="nearest samples fetched from HNSW, then aggregated per identity (best score)")
    votes: int = Field(1, ge=1, description="rule votes: looks of a track that must reach the votes threshold for one person before an identity alert (calibrate measures exactly this on passes of max_embeddings_per_track looks: with 1, a look-alike's near-copy frames buy it nothing the calibration did not count, and recall at the promise is highest, README Accuracy); rule track: embeddings a track needs before it is decided")
    max_embeddings_per_track: int = Field(10, ge=1, le=100, description="best-quality chips embedded per track, at most one per embed_gap_s: 10 x 0.3 s spans a 3 s pass, so the votes rule sees the later looks of a person turning too; calibrate scores passes of this many looks")
    embed_gap_s: float = Field(0.3, ge=0, le=10, description="s between two embedded chips of one track (frame time): the budget buys different looks of a person, not copies of the first frames; 0 = every frame may be embedded")
    reload_interval_s: float = Field(2.0, gt=0, description="how often the match stage checks the gallery for changes")

    @model_validator(mode="before")
    @classmethod
    def _legacy_threshold(cls, data: Any) -> Any:
        """Configs from before calibration records set ``threshold`` & co. flat in ``matching``: those were dlib
        thresholds for single comparisons, so they become a ``fast`` record without a track threshold."""
        if not isinstance(data, dict) or not any(k in data for k in LEGACY_KEYS):
            return data
        data = dict(data)
        if "calibration" in data:
            raise ValueError(f"matching: give either calibration or the old {', '.join(k for k in LEGACY_KEYS if k in data)}, not both")
        old = {k: data.pop(k) for k in LEGACY_KEYS if k in data}
        if "threshold" not in old:
            raise ValueError(f"matching: {', '.join(old)} without threshold; write a calibration record (facewatch calibrate --write)")
        data["calibration"] = {"profile": "fast", "embedder": profile("fast").id, "threshold": old["threshold"],
                               "far": old.get("threshold_far") or 0.001, "far_upper": old.get("threshold_far_upper"),
                               "impostors": old.get("threshold_impostors"), "gallery_size": old.get("gallery_size", 10),
                               "data": old.get("threshold_source", "matching.threshold (a config from before calibration records)")}
        return data


LEGACY_KEYS = ("threshold", "threshold_far", "threshold_far_upper", "threshold_impostors", "threshold_source", "gallery_size")


class RecognitionConfig(_Strict):
    """Which embedders make a face's vector, and which rule decides a track (README Accuracy)."""

    profile: ProfileName = Field("fast", description="fast = dlib ResNet; accurate = FaceNet 128-d fused with dlib (needs facewatch models prepare --profile accurate); arcface = InsightFace's ArcFace MobileFaceNet, the most accurate, non-commercial licence (needs facewatch models prepare --profile arcface --accept-model-license; README Models)")
    rule: Literal["track", "votes"] = Field("votes", description="votes = matching.votes looks of a track matching one person at the per-photo threshold (its per-track promise measured on impostor passes); track = a track's quality-weighted mean embedding against each person's template, at its own calibrated threshold (README Accuracy: under the margin for unseen people it keeps less recall)")


class CameraConfig(_Strict):
    """One camera (``cameras`` list; see config/example.yaml)."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="unique name: letters, digits, '.', '_', '-'")
    source: str | int = Field(..., description="rtsp:// or http(s):// URL, a video file path, or a webcam index")
    fps: float = Field(5.0, gt=0, le=120, description="frames per second processed; the rest are skipped")
    min_face: int | None = Field(None, ge=0, description="px; overrides quality.min_face for this camera")
    alert_on: Literal["watchlist", "unknown", "both"] = Field("watchlist", description="which decisions raise an alert on this camera")
    enabled: bool = Field(True, description="a disabled camera is not started")
    replay: bool = Field(False, description="play a video file as a live camera: at its own fps, looping")
    unknown_min_face: int | None = Field(None, ge=0, description="px; overrides unknown.min_face for this camera")
    motion_mask: list[list[tuple[float, float]]] = Field(default_factory=list, description="zones where motion is ignored (a clock, a tree, a screen): polygons of (x, y) points as shares of the frame width and height, 0..1, at least 3 points each; faces there are still found by the whole-frame and track detections")

    @field_validator("motion_mask")
    @classmethod
    def _polygons(cls, v: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        for i, poly in enumerate(v):
            if len(poly) < 3:
                raise ValueError(f"polygon {i} has {len(poly)} point(s); a zone needs at least 3")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in poly):
                raise ValueError(f"polygon {i}: points are shares of the frame, 0..1 (x, y)")
        return v

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
    """Batching across cameras: up to ``max_batch`` items or ``max_wait_ms``, whichever comes first."""

    max_batch: int = Field(8, ge=1, le=1024, description="most items in one batch")
    max_wait_ms: float = Field(10.0, ge=0, le=10_000, description="longest wait for a batch to fill after its first item")


class DetectBatchConfig(BatchConfig):
    """Frames batched for the detector; live waiting also stops once every camera has a frame in the batch."""

    live_budget_ms: float = Field(50.0, gt=0, le=10_000, description=(
        "live: a batch is cut to the frames the detector processes in this time (measured cost per frame, at least one), "
        "cameras taking turns; the rest are dropped and counted (dropped_overload). CPU 720p: ~45 ms/frame"))


class EmbedBatchConfig(BatchConfig):
    """Aligned chips batched for the embedder; live waiting also stops when no chip arrived for 2 ms."""

    max_batch: int = Field(32, ge=1, le=1024, description="most chips in one batch")


class WebhookConfig(_Strict):
    """An HTTP POST of each alert's JSON, optionally HMAC-signed; retried as ``alerts.delivery`` says."""

    url: str = Field(..., pattern=r"^https?://", description="receiver URL")
    secret_env: str | None = Field(None, description="name of the env var holding the HMAC-SHA256 key (never the key itself)")
    timeout_s: float = Field(3.0, gt=0, description="per-request timeout")


class DeliveryConfig(_Strict):
    """How sink deliveries are retried. Each delivery is an outbox entry in the event store, so retries survive
    restarts, and each sink retries on its own so a dead receiver never delays another sink or the next alert."""

    backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles each retry up to max_backoff_s")
    max_backoff_s: float = Field(60.0, gt=0, description="longest delay between two tries of one delivery")
    give_up_after_s: float = Field(6 * 3600.0, gt=0, description="a delivery still failing this long after its alert is marked failed (events redeliver resends it)")
    concurrency: int = Field(4, ge=1, le=64, description="deliveries in flight at once, per sink")


class MqttTlsConfig(_Strict):
    """TLS to the broker (paho ``tls_set``); null files = the system CA store."""

    ca_certs: Path | None = Field(None, description="CA bundle that signed the broker's certificate")
    certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    keyfile: Path | None = Field(None, description="client private key (mutual TLS)")
    insecure: bool = Field(False, description="skip the broker hostname check (testing only)")


class MqttConfig(_Strict):
    """MQTT (paho-mqtt 2.x): alerts to ``<prefix>/<camera>/alert`` (QoS ``qos``, retried from the outbox until the
    broker acknowledges them), camera status to ``<prefix>/<camera>/status`` (retained) and ``<prefix>/available``
    (retained ``online``/``offline``, the last will)."""

    host: str = Field("127.0.0.1", description="broker host")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual with TLS)")
    prefix: str = Field("facewatch", min_length=1, pattern=r"^[^#+\x00]+$", description="topic prefix (no MQTT wildcards)")
    client_id: str | None = Field(None, description="MQTT client id; null = facewatch-<hostname>-<pid> (unique per process)")
    username: str | None = Field(None, description="broker user name")
    password_env: str | None = Field(None, description="name of the env var holding the broker password (never the password itself)")
    tls: MqttTlsConfig | None = Field(None, description="{ca_certs, certfile, keyfile, insecure}, or null for plain TCP")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of alerts (status and availability use 1)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive")
    ack_timeout_s: float = Field(5.0, gt=0, description="how long one alert publish may wait for the broker's acknowledgement before the try counts as failed")
    reconnect_min_s: float = Field(1.0, gt=0, description="first reconnect delay; doubles up to reconnect_max_s")
    reconnect_max_s: float = Field(60.0, gt=0, description="longest delay between reconnect attempts")
    discovery: bool = Field(False, description="publish Home Assistant MQTT discovery: one sensor per camera with the last identity seen")
    discovery_prefix: str = Field("homeassistant", min_length=1, pattern=r"^[^#+\x00]+$", description="Home Assistant discovery prefix (no MQTT wildcards)")


class SinksConfig(_Strict):
    """Where alerts go, after the event store."""

    console: bool = Field(True, description="one line per alert on stdout")
    jsonl: Path | None = Field(None, description="path of a JSON-lines file, or null")
    webhook: WebhookConfig | None = Field(None, description="{url, secret_env, timeout_s}, or null; retries follow alerts.delivery")
    zmq_pub: str | None = Field(None, description="ZeroMQ PUB endpoint to publish events on (e.g. tcp://127.0.0.1:5599), or null")
    mqtt: MqttConfig | None = Field(None, description="MQTT broker for alerts and camera status (see MqttConfig), or null")


class AlertConfig(_Strict):
    """Alerting: cooldown, the event store, snapshots and sinks."""

    cooldown_s: float = Field(30.0, ge=0, description="one alert per (camera, identity) per cooldown")
    store: Path = Field(Path("events.sqlite"), description="event store (SQLite), written before any delivery")
    snapshots: Path = Field(Path("snapshots"), description="directory of face-chip and full-frame JPEGs")
    sinks: SinksConfig = Field(default_factory=SinksConfig, description="alert deliveries")
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig, description="retries of sink deliveries")


class UnknownConfig(_Strict):
    """Alerts on faces that match no one (``cameras[].alert_on`` unknown/both) and grouping of repeat visitors."""

    min_face: int = Field(80, ge=0, description="px, min(width, height) of the face box an unknown-face alert needs (small faces flood and recognise poorly)")
    min_sharpness: float = Field(40.0, ge=0, description="variance of the Laplacian of the face chip an unknown-face alert needs (blur)")
    group_threshold: float | None = Field(None, ge=-1, le=1, description="cosine similarity at which an unknown face is the same visitor as an earlier unknown event; null = the per-photo threshold of the calibration in force")


class ApiConfig(_Strict):
    """The HTTP server (``facewatch serve``; ``run`` starts it too when ``enabled``): REST API, live stream, web UI."""

    enabled: bool = Field(False, description="facewatch run also serves the API and web UI")
    host: str = Field("127.0.0.1", description="bind address; any non-loopback address requires an API token")
    port: int = Field(8080, ge=0, le=65535, description="TCP port")
    token: str | None = Field(None, min_length=16, description="API token (a secret: prefer token_env); required on every route when set")
    token_env: str = Field("FACEWATCH_API_TOKEN", min_length=1, description="env var that holds the API token when token is null")
    public_url: str | None = Field(None, pattern=r"^https?://", description="base URL of this server as others reach it, used in alert snapshot links; null = http://host:port")
    max_upload_mb: float = Field(10.0, gt=0, le=200, description="largest accepted upload per file")
    max_files: int = Field(20, ge=1, le=500, description="most images in one enrollment upload")
    poll_interval_s: float = Field(0.05, gt=0, le=5, description="how often the live stream looks for new events and camera changes")

    def effective_token(self) -> str | None:
        """The token every route requires: ``token``, else the ``token_env`` variable; None = no token."""
        return self.token or os.environ.get(self.token_env) or None


class LiveConfig(_Strict):
    """What the running pipeline shares with the HTTP server through files: camera state and latest frames."""

    dir: Path = Field(Path("live"), description="directory (0700) of cameras.json and one latest-frame JPEG per camera")
    frame_interval_s: float = Field(1.0, gt=0, description="how often each camera's latest frame JPEG is rewritten")


class MetricsConfig(_Strict):
    """Prometheus endpoint and the periodic metrics log line."""

    enabled: bool = Field(True, description="serve Prometheus metrics while running")
    host: str = Field("127.0.0.1", description="bind address; bind elsewhere only on purpose")
    port: int = Field(9108, ge=0, le=65535, description="TCP port")
    log_interval_s: float = Field(30.0, gt=0, description="seconds between metrics summary log lines")


class SocketsConfig(_Strict):
    """ZeroMQ endpoints between stages. null = ipc:// sockets in a private run directory; tcp:// allowed."""

    run_dir: Path | None = Field(None, description="where the private run directory is made (default: the system temp dir)")
    frames: str | None = Field(None, description="capture -> detect")
    faces: str | None = Field(None, description="detect -> embed")
    embeddings: str | None = Field(None, description="embed -> match")
    decisions: str | None = Field(None, description="match (and capture status) -> alert")
    control: str | None = Field(None, description="every stage -> supervisor (heartbeats)")

    @field_validator("*")
    @classmethod
    def _endpoint(cls, v: Any, info: ValidationInfo) -> Any:
        if info.field_name != "run_dir" and v is not None and not v.startswith(("ipc://", "tcp://", "inproc://")):
            raise ValueError("endpoint must start with ipc://, tcp:// or inproc://")
        return v


#: The ZeroMQ endpoints of a pipeline, named once: the fields of ``SocketsConfig`` except ``run_dir``.
ENDPOINTS: tuple[str, ...] = tuple(n for n in SocketsConfig.model_fields if n != "run_dir")


class SupervisorConfig(_Strict):
    """Stage watchdog."""

    heartbeat_timeout_s: float = Field(10.0, gt=0, description="a stage silent this long is killed and restarted")
    restart_backoff_s: float = Field(1.0, gt=0, description="first restart delay; doubles with repeated restarts")
    max_restarts: int = Field(5, ge=1, description="restarts of one stage within restart_window_s after which run stops with exit status 1 instead of looking healthy")
    restart_window_s: float = Field(120.0, gt=0, description="the window max_restarts counts in")


class TrackingConfig(_Strict):
    """When a camera's tracks end, so that a person seen again after a cut is matched (and alerted) anew."""

    max_gap_s: float = Field(2.0, gt=0, description="a track not seen for this long ends; a camera silent this long ends all its tracks")
    cut_threshold: float = Field(0.5, gt=0, le=2, description="scene-cut detector: Bhattacharyya distance between the colour histograms of consecutive frames above which every track of the camera ends")


class MotionConfig(_Strict):
    """Motion gating of the detector (README Performance): where nothing moves and nobody is tracked, the detector
    does not run; where something moves it runs on those regions at full resolution; tracks are carried between
    detections by the tracker."""

    enabled: bool = Field(True, description="false = run the detector on every whole frame (the baseline tools/bench_pipeline.py compares against)")
    threshold: int = Field(20, ge=1, le=255, description="grey-level difference (0-255, on a blurred 320 px copy, after gain compensation) at which a pixel has moved; lower = more sensitive")
    min_area: float = Field(0.0002, ge=0, le=1, description="share of the frame a moving blob must cover to count (0.0002 of 1080p = a 20 x 20 px patch)")
    background_s: float = Field(2.0, gt=0, le=600, description="time constant of the background model (s): a change that stays this long becomes background")
    warmup_frames: int = Field(5, ge=1, le=1000, description="frames the background model learns from at the start of each source, detecting every detect_interval_s on the whole frame meanwhile")
    global_share: float = Field(0.4, gt=0, le=1, description="share of the frame changing at once that is a lighting change or camera shake, not motion: one whole-frame detection, then the background is reset")
    detect_interval_s: float = Field(0.15, ge=0, le=10, description="while something moves or a track lives, the detector runs every N frames, N = detect_interval_s x fps (at least 1); in between the tracker carries the boxes; a new motion after a still spell is detected at once")
    max_detect_interval_s: float = Field(0.6, ge=0, le=10, description="live: while the detect stage is busy over 80% of the time the detect interval grows (x1.5 per 2 s) up to this, and shrinks back to detect_interval_s once it is under 50%; the metric detect_interval_ms shows it; = detect_interval_s turns adaptation off")
    still_interval_s: float = Field(0.5, gt=0, le=60, description="a track in a still scene (a person standing still) is re-detected this often so it is not lost; keep it under tracking.max_gap_s")
    full_frame_s: float = Field(10.0, gt=0, le=3600, description="the whole frame is detected at least this often, whatever moves (a person who never moved since the start is still found)")
    max_region_share: float = Field(0.5, gt=0, le=1, description="when the motion and track regions cover more of the frame than this, the whole frame is detected instead")

    @model_validator(mode="after")
    def _intervals(self) -> "MotionConfig":
        if self.max_detect_interval_s < self.detect_interval_s:
            raise ValueError(f"max_detect_interval_s ({self.max_detect_interval_s}) is below detect_interval_s "
                             f"({self.detect_interval_s}): it is the most the interval may grow to under load")
        return self


class Config(_Strict):
    """facewatch configuration. A user file overrides only what it names; unknown keys are errors."""

    home: Path | None = Field(None, description="model cache (converted ONNX files, TensorRT engines); null = $FACEWATCH_HOME or the user data dir")
    data_dir: Path = Field(Path("."), description="base of the relative paths below (gallery, event store, snapshots); '.' = the working dir")
    engines: EngineConfig = Field(default_factory=EngineConfig, description="inference backends")
    detector: DetectorConfig = Field(default_factory=RetinaFaceConfig, description="face detector, chosen by detector.model")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="quality gate")
    recognition: RecognitionConfig = Field(default_factory=RecognitionConfig, description="recognition profile and decision rule")
    matching: MatchingConfig = Field(default_factory=MatchingConfig, description="1:N matching")
    cameras: list[CameraConfig] = Field(default_factory=list, description="live cameras; see config/example.yaml")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="face tracks")
    motion: MotionConfig = Field(default_factory=MotionConfig, description="motion gating of the detector")
    detect_batch: DetectBatchConfig = Field(default_factory=DetectBatchConfig, description="detector batching")
    embed_batch: EmbedBatchConfig = Field(default_factory=EmbedBatchConfig, description="embedder batching")
    alerts: AlertConfig = Field(default_factory=AlertConfig, description="alerting")
    unknown: UnknownConfig = Field(default_factory=UnknownConfig, description="unknown faces")
    api: ApiConfig = Field(default_factory=ApiConfig, description="HTTP server and web UI")
    live: LiveConfig = Field(default_factory=LiveConfig, description="live state shared with the HTTP server")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="metrics")
    sockets: SocketsConfig = Field(default_factory=SocketsConfig, description="ZeroMQ endpoints")
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig, description="stage watchdog")

    @model_validator(mode="after")
    def _unique_cameras(self) -> "Config":
        names = [c.name for c in self.cameras]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"camera names must be unique: {sorted(dup)}")
        return self

    @model_validator(mode="after")
    def _calibration_fits(self) -> "Config":
        c = self.matching.calibration
        if c is not None:
            want = profile(self.recognition.profile).id
            if c.profile != self.recognition.profile:
                raise ValueError(f"matching.calibration: calibrated for profile {c.profile!r}, recognition.profile is "
                                 f"{self.recognition.profile!r}: its thresholds do not apply; run facewatch calibrate --write "
                                 "for this profile (or remove matching.calibration to use the shipped one)")
            if c.embedder != want:
                raise ValueError(f"matching.calibration: calibrated on vectors of {c.embedder!r}, this version makes "
                                 f"{want!r}: recalibrate (facewatch calibrate --write)")
        return self

    @property
    def calibration(self) -> Calibration:
        """The thresholds in force: ``matching.calibration``, else the shipped one of ``recognition.profile``."""
        c = self.matching.calibration
        return c if c is not None else SHIPPED_CALIBRATIONS[self.recognition.profile]

    @property
    def embedder_id(self) -> str:
        """Profile id of the vectors this configuration makes (recorded in galleries and calibrations)."""
        return profile(self.recognition.profile).id

    @property
    def embedding_dim(self) -> int:
        return profile(self.recognition.profile).dim

    def gallery_args(self) -> dict[str, Any]:
        """What ``Gallery`` needs to refuse a gallery of another embedder: ``Gallery(d, **cfg.gallery_args())``."""
        return {"embedder": self.embedder_id, "dim": self.embedding_dim}

    @property
    def threshold(self) -> float:
        """Per-comparison threshold (one photo or one face: verify, identify, search, relabel)."""
        return self.calibration.threshold

    @property
    def votes_threshold(self) -> float:
        """The score at which one look of a track votes for a person (``recognition.rule: votes``): never below
        the per-photo threshold; higher where a track's many looks would otherwise break the per-track promise."""
        c = self.calibration
        return max(c.threshold, c.votes_threshold) if c.votes_threshold is not None else c.threshold

    @property
    def embed_gap_s(self) -> float:
        """The spacing the embed budget enforces between two looks of a track: ``matching.embed_gap_s`` less half a
        detection interval when the detector is motion-gated. Why: a gated detector sees a moving track only every
        ``motion.detect_interval_s``, and a strict gap would then skip to the detection after the due one (0.3 s
        at 0.15 s detections: every 0.45 s), so a pass would get fewer looks than without gating."""
        gap = self.matching.embed_gap_s
        return max(0.0, gap - self.motion.detect_interval_s / 2) if self.motion.enabled else gap

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config are relative to ``data_dir``."""
        return path if path.is_absolute() else (self.data_dir / path)

    def min_face(self, camera: str) -> int:
        """The quality gate's minimum face size on ``camera`` (its own, else the global one)."""
        own = next((c.min_face for c in self.cameras if c.name == camera), None)
        return self.quality.min_face if own is None else own

    def motion_mask(self, camera: str) -> list[list[tuple[float, float]]]:
        """The zones of ``camera`` where motion is ignored (none for a camera not in the config, e.g. a scanned file)."""
        return next((c.motion_mask for c in self.cameras if c.name == camera), [])

    def unknown_min_face(self, camera: str) -> int:
        """The smallest face (px) an unknown-face alert on ``camera`` needs."""
        own = next((c.unknown_min_face for c in self.cameras if c.name == camera), None)
        return self.unknown.min_face if own is None else own

    def public_url(self) -> str | None:
        """Base URL of the HTTP server for links in alerts (MQTT): ``api.public_url``, else the bind address when
        ``run`` serves the API itself, else None (no links)."""
        if self.api.public_url:
            return self.api.public_url.rstrip("/")
        return f"http://{self.api.host}:{self.api.port}" if self.api.enabled else None

    def group_threshold(self) -> float:
        """Similarity at which an unknown face is an earlier unknown visitor."""
        g = self.unknown.group_threshold
        return self.threshold if g is None else g


def _read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """The mapping in ``path`` and its YAML node tree (for line numbers), or ``ConfigError`` saying what is wrong."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a config is UTF-8 YAML)") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file (a config is UTF-8 YAML)")
    try:
        data = yaml.safe_load(text) or {}
        node = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, not {type(data).__name__}")
    return data, node


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """The 1-based line of the value at ``loc`` (pydantic's error location) in the YAML node tree."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


#: Discriminated sections: the key, and the tags pydantic puts into an error's location after it.
_TAGGED = {"detector": ("retinaface", "mediapipe")}


def _plain_error(err: dict) -> tuple[tuple, str]:
    """An error's location and message as a user reads the file: without the union tag pydantic inserts
    (``detector.mediapipe.max_side`` is ``detector.max_side`` of a mediapipe section) and with the valid choices."""
    loc, msg = tuple(err["loc"]), str(err["msg"])
    for i in range(len(loc) - 1):
        if loc[i] in _TAGGED and loc[i + 1] in _TAGGED[loc[i]]:
            loc, msg = loc[: i + 1] + loc[i + 2 :], f"{msg} (in a {loc[i]}.model: {loc[i + 1]} section)"
            break
    if err.get("type") == "union_tag_invalid" and loc and loc[-1] in _TAGGED:
        tag = (err.get("ctx") or {}).get("tag", "?")
        loc, msg = loc + ("model",), f"unknown model {tag!r}; choose one of {', '.join(_TAGGED[loc[-1]])}"
    return loc, msg


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The model's defaults, overridden by the YAML file ``path`` and then by ``overrides``."""
    data: dict[str, Any] = {}
    node = None
    src = "defaults"
    if path is not None:
        p = Path(path)
        data, node = _read_yaml(p)
        src = str(p)
    if overrides:
        data = _merge(data, overrides)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc, msg = _plain_error(first)
        where = ".".join(str(x) for x in loc) or "(top level)"
        line = _line_of(node, loc)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{src}{f':{line}' if line else ''}: {where}: {msg}{more}") from None
    if cfg.home is not None:
        os.environ.setdefault("FACEWATCH_HOME", str(cfg.home))
    return cfg


#: The calibration each profile ships with (README Accuracy says how each was obtained); a user's
#: ``matching.calibration`` (facewatch calibrate --write) replaces it.
SHIPPED_CALIBRATIONS: dict[str, Calibration] = {
    "fast": Calibration(
        profile="fast", embedder=profile("fast").id, threshold=0.9502, track_threshold=0.9947, far=0.001, far_upper=2.40623e-05, impostors=1828667, track_far_upper=7.72066e-05, track_impostors=38800, votes_threshold=0.9696, votes_far_upper=7.72066e-05, votes_impostors=38800, gallery_size=10,
        data="facewatch calibrate --root wild_dev/ids --within-families --target-far 0.001 (33 identities, 2316 photos, 1828667 impostor pairs): FAR 0.001 at 95% confidence; 0.9502 = 0.9372 (FAR bound 0.9308, raised for FPIR at N=10) + margin 0.013; measured FAR 0.0017% (95% upper 0.0024%), FPIR at N=10 0.04% (95% upper 0.28%), TAR 32.5%; votes (passes of 10 photos scored from 1 (the votes rule: accepted when 1 looks reach the threshold against the person's best sample), enrolments of 3, 200 draws per identity, 38800 impostor passes): 0.9696 = the higher of the per-photo threshold and 0.9516 + margin 0.018: measured pass FAR 0.0000% (95% upper 0.0077%), FPIR at N=10 0.00% (95% upper 0.11%), TAR 57.2% of 4000 passes; track (mean-of-track-vs-template, passes of 10 photos scored from 1 (max over prefixes), templates of 3, 200 draws per identity, 38800 impostor passes): 0.9947 = 0.9697 (FAR bound 0.9693, raised for FPIR at N=10) + margin 0.025; measured pass FAR 0.0000% (95% upper 0.0077%), FPIR at N=10 0.00% (95% upper 0.11%), TAR 0.1% of 4000 passes"),
    "arcface": Calibration(
        profile="arcface", embedder=profile("arcface").id, threshold=0.4809, track_threshold=0.6019, far=0.001, far_upper=3.80371e-06, impostors=1899375, track_far_upper=4.27953e-05, track_impostors=70000, votes_threshold=0.5813, votes_far_upper=4.27953e-05, votes_impostors=70000, gallery_size=10,
        data="facewatch calibrate --root BOTH (wild_dev/ids and lab_dev/ids linked into one folder) --within-families --target-far 0.001 (70 identities, 2858 photos, 1899375 impostor pairs): FAR 0.001 at 95% confidence; 0.4809 = 0.3979 (FAR bound 0.3204, raised for FPIR at N=10) + margin 0.083; measured FAR 0.0001% (95% upper 0.0004%), FPIR at N=10 0.00% (95% upper 0.12%), TAR 51.9%; votes (passes of 10 photos scored from 1 (the votes rule: accepted when 1 looks reach the threshold against the person's best sample), enrolments of 3, 200 draws per identity, 70000 impostor passes): 0.5813 = the higher of the per-photo threshold and 0.4793 + margin 0.102: measured pass FAR 0.0000% (95% upper 0.0043%), FPIR at N=10 0.00% (95% upper 0.06%), TAR 95.6% of 6600 passes; track (mean-of-track-vs-template, passes of 10 photos scored from 1 (max over prefixes), templates of 3, 200 draws per identity, 70000 impostor passes): 0.6019 = 0.4389 (FAR bound 0.4375, raised for FPIR at N=10) + margin 0.163; measured pass FAR 0.0000% (95% upper 0.0043%), FPIR at N=10 0.00% (95% upper 0.06%), TAR 99.7% of 6600 passes"),
    "accurate": Calibration(
        profile="accurate", embedder=profile("accurate").id, threshold=0.8772, track_threshold=0.9861, far=0.001, far_upper=4.83633e-05, impostors=1828667, track_far_upper=7.72066e-05, track_impostors=38800, votes_threshold=0.9394, votes_far_upper=7.72066e-05, votes_impostors=38800, gallery_size=10,
        data="facewatch calibrate --root wild_dev/ids --within-families --target-far 0.001 (33 identities, 2316 photos, 1828667 impostor pairs): FAR 0.001 at 95% confidence; 0.8772 = 0.8472 (FAR bound 0.8408, raised for FPIR at N=10) + margin 0.03; measured FAR 0.0038% (95% upper 0.0048%), FPIR at N=10 0.04% (95% upper 0.28%), TAR 60.9%; votes (passes of 10 photos scored from 1 (the votes rule: accepted when 1 looks reach the threshold against the person's best sample), enrolments of 3, 200 draws per identity, 38800 impostor passes): 0.9394 = the higher of the per-photo threshold and 0.8884 + margin 0.051: measured pass FAR 0.0000% (95% upper 0.0077%), FPIR at N=10 0.00% (95% upper 0.11%), TAR 66.0% of 4000 passes; track (mean-of-track-vs-template, passes of 10 photos scored from 1 (max over prefixes), templates of 3, 200 draws per identity, 38800 impostor passes): 0.9861 = 0.9201 (FAR bound 0.9189, raised for FPIR at N=10) + margin 0.066; measured pass FAR 0.0000% (95% upper 0.0077%), FPIR at N=10 0.00% (95% upper 0.11%), TAR 3.5% of 4000 passes"),
}
