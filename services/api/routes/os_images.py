"""``/api/os/``: OS images to deploy — installer ISOs and UEFI HTTP boot images, uploaded or
fetched from a URL (routes: ``services/api/catalogs``)."""

from __future__ import annotations

from sqlmodel import col

from services.api.catalogs import CatalogSpec, build_router
from services.api.listing import ListSpec
from shared.models import Artifact, ArtifactKind, OSImage
from shared.models.os_images import OSImageFields, OSImageFromSource, OSImagePublic, OSImageUpdate

LIST_SPEC = ListSpec(
    pk=col(OSImage.id),
    search=(col(OSImage.name), col(OSImage.version), col(OSImage.os_family)),
    filters={
        "arch": col(OSImage.arch),
        "os_family": col(OSImage.os_family),
        "image_type": col(OSImage.image_type),
        "version": col(OSImage.version),
        "status": col(Artifact.status),
    },
    ordering={
        "id": col(OSImage.id),
        "name": col(OSImage.name),
        "version": col(OSImage.version),
        "arch": col(OSImage.arch),
        "os_family": col(OSImage.os_family),
        "created_at": col(OSImage.created_at),
        "size": col(Artifact.size),
    },
)

SPEC = CatalogSpec(
    kind=ArtifactKind.os_image,
    noun="OS image",
    entity=OSImage,
    fields=OSImageFields,
    from_source=OSImageFromSource,
    update=OSImageUpdate,
    public=OSImagePublic,
    to_public=OSImagePublic.of,
    list_spec=LIST_SPEC,
)

router = build_router("/api/os", "os images", SPEC)
