"""TensorRT backend (GPU, optional ``gpu`` extra): the same ONNX files as the CPU path, built into engines.

Build: the ONNX file is parsed, built with FP16 (default) or FP32 and one optimization profile (dynamic
batch min 1 / opt / max, fixed C, H, W; see ``engine_cache.profile_for``) and cached by an exact key, so
a later start loads the engine in about a second instead of building it for a minute.
Run: pycuda page-locked host buffers and device buffers sized for the profile's max batch, and one CUDA
stream, are allocated once and reused; each batch is an async copy in, ``execute_async_v3``, async copies
out and a single stream synchronisation.

Nothing here is imported unless TensorRT was chosen (``engines.backends.registry.create_backend``), so CPU-only
installs never touch tensorrt or pycuda.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pycuda.driver as cuda
import tensorrt as trt

from engines.backends.base import BackendUnavailable, InferenceBackend
from engines.backends.engine_cache import EngineCache, EngineKey, EngineProfile

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 1 << 30
_LOGGER = trt.Logger(trt.Logger.WARNING)


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(name, compute capability "major.minor") of a CUDA device: part of every engine's cache key."""
    cuda.init()
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return dev.name(), f"{major}.{minor}"


def build_engine(onnx_bytes: bytes, precision: str, profile: EngineProfile) -> bytes:
    """Parse ONNX and build a serialized engine; errors name what TensorRT refused."""
    builder = trt.Builder(_LOGGER)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, _LOGGER)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable(f"TensorRT could not parse the ONNX model: {errors}")
    if network.num_inputs != 1:
        raise BackendUnavailable(f"expected a model with one input, got {network.num_inputs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building FP16 anyway as asked")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision != "fp32":
        raise ValueError(f"precision must be fp16 or fp32, got {precision!r}")
    opt_profile = builder.create_optimization_profile()
    lo, opt, hi = profile.shapes()
    opt_profile.set_shape(network.get_input(0).name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(serialized)


class TensorRTBackend(InferenceBackend):
    """One engine, one execution context, one stream, buffers for the max batch; float32 in and out."""

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, *, profile: EngineProfile, precision: str = "fp16",
                 cache_dir: str | Path | None = None, device: int = 0, rebuild: bool = False) -> None:
        self.path = Path(onnx_path)
        self.profile, self.precision = profile, precision
        cuda.init()
        self.cuda_ctx = cuda.Device(device).retain_primary_context()  # the context TensorRT's runtime uses
        self.cuda_ctx.push()
        try:
            onnx_bytes = self.path.read_bytes()
            gpu, cc = gpu_identity(device)
            self.key = EngineKey(hashlib.sha256(onnx_bytes).hexdigest(), trt.__version__, gpu, cc, precision, profile)
            cache = EngineCache(Path(cache_dir) if cache_dir else self.path.parent.parent / "engines")
            model = self.path.stem
            data = None if rebuild else cache.lookup(model, self.key)
            self.build_seconds: float | None = None
            if data is None:
                log.info("building TensorRT %s engine for %s (%s, batch %d..%d); this takes a while once",
                         precision, model, gpu, profile.min_batch, profile.max_batch)
                t = time.perf_counter()
                data = build_engine(onnx_bytes, precision, profile)
                self.build_seconds = time.perf_counter() - t
                cache.store(model, self.key, data, self.build_seconds)
            self.engine_path = cache.paths(model, self.key)[0]
            self.engine_bytes = len(data)
            self.runtime = trt.Runtime(_LOGGER)
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise BackendUnavailable(f"TensorRT could not load the engine {self.engine_path}")
            self.context = self.engine.create_execution_context()
            self._allocate()
        finally:
            self.cuda_ctx.pop()

    def _allocate(self) -> None:
        """Page-locked host + device buffers for the max batch, allocated once."""
        self.stream = cuda.Stream()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, cuda.DeviceAllocation] = {}
        self.shapes: dict[str, tuple] = {}
        max_in = (self.profile.max_batch, *self.profile.chw)
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
            self.shapes[name] = tuple(self.engine.get_tensor_shape(name))
        self.context.set_input_shape(self.inputs[0], max_in)
        for name in self.inputs + self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            self.host[name] = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            self.device[name] = cuda.mem_alloc(self.host[name].nbytes)
            self.context.set_tensor_address(name, int(self.device[name]))

    @property
    def input_shapes(self) -> dict[str, tuple]:
        return {n: self.shapes[n] for n in self.inputs}

    @property
    def output_shapes(self) -> dict[str, tuple]:
        return {n: self.shapes[n] for n in self.outputs}

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        name = self.inputs[0]
        x = np.asarray(inputs[name], dtype=np.float32)
        if x.shape[1:] != self.profile.chw or not 1 <= x.shape[0] <= self.profile.max_batch:
            raise ValueError(f"input {x.shape} outside the engine profile: batch 1..{self.profile.max_batch} x {self.profile.chw}")
        self.cuda_ctx.push()
        try:
            self.context.set_input_shape(name, x.shape)
            host_in = self.host[name][: x.size].reshape(x.shape)
            np.copyto(host_in, x)
            cuda.memcpy_htod_async(self.device[name], host_in, self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise RuntimeError("TensorRT execution failed")
            outs = []
            for out in self.outputs:
                shape = tuple(self.context.get_tensor_shape(out))
                host_out = self.host[out][: int(np.prod(shape))]
                cuda.memcpy_dtoh_async(host_out, self.device[out], self.stream)
                outs.append((host_out, shape))
            self.stream.synchronize()  # the one synchronisation per batch
        finally:
            self.cuda_ctx.pop()
        return [h.reshape(s).astype(np.float32, copy=True) for h, s in outs]

    def close(self) -> None:
        self.cuda_ctx.push()
        try:
            for buf in self.device.values():
                buf.free()
            self.device.clear()
        finally:
            self.cuda_ctx.pop()
            self.cuda_ctx.detach()
