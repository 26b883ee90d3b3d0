"""RFC 9611 per-resource Child SAs between two in-memory engines: the fallback SA plus N more with the same
selectors when both ends support it, only the fallback when the responder does not (as strongSwan 5.9, which
ignores the status notify), TS_MAX_QUEUE past the responder's limit, and rekeys that keep the group."""

from __future__ import annotations

from dataclasses import replace

from ikeguard.engine.states import ChildState
from ikeguard.wire.iana import NotifyType
from tests.engine.harness import Network, child, mirror, pair, psk_conn


def up(ours: int, theirs: int) -> Network:
    c = child(per_resource_sas=ours)
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (replace(mirror(c), per_resource_sas=theirs),))
    net = pair([a], [b])
    net.initiate(children=["net"])
    net.run()
    return net


def live(net: Network, side: str) -> list:  # type: ignore[type-arg]
    (sa,) = (net.a if side == "a" else net.b).manager.ike_sas()
    return sorted((c for c in sa.children.values() if c.state is ChildState.INSTALLED),
                  key=lambda c: c.resource_id)


def test_fallback_and_two_per_resource_sas_with_the_same_selectors() -> None:
    net = up(2, 2)
    for side in ("a", "b"):
        kids = live(net, side)
        assert len(kids) == 3 and all(c.resource_group for c in kids)
        assert [c.resource_id for c in kids] == [0, 1, 2]
        assert len({(c.local_ts, c.remote_ts) for c in kids}) == 1  # one traffic selector pair
        assert len({c.spi_in for c in kids}) == 3 and len({c.spi_out for c in kids}) == 3
    a_keys = {bytes(c.keys.keys.encr_i) for c in live(net, "a")}  # type: ignore[union-attr]
    assert len(a_keys) == 3  # each its own keys (and so its own sequence-number/nonce space)
    # each SA is installed once per direction, as its own Child SA for the data plane
    assert len(net.a.installs()) == 6 and len({i.child_uniqueid for i in net.a.installs()}) == 3
    assert [e.event for e in net.a.audits("child.up")] == ["child.up"] * 3


def test_peer_without_support_gets_only_the_fallback_sa() -> None:
    seen: list[str] = []

    def watch(dgram, side):  # type: ignore[no-untyped-def]
        seen.append(side)
        return [dgram]

    c = child(per_resource_sas=2)
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(child()),))
    net = pair([a], [b])
    net.filter = watch
    net.initiate(children=["net"])
    net.run()
    for side in ("a", "b"):
        (only,) = live(net, side)
        assert not only.resource_group and only.resource_id == 0
    assert len(seen) == 4  # IKE_SA_INIT and IKE_AUTH only: no CREATE_CHILD_SA for per-resource SAs
    assert not net.a.audits("child.failed") and not net.b.audits("child.failed")


def test_responder_limit_answers_ts_max_queue() -> None:
    net = up(3, 1)
    assert len(live(net, "a")) == 2 and len(live(net, "b")) == 2  # fallback + the one the responder takes
    refused = net.a.audits("child.failed")
    assert len(refused) == 2 and all("TS_MAX_QUEUE" in e.reason for e in refused)
    (sa,) = net.a.manager.ike_sas()
    assert sa.state.name == "ESTABLISHED"


def test_each_sa_of_the_group_is_rekeyed_and_stays_in_it() -> None:
    net = up(1, 1)
    (sa,) = net.a.manager.ike_sas()
    before = live(net, "a")
    for old in before:
        net.a.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
        net.run()
    after = live(net, "a")
    assert [c.resource_id for c in after] == [0, 1] and all(c.resource_group for c in after)
    assert not {c.spi_in for c in after} & {c.spi_in for c in before}
    assert [c.resource_id for c in live(net, "b")] == [0, 1]
    assert len(net.a.audits("child.rekeyed")) == 2


def test_notify_type_numbers() -> None:
    assert NotifyType.SA_RESOURCE_INFO == 16444 and NotifyType.TS_MAX_QUEUE == 48
    assert not NotifyType.SA_RESOURCE_INFO.is_error and NotifyType.TS_MAX_QUEUE.is_error
