"""ISO 9660 images built in memory: cloud-init NoCloud seeds (``cidata``) and the small
installer images tests and benchmarks deploy.

A NoCloud seed is an ISO whose volume label is ``cidata`` holding ``meta-data``, ``user-data``
and, when given, ``network-config``; cloud-init finds it on any attached drive. Names keep their
dashes through the Joliet and Rock Ridge extensions (plain ISO 9660 level 1 cannot spell them),
as ``genisoimage -volid cidata -joliet -rock`` makes them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import pycdlib

SEED_LABEL = "cidata"
SEED_FILES = ("meta-data", "user-data", "network-config", "vendor-data")


def _iso9660_name(name: str, index: int) -> str:
    stem = "".join(c for c in name.upper() if c.isalnum())[:8] or f"F{index}"
    return f"/{stem}.;1"


def build(volume_id: str, files: Mapping[str, bytes]) -> bytes:
    """An ISO with ``files`` (flat names) in its root, labelled ``volume_id``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=volume_id)
    for index, (name, data) in enumerate(sorted(files.items())):
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            _iso9660_name(name, index),
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def seed(meta_data: bytes, user_data: bytes, network_config: bytes | None = None) -> bytes:
    """A NoCloud ``cidata`` seed image."""
    files = {"meta-data": meta_data, "user-data": user_data}
    if network_config is not None:
        files["network-config"] = network_config
    return build(SEED_LABEL, files)
