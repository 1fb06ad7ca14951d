"""Convert dlib's ResNet face-descriptor model (``.dat``) to ONNX with numpy + onnx only.

Why our own converter: dlib publishes no ONNX release of ``dlib_face_recognition_resnet_model_v1.dat``
and we do not want dlib (a large C++ build) at run time. The file format is dlib's own serialisation;
the facts used here are documented in ``../shared/models/MODELS.md`` and in dlib's
``dnn_face_recognition_ex.cpp`` (network topology).

The produced graph takes ``chip``: float32 ``[N, 3, 150, 150]`` RGB values in 0..255 and returns
``descriptor``: float32 ``[N, 128]`` (raw, not normalised, exactly what dlib returns).
The input mean subtraction and the ``/256`` scaling of dlib's ``input_rgb_image_sized`` are inside
the graph, and every ``affine_`` layer is folded into the convolution before it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.embedder import CHIP_SIZE


class DlibFormatError(ValueError):
    """The file is not the dlib ResNet model this converter understands."""


class _Reader:
    """Sequential reader for dlib's serialisation primitives."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def compact_int(self) -> int:
        if self.pos >= len(self.data):
            raise DlibFormatError("unexpected end of file")
        head = self.data[self.pos]
        nbytes = head & 0x0F
        if nbytes > 8:
            raise DlibFormatError(f"bad compact int header 0x{head:02x} at byte {self.pos}")
        raw = self.data[self.pos + 1 : self.pos + 1 + nbytes]
        self.pos += 1 + nbytes
        value = int.from_bytes(raw, "little")
        return -value if head & 0x80 else value

    def scalar_float(self) -> float:
        mantissa = self.compact_int()
        exponent = self.compact_int()
        return float(mantissa) * 2.0**exponent

    def tensor(self) -> np.ndarray:
        version = self.compact_int()
        if version != 2:
            raise DlibFormatError(f"unsupported tensor version {version}")
        shape = tuple(self.compact_int() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise DlibFormatError("tensor runs past the end of the file")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos = end
        return values.reshape(shape).astype(np.float32)


@dataclass
class ConvLayer:
    weight: np.ndarray  # [out, in, kh, kw]
    bias: np.ndarray  # [out]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class PoolLayer:
    kind: str  # "max" or "avg"
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class DlibResNet:
    """The weights and hyper-parameters read from the ``.dat`` file, in file (input-first) order."""

    input_mean_rgb: tuple[float, float, float]
    convs: list[ConvLayer] = field(default_factory=list)
    pools: list[PoolLayer] = field(default_factory=list)
    fc: np.ndarray | None = None  # [in, out]


def _tag_offsets(data: bytes, tag: bytes) -> list[int]:
    """Offsets just past each length-prefixed occurrence of ``tag``."""
    needle = bytes([len(tag)]) + tag
    out, start = [], 0
    while (i := data.find(needle, start)) != -1:
        out.append(i + len(needle))
        start = i + 1
    return out


def parse_dlib_resnet(path: str | Path) -> DlibResNet:
    """Read the layers the face-descriptor network consists of, in the order they occur."""
    data = Path(path).read_bytes()
    if b"loss_metric" not in data[:64]:
        raise DlibFormatError(f"{path}: not a dlib loss_metric network")
    inp = _tag_offsets(data, b"input_rgb_image_sized")
    if len(inp) != 1:
        raise DlibFormatError(f"{path}: expected one input_rgb_image_sized layer")
    r = _Reader(data, inp[0])
    mean = (r.scalar_float(), r.scalar_float(), r.scalar_float())
    nr, nc = r.compact_int(), r.compact_int()
    if (nr, nc) != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"{path}: input size {nr}x{nc}, expected 150x150")

    events: list[tuple[int, str]] = []
    for tag in (b"con_4", b"affine_", b"max_pool_2", b"avg_pool_2", b"fc_2"):
        events += [(off, tag.decode()) for off in _tag_offsets(data, tag)]
    events.sort()
    net = DlibResNet(input_mean_rgb=mean)
    pending: ConvLayer | None = None
    for off, tag in events:
        r = _Reader(data, off)
        if tag == "con_4":
            params = r.tensor().ravel()
            nf, kh, kw = r.compact_int(), r.compact_int(), r.compact_int()
            sy, sx, py, px = (r.compact_int() for _ in range(4))
            n_in = (params.size - nf) // (nf * kh * kw)
            if n_in * nf * kh * kw + nf != params.size:
                raise DlibFormatError(f"con_4 at byte {off}: parameter count does not match its shape")
            weight = params[: nf * n_in * kh * kw].reshape(nf, n_in, kh, kw)
            pending = ConvLayer(weight, params[nf * n_in * kh * kw :].copy(), (sy, sx), (py, px))
        elif tag == "affine_":
            params = r.tensor().ravel()
            if pending is None or params.size != 2 * pending.weight.shape[0]:
                raise DlibFormatError(f"affine_ at byte {off} does not follow a matching con_4")
            gamma, beta = params[: params.size // 2], params[params.size // 2 :]
            pending.weight = pending.weight * gamma[:, None, None, None]
            pending.bias = pending.bias * gamma + beta
            net.convs.append(pending)
            pending = None
        elif tag in ("max_pool_2", "avg_pool_2"):
            wy, wx, sy, sx, py, px = (r.compact_int() for _ in range(6))
            if wy == 0 and wx == 0:  # avg_pool_everything: the global pool before the fc
                continue
            net.pools.append(PoolLayer(tag[:3], (wy, wx), (sy, sx), (py, px)))
        else:  # fc_2
            n_out, n_in = r.compact_int(), r.compact_int()
            params = r.tensor().reshape(-1)
            if params.size < n_in * n_out:
                raise DlibFormatError("fc_2 holds fewer weights than its shape")
            net.fc = params[: n_in * n_out].reshape(n_in, n_out)
    if len(net.convs) != 29 or net.fc is None or len(net.pools) != 5:
        raise DlibFormatError(
            f"{path}: found {len(net.convs)} conv+affine pairs, {len(net.pools)} pools, "
            f"fc={'yes' if net.fc is not None else 'no'}; expected 29, 5 and one fc"
        )
    return net


def _out_size(size: int, k: int, s: int, p: int) -> int:
    return 1 + (size + 2 * p - k) // s


def build_onnx(net: DlibResNet):  # -> onnx.ModelProto
    """Lay the parsed layers out as dlib's topology and return an ONNX model (opset 13)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list = []
    inits: list = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(arr: np.ndarray, prefix: str) -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def conv(x: str, layer: ConvLayer) -> str:
        y = name("conv")
        py, px = layer.padding
        nodes.append(
            helper.make_node(
                "Conv",
                [x, const(layer.weight, "w"), const(layer.bias, "b")],
                [y],
                kernel_shape=list(layer.weight.shape[2:]),
                strides=list(layer.stride),
                pads=[py, px, py, px],
            )
        )
        return y

    def relu(x: str) -> str:
        y = name("relu")
        nodes.append(helper.make_node("Relu", [x], [y]))
        return y

    def pool(x: str, layer: PoolLayer) -> str:
        y = name(layer.kind + "pool")
        py, px = layer.padding
        op = "MaxPool" if layer.kind == "max" else "AveragePool"
        nodes.append(
            helper.make_node(op, [x], [y], kernel_shape=list(layer.window), strides=list(layer.stride), pads=[py, px, py, px])
        )
        return y

    def pad_to(x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
        """Zero-pad channels at the end and space at bottom/right, as dlib's add_prev does."""
        if shape == target:
            return x
        dc, dh, dw = (t - s for t, s in zip(target, shape))
        y = name("pad")
        pads = np.array([0, 0, 0, 0, 0, dc, dh, dw], dtype=np.int64)
        nodes.append(helper.make_node("Pad", [x, const(pads, "pads")], [y], mode="constant"))
        return y

    # input: raw RGB 0..255 -> (x - mean) / 256 as dlib's input layer does
    mean = np.array(net.input_mean_rgb, dtype=np.float32).reshape(1, 3, 1, 1)
    x = name("sub")
    nodes.append(helper.make_node("Sub", ["chip", const(mean, "mean")], [x]))
    y = name("scale")
    nodes.append(helper.make_node("Mul", [x, const(np.array(1.0 / 256.0, dtype=np.float32), "inv256")], [y]))
    x = y

    convs = iter(net.convs)
    pools = iter(net.pools)
    first = next(convs)
    x = relu(conv(x, first))
    size = _out_size(CHIP_SIZE, first.weight.shape[2], first.stride[0], first.padding[0])
    channels = first.weight.shape[0]
    mp = next(pools)
    x = pool(x, mp)
    size = _out_size(size, mp.window[0], mp.stride[0], mp.padding[0])

    # 14 residual blocks; a block whose first conv has stride 2 is a down-sampling one.
    for c1 in convs:
        c2 = next(convs)
        branch = conv(relu(conv(x, c1)), c2)
        b_size = _out_size(size, c1.weight.shape[2], c1.stride[0], c1.padding[0])
        b_size = _out_size(b_size, c2.weight.shape[2], c2.stride[0], c2.padding[0])
        b_ch = c2.weight.shape[0]
        if c1.stride[0] != 1:
            ap = next(pools)
            shortcut = pool(x, ap)
            s_size = _out_size(size, ap.window[0], ap.stride[0], ap.padding[0])
        else:
            shortcut, s_size = x, size
        target = (max(b_ch, channels), max(b_size, s_size), max(b_size, s_size))
        branch = pad_to(branch, (b_ch, b_size, b_size), target)
        shortcut = pad_to(shortcut, (channels, s_size, s_size), target)
        added = name("add")
        nodes.append(helper.make_node("Add", [branch, shortcut], [added]))
        x = relu(added)
        channels, size = target[0], target[1]

    gap = name("gap")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
    flat = name("flat")
    nodes.append(helper.make_node("Flatten", [gap], [flat], axis=1))
    nodes.append(helper.make_node("MatMul", [flat, const(net.fc.astype(np.float32), "fc")], ["descriptor"]))

    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_v1",
        [helper.make_tensor_value_info("chip", TensorProto.FLOAT, ["batch", 3, CHIP_SIZE, CHIP_SIZE])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", 128])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facewatch")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def convert(dat_path: str | Path, onnx_path: str | Path) -> None:
    """Convert ``dat_path`` to ``onnx_path`` (the caller handles atomic placement)."""
    import onnx

    model = build_onnx(parse_dlib_resnet(dat_path))
    onnx.save(model, str(onnx_path))
