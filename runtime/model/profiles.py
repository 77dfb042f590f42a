"""Named session profiles: how an onnxruntime session trades memory for speed.

A profile never changes what the model computes: ``edge`` runs the very graph that
``default`` builds (onnxruntime's full optimisation, saved once and reloaded as is), so
its vectors are bit-identical. Only where memory comes from changes. Sessions are still
made in one place, :func:`vggsim.model.session.create_session`; this module only names the
settings and where the saved graph lives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vggsim import config


@dataclass(frozen=True)
class SessionProfile:
    """A frozen set of session settings.

    ``cpu_mem_arena``/``mem_pattern``: onnxruntime's BFC arena and its pre-planned
    activation blocks (both grow and keep memory; off, every tensor is a plain allocation
    returned at once). ``cached_graph``: optimise the graph once, save it with its weights
    in a separate file, and load that on later starts with no optimisation at all; the
    weights file is memory-mapped, and no second copy of the weights is made by the
    optimiser (the NCHWc layout pass copies every convolution's weights).
    """

    name: str
    cpu_mem_arena: bool
    mem_pattern: bool
    cached_graph: bool
    note: str = ""
    #: onnxruntime session config entries (``add_session_config_entry``), for measuring others.
    config: tuple[tuple[str, str], ...] = ()


# Measured on x86-64 by benchmarks/edge_memory.py (each setting undone in turn; figures in
# its JSON and the README). Not here, and why: intra-op threads (1 thread: the same peak),
# session.disable_prepacking (no gain for fp32; int8 peak +20 MB and slower). Tried by hand
# and dropped: the model passed as bytes (+96 MB: Python's copy and onnxruntime's), and an
# ORT-format model with session.use_ort_model_bytes_for_initializers (onnxruntime 1.32's
# Python binding does not keep the bytes alive: SIGSEGV on the first run).
PROFILES: dict[str, SessionProfile] = {p.name: p for p in (
    SessionProfile("default", cpu_mem_arena=True, mem_pattern=True, cached_graph=False,
                   note="onnxruntime's defaults: arena and memory patterns on, graph optimised at every start"),
    SessionProfile("edge", cpu_mem_arena=False, mem_pattern=False, cached_graph=True,
                   note="small devices: no arena, no memory patterns, optimised graph saved once (weights "
                        "memory-mapped from a separate file) and reused; same vectors as default"),
)}


def session_profile(name: str | SessionProfile) -> SessionProfile:
    """The named profile; an unknown name is a ValueError that lists the choices."""
    if isinstance(name, SessionProfile):
        return name
    try:
        return PROFILES[str(name).lower()]
    except KeyError:
        raise ValueError(f"Unknown session profile {name!r}: use one of {', '.join(PROFILES)}") from None


def user_cache_dir() -> Path:
    """$VGGSIM_CACHE_DIR, else $XDG_CACHE_HOME/vggsim, else ~/.cache/vggsim."""
    return config.cache_dir()


def graph_cache_dir(model_path: Path, key: str) -> Path:
    """The folder holding a profile's saved graph (``model.onnx`` and its ``model.data``):
    beside the model when its folder is writable, else in :func:`user_cache_dir`."""
    if os.access(model_path.parent, os.W_OK):
        return model_path.with_name(f"model.optimized-{key}")
    return user_cache_dir() / "graphs" / key
