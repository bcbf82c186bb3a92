"""Who a client is, for per-client throttles."""

from __future__ import annotations

import ipaddress


def throttle_ident(address: str | None) -> str:
    """The key a client's requests are counted under: its IPv4 address, or the /64 network of its
    IPv6 address (one subscriber holds a whole /64 and could otherwise get a fresh allowance per
    address). Anything else (a proxy's `unknown`, no address at all) is counted as it is."""
    text = (address or "").strip()
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return text[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
