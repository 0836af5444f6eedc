"""The routes every artifact catalog shares (``/api/firmware/``, ``/api/os/``), built from a spec.

- ``GET`` list and detail: any authenticated user (the catalog is reference data that anyone
  planning an update or a deployment reads); ``POST``, ``PUT``, ``PATCH``, ``DELETE``: superusers.
- ``POST`` takes either a streamed ``multipart/form-data`` upload (201, ``status`` ready) or JSON
  naming a ``source_url`` and its ``sha256`` (202, ``status`` uploading; the fetcher worker
  downloads it).
- ``PUT``/``PATCH`` change the descriptive fields (PUT keeps the optional ones it is not sent, as
  everywhere); the bytes never change (upload a new entry).
- Operation ids and the path parameter are the catalog's own (``list_firmware``,
  ``read_os_image``, ``{firmware_id}``): a generated client calls them by those names.
- ``DELETE`` answers 409 listing what uses the bytes (``shared.artifacts.usage``).
"""

# No `from __future__ import annotations`: the route functions below are built per catalog, and
# FastAPI reads their parameter types from the annotations at definition time.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel
from sqlmodel import col, select

from services.api import uploads
from services.api.bodylimit import body_limit
from services.api.broker import BROKER_UNAVAILABLE, announce
from services.api.deps import SessionDep, StateDep, Superuser, get_current_user
from services.api.errors import APIError, FieldErrors, documented
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404
from shared.artifacts.files import content_type_for, filename_from_url, safe_filename
from shared.artifacts.store import format_size
from shared.artifacts.usage import Use, uses_of
from shared.core.log import get_logger
from shared.core.targets import ARTIFACT_SOURCES, TargetError, TargetPolicy, check_url
from shared.lifecycle import artifact as lifecycle
from shared.lifecycle import compliance
from shared.models import Artifact, ArtifactKind, ArtifactStatus, FirmwareBinary, OSImage

log = get_logger(__name__)

Entry = FirmwareBinary | OSImage


class InUseError(APIError):
    """409: the bytes are in use; the body lists the uses by kind (``grants``, ``jobs``, …)."""

    def __init__(self, noun: str, uses: list[Use]) -> None:
        listed = "; ".join(use.description for use in uses)
        super().__init__(409, f"The {noun} is in use: {listed}.")
        self.uses = uses

    @property
    def extra(self) -> dict[str, list[int]]:
        by_kind: dict[str, list[int]] = {}
        for use in self.uses:
            by_kind.setdefault(use.kind, []).append(use.id)
        return by_kind


@dataclass(frozen=True)
class CatalogSpec:
    """``one`` and ``many``: the entry's name in operation ids and its path parameter
    (``<one>_id``), in snake case (``os_image``, ``os_images``)."""

    kind: ArtifactKind
    noun: str
    one: str
    many: str
    entity: type[FirmwareBinary] | type[OSImage]
    fields: type[BaseModel]
    from_source: type[BaseModel]
    update: type[BaseModel]
    public: type[BaseModel]
    to_public: Callable[[Any], BaseModel]
    list_spec: ListSpec


def _request_body(spec: CatalogSpec) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": uploads.multipart_schema(spec.fields)},
                "application/json": {"schema": uploads.inline_schema(spec.from_source)},
            },
        }
    }


