"""onnxruntime sessions: providers chosen and checked in one place, threads that fit the machine."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Union, TypeAlias, cast
from collections.abc import Sequence

import onnxruntime as ort

# Re-exported: the named settings are part of this module's interface (vggsim.model.session.CUDA_SETTINGS).
from vggsim.model.cuda.settings import CUDA_DEFAULT as CUDA_DEFAULT, CUDA_SETTINGS as CUDA_SETTINGS, CUDA_TF32 as CUDA_TF32
from vggsim.model.cuda.settings import CudaSetting as CudaSetting, cuda_setting as cuda_setting
from vggsim.errors import ProviderError
from vggsim.model.openvino import OPENVINO_SETTINGS, OpenVinoSession
from vggsim.model.profiles import SessionProfile, graph_cache_dir, session_profile

ProviderRequest = Union[str, Sequence[str | tuple[str, dict[str, Any]]]]
#: The session type create_session returns (the only module that constructs one).
Session: TypeAlias = ort.InferenceSession

PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
}


_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.999)))
    return max(1, count)


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup (v2 ``cpu.max`` or v1 ``cfs_quota``), or None if unlimited."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_providers() -> list[str]:
    """Providers this onnxruntime build offers (a CUDA build lists CUDA even with no GPU)."""
    return list(ort.get_available_providers())


def resolve_providers(request: ProviderRequest = "auto", fixed_buffers: bool = False) -> list[Any]:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or an explicit list into onnxruntime's list.

    ``auto`` takes CUDA when this onnxruntime build has it, then CPU. A named provider the
    build lacks is a :class:`ProviderError` that says what to install. A CUDA-graph setting
    is refused unless the caller feeds fixed device buffers (``fixed_buffers``, as
    :class:`vggsim.model.cuda.runner.CudaRunner` does): fed from host arrays, a captured graph replays
    on stale addresses (on an H200 with onnxruntime-gpu 1.31.1, Embedder.run crashed).
    """
    available = available_providers()
    cuda: list[Any] = [CUDA_DEFAULT] if "CUDAExecutionProvider" in available else []
    items: list[Any]
    if isinstance(request, str):
        key = request.lower()
        if key == "auto":
            return cuda + ["CPUExecutionProvider"]
        if key == "tensorrt":  # TensorRT first, then CUDA for what it cannot take
            items = ["TensorrtExecutionProvider", *cuda]
        elif key in CUDA_SETTINGS:  # "cuda", "cuda-tf32", "cuda-graph", "cuda-overlap", ...
            if CUDA_SETTINGS[key].cuda_graph and not fixed_buffers:
                raise ProviderError(
                    f"{key!r} replays a captured CUDA graph and needs input and output bound to fixed device "
                    "buffers: run it through vggsim.model.cuda.runner.CudaRunner (create_session(..., fixed_buffers=True)), "
                    "or use 'cuda-tf32'.")
            items = [CUDA_SETTINGS[key].provider]
        elif key in PROVIDER_ALIASES or request in available:
            items = [PROVIDER_ALIASES.get(key, request)]
        else:
            raise ProviderError(
                f"Unknown provider {request!r}: use 'auto', a CUDA setting ({', '.join(CUDA_SETTINGS)}), "
                f"an OpenVINO setting ({', '.join(OPENVINO_SETTINGS)}), "
                f"one of {sorted(PROVIDER_ALIASES)}, "
                f"or an onnxruntime provider name ({', '.join(available)})."
            )
    else:
        items = list(request)
    resolved: list[Any] = []
    for item in items:
        name = item[0] if isinstance(item, tuple) else PROVIDER_ALIASES.get(item.lower(), item)
        if isinstance(name, str) and name.lower() in OPENVINO_SETTINGS:
            raise ProviderError(
                f"{name} runs the model on OpenVINO itself, not as one onnxruntime provider among others: "
                f"pass it alone (--providers {name.lower()}), not in a list")
        if name not in available:
            hint = (
                " Install the GPU build: pip uninstall -y onnxruntime && pip install 'vggsim[gpu]'."
                if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else ""
            )
            raise ProviderError(
                f"{name} is not available in this onnxruntime build (it offers "
                f"{', '.join(available)}).{hint}"
            )
        if isinstance(item, tuple):
            resolved.append((name, item[1]))
        else:  # a bare name gets vggsim's settings; a (name, options) pair keeps its own
            resolved.append(CUDA_DEFAULT if name == CUDA_DEFAULT[0] else name)
    if "CPUExecutionProvider" not in [p[0] if isinstance(p, tuple) else p for p in resolved]:
        resolved.append("CPUExecutionProvider")
    return resolved


