"""The guard of server-side fetches (circlet.reach.network): resolution, refusal, the allow-list."""

from __future__ import annotations

import ipaddress

import pytest

from circlet.reach.network import NetworkGuard, Refused, own_addresses, parse_networks

PUBLIC = ipaddress.ip_address("140.82.112.3")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str, reason: str) -> None:
    refusal = NetworkGuard().refusal(ipaddress.ip_address(address))
    assert refusal is not None and reason in refusal


def test_public_addresses_pass_and_the_servers_own_do_not() -> None:
    assert NetworkGuard().refusal(PUBLIC) is None
    assert "this server" in (NetworkGuard(own=frozenset({PUBLIC})).refusal(PUBLIC) or "")


def test_the_allow_list_admits_its_networks_only() -> None:
    guard = NetworkGuard(parse_networks("10.0.0.0/8, 127.0.0.1"))
    assert guard.refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert guard.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert guard.refusal(ipaddress.ip_address("127.0.0.2")) is not None
    assert guard.refusal(ipaddress.ip_address("169.254.169.254")) is not None
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")


def test_own_addresses_include_loopback() -> None:
    assert ipaddress.ip_address("127.0.0.1") in own_addresses()


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    with pytest.raises(Refused, match="localhost resolves to a loopback address") as refused:
        await NetworkGuard().resolve("localhost", 443)
    assert "127.0.0.1" not in str(refused.value)
    allowed = NetworkGuard(parse_networks("127.0.0.0/8, ::1"))
    assert ipaddress.ip_address("127.0.0.1") in await allowed.resolve("localhost", 443)
    with pytest.raises(Refused, match="link-local"):
        await NetworkGuard().resolve("169.254.169.254", 80)
    with pytest.raises(Refused, match="could not be resolved"):
        await NetworkGuard().resolve("no-such-host.invalid", 443)
