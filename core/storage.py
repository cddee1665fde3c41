"""Artifact store on a local (or shared) directory: atomic writes and sha256 digests.

Every write goes to a temporary file in the target folder, is fsynced, then `os.replace`d into place,
so a reader sees the old file or the whole new one, never half of it. URIs are paths relative to the
store root, so a shared volume may be mounted anywhere.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from core.errors import ArtifactCorrupt
from dgm.shared import sha256_file


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path(self, uri: str) -> Path:
        """The file behind a relative URI; refuses URIs that leave the store."""
        p = (self.root / uri).resolve()
        if not p.is_relative_to(self.root):
            raise ArtifactCorrupt(f"artifact uri {uri!r} points outside the artifact store")
        return p

    def write_with(self, uri: str, write: Callable[[Path], object]) -> tuple[int, str]:
        """Call `write(tmp_path)`, fsync, atomically move to `uri`; return (bytes, sha256)."""
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            digest = sha256_file(tmp)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return target.stat().st_size, digest

    def write_bytes(self, uri: str, data: bytes) -> tuple[int, str]:
        return self.write_with(uri, lambda p: p.write_bytes(data))

    def verify(self, uri: str, sha256: str) -> None:
        path = self.path(uri)
        if not path.is_file():
            raise ArtifactCorrupt(f"artifact {uri} is missing from the artifact store")
        actual = sha256_file(path)
        if actual != sha256:
            raise ArtifactCorrupt(f"artifact {uri} has sha256 {actual}, expected {sha256}; it is damaged")

    def delete(self, uri: str) -> None:
        self.path(uri).unlink(missing_ok=True)

    def delete_tree(self, uri: str) -> None:
        shutil.rmtree(self.path(uri), ignore_errors=True)

    def ready(self) -> None:
        """Raise unless the store is writable (readiness probe)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_bytes(".ready", b"ok")

    def files(self) -> list[str]:
        """Every stored file, relative (for tests and audits)."""
        if not self.root.exists():
            return []
        return sorted(
            str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file() and p.name != ".ready"
        )
