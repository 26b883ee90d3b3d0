"""Parsers of libreswan's whack output (the live peer: tests/interop/test_libreswan_harness.py)."""

from __future__ import annotations

from tests.harness.libreswan import LibreswanConn, parse_showstates, parse_trafficstatus


def test_showstates() -> None:
    text = (
        '000 #1: "ikg":500 STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); REKEY in 27871s; newest; idle;\n'
        '000 #2: "ikg":500 STATE_V2_ESTABLISHED_CHILD_SA (established Child SA); REKEY in 27871s; newest;\n'
        '000 #5: "road"[3] 192.0.2.9:4500 STATE_V2_PARENT_I1 (sent IKE_SA_INIT request); RETRANSMIT in 1s\n'
        "000 \n"
    )
    states = parse_showstates(text)
    assert [(s.serial, s.conn, s.state) for s in states] == [
        (1, "ikg", "STATE_V2_ESTABLISHED_IKE_SA"),
        (2, "ikg", "STATE_V2_ESTABLISHED_CHILD_SA"),
        (5, "road", "STATE_V2_PARENT_I1"),
    ]
    assert states[0].established and states[0].is_ike and not states[1].is_ike
    assert not states[2].established and states[2].detail.startswith("(sent IKE_SA_INIT")


def test_trafficstatus() -> None:
    text = ("006 #2: \"ikg\", type=ESP, add_time=1764214000, inBytes=84, outBytes=168, maxBytes=2^63B, "
            "id='@gw.ss-lab.example'\n")
    [entry] = parse_trafficstatus(text)
    assert entry["serial"] == "2" and entry["conn"] == "ikg" and entry["type"] == "ESP"
    assert (entry["inBytes"], entry["outBytes"], entry["id"]) == ("84", "168", "@gw.ss-lab.example")


def test_conn_text_sends_certreq_for_certificate_auth() -> None:
    text = LibreswanConn("ikg", left="192.0.2.2", leftid="@client.example", leftcert="client",
                         right="192.0.2.1", rightid='CN=gw, O=Example "x"').text()
    lines = text.splitlines()
    assert lines[0] == "conn ikg"
    assert "    ikev2=insist" in lines and "    rightca=%same" in lines and "    leftsendcert=always" in lines
    assert '    rightid="CN=gw, O=Example \\"x\\""' in lines
    assert "    auto=ignore" in lines
