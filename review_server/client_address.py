"""Who is on the other end of a request: the peer's address, or, behind a reverse proxy the centre configured
(`trusted_proxies`), the client address that proxy put in X-Forwarded-For.

Only a trusted proxy's word is taken: X-Forwarded-For from any other peer is ignored (anyone can write that
header), and the chain is read from the right, skipping trusted proxies, so that addresses a client prepended
itself are never used. Throttles and the audit key on this address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _parsed(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_proxies(entries)


def parse_proxies(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks ("10.0.0.5", "10.0.0.0/24"); ValueError naming a bad entry."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network") from None
    return tuple(out)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: tuple[Network, ...]) -> bool:
    return addr is not None and any(addr in net for net in proxies)


def client_address(request: web.BaseRequest, trusted_proxies: Iterable[str]) -> str:
    """The client's address as text ("?" if unknown); `trusted_proxies` as in the server's config."""
    proxies = _parsed(tuple(trusted_proxies))
    peer = request.remote or "?"
    if not proxies or not _trusted(_address(peer), proxies):
        return peer
    hops = [h for header in request.headers.getall("X-Forwarded-For", []) for h in header.split(",")]
    for hop in reversed(hops):
        addr = _address(hop)
        if addr is None:
            return peer  # a hop the proxy cannot have written: do not guess past it
        if not _trusted(addr, proxies):
            return str(addr)
    return peer
