"""The address guard: which IP addresses the crawler may connect to.

A CrawlJob makes the operator fetch URLs from inside the cluster, so by
default it refuses loopback, link-local (cloud metadata at 169.254.169.254),
private, shared (100.64.0.0/10), multicast, reserved and unspecified
addresses, IPv4 and IPv6, including IPv4 embedded in IPv6 (mapped, 6to4,
Teredo, NAT64).

The check runs on the address actually connected to, not on the URL: the
resolver drops refused addresses from every DNS answer (so a name that
resolves to 127.0.0.1 is refused, whatever the name), and the socket factory
checks again right before the socket is made, which is the only hook aiohttp
offers for literal-IP URLs (they never reach the resolver). A redirect is a
new request, so it meets both checks too. Nothing is sent to a refused
address: refusal happens before a socket exists.

Only the operator's own configuration (`--crawl-allow-private`, or
`mandrill crawl --allow-private`) widens the policy, and then to every
address; a CrawlJob cannot.
"""

from __future__ import annotations

import ipaddress
import socket

import attrs
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class BlockedAddressError(OSError):
    """The guard refused to connect to an address (an OSError so aiohttp wraps it)."""


@attrs.frozen
class AddressPolicy:
    """Which addresses may be connected to."""

    allow_private: bool = False
    """Allow every address: for crawling a lab network, or tests on loopback."""

    @classmethod
    def from_settings(cls, *, allow_private: bool = False) -> AddressPolicy:
        """From the operator's configuration (--crawl-allow-private)."""
        return cls(allow_private=allow_private)

    def refusal(self, address: str) -> str | None:
        """Why `address` is refused, or None if it may be connected to."""
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if self.allow_private:
            return None
        for candidate in _embedded(ip):
            reason = _category(candidate)
            if reason is not None:
                return reason if candidate is ip else f"{reason} ({candidate} embedded)"
        return None


def _embedded(ip: IPAddress) -> list[IPAddress]:
    """Any IPv4 address `ip` carries, then `ip`: the embedded one names the real target."""
    found: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip.teredo is not None:
            found.extend(ip.teredo)
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    found.append(ip)
    return found


def _category(ip: IPAddress) -> str | None:
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared address space"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
        (not ip.is_global, "not globally routable"),
    )
    for hit, reason in checks:
        if hit:
            return f"{reason} address"
    return None


class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's default resolver and drops every refused address."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The allowed addresses of `host`; BlockedAddressError if there are none."""
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            reason = self._policy.refusal(result["host"])
            if reason is None:
                allowed.append(result)
            else:
                refused.append(f"{result['host']} ({reason})")
        if not allowed and refused:
            raise BlockedAddressError(
                f"refused: {host} resolves only to blocked addresses: {', '.join(refused)}"
            )
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


def socket_factory(policy: AddressPolicy) -> SocketFactoryType:
    """A socket factory for aiohttp's connector that refuses blocked addresses."""

    def make(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        reason = policy.refusal(address)
        if reason is not None:
            raise BlockedAddressError(f"refused to connect to {address}: {reason}")
        return socket.socket(family=family, type=type_, proto=proto)

    return make
