"""Convert the Keras FaceNet (``facenet_keras.h5``, Inception-ResNet-v1, 128-d) to ONNX with h5py + numpy + onnx.

Why our own converter: the file is a Keras 2.1.2 / TensorFlow 1.x save whose ``Lambda`` layers hold Python 3.6
bytecode; neither today's Keras nor tf2onnx load it without TensorFlow, and we want no TensorFlow at run time.
The file describes itself: the HDF5 attribute ``model_config`` is the functional graph (layers and their
``inbound_nodes``) and ``model_weights/<layer>/<layer>/<weight>:0`` holds every array. The layer types are few
(``../shared/models/MODELS.md``): Conv2D, BatchNormalization, Activation (ReLU), Concatenate, MaxPooling2D,
Lambda, GlobalAveragePooling2D, Dropout, Dense, InputLayer. Every Lambda is Inception-ResNet's residual
"ScaleSum" ``inputs[0] + inputs[1] * scale``; we check its bytecode against that one known instruction sequence
(never executing it) and emit ``Add(a, Mul(b, scale))``.

Layout: the graph takes ``chip`` float32 **NCHW** ``[N, 3, 160, 160]``, RGB, already standardised per image
(``engines.facenet.prewhiten``), and returns ``embedding`` float32 ``[N, 128]``: the network's raw output (the
final BatchNorm of the bottleneck included), not L2-normalised. Keras's NHWC axes map to NCHW (channel axis 3 ->
1, kernels ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``). Keras ``padding="same"`` puts the odd pixel at the
bottom/right (TensorFlow's rule), so every conv and pool gets explicit pads computed from its input size instead
of ONNX's ``auto_pad``. Each BatchNormalization whose input is produced only for it by a Conv2D or Dense is
folded into that layer's weights; any other one is emitted as an ONNX BatchNormalization.
"""
from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from engines.files import ModelError

log = logging.getLogger(__name__)

INPUT_NAME = "chip"
OUTPUT_NAME = "embedding"
OPSET = 13

#: The body of ``lambda inputs, scale: inputs[0] + inputs[1] * scale`` as CPython 3.6 compiled it (LOAD_FAST 0,
#: LOAD_CONST 0, BINARY_SUBSCR, LOAD_FAST 0, LOAD_CONST 1, BINARY_SUBSCR, LOAD_FAST 1, BINARY_MULTIPLY,
#: BINARY_ADD, RETURN_VALUE): a Lambda whose marshalled code lacks it is some other function and is refused.
_SCALESUM_CODE = b"|\x00d\x01\x19\x00|\x00d\x02\x19\x00|\x01\x14\x00\x17\x00S\x00"


class KerasFormatError(ModelError):
    """The file is not the Keras FaceNet this converter understands (a ModelError: callers report it alike)."""


@dataclass(frozen=True)
class KerasLayer:
    """One layer of the functional graph: its Keras class, its config and the names of the layers it reads."""

    name: str
    kind: str
    config: dict
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class KerasModel:
    """The parsed file: layers in a dependency order, weights by layer then short name (``kernel``, ``beta``...)."""

    layers: tuple[KerasLayer, ...]
    weights: dict[str, dict[str, np.ndarray]]
    input_name: str
    input_shape: tuple[int, int, int]  # H, W, C as Keras declares it
    output_name: str


