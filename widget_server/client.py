"""Who is the visitor? The client's address, also behind reverse proxies.

Bans, the new-chat rate limit and the verification limits key on it, so it must be a value the
client cannot choose. The rules (docs/OPERATIONS.md, "Reverse proxy"):

- The direct peer is the client unless it is in ``widget.trusted_proxies``.
- When it is trusted, the one header the proxy writes (``widget.forwarded_header``:
  ``X-Forwarded-For`` or RFC 7239 ``Forwarded``; the other is never read) lists the hops, left
  to right, each appended by the proxy that received it. Walking from the right, trusted proxies
  are skipped; the first untrusted address is the client. Whatever lies further left was
  written by that client and is never read.
- A hop that names no address (``unknown``, an obfuscated ``_id``, a ``Forwarded`` element
  without ``for=``, or anything that does not parse) ends the walk: the trusted proxy that wrote
  it stands for the client. So does the left-most hop when every hop is trusted.
- Hops may carry a port (``192.0.2.1:4711``, ``[2001:db8::1]:4711``); IPv6 may be bracketed
  (``Forwarded`` quotes it: ``for="[2001:db8::1]:4711"``); a zone (``%eth0``) is dropped;
  IPv4-mapped IPv6 (``::ffff:192.0.2.1``) is the IPv4 address. Empty list elements are skipped.
- The key for limits and bans is the address, except that IPv6 clients are keyed by their /64:
  one household or phone gets a /64 and may use any address in it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from multidict import CIMultiDictProxy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 7230 token and quoted-string; RFC 7239 forwarded-pair.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PAIR = re.compile(rf"[ \t]*({_TOKEN})=({_TOKEN}|{_QUOTED})[ \t]*")
_UNESCAPE = re.compile(r"\\(.)")
_PORT = re.compile(r"^(?:[0-9]{1,5}|_[A-Za-z0-9._-]+)$")


def parse_node(text: str) -> IPAddress | None:
    """An address from one hop (``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]:80``,
    ``2001:db8::1``); None for ``unknown``, obfuscated identifiers and anything else."""
    text = text.strip()
    if text.startswith("["):
        host, closed, port = text[1:].partition("]")
        if not closed or (port and not (port.startswith(":") and _PORT.match(port[1:]))):
            return None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _PORT.match(port):
            return None
    else:
        host = text
    host = host.partition("%")[0]  # a zone only means something on the proxy's own link
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def x_forwarded_for(values: Sequence[str]) -> list[str]:
    """The hops of X-Forwarded-For header lines, left to right (empty elements skipped)."""
    return [hop.strip() for line in values for hop in line.split(",") if hop.strip()]


def forwarded_for(values: Sequence[str]) -> list[str | None]:
    """The ``for=`` value of each element of Forwarded header lines, left to right.

    None for an element without ``for`` or one that does not parse. Parsing resumes at the next
    comma after an error, so an unterminated quote does not swallow the elements after it. A
    client's stray quote can still pair with a quote in a proxy's element on the same line and
    make that element unreadable: then the walk stops at the proxy (never at a client's value).
    Proxies that replace the header, or add their own line, avoid this.
    """
    hops: list[str | None] = []
    for line in values:  # each line on its own: one line's syntax cannot reach into the next
        pos = 0
        while pos < len(line):
            if line[pos] in ", \t":
                pos += 1  # element separators, empty elements, whitespace
                continue
            pairs, pos = _element(line, pos)
            if pairs is None:
                hops.append(None)
                comma = line.find(",", pos)
                pos = len(line) if comma < 0 else comma
            else:
                hops.append(pairs.get("for"))
    return hops


def _element(line: str, pos: int) -> tuple[dict[str, str] | None, int]:
    """The pairs of the element at ``pos`` and where it ends; None and where parsing failed."""
    pairs: dict[str, str] = {}
    while True:
        match = _PAIR.match(line, pos)
        if match is None:
            return None, pos
        name, value = match[1].lower(), match[2]
        if value.startswith('"'):
            value = _UNESCAPE.sub(r"\1", value[1:-1])
        if name in pairs:  # RFC 7239: each parameter at most once per element
            return None, pos
        pairs[name] = value
        pos = match.end()
        if pos < len(line) and line[pos] == ";":
            pos += 1
        elif pos == len(line) or line[pos] == ",":
            return pairs, pos
        else:
            return None, pos


class ClientAddresses:
    """Finds the client address of a request from its peer and the proxy's header."""

    def __init__(self, trusted: Sequence[IPNetwork], header: str) -> None:
        if header not in ("x-forwarded-for", "forwarded"):
            raise ValueError(f"unknown forwarded header {header!r}")
        self.trusted = tuple(trusted)
        self.header = header

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def resolve(self, peer: str | None, headers: CIMultiDictProxy[str]) -> str:
        """The client's address as text; the peer as given when it is not an IP address."""
        address = parse_node(peer) if peer else None
        if address is None:
            return peer or "unknown"
        if not self.is_trusted(address):
            return str(address)
        lines = headers.getall(self.header, [])
        hops = forwarded_for(lines) if self.header == "forwarded" else x_forwarded_for(lines)
        for hop in reversed(hops):
            found = parse_node(hop) if hop is not None else None
            if found is None:
                break  # the proxy that wrote this hop cannot name its client: it stands in
            address = found
            if not self.is_trusted(address):
                break
        return str(address)


def limit_key(address: str) -> str:
    """What bans and limits count: the address, or an IPv6 address's /64 network."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address