def build_router(prefix: str, tag: str, spec: CatalogSpec) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=[tag], dependencies=[Depends(get_current_user)])
    entity = spec.entity
    noun = spec.noun
    query_dependency = Annotated[ListQuery, Depends(list_params(spec.list_spec))]
    update_model = spec.update
    fields_model = spec.fields
    public_page = Page[spec.public]  # type: ignore[name-defined]
    id_name = f"{spec.one}_id"
    EntryId = Annotated[int, Path(alias=id_name)]
    item = f"/{{{id_name}}}/"

    async def load(session: SessionDep, entry_id: int) -> Entry:
        return cast(Entry, await get_or_404(session, entity, entry_id))

    async def entries(session: SessionDep, query: query_dependency) -> Any:
        stmt = select(entity).join(Artifact, col(Artifact.id) == col(entity.artifact_id))
        return await paginate(session, stmt, query, spec.to_public)

    # The body streams into the store, bounded by the kind's own cap (uploads.receive_upload).
    @body_limit(None)
    async def create(
        request: Request, response: Response, session: SessionDep, state: StateDep, _: Superuser
    ) -> Any:
        content_type = request.headers.get("content-type", "application/json")
        media_type = content_type.split(";", 1)[0].strip().lower()
        settings = state.settings
        runtime = state.runtime
        if media_type == "multipart/form-data":
            store = runtime.artifacts
            upload = await uploads.receive_upload(
                request, store, lifecycle.size_limit(settings, spec.kind), fields_model
            )
            artifact = Artifact(
                kind=spec.kind,
                filename=upload.filename,
                content_type=content_type_for(upload.filename),
                storage_key=upload.stored.key,
                sha256=upload.stored.sha256,
                size=upload.stored.size,
                status=ArtifactStatus.ready,
            )
            entry = entity(**upload.metadata.model_dump(), artifact=artifact)
            try:
                await lifecycle.added_uploaded(session, entry)
                await session.commit()
            except BaseException:
                await store.delete(upload.stored.key)
                raise
            await announce(runtime)
            log.info("artifact.uploaded", kind=spec.kind, id=entry.id, size=upload.stored.size)
            return spec.to_public(entry)
        if media_type != "application/json":
            raise uploads.unsupported_media_type(content_type)
        body = await uploads.read_json(request, spec.from_source)
        source = cast(Any, body)
        try:
            await check_url(
                source.source_url, TargetPolicy.from_settings(settings, ARTIFACT_SOURCES)
            )
        except TargetError as exc:
            raise FieldErrors.single("source_url", str(exc)) from None
        filename = safe_filename(source.filename or "") or filename_from_url(source.source_url)
        if not filename:
            raise FieldErrors.single(
                "filename", "The URL has no file name in its path; give `filename`."
            )
        artifact = Artifact(
            kind=spec.kind,
            filename=filename,
            content_type=content_type_for(filename),
            sha256=source.sha256,
            source_url=source.source_url.strip(),
        )
        entry = entity(**body.model_dump(include=set(fields_model.model_fields)), artifact=artifact)
        await lifecycle.add_from_source(session, runtime, entry)
        response.status_code = 202
        return spec.to_public(entry)

    async def read(entry_id: EntryId, session: SessionDep) -> Any:
        return spec.to_public(await load(session, entry_id))

    async def save(
        session: SessionDep, state: StateDep, entry_id: int, changes: dict[str, Any]
    ) -> Any:
        entry = await load(session, entry_id)
        changed = [name for name, value in changes.items() if getattr(entry, name) != value]
        if changed:
            for name in changed:
                setattr(entry, name, changes[name])
            lifecycle.updated(session, entry, changed)
            if isinstance(entry, FirmwareBinary):
                # Its version or matching rules decide the baselines' compliance.
                await compliance.binary_changed(session, entry)
            await session.commit()
            await announce(state.runtime)
        return spec.to_public(entry)

    async def replace(
        entry_id: EntryId, body: BaseModel, session: SessionDep, state: StateDep, _: Superuser
    ) -> Any:
        return await save(session, state, entry_id, body.model_dump(exclude_unset=True))

    async def update(
        entry_id: EntryId, body: BaseModel, session: SessionDep, state: StateDep, _: Superuser
    ) -> Any:
        return await save(session, state, entry_id, body.model_dump(exclude_unset=True))

    # FastAPI validates the body as the annotated model: this catalog's.
    replace.__annotations__["body"] = fields_model
    update.__annotations__["body"] = update_model

    async def delete(
        entry_id: EntryId, session: SessionDep, state: StateDep, _: Superuser
    ) -> Response:
        entry = await load(session, entry_id)
        uses = await uses_of(session, entry.artifact)
        if uses:
            raise InUseError(noun, uses)
        key = await lifecycle.delete(session, entry)
        await session.commit()
        await announce(state.runtime)
        if key is not None:
            try:
                await state.runtime.artifacts.delete(key)
            except Exception as exc:  # the entry is gone; an orphaned object only costs space
                log.warning("artifact.delete_failed", key=key, error=str(exc))
        return Response(status_code=204)

    router.add_api_route(
        "/",
        entries,
        methods=["GET"],
        name=f"list_{spec.many}",
        response_model=public_page,
        summary=f"List {noun}s",
    )
    router.add_api_route(
        "/",
        create,
        methods=["POST"],
        name=f"create_{spec.one}",
        status_code=201,
        response_model=spec.public,
        summary=f"Add a {noun}: upload it (multipart) or name its source URL (JSON)",
        description=(
            f"**Upload** (`multipart/form-data`): the file in a `file` part, the other fields as "
            f"form fields; streamed to the store while its SHA-256 is computed; an optional "
            f"`sha256` field that does not match is a 400 naming `sha256` and nothing is kept. "
            f"Answers 201 with the {noun}, `status` `ready`.\n\n"
            f"**From a URL** (`application/json`): `source_url` and `sha256` with the other "
            f"fields; the fetcher worker downloads it. Answers 202 with `status` `uploading`; "
            f"poll until `ready` or `invalid` (with `status_reason`), or listen for the events."
        ),
        responses={
            202: {"model": spec.public, "description": "Accepted; the download is queued"},
            **documented(
                413,
                f"The JSON body is larger than {format_size(uploads.MAX_JSON_BYTES)} (a file "
                "over the kind's size cap is a 400 naming `file`)",
            ),
            **documented(415, "Neither multipart/form-data nor JSON"),
            **BROKER_UNAVAILABLE,
        },
        openapi_extra=_request_body(spec),
    )
    router.add_api_route(
        item,
        read,
        methods=["GET"],
        name=f"read_{spec.one}",
        response_model=spec.public,
        summary=f"Retrieve a {noun}",
    )
    for method, endpoint, verb, summary in (
        ("PUT", replace, "replace", f"Replace a {noun}'s descriptive fields"),
        ("PATCH", update, "update", f"Update some of a {noun}'s descriptive fields"),
    ):
        router.add_api_route(
            item,
            endpoint,
            methods=[method],
            name=f"{verb}_{spec.one}",
            response_model=spec.public,
            summary=summary,
        )
    router.add_api_route(
        item,
        delete,
        methods=["DELETE"],
        name=f"delete_{spec.one}",
        status_code=204,
        summary=f"Delete a {noun} and its stored file (409 while in use)",
        responses=documented(409, "In use; the body lists the uses by kind"),
    )
    return router
