"""The pure balancer core against the reference's worked examples and nginx's documented rules."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from deploylab.balancer import (
    HealthCheck,
    NoLiveUpstreams,
    Peer,
    RetryPolicy,
    Upstream,
    ip_hash_value,
    smooth_weighted_pick,
)


def test_swrr_worked_example_sequence_and_current_weights():
    # The table in shared/reference/load-balancing.md, row by row.
    peers = [Peer("a", weight=5), Peer("b"), Peer("c")]
    table = [
        ("a", (-2, 1, 1)),
        ("a", (-4, 2, 2)),
        ("b", (1, -4, 3)),
        ("a", (-1, -3, 4)),
        ("c", (4, -2, -2)),
        ("a", (2, -1, -1)),
        ("a", (0, 0, 0)),
    ]
    for expected, after in table:
        assert smooth_weighted_pick(peers, 0).name == expected
        assert tuple(p.current_weight for p in peers) == after


def test_plain_round_robin_alternates_like_the_seed_config():
    up = Upstream([Peer("localhost:8080"), Peer("localhost:8081")])
    assert up.sequence(6) == ["localhost:8080", "localhost:8081"] * 3


def test_swrr_is_periodic_and_proportional():
    up = Upstream([Peer("a", weight=3), Peer("b", weight=2), Peer("c", weight=1)])
    seq = up.sequence(600)
    assert Counter(seq) == {"a": 300, "b": 200, "c": 100}
    assert seq[:6] == seq[6:12]


def test_failure_removes_peer_for_fail_timeout_then_probe_recovers():
    a = Peer("a", max_fails=2, fail_timeout=10)
    b = Peer("b", max_fails=2, fail_timeout=10)
    up = Upstream([a, b])
    for now in (1.0, 2.0):
        sel = up.start()
        peer = sel.next_peer(now)
        while peer is not a:  # make `a` fail twice
            sel.release(peer, False, now)
            sel = up.start()
            peer = sel.next_peer(now)
        sel.release(a, True, now)
    assert a.fails == 2 and a.failed_out(2.0)
    # within fail_timeout (now - checked <= 10) only b is chosen
    assert up.sequence(5, now=12.0) == ["b"] * 5
    # after it, a is probed; a success clears its fail count
    picks = up.sequence(4, now=12.5)
    assert "a" in picks
    assert a.fails == 0


def test_failed_probe_keeps_peer_out_for_another_fail_timeout():
    a, b = Peer("a", fail_timeout=5), Peer("b", fail_timeout=5)
    up = Upstream([a, b])
    up.release(up.pick(0.0), failed=True, now=0.0)  # a (first pick) fails at t=0
    assert up.sequence(3, now=5.0) == ["b"] * 3  # 5 - 0 <= 5: still out
    sel = up.start()
    peers = [sel.next_peer(6.0)]
    while peers[-1] is not a:
        sel.release(peers[-1], False, 6.0)
        sel = up.start()
        peers.append(sel.next_peer(6.0))
    sel.release(a, True, 6.0)  # the probe fails
    assert up.sequence(3, now=11.0) == ["b"] * 3
    assert "a" in up.sequence(3, now=11.5)


def test_effective_weight_drops_on_failure_and_climbs_back():
    a, b = Peer("a", weight=4, max_fails=2), Peer("b", weight=4, max_fails=2)
    up = Upstream([a, b])
    up.release(a, failed=True, now=0)
    assert a.effective_weight == 2  # weight / max_fails = 2
    up.sequence(2, now=0)
    assert a.effective_weight == 4  # +1 per pick round


def test_single_server_is_never_marked_failed():
    only = Peer("only", max_fails=1)
    up = Upstream([only])
    for _ in range(3):
        up.release(up.pick(0.0), failed=True, now=0.0)
    assert up.sequence(2, now=0.5) == ["only", "only"]


def test_backup_used_only_when_primaries_unusable():
    up = Upstream([Peer("a"), Peer("b"), Peer("spare", backup=True)])
    assert up.sequence(4) == ["a", "b", "a", "b"]
    up.find("a").down = True
    up.find("b").down = True
    assert up.sequence(2) == ["spare", "spare"]


def test_no_live_upstreams_is_a_502():
    up = Upstream([Peer("a", down=True), Peer("b", down=True)])
    with pytest.raises(NoLiveUpstreams):
        up.pick(0.0)
    assert up.sequence(1) == ["502"]


def test_max_conns_skips_a_busy_peer():
    up = Upstream([Peer("a", max_conns=1), Peer("b")])
    first = up.pick(0)
    assert first.name == "a"
    assert [up.pick(0).name for _ in range(3)] == ["b", "b", "b"]


def test_retry_selection_never_repeats_a_server_then_502():
    up = Upstream([Peer("a"), Peer("b"), Peer("c")])
    sel = up.start()
    seen = []
    for _ in range(3):
        peer = sel.next_peer(0.0)
        seen.append(peer.name)
        sel.release(peer, True, 0.0)
    assert sorted(seen) == ["a", "b", "c"]
    with pytest.raises(NoLiveUpstreams):
        sel.next_peer(0.0)


def test_least_conn_weight_aware_and_swrr_tie_break():
    a, b, c = Peer("a"), Peer("b", weight=2), Peer("c")
    up = Upstream([a, b, c], "least_conn")
    a.conns, b.conns, c.conns = 1, 1, 1
    assert up.pick(0).name == "b"  # 1/2 is the lowest ratio
    # all idle: ties broken by smooth weighted round robin over a(1), b(2), c(1)
    a.conns = b.conns = c.conns = 0
    assert up.sequence(8) == ["b", "a", "c", "b"] * 2


def test_least_conn_holds_connections():
    up = Upstream([Peer("a"), Peer("b")], "least_conn")
    first = up.pick(0)
    second = up.pick(0)
    assert {first.name, second.name} == {"a", "b"}
    up.release(first, now=0)
    assert up.pick(0) is first  # the one that finished now has fewer connections


def _ip_hash_by_hand(address: str) -> int:
    octets = [int(part) for part in address.split(".")][:3]
    value = 89
    for octet in octets:
        value = (value * 113 + octet) % 6271
    return value


def test_ip_hash_value_matches_nginx_formula_and_ignores_last_octet():
    for address in ("127.0.0.1", "10.20.30.40", "192.168.1.254", "255.255.255.255"):
        assert ip_hash_value(address) == _ip_hash_by_hand(address)
    assert ip_hash_value("10.1.2.3") == ip_hash_value("10.1.2.99")


def test_ip_hash_sticky_and_down_keeps_its_slot():
    names = ["s0", "s1", "s2"]
    up = Upstream([Peer(n) for n in names], "ip_hash")
    clients = [f"10.{i}.{j}.7" for i in range(6) for j in range(6)]
    first = {c: up.pick(0, client=c).name for c in clients}
    for c in clients:
        assert first[c] == names[_ip_hash_by_hand(c) % 3]
    up.find("s1").down = True
    after = {c: up.pick(0, client=c).name for c in clients}
    for c in clients:
        if first[c] != "s1":
            assert after[c] == first[c], "clients of live servers must stay put"
        else:
            assert after[c] != "s1"
            # the re-hash continues from the previous value, as nginx does
            rehashed = ip_hash_value(c, _ip_hash_by_hand(c))
            if names[rehashed % 3] != "s1":
                assert after[c] == names[rehashed % 3]


def test_ip_hash_weight_walk():
    up = Upstream([Peer("a", weight=2), Peer("b", weight=3)], "ip_hash")
    for i in range(40):
        client = f"172.16.{i}.1"
        w = _ip_hash_by_hand(client) % 5
        assert up.pick(0, client=client).name == ("a" if w < 2 else "b")


def test_hash_key_cache_memcached_formula():
    up = Upstream([Peer("a"), Peer("b"), Peer("c")], "hash")
    for i in range(50):
        key = f"/item/{i}"
        value = (zlib.crc32(key.encode()) >> 16) & 0x7FFF
        assert up.pick(0, key=key).name == "abc"[value % 3]


def test_consistent_hash_moves_few_keys_when_a_server_is_added():
    names = [f"127.0.0.1:{8000 + i}" for i in range(4)]
    before = Upstream([Peer(n) for n in names], "hash_consistent")
    after = Upstream([Peer(n) for n in [*names, "127.0.0.1:8004"]], "hash_consistent")
    keys = [f"user{i}" for i in range(2000)]
    moved = sum(before.pick(0, key=k).name != after.pick(0, key=k).name for k in keys)
    assert 0 < moved < len(keys) * 0.35  # ~1/5 expected; a plain modulo would move ~80 %
    assert len(before.ring()) == 4 * 160
    counts = Counter(before.pick(0, key=k).name for k in keys)
    assert min(counts.values()) > 250


def test_random_two_prefers_idle_peer():
    a, b = Peer("a"), Peer("b")
    up = Upstream([a, b], "random_two")
    a.conns = 5
    picks = Counter(up.pick(0).name for _ in range(50))
    assert picks["b"] > picks["a"]


def test_retry_policy_rules():
    default = RetryPolicy()
    assert default.retry("error", "GET", tries_left=2)
    assert default.retry("timeout", "HEAD", tries_left=2)
    assert not default.retry("error", "POST", tries_left=2)
    assert not default.retry("error", "GET", tries_left=0)
    assert not default.retry(500, "GET", tries_left=2)
    assert RetryPolicy(["error", "non_idempotent"]).retry("error", "POST", 2)
    assert RetryPolicy(["error", "http_503"]).retry(503, "GET", 2)
    assert not RetryPolicy(["off"]).retry("error", "GET", 2)
    assert not RetryPolicy(tries=0, timeout=1.0).retry("error", "GET", 2, elapsed=1.5)
    assert default.counts_as_failure("error")
    assert not default.counts_as_failure(404)
    with pytest.raises(ValueError, match="http_999"):
        RetryPolicy(["http_999"])


def test_backup_not_allowed_with_hash():
    with pytest.raises(ValueError, match="backup"):
        Upstream([Peer("a"), Peer("b", backup=True)], "ip_hash")


def test_health_check_rise_fall_and_slow_start():
    check = HealthCheck(fall=2, rise=2)
    a, b = Peer("a", slow_start=10), Peer("b")
    up = Upstream([a, b])
    check.record(a, False, 0)
    assert a.healthy
    check.record(a, False, 1)
    assert not a.healthy
    assert up.sequence(4, now=1) == ["b"] * 4
    check.record(a, True, 2)
    check.record(a, True, 3)
    assert a.healthy and a.recovered_at == 3
    early = Counter(up.sequence(100, now=3.5))
    late = Counter(up.sequence(100, now=20))
    assert early["a"] < 30 and late["a"] == 50


def test_bad_values_name_themselves():
    with pytest.raises(ValueError, match="weight 0"):
        Peer("a", weight=0)
    with pytest.raises(ValueError, match="'fastest'"):
        Upstream([Peer("a")], "fastest")


def test_passive_recovery_starts_slow_start():
    a, b = Peer("a", slow_start=10, fail_timeout=5), Peer("b")
    up = Upstream([a, b])
    up.release(up.pick(0.0), failed=True, now=0.0)  # a fails at t=0
    assert a.failed_out(1.0)
    picks = up.sequence(4, now=6.0)  # a is probed after fail_timeout and succeeds
    assert "a" in picks and a.fails == 0 and a.recovered_at == 6.0
    ramp = Counter(up.sequence(100, now=7.0))
    full = Counter(up.sequence(100, now=30.0))
    assert ramp["a"] < 25 and full["a"] == 50
