"""VPC designs in a small TOML file (read with the standard library's ``tomllib``).

Example (the workbook's ``assets/vpc/*.toml`` hold complete ones)::

    [vpc]
    name = "shop"
    cidr = "10.0.0.0/16"

    [[subnets]]
    name = "public-a"
    cidr = "10.0.1.0/24"
    az = "ap-northeast-2a"

    [[gateways]]
    id = "igw-main"                 # the kind comes from the id: igw-, nat-, vgw-, pcx-

    [[route_tables]]
    name = "rt-public"
    subnets = ["public-a"]
    routes = [{ destination = "0.0.0.0/0", target = "igw-main" }]

    [[instances]]
    name = "web-a"
    subnet = "public-a"
    public_ip = "203.0.113.10"
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from deploylab.vpc.errors import DesignError
from deploylab.vpc.model import Gateway, Vpc
from deploylab.vpc.routing import RouteTable, target_kind

__all__ = ["design_from_dict", "load_design", "loads_design"]

_KEYS = {
    "vpc": {"name", "cidr"},
    "subnets": {"name", "cidr", "az", "route_table"},
    "gateways": {"id", "subnet", "public_ip", "private_ip", "remote_cidrs", "peer_cidrs"},
    "route_tables": {"name", "main", "subnets", "routes"},
    "routes": {"destination", "target", "propagated"},
    "instances": {"name", "subnet", "private_ip", "public_ip"},
}


#: A TOML table as ``tomllib`` returns it. Its values are whatever the file holds (text,
#: numbers, arrays…): the builder's parsers check each one, so they stay ``Any`` here.
Table = dict[str, Any]


def _table(where: str, section: str, item: object) -> Table:
    """``item`` if it is a table with only the keys ``section`` allows, else a DesignError."""
    if not isinstance(item, dict):
        raise DesignError(f"{where}: expected a table of keys, got {item!r}")
    unknown = sorted(set(item) - _KEYS[section])
    if unknown:
        raise DesignError(
            f"{where}: unknown key {unknown[0]!r}; expected some of {', '.join(sorted(_KEYS[section]))}"
        )
    return item


def _required(where: str, item: Table, key: str) -> Any:
    if key not in item:
        raise DesignError(f"{where}: missing key {key!r}")
    return item[key]


def design_from_dict(data: Mapping[str, Any], *, source: str = "design") -> Vpc:
    """Build a :class:`Vpc` from parsed TOML (or any dict of the same shape).

    Examples
    --------
    >>> vpc = design_from_dict({"vpc": {"cidr": "10.0.0.0/16"},
    ...     "subnets": [{"name": "a", "cidr": "10.0.1.0/24", "az": "az1"}]})
    >>> vpc.subnets["a"].cidr
    IPv4Network('10.0.1.0/24')
    >>> design_from_dict({"vpc": {"cidr": "10.0.0.0/16"}, "subnets": [{"name": "a", "az": "z"}]})
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.DesignError: design: subnets[0] ('a'): missing key 'cidr'
    """
    unknown_sections = sorted(
        set(data) - {"vpc", "subnets", "gateways", "route_tables", "instances"}
    )
    if unknown_sections:
        raise DesignError(
            f"{source}: unknown section [{unknown_sections[0]}]; expected [vpc], "
            "[[subnets]], [[gateways]], [[route_tables]], [[instances]]"
        )
    header = data.get("vpc")
    if header is None:
        raise DesignError(f"{source}: missing the [vpc] table with the VPC's cidr")
    header = _table(f"{source}: [vpc]", "vpc", header)
    try:
        vpc = Vpc(_required(f"{source}: [vpc]", header, "cidr"), name=header.get("name", "vpc"))
    except DesignError:
        raise
    except ValueError as error:
        raise DesignError(f"{source}: [vpc]: {error}") from None

    def each(section: str, label: str) -> Iterator[tuple[str, Table]]:
        items = data.get(section, [])
        if not isinstance(items, list):
            raise DesignError(f"{source}: {section} must be an array of tables ([[{section}]])")
        for index, item in enumerate(items):
            name = item.get(label) if isinstance(item, dict) else None
            where = f"{source}: {section}[{index}]" + (f" ({name!r})" if name else "")
            yield where, _table(where, section, item)

    def build(where: str, action: Callable[[], object]) -> object:
        try:
            return action()
        except DesignError as error:
            if str(error).startswith(where):
                raise
            raise DesignError(f"{where}: {error}") from None
        except ValueError as error:
            raise DesignError(f"{where}: {error}") from None

    for where, item in each("subnets", "name"):
        build(
            where,
            partial(
                vpc.add_subnet,
                _required(where, item, "name"),
                _required(where, item, "cidr"),
                _required(where, item, "az"),
            ),
        )
    for where, item in each("gateways", "id"):

        def add_gateway(item: Table = item, where: str = where) -> Gateway:
            gateway_id = str(_required(where, item, "id"))
            kind = target_kind(gateway_id)
            if kind == "igw":
                return vpc.add_internet_gateway(gateway_id)
            if kind == "vgw":
                return vpc.add_vpn_gateway(gateway_id, item.get("remote_cidrs", ()))
            if kind == "pcx":
                return vpc.add_peering(gateway_id, _required(where, item, "peer_cidrs"))
            if kind == "nat":
                return vpc.add_nat_gateway(
                    gateway_id,
                    _required(where, item, "subnet"),
                    public_ip=item.get("public_ip"),
                    private_ip=item.get("private_ip"),
                )
            raise DesignError(f"gateway id {gateway_id!r}: expected igw-, nat-, vgw- or pcx-")

        build(where, add_gateway)
    for where, item in each("route_tables", "name"):

        def add_table(item: Table = item, where: str = where) -> RouteTable:
            name = str(_required(where, item, "name"))
            if name == "main":
                table = vpc.route_tables["main"]
                for subnet in item.get("subnets", ()):
                    vpc.associate(subnet, "main")
            else:
                table = vpc.add_route_table(
                    name, subnets=item.get("subnets", ()), main=bool(item.get("main", False))
                )
            for index, entry in enumerate(item.get("routes", ())):
                route_where = f"{where}: routes[{index}]"
                route = _table(route_where, "routes", entry)
                try:
                    table.add_route(
                        _required(route_where, route, "destination"),
                        _required(route_where, route, "target"),
                        propagated=bool(route.get("propagated", False)),
                    )
                except ValueError as error:
                    raise DesignError(f"{route_where}: {error}") from None
            return table

        build(where, add_table)
    for where, item in each("subnets", "name"):
        if item.get("route_table"):
            build(where, partial(vpc.associate, item["name"], item["route_table"]))
    for where, item in each("instances", "name"):
        build(
            where,
            partial(
                vpc.add_instance,
                _required(where, item, "name"),
                _required(where, item, "subnet"),
                private_ip=item.get("private_ip"),
                public_ip=item.get("public_ip"),
            ),
        )
    return vpc


def loads_design(text: str, *, source: str = "design") -> Vpc:
    """Build a :class:`Vpc` from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DesignError(f"{source}: not valid TOML: {error}") from None
    return design_from_dict(data, source=source)


def load_design(path: str | Path) -> Vpc:
    r"""Read a VPC design from a TOML file.

    Raises
    ------
    DesignError
        The message names the file, the item and the bad value.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.toml"
    >>> _ = path.write_text('[vpc]\ncidr = "10.0.0.0/16"\n[[subnets]]\n'
    ...                     'name = "a"\ncidr = "10.0.0.0/24"\naz = "az1"\n')
    >>> vpc = load_design(path)
    >>> vpc.cidr, vpc.classify("a")
    (IPv4Network('10.0.0.0/16'), 'private')
    """
    path = Path(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DesignError(
            f"design file {str(path)!r} does not exist: expected a TOML file"
        ) from None
    except OSError as error:
        raise DesignError(f"design file {str(path)!r} cannot be read: {error.strerror}") from None
    return loads_design(text, source=path.name)