def session_options(threads: int | None = None, optimize: bool = True, on_gpu: bool = False,
                    profile: str | SessionProfile = "default") -> ort.SessionOptions:
    """Full graph optimisation; intra-op threads = ``threads`` or the usable CPUs; the
    profile's arena and memory-pattern settings (:mod:`vggsim.model.profiles`).

    ``on_gpu``: the CPU threads only run the few shape operators the GPU leaves, so they do
    not spin-wait for work between runs: spinning, they hold every core while the GPU
    computes and starve the threads that decode the next images (a service, a pipeline).
    """
    chosen = session_profile(profile)
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = chosen.cpu_mem_arena
    options.enable_mem_pattern = chosen.mem_pattern
    for key, value in chosen.config:
        options.add_session_config_entry(key, value)
    if on_gpu:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = threads if threads and threads > 0 else usable_cpus()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _cpu_signature() -> str:
    flags = ""
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    except OSError:
        pass
    return f"{platform.machine()}|{platform.processor()}|{flags}"


def optimized_cache_path(model_path: Path, model_sha256: str, provider: str) -> Path:
    """Where the optimised graph for this model, onnxruntime build, provider and CPU is kept.

    onnxruntime's level-ALL graph may hold hardware-specific layouts, so everything that
    could change it is in the key; a stale file is simply never looked up again.
    """
    return model_path.with_name(f"model.optimized-{_graph_key(model_sha256, provider)}.onnx")


def _graph_key(model_sha256: str, provider: str, layout: str = "") -> str:
    text = f"{model_sha256}|{ort.__version__}|{provider}|{_cpu_signature()}{layout}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def preload_cuda_libraries() -> str:
    """Load CUDA and cuDNN from the ``nvidia-*`` wheels that ``onnxruntime-gpu[cuda,cudnn]``
    installs, as onnxruntime asks when PyTorch has not loaded them already.

    Returns what onnxruntime printed (empty when all went well), for the error message
    should CUDA still fail to start. Libraries on the system's own path need none of this.
    Done once per process.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # onnxruntime < 1.21
        return ""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            preload()
        except Exception as exc:  # a missing folder or an unloadable library: CUDA reports it later
            print(f"{type(exc).__name__}: {exc}")
    return printed.getvalue().strip()


def _new_session(model: Path | bytes, options: ort.SessionOptions, requested: list[Any]) -> ort.InferenceSession:
    """The one place vggsim constructs an onnxruntime session."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = model if isinstance(model, bytes) else os.fspath(model)
        return ort.InferenceSession(source, sess_options=options, providers=requested)


def create_session(
    model_path: str | os.PathLike[str] | bytes,
    providers: ProviderRequest = "auto",
    threads: int | None = None,
    strict: bool = False,
    cache_key: str | None = None,
    optimize: bool = True,
    fixed_buffers: bool = False,
    profile: str | SessionProfile = "default",
) -> tuple[ort.InferenceSession, str]:
    """Create a session and return it with the provider that actually runs it.

    ``model_path`` is an ONNX file, or the serialized model itself (``bytes``, never cached).

    With ``strict``, a session whose first provider is not the first one requested (for
    example CUDA asked for, CPU running because no GPU or CUDA library was found) raises
    :class:`ProviderError` instead of running silently on the CPU. ``auto`` is never strict
    about CUDA: it asks for the best there is.

    With ``cache_key`` (the model's sha256), the optimised graph is saved beside the model
    on first use and loaded, unoptimised, on later ones: a faster cold start.
    ``optimize=False`` runs the graph as written (no onnxruntime graph rewrites).
    ``fixed_buffers=True`` allows the CUDA-graph settings, for callers that bind fixed device
    buffers (:class:`vggsim.model.cuda.runner.CudaRunner`).
    ``profile`` names the session settings (:data:`vggsim.model.profiles.PROFILES`):
    ``"edge"`` always saves the optimised graph (see :func:`_cached_graph_session`).
    """
    chosen = session_profile(profile)
    if isinstance(providers, (list, tuple)) and len(providers) == 1 and isinstance(providers[0], str) \
            and providers[0].lower() in OPENVINO_SETTINGS:
        providers = providers[0]  # ["openvino-bf16"] (or "--providers openvino-bf16,") is the setting alone
    if isinstance(providers, str) and providers.lower() in OPENVINO_SETTINGS:
        if isinstance(model_path, bytes):
            raise ProviderError(f"{providers!r} reads the model from its file, not from bytes")
        openvino = OpenVinoSession(model_path, providers.lower(), threads)
        # the subset of the session interface the Embedder calls (run, get_inputs, get_outputs, get_providers)
        return cast(ort.InferenceSession, openvino), openvino.provider
    requested = resolve_providers(providers, fixed_buffers)
    first_requested = requested[0][0] if isinstance(requested[0], tuple) else requested[0]
    on_gpu = first_requested in _GPU_PROVIDERS
    preload_output = preload_cuda_libraries() if on_gpu else ""
    if isinstance(model_path, bytes):
        session = _new_session(model_path, session_options(threads, optimize, on_gpu, chosen), requested)
        return session, _check_running(session, providers, first_requested, strict, preload_output)
    path = Path(model_path)
    if chosen.cached_graph and optimize:
        from vggsim.model.manifest import sha256_file  # read in pieces: no copy of the model held in memory

        session = _cached_graph_session(path, cache_key or sha256_file(path), first_requested, threads, chosen,
                                        requested, on_gpu)
        return session, _check_running(session, providers, first_requested, strict, preload_output)
    cached = optimized_cache_path(path, cache_key, first_requested) if cache_key and optimize else None
    if cached is not None and cached.is_file():
        session = _new_session(cached, session_options(threads, optimize=False, on_gpu=on_gpu, profile=chosen), requested)
    else:
        options = session_options(threads, optimize, on_gpu, chosen)
        staging = cached.with_name(f".{cached.name}.{os.getpid()}.tmp") if cached else None
        if staging is not None and os.access(path.parent, os.W_OK):
            options.optimized_model_filepath = os.fspath(staging)
        session = _new_session(path, options, requested)
        if staging is not None and staging.is_file():
            os.replace(staging, cached)  # type: ignore[arg-type]
    return session, _check_running(session, providers, first_requested, strict, preload_output)


