"""Request bodies that carry artifacts: a streamed ``multipart/form-data`` upload, or a small JSON
body naming a ``source_url``.

An upload is parsed as it arrives (python-multipart's push parser fed from ``request.stream()``)
and the ``file`` part goes straight into the artifact store while SHA-256 and size are measured —
never buffered or spooled to a temporary file (Starlette's ``request.form()`` would). The other
parts are form fields, bounded in number and size. Because the stream only ends once the whole
body was read, every form field is known when the store asks whether to keep the object, wherever
the fields stood relative to the file: a declared ``sha256`` that does not match, a missing file
or an invalid field is a 400 and nothing is kept.

These routes stream their bodies and bound them themselves (per-kind size caps, 64 KiB of JSON),
so they opt out of the general request-body limit (``@body_limit(None)``).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from services.api.errors import APIError, FieldErrors, validation_errors
from shared.artifacts.files import safe_filename
from shared.artifacts.store import (
    ArtifactRejectedError,
    ArtifactStore,
    ArtifactTooLargeError,
    Digest,
    StoredObject,
    expect_sha256,
    format_size,
)

FILE_FIELD = "file"
SHA256_FIELD = "sha256"
MAX_FIELDS = 64
MAX_FIELD_BYTES = 64 * 1024
MAX_JSON_BYTES = 64 * 1024
# Multipart framing around the file: boundaries, part headers, the form fields.
FRAMING_ALLOWANCE = MAX_FIELDS * MAX_FIELD_BYTES
SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(415, f'Unsupported media type "{content_type}" in request.')


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _FormReader:
    """python-multipart callbacks collecting form fields and handing file bytes out per write."""

    def __init__(self, boundary: bytes, charset: str) -> None:
        self.fields: dict[str, list[str]] = {}
        self.filename: str | None = None
        self._charset = charset
        self._part = _Part()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._count = 0
        self.file_parts = 0
        self.pending: list[bytes] = []
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_part_data": self._data,
                "on_part_end": self._end,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_cb,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
            },
        )

    def _decode(self, raw: bytes) -> str:
        return raw.decode(self._charset, errors="replace")

    def _begin(self) -> None:
        self._part = _Part()
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise FieldErrors.single("non_field_errors", "A form part has no name.")
        name = self._decode(options[b"name"])
        self._part.name = name
        if b"filename" in options or name == FILE_FIELD:
            if name != FILE_FIELD:
                raise FieldErrors.single(name, f"Unexpected file; send the file as `{FILE_FIELD}`.")
            self.file_parts += 1
            if self.file_parts > 1:
                raise FieldErrors.single(FILE_FIELD, "Send exactly one file.")
            self.filename = self._decode(options.get(b"filename", b""))
            self._part.filename = self.filename
            return
        self._count += 1
        if self._count > MAX_FIELDS:
            raise FieldErrors.single("non_field_errors", f"More than {MAX_FIELDS} form fields.")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part.filename is not None:
            self.pending.append(data[start:end])
            return
        self._part.data += data[start:end]
        if len(self._part.data) > MAX_FIELD_BYTES:
            raise FieldErrors.single(
                self._part.name, f"Ensure this field has at most {MAX_FIELD_BYTES} bytes."
            )

    def _end(self) -> None:
        if self._part.filename is None:
            self.fields.setdefault(self._part.name, []).append(self._decode(bytes(self._part.data)))

    async def file_chunks(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The file part's bytes, read from ``body`` as the consumer asks for them."""
        try:
            async for chunk in body:
                self.parser.write(chunk)
                for piece in self.pending:
                    yield piece
                self.pending.clear()
            self.parser.finalize()
        except FormParserError:
            raise FieldErrors.single("non_field_errors", "Invalid multipart data.") from None
        for piece in self.pending:
            yield piece
        self.pending.clear()


