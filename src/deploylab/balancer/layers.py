"""The four kinds of load balancer by the OSI layer whose fields they decide on, and where
AWS's Elastic Load Balancing products sit among them. Tables, so that the lesson, the lab's
tests and any view are drawn from the same facts.

>>> layer_for(["client ip", "tcp port"])
'L4'
>>> layer_for(["url path"])
'L7'
>>> AWS_LOAD_BALANCERS["GWLB"]
'L3'
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["AWS_LOAD_BALANCERS", "FIELD_LAYERS", "LAYERS", "layer_for"]

#: Each kind of balancer: what it reads to choose a server, and what it hands on.
LAYERS: dict[str, str] = {
    "L2": "data link: decides by MAC address and forwards frames inside one network segment",
    "L3": "network: decides by IP addresses and forwards packets, whatever protocol they carry",
    "L4": "transport: decides by IP address and TCP/UDP port, once per connection; "
    "cannot see the bytes inside",
    "L7": "application: decides by the request itself (HTTP method, host, path, headers, "
    "cookies), once per request",
}

#: The lowest layer at which each field of a request can be seen.
FIELD_LAYERS: dict[str, str] = {
    "mac address": "L2",
    "client ip": "L3",
    "destination ip": "L3",
    "tcp port": "L4",
    "udp port": "L4",
    "http method": "L7",
    "host header": "L7",
    "url path": "L7",
    "header": "L7",
    "cookie": "L7",
}

#: AWS Elastic Load Balancing, by the layer it balances at.
AWS_LOAD_BALANCERS: dict[str, str] = {
    "ALB": "L7",  # Application Load Balancer: HTTP/HTTPS, routes by host, path, headers
    "NLB": "L4",  # Network Load Balancer: TCP/UDP/TLS connections, millions per second
    "GWLB": "L3",  # Gateway Load Balancer: IP packets to firewall/inspection appliances
}

_ORDER = ("L2", "L3", "L4", "L7")


def layer_for(fields: Iterable[str]) -> str:
    """The lowest balancer layer that can see every field in ``fields``.

    A balancer sees its own layer and the ones below it, so the answer is the highest layer
    among the fields.

    Raises
    ------
    ValueError
        For a field not in :data:`FIELD_LAYERS` (the message names it), or no field at all.

    >>> layer_for(["mac address"]), layer_for(["client ip", "cookie"])
    ('L2', 'L7')
    """
    layers = []
    for field in fields:
        key = str(field).strip().lower()
        if key not in FIELD_LAYERS:
            raise ValueError(f"field {field!r}: expected one of {', '.join(FIELD_LAYERS)}")
        layers.append(FIELD_LAYERS[key])
    if not layers:
        raise ValueError("no fields: a balancer decides on at least one field")
    return max(layers, key=_ORDER.index)