def read_keras_h5(src: bytes | str | Path) -> KerasModel:
    """Parse ``model_config`` and ``model_weights`` of a Keras 2 ``.h5`` (bytes or a path) with h5py alone."""
    label = "h5 bytes" if isinstance(src, (bytes, bytearray)) else str(src)
    try:
        fh = h5py.File(io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray)) else Path(src), "r")
    except (OSError, ValueError) as exc:
        raise KerasFormatError(f"{label}: not an HDF5 file ({exc})") from None
    with fh:
        raw = fh.attrs.get("model_config")
        if raw is None or "model_weights" not in fh:
            raise KerasFormatError(f"{label}: HDF5 file without Keras model_config/model_weights")
        try:
            cfg = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
            layers = _parse_layers(cfg)
            (input_name, *_), = cfg["config"]["input_layers"]
            (output_name, *_), = cfg["config"]["output_layers"]
        except (ValueError, KeyError, TypeError) as exc:
            raise KerasFormatError(f"{label}: unreadable model_config ({type(exc).__name__}: {exc})") from None
        weights = {layer.name: _layer_weights(fh["model_weights"], layer.name, label) for layer in layers}
    by_name = {layer.name: layer for layer in layers}
    if input_name not in by_name or by_name[input_name].kind != "InputLayer":
        raise KerasFormatError(f"{label}: input layer {input_name!r} missing")
    shape = by_name[input_name].config.get("batch_input_shape", [])
    if len(shape) != 4 or any(not isinstance(d, int) for d in shape[1:]):
        raise KerasFormatError(f"{label}: input shape {shape} is not [None, H, W, C]")
    return KerasModel(_topological(layers, output_name, label), weights, input_name, tuple(shape[1:]), output_name)


def _parse_layers(cfg: dict) -> list[KerasLayer]:
    out = []
    for spec in cfg["config"]["layers"]:
        nodes = spec["inbound_nodes"]
        if len(nodes) > 1:
            raise ValueError(f"layer {spec['name']} is shared ({len(nodes)} call sites)")
        inputs = tuple(ref[0] for ref in nodes[0]) if nodes else ()
        if nodes and any(ref[1] != 0 or ref[2] != 0 for ref in nodes[0]):
            raise ValueError(f"layer {spec['name']} reads a node or tensor index other than 0")
        out.append(KerasLayer(spec["name"], spec["class_name"], spec["config"], inputs))
    return out


def _layer_weights(group: h5py.Group, name: str, label: str) -> dict[str, np.ndarray]:
    """``{"kernel": ..., "moving_mean": ...}`` of one layer, from the ``weight_names`` Keras recorded."""
    if name not in group:
        return {}
    g = group[name]
    out = {}
    for wname in g.attrs.get("weight_names", []):
        wname = wname.decode() if isinstance(wname, bytes) else str(wname)
        try:
            arr = np.asarray(g[wname], dtype=np.float32)
        except KeyError:
            raise KerasFormatError(f"{label}: weight {wname} of layer {name} is missing") from None
        out[wname.rsplit("/", 1)[-1].split(":", 1)[0]] = arr
    return out


def _topological(layers: list[KerasLayer], output: str, label: str) -> tuple[KerasLayer, ...]:
    """The layers the output depends on, each after its inputs (iterative DFS: the graph is 400+ deep)."""
    by_name = {layer.name: layer for layer in layers}
    order: list[KerasLayer] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack = [(output, False)]
    while stack:
        name, expanded = stack.pop()
        if name not in by_name:
            raise KerasFormatError(f"{label}: layer {name!r} is referenced but not defined")
        if expanded:
            state[name] = 2
            order.append(by_name[name])
            continue
        if state.get(name) == 2:
            continue
        if state.get(name) == 1:
            raise KerasFormatError(f"{label}: the layer graph has a cycle through {name!r}")
        state[name] = 1
        stack.append((name, True))
        stack.extend((i, False) for i in reversed(by_name[name].inputs) if state.get(i) != 2)
    return tuple(order)


def same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one axis: output ``ceil(size / s)``, the odd pixel at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _out_size(size: int, k: int, s: int, d: int, pads: tuple[int, int]) -> int:
    return (size + pads[0] + pads[1] - (k - 1) * d - 1) // s + 1


def _pads(padding: str, hw: tuple[int, int], kernel: list[int], strides: list[int], dilation: list[int]
          ) -> list[int]:
    """ONNX ``pads`` ``[top, left, bottom, right]`` for Keras ``valid`` or ``same``."""
    if padding == "valid":
        return [0, 0, 0, 0]
    if padding != "same":
        raise KerasFormatError(f"padding {padding!r} is not supported")
    (t, b), (l, r) = (same_pads(hw[i], kernel[i], strides[i], dilation[i]) for i in range(2))
    return [t, l, b, r]