def _boundary(request: Request) -> tuple[bytes, str]:
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise FieldErrors.single("non_field_errors", "Missing boundary in multipart.")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "utf-8"
    return boundary, charset


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


def form_values(model: type[BaseModel], fields: dict[str, list[str]]) -> dict[str, Any]:
    """Form fields as the model's input: list fields take every repeated value, others the last."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in fields:
            continue
        is_list = getattr(info.annotation, "__origin__", None) is list
        values[name] = fields[name] if is_list else fields[name][-1]
    return values


def validated(model: type[BaseModel], data: Any) -> Any:
    """``model`` from ``data``, or a 400 naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FieldErrors(validation_errors(exc.errors())) from None


@dataclass(frozen=True)
class Upload:
    stored: StoredObject
    filename: str
    metadata: Any


async def receive_upload(
    request: Request, store: ArtifactStore, max_size: int, fields_model: type[BaseModel]
) -> Upload:
    """Stream a multipart upload's ``file`` into ``store``; the other parts must validate as
    ``fields_model`` (plus an optional ``sha256``) or nothing is kept."""
    declared = _declared_length(request)
    if declared is not None and declared > max_size + FRAMING_ALLOWANCE:
        raise FieldErrors.single(FILE_FIELD, ArtifactTooLargeError(FILE_FIELD, max_size).args[0])
    reader = _FormReader(*_boundary(request))
    outcome: dict[str, Any] = {}

    def verify(digest: Digest) -> None:
        if reader.file_parts == 0:
            raise FieldErrors.single(FILE_FIELD, "No file was submitted.")
        filename = safe_filename(reader.filename or "")
        errors: dict[str, list[str]] = {}
        if not filename:
            errors[FILE_FIELD] = ["The file part needs a file name (e.g. `bios-2.19.1.bin`)."]
        sha256 = (reader.fields.get(SHA256_FIELD) or [""])[-1].strip()
        if sha256 and not SHA256_PATTERN.match(sha256):
            errors[SHA256_FIELD] = ["Enter the SHA-256 as 64 hexadecimal digits."]
        try:
            outcome["metadata"] = validated(fields_model, form_values(fields_model, reader.fields))
        except FieldErrors as exc:
            errors = exc.errors | errors
        if errors:
            raise FieldErrors(errors)
        expect_sha256(sha256 or None)(digest)
        outcome["filename"] = filename

    try:
        stored = await store.put(
            reader.file_chunks(request.stream()), max_size=max_size, verify=verify
        )
    except ArtifactRejectedError as exc:
        raise FieldErrors.single(exc.field, str(exc)) from None
    return Upload(stored, outcome["filename"], outcome["metadata"])


async def read_json(request: Request, model: type[BaseModel]) -> Any:
    """A small JSON body (at most ``MAX_JSON_BYTES``) validated as ``model``."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise APIError(413, f"The JSON body is larger than {format_size(MAX_JSON_BYTES)}.")
    try:
        return model.model_validate_json(bytes(body) or b"{}")
    except ValidationError as exc:
        raise FieldErrors(validation_errors(exc.errors())) from None


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its references resolved in place, for request bodies the
    route documents by hand (it reads the body itself, so FastAPI does not see the model)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def multipart_schema(fields_model: type[BaseModel]) -> dict[str, Any]:
    schema = inline_schema(fields_model)
    schema["properties"] = {
        FILE_FIELD: {"type": "string", "format": "binary", "description": "The file."},
        SHA256_FIELD: {
            "type": "string",
            "pattern": SHA256_PATTERN.pattern,
            "maxLength": 64,
            "description": "Optional: the file's SHA-256; a mismatch is a 400 and nothing is kept.",
        },
        **schema.get("properties", {}),
    }
    schema["required"] = [FILE_FIELD, *schema.get("required", [])]
    schema["description"] = (
        "The file in a `file` part, every other field as a form field (list fields repeated: "
        "`-F models=R650 -F models=R750`)."
    )
    return schema
