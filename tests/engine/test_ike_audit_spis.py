"""IKE audit records carry the IKE SPIs (``details.spi_i``/``spi_r``, 16 lowercase hex digits like
``sas --json``) so an auditor can match a SIEM record with a capture or the peer's log (PCI DSS 10.2)."""

from __future__ import annotations

import re

from ikeguard.engine.ike_sa import IkeSa
from tests.engine.harness import Side, child, mirror, pair, psk_conn, psk_pair

HEX16 = re.compile(r"[0-9a-f]{16}")


def spis(side: Side, event: str) -> list[tuple[str, str]]:
    out = []
    for record in side.audits(event):
        spi_i, spi_r = str(record.details["spi_i"]), str(record.details["spi_r"])
        assert HEX16.fullmatch(spi_i) and HEX16.fullmatch(spi_r), record
        out.append((spi_i, spi_r))
    return out


def of(sa: IkeSa) -> tuple[str, str]:
    return sa.spi_i.hex(), sa.spi_r.hex()


def test_ike_up_and_down_carry_the_sas_spis_on_both_ends() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    expected = of(a_sa)
    assert expected == of(b_sa) and "0" * 16 not in expected  # both SPIs set, the same on both ends
    assert spis(net.a, "ike.up") == [expected] and spis(net.b, "ike.up") == [expected]
    net.a.manager.terminate_ike(a_sa.uniqueid, net.now)
    net.run()
    assert spis(net.a, "ike.down") == [expected] and spis(net.b, "ike.down") == [expected]
    # Child SA records are not IKE records: no IKE SPIs there.
    assert all("spi_i" not in r.details for r in net.a.audits("child.up") + net.a.audits("child.down"))


def test_ike_rekeyed_carries_the_new_sas_spis() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    (old,) = net.a.manager.ike_sas()
    net.a.manager.rekey_ike(old.uniqueid, net.now)
    net.run()
    (new,) = net.a.manager.ike_sas()
    (b_new,) = net.b.manager.ike_sas()
    assert of(new) != of(old) and of(new) == of(b_new)
    assert spis(net.a, "ike.rekeyed") == [of(new)] and spis(net.b, "ike.rekeyed") == [of(new)]


def test_ike_reauth_carries_the_old_sas_spis() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), reauth_time=600.0, rekey_time=0.0,
                 remote_addrs=("198.51.100.1",))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), rekey_time=0.0)
    net = pair([a], [b])
    net.initiate()
    net.run()
    (old,) = net.a.manager.ike_sas()
    net.advance(601)
    (new,) = net.a.manager.ike_sas()
    assert spis(net.a, "ike.reauth") == [of(old)]  # the record is about the SA being replaced
    assert spis(net.a, "ike.up") == [of(old), of(new)]
    assert of(old) in spis(net.a, "ike.down")
