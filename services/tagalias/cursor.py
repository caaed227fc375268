"""The opaque paging cursor of tagMembers and resolve: where a walk over the buckets stands.

Why it carries everything: TagAlias replicas are load-balanced round-robin, so consecutive pages
of one walk land on different processes and no replica may keep walk state in memory. A cursor
is base64url of ``1:<bucket>:<sscan cursor>:<run>:<check>`` where

- run is "" for a walk over stored sets (a tag, all, a platform) and, for a resolve that builds
  temporary sets, 12 hex chars drawn on its first page; with the audience digest it names the
  temporary keys, so a retried page finds the set it scanned before, and two pushes of the same
  audience minutes apart never share a stale result;
- check is 8 hex chars of the digest of what is walked (app + tag, or app + audience +
  platforms): a cursor handed back with another tag or audience is refused instead of silently
  skipping devices.

Everything coming back is checked; garbage is PushGrid.InvalidArgument on field "cursor".
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from services.common.validation import invalid
from services.tagalias.keys import BUCKETS

VERSION = "1"
_RUN_RE = re.compile(r"^(|[0-9a-f]{12})$")
_CHECK_RE = re.compile(r"^[0-9a-f]{8}$")
_SCAN_MAX = 2**64 - 1  # SSCAN cursors are unsigned 64-bit
_TEXT_MAX = 200


@dataclass(frozen=True)
class Cursor:
    """A position in a walk: next bucket to read and the SSCAN cursor inside it."""

    bucket: int
    scan: int
    run: str
    check: str


def encode(c: Cursor) -> str:
    raw = f"{VERSION}:{c.bucket}:{c.scan}:{c.run}:{c.check}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(text: str, check: str) -> Cursor:
    """Parses a cursor a client sent back; check must match the one the walk was started with."""
    bad = invalid("cursor", "cursor is not one this service issued for this query; start with an empty cursor")
    if not isinstance(text, str) or not text or len(text) > _TEXT_MAX:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    parts = raw.split(":")
    if len(parts) != 5 or parts[0] != VERSION:
        raise bad
    _, b, scan, run, got_check = parts
    if not (b.isdigit() and scan.isdigit()) or not _RUN_RE.match(run) or not _CHECK_RE.match(got_check):
        raise bad
    bucket, scan_pos = int(b), int(scan)
    if not 0 <= bucket < BUCKETS or scan_pos > _SCAN_MAX:
        raise bad
    if got_check != check:
        raise invalid("cursor", "cursor belongs to another tag or audience; start with an empty cursor")
    return Cursor(bucket=bucket, scan=scan_pos, run=run, check=got_check)
