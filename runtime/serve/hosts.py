"""Which Host and Origin headers the service answers: loopback is not a hole.

A service on 127.0.0.1 without a token trusts whoever reaches it, and a web page in the user's
browser can reach it: by DNS rebinding (a name of the attacker's that resolves to 127.0.0.1,
sent as the Host header) or by a plain cross-origin POST (a form or fetch from another site;
the browser sends it and only hides the answer). So, without a token, a request whose Host is
not one of the service's own names is refused (``--allowed-hosts`` adds names), and any
request that carries an Origin other than the service's own is refused unless
``--cors-origins`` names it, with or without a token. Both answer 403 in the one JSON error shape
(Starlette's TrustedHostMiddleware answers plain text, and CORSMiddleware only leaves the
answer unreadable: the request would still run). CORSMiddleware answers the allowed origins'
preflights and headers (vggsim.serve.app).
"""

from __future__ import annotations

from typing import Any

from vggsim.serve.problems import error_response

#: names every service answers to (with its port), besides the address it is bound to
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARDS = ("0.0.0.0", "::", "")


def own_hosts(host: str, port: int, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The Host header values the service answers: its bound address and the loopback names, on any port
    or none (the name is what DNS rebinding forges; the port is only where the client connected, which a
    port mapping, a proxy or an app mounted in another server makes differ from ``port``), and ``extra``
    as given (``name`` for any port, or ``name:port``)."""
    del port  # kept in the signature: a bound port says nothing about which names are the service's
    names = {f"[{host}]" if ":" in host else host, *LOOPBACK_NAMES} - {f"[{w}]" if ":" in w else w for w in _WILDCARDS}
    hosts = {f"{name}:*" for name in names} | names
    # an extra name without a port allows every port: kept as "name:*"
    hosts |= {h if h == "*" or _has_port(h) else f"{h}:*" for h in extra}
    return frozenset(h.lower() for h in hosts)


def _has_port(host: str) -> bool:
    return not host.endswith("]") and ":" in host.lstrip("[").split("]")[-1]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1")).strip()
    return None


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    host = host.lower()
    if "*" in allowed or host in allowed:
        return True
    name = host.rsplit(":", 1)[0] if _has_port(host) else host
    return f"{name}:*" in allowed


class HostOriginMiddleware:
    """Refuses (403, JSON) a foreign Host header when ``check_host``, and a foreign Origin unless in ``origins``."""

    def __init__(self, app: Any, hosts: frozenset[str], check_host: bool, origins: tuple[str, ...] = ()) -> None:
        self.app, self.hosts, self.check_host = app, hosts, check_host
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        if self.check_host and not host_allowed(host, self.hosts):
            await error_response(403, "bad_host", f"Host header {host!r} is not one of this service's names; "
                                 "add it with --allowed-hosts (or set a token)", path=scope.get("path", ""))(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is not None and not self._origin_allowed(origin, host):
            await error_response(403, "bad_origin", f"cross-origin request from {origin!r} refused; "
                                 "allow it with --cors-origins", path=scope.get("path", ""))(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.origins or origin in self.origins:
            return True
        # the service's own page: same host and port as the request, over http or (behind a TLS proxy) https
        return bool(host) and origin in (f"http://{host.lower()}", f"https://{host.lower()}")
