"""Issue 22 item 3: rekeys of SAs set up together are spread (engine/rekey_calendar.py); figures for 10,000
SAs in docs/performance.md (bench/bench_rekey_storm.py)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from ikeguard.engine.rekey_calendar import MIN_CAP, RekeyCalendar
from tests.engine.harness import child, mirror, pair, psk_conn


def test_a_quiet_calendar_keeps_the_jittered_deadline() -> None:
    cal = RekeyCalendar()
    assert cal.place(3321.25, 1800.0, 3600.0, now=0.0) == 3321.25
    assert cal.place(3321.75, 1800.0, 3600.0, now=0.0) == 3321.75  # two per second are always allowed


def test_a_crowded_second_moves_the_rekey_earlier_never_later_nor_before_half_the_lifetime() -> None:
    cal = RekeyCalendar()
    got = [cal.place(3000.5, 1800.0, 3600.0, now=0.0) for _ in range(5)]
    assert got[:MIN_CAP] == [3000.5] * MIN_CAP
    assert got[MIN_CAP:] == [2999.5, 2999.5, 2998.5]
    full = RekeyCalendar()
    for _ in range(2 * 3):  # seconds 1800..1802 full, planned 1802: nothing at or after 1800 is free
        full.place(1800.0, 1800.0, 3600.0, now=0.0)
        full.place(1801.0, 1800.0, 3600.0, now=0.0)
        full.place(1802.0, 1800.0, 3600.0, now=0.0)
    assert full.place(1802.5, 1800.0, 3600.0, now=0.0) == 1802.5  # no room: as planned, never before 1800


@given(st.lists(st.floats(min_value=3240.0, max_value=3600.0), min_size=1, max_size=3000))
def test_no_second_holds_more_than_the_cap_and_no_rekey_is_late(planned: list[float]) -> None:
    cal = RekeyCalendar()
    placed = [(p, cal.place(p, 1800.0, 3600.0, now=0.0)) for p in planned]
    cap = max(MIN_CAP, -(-2 * len(planned) // 3600))
    per_second = Counter(int(d) for _, d in placed)
    assert max(per_second.values()) <= cap
    assert all(1800.0 <= d <= p for p, d in placed)
    assert len(cal) == len(planned)


def test_a_released_slot_is_used_again_and_past_seconds_are_forgotten() -> None:
    cal = RekeyCalendar()
    first = [cal.place(500.0, 250.0, 500.0, now=0.0) for _ in range(3)]
    assert first == [500.0, 500.0, 499.0]
    cal.release(500.0)
    assert cal.place(500.0, 250.0, 500.0, now=0.0) == 500.0
    assert len(cal) == 3
    assert cal.place(900.0, 700.0, 500.0, now=600.0) == 900.0
    assert len(cal) == 1  # the three at 499/500 are in the past now


def test_child_sas_set_up_in_the_same_second_get_rekey_deadlines_spread_out() -> None:
    """200 IKE SAs with a Child SA each, all set up at t=0 with a 1 h rekey_time: on each gateway no second
    holds more than two Child SA rekeys (without the calendar: up to 4 of 200 in one second of the 6 min
    jitter window), and every deadline stays between half the lifetime and the rekey time."""
    c = child(rekey_time=3600.0, proposals=("aes256gcm16",))
    net = pair([psk_conn("tunnel", "a.example.net", "b.example.net", (c,))],
               [psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))])
    for _ in range(200):
        net.initiate()
        net.run()
    for side in (net.a, net.b):
        deadlines = [ch.rekey_at for sa in side.manager.ike_sas() for ch in sa.children.values()]
        assert len(deadlines) == 200 and all(d is not None and 1800.0 <= d <= 3600.0 for d in deadlines)
        assert max(Counter(int(d) for d in deadlines if d is not None).values()) <= MIN_CAP