def _cached_graph_session(path: Path, model_sha256: str, provider: str, threads: int | None,
                          profile: SessionProfile, requested: list[Any], on_gpu: bool) -> ort.InferenceSession:
    """A session on the saved optimised graph, saving it first if this is the first start.

    The graph is the one full optimisation makes (so the same kernels and the same vectors
    as the default profile), saved as ``model.onnx`` with every weight in ``model.data``:
    loaded with no optimisation, onnxruntime memory-maps the weights instead of copying
    them, and the optimiser's second copy of the convolution weights is never made. The
    first start pays for the optimisation once; the folder appears atomically (a process
    that loses the race to write it keeps its own session and drops its copy).
    """
    folder = graph_cache_dir(path, _graph_key(model_sha256, provider, "|external-data"))
    if (folder / "model.onnx").is_file() and (folder / "model.data").is_file():
        try:
            options = session_options(threads, optimize=False, on_gpu=on_gpu, profile=profile)
            return _new_session(folder / "model.onnx", options, requested)
        except Exception as exc:  # a damaged copy (disk full, truncated): made again below, not failed on forever
            warnings.warn(f"the saved graph in {folder} could not be loaded ({exc}); saving it again",
                          RuntimeWarning, stacklevel=4)
    if folder.exists():  # incomplete or damaged: out of the way, or the new copy could never take its place
        shutil.rmtree(folder, ignore_errors=True)
    options = session_options(threads, optimize=True, on_gpu=on_gpu, profile=profile)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging: Path | None = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError:  # nowhere to write: run optimised in memory, as the default profile does
        staging = None
    if staging is not None:
        staging.chmod(0o755)  # mkdtemp makes it private; the saved graph is as readable as the model
        options.optimized_model_filepath = os.fspath(staging / "model.onnx")
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "model.data")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    try:
        session = _new_session(path, options, requested)
        if staging is not None and (staging / "model.onnx").is_file():
            with contextlib.suppress(OSError):  # another process saved it first: theirs is the same graph
                os.replace(staging, folder)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return session


def _check_running(session: ort.InferenceSession, providers: ProviderRequest, first_requested: str, strict: bool,
                   preload_output: str) -> str:
    """The provider running ``session``; raise (strict) or warn when it is not the one asked for."""
    running = str(session.get_providers()[0])
    is_auto = isinstance(providers, str) and providers.lower() == "auto"
    if running != first_requested:
        message = (
            f"{first_requested} was requested but {running} is running: onnxruntime could not start "
            f"{first_requested} (no GPU visible, or its CUDA/cuDNN libraries are missing"
            + (f": {preload_output}" if preload_output else "") + ")."
        )
        if strict and not is_auto:
            raise ProviderError(message + " Run `vggsim doctor` to see what is missing.")
        if not is_auto:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
    return running
