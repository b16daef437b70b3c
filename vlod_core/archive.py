"""Unpacking an untrusted zip (an uploaded data set) into a private folder, or refusing it with a reason.

Everything is checked before a byte is written: member names (no absolute paths, no `..`, no drive letters),
links and other special files, the number of members, and the declared total size. While unpacking, the
bytes actually produced are counted too, so a member that lies about its size (a zip bomb) is stopped at the
limit. Each refusal names the member.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 5000
MAX_TOTAL_BYTES = 512 * 1024 * 1024  # uncompressed
MAX_RATIO = 200  # uncompressed / compressed, per member: beyond this it is a bomb, not a data set
CHUNK = 1 << 20


class ArchiveError(ValueError):
    """The zip cannot be used; the message names the member and says why."""


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{name}: absolute paths are not allowed in the zip")
    if any(part == ".." for part in path.parts):
        raise ArchiveError(f"{name}: a path that leads outside the zip's folder ('..') is not allowed")
    return path


def _check(archive: zipfile.ZipFile, max_members: int, max_total: int) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > max_members:
        raise ArchiveError(f"the zip has {len(members):,} members; the limit is {max_members:,}")
    total = 0
    for info in members:
        _safe_name(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool recorded no file type
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"{info.filename}: links are not allowed in the zip")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"{info.filename}: only files and folders are allowed in the zip")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{info.filename}: encrypted members are not supported")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise ArchiveError(
                f"{info.filename}: compressed {info.file_size / info.compress_size:,.0f} to 1; refused as a "
                "possible zip bomb"
            )
        total += info.file_size
        if total > max_total:
            raise ArchiveError(
                f"{info.filename}: the zip unpacks to more than {max_total / 2**20:,.0f} MiB; refused as a possible "
                "zip bomb"
            )
    return members


def extract_zip(
    data: bytes, target: Path, max_members: int = MAX_MEMBERS, max_total: int = MAX_TOTAL_BYTES
) -> list[Path]:
    """Check, then unpack `data` into the existing folder `target`; returns the files written."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as error:
        raise ArchiveError(f"not a readable zip file ({error})") from None
    target = Path(target)
    written, produced = [], 0
    with archive:
        for info in _check(archive, max_members, max_total):
            destination = target.joinpath(*_safe_name(info.filename).parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as source, open(destination, "wb") as sink:
                    while chunk := source.read(CHUNK):
                        produced += len(chunk)
                        if produced > max_total:
                            raise ArchiveError(
                                f"{info.filename}: the zip unpacks to more than {max_total / 2**20:,.0f} MiB; "
                                "refused as a possible zip bomb"
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                raise ArchiveError(f"{info.filename}: damaged member ({error})") from None
            written.append(destination)
    return written
