"""The guard every server-side fetch goes through before it connects (server-side request forgery).

A host is resolved once, here, at fetch time; every address it resolves to must be public, or inside
a network the operator allow-listed (``CIRCLET_ALLOWED_PRIVATE_NETWORKS``). The caller then connects
to those addresses only (pinning), so a name that resolves differently a moment later (DNS rebinding)
cannot steer the connection elsewhere. Refusals name the kind of address, never the address itself:
an organization learns nothing of the server's internal DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# An IPv6 address that carries an IPv4 one is judged by the IPv4 address it carries.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(Exception):
    """The server will not connect there; the message is safe to show to the organization."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.0/8, fd00::/8``: comma-separated CIDRs (a bare address is one host); ValueError if bad."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def own_addresses() -> frozenset[IPAddress]:
    """The addresses of this machine's network interfaces: a fetch of them is a request to ourselves."""
    found: set[IPAddress] = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(address.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return frozenset(found)


def carried(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 IPv6 address leads to; else the address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class NetworkGuard:
    allowed: tuple[IPNetwork, ...] = ()
    own: frozenset[IPAddress] = field(default_factory=frozenset)

    def refusal(self, address: IPAddress) -> str | None:
        """Why the server will not connect to ``address`` (a phrase), or None if it may."""
        target = carried(address)
        if any(target in network or address in network for network in self.allowed):
            return None
        if target.is_loopback:
            return "a loopback address"
        if target.is_link_local:
            return "a link-local address (where cloud metadata services live)"
        if target.is_unspecified:
            return "the unspecified address"
        if target in self.own or address in self.own:
            return "an address of this server"
        if target.is_multicast:
            return "a multicast address"
        if not target.is_global:
            return "a private or reserved address (the operator may allow it with CIRCLET_ALLOWED_PRIVATE_NETWORKS)"
        return None

    def check(self, host: str, addresses: Iterable[IPAddress]) -> list[IPAddress]:
        checked = list(dict.fromkeys(addresses))
        if not checked:
            raise Refused(f"the host {host} resolves to no address")
        for address in checked:
            reason = self.refusal(address)
            if reason is not None:
                raise Refused(f"the host {host} resolves to {reason}; this server does not connect there")
        return checked

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to now, each one allowed; Refused otherwise. An IP literal
        is its own answer. Connect to the returned addresses, not to the name (see the module)."""
        try:
            literal = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            pass
        else:
            return self.check(host, [literal])
        try:
            answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise Refused(f"the host {host} could not be resolved") from None
        return self.check(host, (ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0]) for answer in answers))
