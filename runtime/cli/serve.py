"""``vggsim serve``: the HTTP service (needs the ``serve`` extra)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import signal
import socket
from typing import Any

from vggsim.errors import VggsimError, require
from vggsim.cli.common import (MAX_BATCH, MAX_K, UsageError, add_model_args, add_parser, int_range, log,
                               positive_float, postgres_table)



# An idle keep-alive connection is closed after 15 s, not uvicorn's 5: clients (httpx, and
# many others) drop theirs after 5 s, and when both sides use the same figure a request sent
# just as the server closes the connection fails with a reset (seen under overload, about 1
# request in 2,000, until the load client's own expiry was set below the server's).
KEEP_ALIVE_S = 15

def register(sub: Any) -> None:
    p = add_parser(sub, "serve", help="serve embeddings, similarity and search over HTTP",
                   description="Serve the model (and optionally a store) over HTTP: POST /v1/embed, /v1/similarity, "
                   "/v1/search, /v1/duplicates; GET /v1/info, /health/live, /health/ready, /metrics; OpenAPI at "
                   "/openapi.json and /docs. Set $VGGSIM_SERVE_TOKEN to require 'Authorization: Bearer TOKEN'. "
                   "SIGTERM finishes the requests in progress, then exits. Needs vggsim[serve].")
    add_model_args(p)
    p.add_argument("--store", metavar="STORE", help="store folder made by `vggsim embed`, for /v1/search and "
                   "/v1/duplicates (default: none); a store that grows meanwhile is picked up without a restart")
    p.add_argument("--index", choices=["auto", "off", "require"], default="auto",
                   help="/v1/search through the store's on-disk index (`vggsim index build`, needs vggsim[ann]): "
                   "auto uses it while it covers the store's latest commit and otherwise searches exactly "
                   "(each response says which, and why); off always searches exactly; require refuses to start "
                   "without a current index and answers 409 while it is stale (default: auto)")
    p.add_argument("--search-backend", choices=["store", "postgres"], default="store",
                   help="what answers /v1/search and /v1/duplicates: the --store (exactly or by its index), or the "
                   "pgvector table `vggsim store sync --postgres` fills (needs --postgres and vggsim[postgres]; no "
                   "--store needed)")
    p.add_argument("--postgres", metavar="URI", default=None,
                   help="PostgreSQL connection URI for --search-backend postgres, as libpq reads it "
                   "(postgresql://user@host/db; keep the password in ~/.pgpass or $PGPASSWORD, not here: "
                   "command lines show in `ps`) (default: none)")
    p.add_argument("--postgres-table", metavar="NAME", default="vggsim_images", type=postgres_table,
                   help="the table `vggsim store sync` filled")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default; "
                   "anything else should have a token and a TLS proxy in front)")
    p.add_argument("--allowed-hosts", metavar="HOST[,HOST...]", default="",
                   help="Host header values answered besides the bound address, 127.0.0.1, localhost and [::1] (those "
                   "on any port): NAME (any port) or NAME:PORT, comma-separated, * for any. Without a token every other "
                   "Host is refused (403 bad_host: DNS rebinding); with a token only when this is given (default: none)")
    p.add_argument("--cors-origins", metavar="ORIGIN[,ORIGIN...]", default="",
                   help="origins (scheme://host[:port]) other than the service's own that browsers may call it from, "
                   "comma-separated, * for any; a request with any other Origin header is refused (403 bad_origin) "
                   "(default: none)")
    p.add_argument("--port", type=int_range(0, 65535), default=8000, help="TCP port")
    p.add_argument("--max-batch", type=int_range(1, MAX_BATCH), default=8, help="most images per inference batch")
    p.add_argument("--max-wait-ms", type=positive_float(10_000), default=5.0,
                   help="how long a batch waits for more images before it runs, in ms")
    p.add_argument("--queue-size", type=int_range(1, 1_000_000), default=64,
                   help="images in progress (decoding, queued, running) before requests get 429")
    p.add_argument("--decode-workers", type=int_range(1, 256), default=2, help="decode threads")
    p.add_argument("--decode-timeout", type=positive_float(), default=60.0, metavar="SECONDS",
                   help="seconds one image may take to decode before it is answered 422 (kind timeout) and its "
                   "decode thread abandoned, as in `vggsim embed`")
    p.add_argument("--memory-budget", type=positive_float(), default=512.0, metavar="MB",
                   help="memory the decodes may hold together, in MiB")
    p.add_argument("--max-body-mb", type=positive_float(), default=32.0, help="largest request body, in MiB (413 above)")
    p.add_argument("--body-budget-mb", type=positive_float(), default=128.0, metavar="MB",
                   help="request bodies the service may hold at once, in MiB (429 above); at least --max-body-mb")
    p.add_argument("--max-images", type=int_range(1, 4096), default=32, help="most images in one request")
    p.add_argument("--deadline", type=positive_float(), default=30.0, metavar="SECONDS",
                   help="a request not answered within this many seconds gets 503")
    p.add_argument("--body-timeout", type=positive_float(), default=30.0, metavar="SECONDS",
                   help="a request body not received within this many seconds of its headers gets 408 (frees its "
                   "share of --body-budget-mb)")
    p.add_argument("--max-k", type=int_range(1, MAX_K), default=1000, help="largest k a search may ask for")
    p.add_argument("--drain-timeout", type=positive_float(), default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long requests in progress may take to finish")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")
    p.set_defaults(handler=run)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def run(args: argparse.Namespace) -> int:
    for module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
        require(module, "serve", "vggsim serve")  # before the model loads: say so at once
    if args.store is not None:
        require("pyarrow", "store", "vggsim serve --store")
    if args.search_backend == "postgres":
        if not args.postgres:
            raise UsageError("--search-backend postgres needs --postgres URI (the database `vggsim store sync` filled)")
        for module in ("psycopg", "pgvector"):
            require(module, "postgres", "vggsim serve --search-backend postgres")
    elif args.postgres:
        raise UsageError("--postgres is used only with --search-backend postgres")
    import uvicorn

    from vggsim.serve.app import create_app, with_serving_batch
    from vggsim.serve.config import ServeConfig
    from vggsim.cli.common import build_embedder

    sock = _listen(args.host, args.port)  # before the model loads: a port in use is said at once, in one line
    config = ServeConfig(
        model=args.model, store=args.store, host=args.host, port=sock.getsockname()[1], providers=args.providers,
        threads=args.threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, queue_size=args.queue_size,
        decode_workers=args.decode_workers, decode_timeout_s=args.decode_timeout,
        memory_budget=int(args.memory_budget * 1024 * 1024),
        max_body_bytes=int(args.max_body_mb * 1024 * 1024), body_budget_bytes=int(args.body_budget_mb * 1024 * 1024),
        max_images=args.max_images, deadline_s=args.deadline, body_timeout_s=args.body_timeout,
        max_k=args.max_k, index=args.index, search_backend=args.search_backend, postgres=args.postgres,
        postgres_table=args.postgres_table, token=ServeConfig.token_from_env(), drain_s=args.drain_timeout,
        allowed_hosts=_names(args.allowed_hosts), cors_origins=_names(args.cors_origins))
    if not _loopback(args.host) and config.token is None:
        log(f"warning: listening on {args.host} without a token (set $VGGSIM_SERVE_TOKEN)")
    embedder = with_serving_batch(lambda fixed: build_embedder(args, fixed_batch=fixed), args.providers, args.max_batch)
    app = create_app(config, embedder)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                           timeout_graceful_shutdown=int(args.drain_timeout + 0.999),
                                           timeout_keep_alive=KEEP_ALIVE_S,
                                           access_log=args.log_level == "debug"))
    # uvicorn handles SIGTERM/SIGINT itself (stop accepting, finish requests, then the lifespan
    # drains the batcher) and afterwards re-raises the signal to the handler that was there before
    # it started: a no-op here, so a drained shutdown exits 0 instead of dying of the signal.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: None)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound as uvicorn binds its own (IPv6 when the host has a colon), or a VggsimError
    naming the address and the cause: uvicorn would log four lines after the model had loaded, then exit 3."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        cause = exc.strerror or str(exc)
        hint = "; another process holds it: pick another --port" if exc.errno == errno.EADDRINUSE else ""
        raise VggsimError(f"cannot listen on {host}:{port} ({cause}){hint}") from None
    sock.set_inheritable(True)
    return sock
