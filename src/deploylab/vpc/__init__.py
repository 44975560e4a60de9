"""VPC networking for learners and for real designs: IPv4 addresses and classes, CIDR facts
(classic and AWS), subnet planning, route tables with longest prefix match, a VPC model with
validation and reachability, TOML designs, and a check against the Linux kernel
(:mod:`deploylab.vpc.netns`).

Examples
--------
>>> from deploylab import vpc
>>> vpc.cidr_facts("10.0.0.0/24").aws_usable
251
>>> table = vpc.RouteTable("rt", local_cidrs=["10.0.0.0/16"])
>>> _ = table.add_route("0.0.0.0/0", "igw-main")
>>> table.lookup("10.0.4.4").target
'local'
"""

from deploylab.vpc.address_kinds import (
    SPECIAL_BLOCKS,
    AddressFacts,
    BinaryView,
    SpecialBlock,
    address_class,
    address_facts,
    binary_view,
    is_rfc1918,
    special_block,
)
from deploylab.vpc.addressing import (
    AWS_MAX_PREFIX,
    AWS_MIN_PREFIX,
    check_aws_size,
    parse_address,
    parse_block,
)
from deploylab.vpc.blocks import (
    CidrFacts,
    ReservedAddress,
    aws_reserved_addresses,
    aws_usable_hosts,
    cidr_facts,
    free_blocks,
    summarise_blocks,
    usable_hosts,
)
from deploylab.vpc.design import design_from_dict, load_design, loads_design
from deploylab.vpc.errors import (
    AddressError,
    BlockError,
    DesignError,
    PlanError,
    RouteError,
    VpcError,
)
from deploylab.vpc.model import SUBNET_KINDS, Gateway, Instance, Subnet, Vpc
from deploylab.vpc.planning import (
    PlannedSubnet,
    SubnetPlan,
    SubnetRequest,
    plan_subnets,
    prefix_for_hosts,
)
from deploylab.vpc.reachability import Hop, Reachability, reach
from deploylab.vpc.routing import (
    TARGET_KINDS,
    Route,
    RouteLookup,
    RouteTable,
    longest_prefix_match,
    target_kind,
)
from deploylab.vpc.validation import Problem

__all__ = [
    "AWS_MAX_PREFIX",
    "AWS_MIN_PREFIX",
    "SPECIAL_BLOCKS",
    "SUBNET_KINDS",
    "TARGET_KINDS",
    "AddressError",
    "AddressFacts",
    "BinaryView",
    "BlockError",
    "CidrFacts",
    "DesignError",
    "Gateway",
    "Hop",
    "Instance",
    "PlanError",
    "PlannedSubnet",
    "Problem",
    "Reachability",
    "ReservedAddress",
    "Route",
    "RouteError",
    "RouteLookup",
    "RouteTable",
    "SpecialBlock",
    "Subnet",
    "SubnetPlan",
    "SubnetRequest",
    "Vpc",
    "VpcError",
    "address_class",
    "address_facts",
    "aws_reserved_addresses",
    "aws_usable_hosts",
    "binary_view",
    "check_aws_size",
    "cidr_facts",
    "design_from_dict",
    "free_blocks",
    "is_rfc1918",
    "load_design",
    "loads_design",
    "longest_prefix_match",
    "parse_address",
    "parse_block",
    "plan_subnets",
    "prefix_for_hosts",
    "reach",
    "special_block",
    "summarise_blocks",
    "target_kind",
    "usable_hosts",
]
