"""The map bundle container: one versioned directory of memory-mappable arrays and a JSON manifest.

Layout::

    BUNDLE/
      manifest.json        format name + version, producer, free-form metadata, per-file size + SHA-256
      <group>/<name>.npy   arrays (opened with mmap_mode="r", so a city-scale bundle costs no RAM
                           until a tile's rows are touched)
      <group>/<name>.json  small structured data
      images/...           optional view images (JPEG) for PoseNet training

This module knows nothing of what the arrays mean (that is :mod:`geoloc_ros.mapping.map`); it only
guarantees that a bundle is complete (written atomically), of a format this code understands, and
not corrupted (checksums), with errors that name the file at fault.

The manifest is untrusted input, validated as a schema whatever the ``verify`` level: every member
name is a normalised relative POSIX path inside the bundle (no absolute names, no ``..`` or ``.``
parts, no backslashes, not the manifest itself), no member or folder on its way is a symbolic link
(nothing is ever read from outside the bundle), ``bytes`` is a non-negative integer and ``sha256``
64 hexadecimal digits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from geoloc_ros import __version__
from geoloc_ros.io.atomic import atomic_directory, atomic_write_json
from geoloc_ros.mapping.errors import BundleChecksumError, BundleError, BundleFormatError

logger = logging.getLogger(__name__)

FORMAT_NAME = "geoloc_ros.map_bundle"
FORMAT_VERSION = 2
"""Written by this geoloc_ros. Version 2 added compressed feature storage (``mapping.compact``);
a version-1 bundle is a version-2 bundle with raw descriptors and full-size images."""
READABLE_FORMAT_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
# What BundleWriter.commit writes into every manifest itself; the rest is the producer's metadata.
_COMMIT_KEYS = frozenset({"format", "format_version", "producer", "created_at", "files"})
_HASH_CHUNK = 1 << 22
_HEX = frozenset("0123456789abcdef")

Verification = Literal["full", "sizes", "none"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def member_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a bundle member name, or None (see the module docstring)."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if "\\" in name or "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "must be a relative POSIX path (no absolute name, drive or backslash)"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "must be normalised and stay inside the bundle (no empty, '.' or '..' parts)"
    if name == MANIFEST_NAME:
        return "is the manifest itself"
    return None


def _check_relative(name: str) -> str:
    problem = member_name_problem(name)
    if problem is not None:
        raise BundleError(f"invalid bundle member name {name!r}: {problem}")
    return name


def _check_files_table(manifest_path: Path, files: dict[Any, Any]) -> None:
    """The ``files`` table as a schema: names (see :func:`member_name_problem`), sizes, digests."""
    for name, entry in files.items():
        problem = member_name_problem(name)
        if problem is not None:
            raise BundleFormatError(f"{manifest_path}: files: member name {name!r} {problem}")
        if not isinstance(entry, dict):
            raise BundleFormatError(f"{manifest_path}: files[{name!r}] must be an object, got {entry!r}")
        size = entry.get("bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BundleFormatError(
                f"{manifest_path}: files[{name!r}].bytes must be a non-negative integer, got {size!r}"
            )
        digest = entry.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in _HEX for c in digest):
            raise BundleFormatError(
                f"{manifest_path}: files[{name!r}].sha256 must be 64 hexadecimal digits, got {digest!r}"
            )


def _check_inside(root: Path, name: str) -> Path:
    """``root / name``, refusing a symbolic link anywhere on the way (it could lead out of the bundle)."""
    path = root
    for part in name.split("/"):
        path = path / part
        if path.is_symlink():
            raise BundleFormatError(f"{path}: bundle members must not be symbolic links")
    return path


class BundleWriter:
    """Builds a bundle in a staging directory; :meth:`commit` writes the manifest and moves it into place.

    Use as a context manager: leaving the block without :meth:`commit` (or with an exception) discards
    everything, so an interrupted build never leaves a bundle that looks valid.
    """

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        self._cm = atomic_directory(self.path, overwrite=overwrite)
        self._staging: Path | None = None
        self._committed = False

    def __enter__(self) -> BundleWriter:
        self._staging = self._cm.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None and not self._committed:
            uncommitted = BundleError(f"bundle {self.path} was not committed")
            self._cm.__exit__(BundleError, uncommitted, tb)
            raise uncommitted
        self._cm.__exit__(exc_type, exc, tb)

    @property
    def staging(self) -> Path:
        if self._staging is None:
            raise BundleError("BundleWriter used outside its context")
        return self._staging

    def _target(self, name: str) -> Path:
        target = self.staging / _check_relative(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def directory(self, name: str) -> Path:
        """A sub-directory of the staging area for code that writes its own files (they are all
        checksummed at :meth:`commit`)."""
        target = self.staging / _check_relative(name)
        target.mkdir(parents=True, exist_ok=True)
        return target

    def add_array(self, name: str, array: np.ndarray) -> None:
        """Store ``array`` as ``name`` (``.npy`` appended when missing)."""
        if not name.endswith(".npy"):
            name += ".npy"
        arr = np.asarray(array)
        if arr.dtype == object:
            raise BundleError(f"{name}: object arrays cannot be stored in a bundle")
        np.save(self._target(name), np.ascontiguousarray(arr), allow_pickle=False)

    def add_concatenated(self, name: str, chunks: Iterable[np.ndarray], total_rows: int) -> None:
        """Stream ``chunks`` (same dtype and trailing shape) into one ``.npy`` of ``total_rows`` rows.

        Nothing bigger than one chunk is held in memory: the output is a memory-mapped file.
        """
        if not name.endswith(".npy"):
            name += ".npy"
        target = self._target(name)
        out: np.memmap | None = None
        row = 0
        for chunk in chunks:
            c = np.asarray(chunk)
            if out is None:
                out = np.lib.format.open_memmap(
                    target, mode="w+", dtype=c.dtype, shape=(total_rows, *c.shape[1:])
                )
            if row + len(c) > total_rows:
                raise BundleError(f"{name}: chunks hold more than the announced {total_rows} rows")
            out[row : row + len(c)] = c
            row += len(c)
        if out is None:
            raise BundleError(f"{name}: no chunks to store")
        if row != total_rows:
            raise BundleError(f"{name}: chunks hold {row} rows, announced {total_rows}")
        out.flush()
        del out

    def copy_members(self, source: Bundle, skip: Callable[[str], bool]) -> None:
        """Copy every file of ``source`` but those ``skip`` is true for, unchanged (a new version of
        a bundle that replaces some members)."""
        for rel in source.members():
            if not skip(rel):
                shutil.copyfile(source.path / rel, self._target(rel))

    def add_json(self, name: str, data: Any) -> None:
        if not name.endswith(".json"):
            name += ".json"
        atomic_write_json(self._target(name), data)

    def commit(self, metadata: dict[str, Any]) -> None:
        """Checksum every file of the staging area, write the manifest, and move the bundle into place."""
        files = {}
        for path in sorted(p for p in self.staging.rglob("*") if p.is_file()):
            rel = path.relative_to(self.staging).as_posix()
            if rel == MANIFEST_NAME or path.name.startswith("."):
                continue  # the manifest itself; hidden temporaries of atomic writes
            files[rel] = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "producer": f"geoloc_ros {__version__}",
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **metadata,
            "files": files,
        }
        atomic_write_json(self.staging / MANIFEST_NAME, manifest)
        self._committed = True


class Bundle:
    """A bundle on disk, verified at open; arrays are memory-mapped on demand."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._cache: dict[str, Any] = {}

    @classmethod
    def open(cls, path: str | Path, verify: Verification = "full") -> Bundle:
        """Open and check a bundle.

        ``verify="full"`` checks every file's SHA-256 (what nodes do at start-up); ``"sizes"`` only
        checks presence and sizes (instant, for city-scale bundles); ``"none"`` trusts the manifest.
        """
        root = Path(path)
        manifest_path = root / MANIFEST_NAME
        if not root.is_dir():
            raise BundleError(f"map bundle {root} does not exist or is not a directory")
        if not manifest_path.is_file():
            raise BundleFormatError(f"{root} is not a map bundle: {MANIFEST_NAME} is missing")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleFormatError(f"{manifest_path}: not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise BundleFormatError(f"{manifest_path}: not a geoloc_ros map bundle manifest")
        version = manifest.get("format_version")
        if version not in READABLE_FORMAT_VERSIONS:
            readable = ", ".join(map(str, READABLE_FORMAT_VERSIONS))
            raise BundleFormatError(
                f"{manifest_path}: bundle format version {version} is not supported by this geoloc_ros "
                f"(it reads versions {readable}); rebuild the bundle with `geoloc map build`"
            )
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise BundleFormatError(f"{manifest_path}: manifest has no 'files' table")
        _check_files_table(manifest_path, files)
        for rel in files:
            _check_inside(root, rel)
        if verify != "none":
            for rel, entry in files.items():
                member = root / rel
                if not member.is_file():
                    raise BundleChecksumError(f"{member}: listed in the manifest but missing")
                size = member.stat().st_size
                if size != entry["bytes"]:
                    raise BundleChecksumError(f"{member}: size {size} bytes, manifest says {entry['bytes']}")
                if verify == "full" and sha256_of(member) != entry["sha256"]:
                    raise BundleChecksumError(
                        f"{member}: checksum mismatch (the file is corrupted or was modified)"
                    )
        return cls(root, manifest)

    def has(self, name: str) -> bool:
        return name in self.manifest["files"] or f"{name}.npy" in self.manifest["files"]

    def array(self, name: str, mmap: bool = True) -> np.ndarray:
        """The array ``name`` (memory-mapped read-only unless ``mmap=False``)."""
        rel = name if name.endswith(".npy") else f"{name}.npy"
        if rel not in self.manifest["files"]:
            raise BundleFormatError(f"{self.path}: the bundle has no array {rel!r}")
        key = f"{rel}:{mmap}"
        if key not in self._cache:
            try:
                self._cache[key] = np.load(
                    self.path / rel, mmap_mode="r" if mmap else None, allow_pickle=False
                )
            except (ValueError, OSError) as exc:
                raise BundleChecksumError(f"{self.path / rel}: cannot read array: {exc}") from None
        return self._cache[key]

    def json(self, name: str) -> Any:
        rel = name if name.endswith(".json") else f"{name}.json"
        if rel not in self.manifest["files"]:
            raise BundleFormatError(f"{self.path}: the bundle has no member {rel!r}")
        try:
            return json.loads((self.path / rel).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleChecksumError(
                f"{self.path / rel}: cannot read JSON member ({exc}); the bundle is corrupted"
            ) from None

    @property
    def metadata(self) -> dict[str, Any]:
        """The manifest without what :meth:`BundleWriter.commit` writes itself (format, producer,
        creation time, file table): what a new version of the bundle carries over."""
        return {k: v for k, v in self.manifest.items() if k not in _COMMIT_KEYS}

    def members(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.manifest["files"] if n.startswith(prefix))

    @property
    def total_bytes(self) -> int:
        return int(sum(e["bytes"] for e in self.manifest["files"].values()))
