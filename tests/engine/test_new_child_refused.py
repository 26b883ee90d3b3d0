"""While new SAs are refused (audit trail cannot be written, PCI DSS 10.7) no new Child SA is created on an
existing IKE SA: as responder the answer is NO_ADDITIONAL_SAS (RFC 7296 §1.3, §3.10.1) with a ``child.failed``
record, as initiator the command is refused with the reason; rekeys of existing Child/IKE SAs go on."""

from __future__ import annotations

import pytest

from ikeguard.engine.errors import LocalProtocolError
from ikeguard.engine.states import ChildState, IkeState
from tests.engine.harness import Network, child, mirror, pair, psk_conn

REASON = "the audit trail cannot be written: no new SAs (PCI DSS 10.7)"


def up() -> Network:
    net_c = child()
    web_c = child("web", ("10.1.1.0/24",), ("10.2.1.0/24",))
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (net_c, web_c))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(net_c), mirror(web_c)))
    net = pair([a], [b])
    net.initiate(children=["net"])
    net.run()
    return net


def names(net: Network, side: str) -> list[str]:
    (sa,) = (net.a if side == "a" else net.b).manager.ike_sas()
    return sorted(c.name for c in sa.children.values() if c.state is ChildState.INSTALLED)


def test_responder_answers_no_additional_sas_and_audits_the_reason() -> None:
    net = up()
    net.b.manager.set_new_child_refusal(REASON)
    (a_sa,) = net.a.manager.ike_sas()
    net.a.manager.create_child(a_sa.uniqueid, "web", net.now)
    net.run()
    assert names(net, "a") == ["net"] and names(net, "b") == ["net"]
    (ours,) = net.b.audits("child.failed")
    assert ours.outcome == "failure" and ours.reason == f"new Child SA refused: {REASON}"
    (theirs,) = net.a.audits("child.failed")
    assert theirs.reason == "peer refused Child SA web: NO_ADDITIONAL_SAS"
    assert a_sa.state is IkeState.ESTABLISHED  # the IKE SA and its Child SA are kept
    net.b.manager.set_new_child_refusal(None)  # recovery: the same request succeeds
    net.a.manager.create_child(a_sa.uniqueid, "web", net.now)
    net.run()
    assert names(net, "a") == ["net", "web"] and names(net, "b") == ["net", "web"]


def test_initiator_command_is_refused_with_the_reason() -> None:
    net = up()
    net.a.manager.set_new_child_refusal(REASON)
    (a_sa,) = net.a.manager.ike_sas()
    sent = net.delivered
    with pytest.raises(LocalProtocolError, match="no new SAs"):
        net.a.manager.create_child(a_sa.uniqueid, "web", net.now)
    net.run()
    assert net.delivered == sent and names(net, "a") == ["net"]


@pytest.mark.parametrize("refusing", ["a", "b"])
def test_rekeys_go_on_while_new_child_sas_are_refused(refusing: str) -> None:
    net = up()
    (net.a if refusing == "a" else net.b).manager.set_new_child_refusal(REASON)
    (a_sa,) = net.a.manager.ike_sas()
    (old_child,) = a_sa.children.values()
    net.a.manager.rekey_child(a_sa.uniqueid, old_child.uniqueid, net.now)
    net.run()
    (new_child,) = a_sa.children.values()
    assert new_child.spi_in != old_child.spi_in and new_child.state is ChildState.INSTALLED
    net.b.manager.rekey_ike(net.b.manager.ike_sas()[0].uniqueid, net.now)
    net.run()
    (a_new,) = net.a.manager.ike_sas()
    assert a_new is not a_sa and a_new.state is IkeState.ESTABLISHED and names(net, "a") == ["net"]
    assert names(net, "b") == ["net"]
    assert not net.a.audits("child.failed") and not net.b.audits("child.failed")
