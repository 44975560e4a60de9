"""Load balancing: nginx-exact algorithms (core), a fast L7/L4 balancer and demo backends.

The core (:mod:`deploylab.balancer.core`) is pure and time is passed in; the runtime
(:mod:`deploylab.balancer.runtime`) drives it with real sockets on loopback.
"""

from deploylab.balancer.backend import DemoBackend
from deploylab.balancer.config import parse_backend
from deploylab.balancer.core import (
    ALGORITHM_RULES,
    ALGORITHMS,
    Algorithm,
    HealthCheck,
    NoLiveUpstreams,
    Peer,
    RetryPolicy,
    Selection,
    Upstream,
    check_algorithm,
    hash_key_value,
    ip_hash_value,
    ketama_points,
    least_conn_pick,
    smooth_weighted_pick,
)
from deploylab.balancer.runtime import Balancer

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_RULES",
    "Algorithm",
    "Balancer",
    "DemoBackend",
    "HealthCheck",
    "NoLiveUpstreams",
    "Peer",
    "RetryPolicy",
    "Selection",
    "Upstream",
    "check_algorithm",
    "hash_key_value",
    "ip_hash_value",
    "ketama_points",
    "least_conn_pick",
    "parse_backend",
    "smooth_weighted_pick",
]