def _bn_affine(w: dict[str, np.ndarray], cfg: dict, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm at inference as ``x * a + b`` per channel (``gamma`` = 1 when the layer has ``scale=False``)."""
    gamma = w["gamma"] if cfg.get("scale", True) else np.ones(channels, np.float32)
    beta = w["beta"] if cfg.get("center", True) else np.zeros(channels, np.float32)
    a = gamma.astype(np.float64) / np.sqrt(w["moving_variance"].astype(np.float64) + float(cfg["epsilon"]))
    return a, beta.astype(np.float64) - w["moving_mean"].astype(np.float64) * a


def check_scalesum(layer: KerasLayer) -> float:
    """The ``scale`` of a ScaleSum Lambda, after checking (without running it) that it is that function."""
    cfg = layer.config
    fn = cfg.get("function")
    code = fn[0] if isinstance(fn, list) and fn else fn
    try:
        blob = base64.b64decode(code) if isinstance(code, str) else b""
    except ValueError:
        blob = b""
    args = cfg.get("arguments") or {}
    if cfg.get("function_type") != "lambda" or _SCALESUM_CODE not in blob or set(args) != {"scale"} \
            or len(layer.inputs) != 2:
        raise KerasFormatError(f"Lambda layer {layer.name} is not the residual ScaleSum "
                               "(inputs[0] + inputs[1] * scale) this converter knows")
    return float(args["scale"])


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers; tracks each tensor's static (C, H, W) or (C,) shape."""

    def __init__(self, model: KerasModel) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.model = model
        self.nodes: list = []
        self.inits: list = []
        self.tensor: dict[str, str] = {}
        self.shape: dict[str, tuple[int, ...]] = {}
        consumers: dict[str, list[str]] = {}
        for layer in model.layers:
            for i in layer.inputs:
                consumers.setdefault(i, []).append(layer.name)
        self.consumers = consumers
        self.by_name = {layer.name: layer for layer in model.layers}
        self.folded: set[str] = set()  # BatchNorm layers already merged into their producer

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def foldable_bn(self, layer: KerasLayer) -> KerasLayer | None:
        """The BatchNorm that is the only reader of ``layer``'s output, if any (and not the graph output)."""
        readers = self.consumers.get(layer.name, [])
        if len(readers) != 1 or layer.name == self.model.output_name:
            return None
        bn = self.by_name[readers[0]]
        return bn if bn.kind == "BatchNormalization" else None

    def conv(self, layer: KerasLayer) -> None:
        cfg, w = layer.config, self.model.weights[layer.name]
        c, h, wd = self.shape[layer.inputs[0]]
        if cfg.get("data_format", "channels_last") != "channels_last" or cfg.get("activation") not in ("linear", None):
            raise KerasFormatError(f"Conv2D {layer.name}: data_format/activation {cfg.get('data_format')}/"
                                   f"{cfg.get('activation')} not supported")
        kernel = w["kernel"].astype(np.float64).transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
        if kernel.shape[1] != c:
            raise KerasFormatError(f"Conv2D {layer.name}: kernel expects {kernel.shape[1]} channels, gets {c}")
        bias = w["bias"].astype(np.float64) if cfg.get("use_bias", True) else np.zeros(kernel.shape[0])
        bn = self.foldable_bn(layer)
        if bn is not None:
            a, b = _bn_affine(self.model.weights[bn.name], bn.config, kernel.shape[0])
            kernel, bias = kernel * a[:, None, None, None], bias * a + b
            self.folded.add(bn.name)
        ks, st, dil = list(cfg["kernel_size"]), list(cfg["strides"]), list(cfg.get("dilation_rate", [1, 1]))
        pads = _pads(cfg["padding"], (h, wd), ks, st, dil)
        out = self.node("Conv", [self.tensor[layer.inputs[0]], self.const(f"{layer.name}/W", kernel),
                                 self.const(f"{layer.name}/B", bias)], layer.name,
                        kernel_shape=ks, strides=st, dilations=dil, pads=pads)
        shape = (kernel.shape[0], _out_size(h, ks[0], st[0], dil[0], (pads[0], pads[2])),
                 _out_size(wd, ks[1], st[1], dil[1], (pads[1], pads[3])))
        self.publish(bn.name if bn is not None else layer.name, out, shape)
        if bn is not None:
            self.publish(layer.name, out, shape)  # nothing else reads it; keeps the bookkeeping total

    def dense(self, layer: KerasLayer) -> None:
        cfg, w = layer.config, self.model.weights[layer.name]
        if cfg.get("activation") not in ("linear", None):
            raise KerasFormatError(f"Dense {layer.name}: activation {cfg.get('activation')} not supported")
        kernel = w["kernel"].astype(np.float64)  # [in, out]
        bias = w["bias"].astype(np.float64) if cfg.get("use_bias", True) else np.zeros(kernel.shape[1])
        bn = self.foldable_bn(layer)
        if bn is not None:
            a, b = _bn_affine(self.model.weights[bn.name], bn.config, kernel.shape[1])
            kernel, bias = kernel * a[None, :], bias * a + b
            self.folded.add(bn.name)
        mm = self.node("MatMul", [self.tensor[layer.inputs[0]], self.const(f"{layer.name}/W", kernel)],
                       f"{layer.name}/MatMul")
        out = self.node("Add", [mm, self.const(f"{layer.name}/B", bias)], layer.name)
        self.publish(bn.name if bn is not None else layer.name, out, (kernel.shape[1],))
        self.publish(layer.name, out, (kernel.shape[1],))

    def batchnorm(self, layer: KerasLayer) -> None:
        shape = self.shape[layer.inputs[0]]
        if layer.config.get("axis") not in (-1, 3 if len(shape) == 3 else 1):
            raise KerasFormatError(f"BatchNormalization {layer.name}: axis {layer.config.get('axis')} "
                                   "is not the channel axis")
        a, b = _bn_affine(self.model.weights[layer.name], layer.config, shape[0])
        x = self.tensor[layer.inputs[0]]
        bshape = (-1, 1, 1) if len(shape) == 3 else (-1,)
        mul = self.node("Mul", [x, self.const(f"{layer.name}/A", a.reshape(bshape))], f"{layer.name}/Mul")
        self.publish(layer.name, self.node("Add", [mul, self.const(f"{layer.name}/B", b.reshape(bshape))],
                                           layer.name), shape)

    def publish(self, layer_name: str, tensor: str, shape: tuple[int, ...]) -> None:
        self.tensor[layer_name] = tensor
        self.shape[layer_name] = shape

    def add(self, layer: KerasLayer) -> None:  # noqa: C901 - one branch per Keras class, flat on purpose
        kind, cfg, ins = layer.kind, layer.config, layer.inputs
        if kind == "InputLayer":
            h, w, c = self.model.input_shape
            self.publish(layer.name, INPUT_NAME, (c, h, w))
        elif kind == "Conv2D":
            self.conv(layer)
        elif kind == "Dense":
            self.dense(layer)
        elif kind == "BatchNormalization":
            if layer.name not in self.folded:
                self.batchnorm(layer)
        elif kind == "Activation":
            if cfg.get("activation") != "relu":
                raise KerasFormatError(f"Activation {layer.name}: {cfg.get('activation')!r} not supported")
            self.publish(layer.name, self.node("Relu", [self.tensor[ins[0]]], layer.name), self.shape[ins[0]])
        elif kind == "Concatenate":
            shapes = [self.shape[i] for i in ins]
            if cfg.get("axis") not in (-1, 3) or any(len(s) != 3 or s[1:] != shapes[0][1:] for s in shapes):
                raise KerasFormatError(f"Concatenate {layer.name}: axis {cfg.get('axis')} / shapes {shapes}")
            out = self.node("Concat", [self.tensor[i] for i in ins], layer.name, axis=1)
            self.publish(layer.name, out, (sum(s[0] for s in shapes), *shapes[0][1:]))
        elif kind == "Lambda":
            scale = check_scalesum(layer)
            if self.shape[ins[0]] != self.shape[ins[1]]:
                raise KerasFormatError(f"ScaleSum {layer.name}: shapes {self.shape[ins[0]]} {self.shape[ins[1]]}")
            y = self.tensor[ins[1]]
            if scale != 1.0:
                y = self.node("Mul", [y, self.const(f"{layer.name}/scale", np.array(scale))], f"{layer.name}/Mul")
            self.publish(layer.name, self.node("Add", [self.tensor[ins[0]], y], layer.name), self.shape[ins[0]])
        elif kind == "MaxPooling2D":
            c, h, w = self.shape[ins[0]]
            ks, st = list(cfg["pool_size"]), list(cfg["strides"] or cfg["pool_size"])
            pads = _pads(cfg["padding"], (h, w), ks, st, [1, 1])
            out = self.node("MaxPool", [self.tensor[ins[0]]], layer.name, kernel_shape=ks, strides=st, pads=pads)
            self.publish(layer.name, out, (c, _out_size(h, ks[0], st[0], 1, (pads[0], pads[2])),
                                           _out_size(w, ks[1], st[1], 1, (pads[1], pads[3]))))
        elif kind == "GlobalAveragePooling2D":
            gap = self.node("GlobalAveragePool", [self.tensor[ins[0]]], f"{layer.name}/Pool")
            out = self.node("Flatten", [gap], layer.name, axis=1)
            self.publish(layer.name, out, (self.shape[ins[0]][0],))
        elif kind == "Dropout":  # identity at inference
            self.publish(layer.name, self.tensor[ins[0]], self.shape[ins[0]])
        else:
            raise KerasFormatError(f"layer {layer.name}: Keras class {kind} is not supported")


def build_onnx(src: bytes | str | Path):  # -> onnx.ModelProto (onnx is imported lazily, like dlib_convert)
    """The ONNX model (opset 13, ``chip`` NCHW -> ``embedding`` [N, 128]) of a Keras FaceNet ``.h5``.

    ``src`` is the file's bytes (``engines.facenet_source.h5_bytes_from``) or a path to the ``.h5``. The result
    passes ``onnx.checker``.
    """
    import onnx
    from onnx import TensorProto, helper

    model = read_keras_h5(src)
    g = _GraphBuilder(model)
    for layer in model.layers:
        g.add(layer)
    out_shape = g.shape[model.output_name]
    if len(out_shape) != 1:
        raise KerasFormatError(f"output {model.output_name} has shape {out_shape}, expected a vector")
    g.nodes.append(helper.make_node("Identity", [g.tensor[model.output_name]], [OUTPUT_NAME], name=OUTPUT_NAME))
    h, w, c = model.input_shape
    graph = helper.make_graph(
        g.nodes, "facenet_keras_128",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", out_shape[0]])],
        initializer=g.inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facewatch",
                                   doc_string="FaceNet Inception-ResNet-v1 (facenet_keras.h5) converted by "
                                   "engines.facenet_convert")
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    log.info("converted Keras FaceNet: %d layers -> %d ONNX nodes (%d BatchNorms folded)",
             len(model.layers), len(g.nodes), len(g.folded))
    return onnx_model


def convert(h5_path: str | Path, onnx_path: str | Path) -> None:
    """Write the ONNX file for a ``.h5`` (a developer's shortcut; the model store builds from verified bytes)."""
    Path(onnx_path).write_bytes(build_onnx(h5_path).SerializeToString())
