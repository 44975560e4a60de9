"""The CIDR explorer (:mod:`deploylab.vpc` facts of an address and block, drawn as 32 bits
by ``vpc_cidr.js``) and its static matplotlib fallback."""

from __future__ import annotations

import ipaddress
import pathlib
from typing import TYPE_CHECKING, Any, Required, TypedDict

import traitlets

from deploylab import vpc as v
from deploylab.vpc.blocks import ReservedAddressDict
from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["HOST_COLOUR", "NETWORK_COLOUR", "CidrExplorer", "CidrState", "cidr_figure"]

_HERE = pathlib.Path(__file__).parent

#: Network bits blue, host bits grey (the widget's script draws the same).
NETWORK_COLOUR, HOST_COLOUR = "#1a73e8", "#e8eaed"


class CidrState(TypedDict, total=False):
    """What the explorer shows (its ``facts`` trait): only ``error`` when the text is not
    an address or block, every field (and an empty ``error``) when it is."""

    error: Required[str]
    note: str
    address: str
    prefixlen: int
    bits: str
    block: str
    network: str
    broadcast: str
    netmask: str
    wildcard: str
    total: int
    usable_classic: int
    aws_usable: int | None
    aws_reserved: list[ReservedAddressDict]
    address_class: str
    classful_prefix: int | None
    kind: str


def _cidr_state(text: str) -> CidrState:
    """Everything the explorer shows for ``text`` (``a.b.c.d/n``), or an error message."""
    text = text.strip()
    address_text, _, prefix_text = text.partition("/")
    try:
        address = v.parse_address(address_text)
        if prefix_text and not (prefix_text.isdigit() and int(prefix_text) <= 32):
            v.parse_block(text)  # raises the library's message for the bad prefix
        prefix = int(prefix_text) if prefix_text else 32
    except ValueError as error:
        return {"error": str(error)}
    network = ipaddress.IPv4Network((address, prefix), strict=False)
    facts = v.cidr_facts(network)
    about = v.address_facts(address, prefix)
    note = ""
    if network.network_address != address:
        note = (
            f"{address} has host bits set; the block it belongs to is {network} "
            f"(AWS and ipaddress would refuse {address}/{prefix})"
        )
    return {
        "error": "",
        "note": note,
        "address": str(address),
        "prefixlen": prefix,
        "bits": about.binary.bits,
        "block": str(network),
        "network": str(facts.network_address),
        "broadcast": str(facts.broadcast_address),
        "netmask": str(facts.netmask),
        "wildcard": str(facts.wildcard),
        "total": facts.total,
        "usable_classic": facts.usable_classic,
        "aws_usable": facts.aws_usable,
        "aws_reserved": []
        if facts.aws_reserved is None
        else [{"address": str(r.address), "role": r.role} for r in facts.aws_reserved],
        "address_class": about.address_class,
        "classful_prefix": about.classful_prefix,
        "kind": about.description,
    }


class CidrExplorer(LabelledWidget):
    """Type a block or move the prefix slider: the 32 bits light up as network (blue) and
    host (grey), with the counts (classic and AWS) and the address's class.

    >>> explorer = CidrExplorer("10.0.0.0/24")
    >>> explorer.facts["aws_usable"], explorer.facts["address_class"]
    (251, 'A')
    >>> explorer.prefixlen = 28
    >>> explorer.facts["block"], explorer.facts["aws_usable"]
    ('10.0.0.0/28', 11)
    >>> explorer.text = "10.0.0.300/24"
    >>> "10.0.0.300" in explorer.facts["error"]
    True
    """

    label_table = "vpc_cidr"
    _esm = widget_esm("vpc_cidr.js")

    _css = _HERE / "theme.css"
    text = traitlets.Unicode("10.0.0.0/16").tag(sync=True)
    prefixlen = traitlets.Int(16).tag(sync=True)
    facts = traitlets.Dict().tag(sync=True)

    def __init__(self, block: str = "10.0.0.0/16", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = block
        self._update_from_text()

    @traitlets.observe("text")
    def _update_from_text(self, _change: object = None) -> None:
        self.facts = dict(_cidr_state(self.text))  # the trait holds a plain (JSON) dict
        if not self.facts["error"] and self.prefixlen != self.facts["prefixlen"]:
            self.prefixlen = self.facts["prefixlen"]

    @traitlets.observe("prefixlen")
    def _update_from_prefix(self, change: dict[str, Any]) -> None:
        if not 0 <= change["new"] <= 32:
            self.prefixlen = change["old"]
            return
        address = self.facts.get("address") or self.text.partition("/")[0]
        wanted = f"{address}/{change['new']}"
        if self.text != wanted:
            self.text = wanted


def cidr_figure(block: str) -> Figure:
    """The explorer as a static figure: 32 bit cells coloured network/host, with the facts.

    >>> figure = cidr_figure("192.168.1.0/26")
    >>> len(figure.axes[0].patches)
    32
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    state = _cidr_state(block)
    figure = Figure(figsize=(10, 2.2))
    axes = figure.add_subplot()
    axes.set_xlim(-0.5, 35.5)
    axes.set_ylim(-2.6, 1.4)
    axes.axis("off")
    if state["error"]:
        axes.text(0, 0, state["error"], fontsize=9, color="#c5221f")
        return figure
    for index, bit in enumerate(state["bits"]):
        x = index + index // 8
        network = index < state["prefixlen"]
        axes.add_patch(
            Rectangle(
                (x, 0),
                0.9,
                0.9,
                facecolor=NETWORK_COLOUR if network else HOST_COLOUR,
                edgecolor="white",
            )
        )
        axes.text(
            x + 0.45,
            0.45,
            bit,
            ha="center",
            va="center",
            fontsize=8,
            color="white" if network else "#333333",
        )
    aws = state["aws_usable"]
    axes.text(
        0,
        1.1,
        f"{state['block']}  ({state['prefixlen']} network bits, "
        f"{32 - state['prefixlen']} host bits)  class {state['address_class']}"
        f" · {state['kind']}",
        fontsize=9,
    )
    axes.text(
        0,
        -0.9,
        f"netmask {state['netmask']}   wildcard {state['wildcard']}   "
        f"network {state['network']}   broadcast {state['broadcast']}",
        fontsize=8,
    )
    axes.text(
        0,
        -1.7,
        f"total {state['total']:,}   usable (classic) {state['usable_classic']:,}"
        f"   usable (AWS) {'n/a: not /16-/28' if aws is None else f'{aws:,}'}",
        fontsize=8,
    )
    return figure
