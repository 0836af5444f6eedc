"""``/api/firmware/``: the firmware catalog — update packages, uploaded or fetched from a URL,
with what they are and which inventory components they match (routes: ``services/api/catalogs``).
"""

from __future__ import annotations

from sqlmodel import col

from services.api.catalogs import CatalogSpec, build_router
from services.api.listing import ListSpec
from shared.models import Artifact, ArtifactKind, FirmwareBinary
from shared.models.firmware import (
    FirmwareFields,
    FirmwareFromSource,
    FirmwarePublic,
    FirmwareUpdate,
)

LIST_SPEC = ListSpec(
    pk=col(FirmwareBinary.id),
    search=(col(FirmwareBinary.name),),
    filters={
        "firmware_type": col(FirmwareBinary.firmware_type),
        "manufacturer": col(FirmwareBinary.manufacturer),
        "version": col(FirmwareBinary.version),
        "status": col(Artifact.status),
        "sha256": col(Artifact.sha256),
    },
    ordering={
        "id": col(FirmwareBinary.id),
        "name": col(FirmwareBinary.name),
        "version": col(FirmwareBinary.version),
        "firmware_type": col(FirmwareBinary.firmware_type),
        "manufacturer": col(FirmwareBinary.manufacturer),
        "created_at": col(FirmwareBinary.created_at),
        "size": col(Artifact.size),
    },
)

SPEC = CatalogSpec(
    kind=ArtifactKind.firmware,
    noun="firmware binary",
    entity=FirmwareBinary,
    fields=FirmwareFields,
    from_source=FirmwareFromSource,
    update=FirmwareUpdate,
    public=FirmwarePublic,
    to_public=FirmwarePublic.of,
    list_spec=LIST_SPEC,
)

router = build_router("/api/firmware", "firmware", SPEC)
