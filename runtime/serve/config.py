"""The service's settings: one frozen object built by the CLI (or a test) and read everywhere."""

from __future__ import annotations

from dataclasses import dataclass

from vggsim import config
from vggsim.images.budget import DEFAULT_MEMORY_BUDGET

#: The environment variable that holds the bearer token (never a command-line flag: those show in `ps`).
TOKEN_ENV = config.TOKEN


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``vggsim serve`` is told. Sizes in bytes, times in seconds."""

    model: str | None = None
    store: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    providers: str = "auto"
    threads: int | None = None
    max_batch: int = 8             # images per Embedder.run
    max_wait_ms: float = 5.0       # how long the first image of a batch waits for company
    queue_size: int = 64           # images waiting for inference; more -> 429
    decode_workers: int = 2        # decode threads (bounded pool)
    decode_timeout_s: float = 60.0  # one image's decode past this: 422 timeout, its thread abandoned
    memory_budget: int = DEFAULT_MEMORY_BUDGET  # decode memory budget (vggsim.images.budget)
    max_body_bytes: int = 32 * 1024 * 1024
    body_budget_bytes: int = 128 * 1024 * 1024  # request bodies held at once (vggsim.serve.bodies)
    max_images: int = 32           # images per request
    deadline_s: float = 30.0       # a request still waiting past this gets 503
    body_timeout_s: float = 30.0   # a request body not in within this of its headers gets 408
    max_k: int = 1000
    index: str = "auto"            # on-disk index: auto (when current, else exact), off, require
    search_backend: str = "store"  # what answers /v1/search and /v1/duplicates: the store, or postgres
    postgres: str | None = None    # the PostgreSQL URI for search_backend postgres (libpq's form)
    postgres_table: str = "vggsim_images"
    token: str | None = None       # bearer token; None: no auth
    drain_s: float = 30.0          # graceful shutdown: how long in-flight requests may take
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the bound one and loopback (vggsim.serve.hosts)
    cors_origins: tuple[str, ...] = ()   # origins other than the service's own allowed to call it

    @staticmethod
    def token_from_env() -> str | None:
        return config.token()
