"""The netns helper's choices: names Linux takes, a /30 that collides with nothing, stale leftovers."""

from __future__ import annotations

import ipaddress

import pytest

from tests.integration.netns import IFNAMSIZ, POOL, names, pick_subnet, stale

net = ipaddress.ip_network


def test_names_carry_the_pid_and_fit_an_interface_name() -> None:
    assert names(4242, "partner") == ("pg-4242-partner", "pg4242partnerh")
    ns, link = names(4194304, "partnerhost")  # the largest pid Linux hands out
    assert ns == "pg-4194304-partnerhost" and len(link) <= IFNAMSIZ and link.endswith("h")
    with pytest.raises(ValueError):
        names(1, "Partner Host")


def test_the_pid_picks_the_subnet_and_it_is_a_30_of_the_pool() -> None:
    a, b = pick_subnet(100, []), pick_subnet(101, [])
    assert a.prefixlen == b.prefixlen == 30 and a.subnet_of(POOL) and b.subnet_of(POOL)
    assert a != b and not a.overlaps(b)
    assert pick_subnet(100 + 2**14, []) == a  # wraps around the pool's 16384 /30s


def test_a_taken_network_is_skipped() -> None:
    first = pick_subnet(7, [])
    assert pick_subnet(7, [net("10.250.0.0/24")]) == net("10.250.1.0/30")
    assert pick_subnet(7, [first]) == net(f"{first.network_address + 4}/30")
    assert pick_subnet(7, [net("10.0.0.0/8"), net("fd00::/64")], pool=net("192.168.77.0/29")) == net("192.168.77.4/30")


def test_a_full_pool_is_unavailable_not_a_collision() -> None:
    from tests.integration.netns import Unavailable

    with pytest.raises(Unavailable):
        pick_subnet(1, [net("10.250.0.0/16")])


def test_only_our_namespaces_of_dead_processes_are_stale() -> None:
    listing = "pg-10-partner (id: 0)\npg-11-partner\npg-12-grid (id: 3)\nother-ns\npg-x-partner\n"
    assert stale(listing, alive=lambda pid: pid == 11) == ["pg-10-partner", "pg-12-grid"]
