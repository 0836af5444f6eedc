"""Vendor flavours for synthetic BMC trees."""

from __future__ import annotations

from bmclab.flavours import dell, hpe, openbmc, supermicro
from bmclab.flavours.base import BuiltTree, Flavour, build_tree

FLAVOURS: dict[str, Flavour] = {
    f.name: f for f in (dell.FLAVOUR, hpe.FLAVOUR, supermicro.FLAVOUR, openbmc.FLAVOUR)
}

__all__ = ["FLAVOURS", "BuiltTree", "Flavour", "build_tree"]
