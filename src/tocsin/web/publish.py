"""The static mirror: every query-free public document written to a folder, byte for byte
what the live server sends, for any static web server or CDN to carry."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tocsin.domain.errors import InvalidInput
from tocsin.web.documents import file_name
from tocsin.web.snapshot import Snapshot

MARKER = ".tocsin-mirror"


@dataclass(frozen=True)
class Published:
    folder: Path
    files: int
    bytes: int
    version: int


def publish(snapshot: Snapshot, folder: Path) -> Published:
    """Write the snapshot to `folder`, replacing a previous mirror there as a whole.

    Refuses a folder that holds anything but an earlier mirror, so nothing else is deleted.
    """
    target = folder.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{target} is a file, not a folder", "give a folder for the mirror")
    try:
        return _write(snapshot, target)
    except OSError as error:
        raise InvalidInput(f"cannot write the mirror to {target}: {error.strerror}",
                           "check the folder's permissions and free space") from None


def _write(snapshot: Snapshot, target: Path) -> Published:
    if target.exists() and any(target.iterdir()) and not (target / MARKER).exists():
        raise InvalidInput(f"folder {target} is not empty and is not a tocsin mirror",
                           "give a new or empty folder, or one written by 'tocsin publish'")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tocsin-publish-", dir=target.parent))
    files = size = 0
    try:
        for path in snapshot.site.paths():
            doc = snapshot.site.render(path)
            out = staging / file_name(path, doc.media_type)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(doc.body)
            files += 1
            size += len(doc.body)
        (staging / MARKER).write_text(f"version {snapshot.version}\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        # Swap the whole folder so readers never see half a mirror.
        if target.exists():
            old = target.with_name(target.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Published(target, files, size, snapshot.version)
