"""What an artifact is called and declared as when served: a file name safe in every BMC's URL
parser, and its media type."""

from __future__ import annotations

import mimetypes
import re
from urllib.parse import unquote, urlsplit

# What a served file name may contain: what every BMC's URL parser accepts unquoted.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
# Types BMCs and installers look for that the platform's MIME table may lack.
_TYPES = {
    ".iso": "application/x-iso9660-image",
    ".img": "application/octet-stream",
    ".efi": "application/efi",
}


def safe_filename(name: str) -> str:
    """``name`` without directories or characters a BMC might mangle (``?``, ``=``, spaces,
    ``%``) and without a leading dot, extension kept; empty if nothing usable is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("_", base).strip("._-")[:200]


def filename_from_url(url: str) -> str:
    """The last path segment of a source URL, made safe (empty if it has none)."""
    return safe_filename(unquote(urlsplit(url).path))


def content_type_for(filename: str) -> str:
    suffix = filename[filename.rfind(".") :].lower() if "." in filename else ""
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"
