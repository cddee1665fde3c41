"""Uploaded task data: read it by format, validate it, split off a holdout.

Formats live in READERS, keyed by the file name's suffix: a reader turns the stored upload into raw
images (any layout `to_nchw` accepts) and raw labels, and `read_upload` does the checks every format
shares (layout, pixels, labels). A new format is one function registered with `@reader(".suffix")`.
The multipart body itself is parsed in service/uploads.py; what the file holds is read here.

Everything here runs before anything is stored, so a bad upload changes nothing.
"""

from __future__ import annotations

import io
import math
import stat
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from core.errors import CorruptFile, InvalidInput, InvalidParameter, PayloadTooLarge, UnsafeArchive
from core.images import check_pixels, decode_image, to_nchw
from dgm.shared import MAX_LABEL_CHARS, bad_labels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # control, format, surrogate, private, unassigned
NPZ_MEMBERS = {"x.npy", "y.npy"}


@dataclass(frozen=True)
class Upload:
    """A stored upload and the limits its reader must hold to while unpacking it."""

    path: Path
    filename: str  # as the client named it: messages start with it
    image_shape: tuple[int, int, int]  # the learner's (C, H, W)
    max_unpacked: int  # bytes, all members together (DGM_MAX_UNCOMPRESSED_BYTES)
    max_entries: int  # archive members (DGM_MAX_ZIP_ENTRIES)


Reader = Callable[[Upload], tuple[np.ndarray, np.ndarray]]  # -> raw images, raw labels
READERS: dict[str, Reader] = {}


def reader(suffix: str) -> Callable[[Reader], Reader]:
    """Register `read(upload) -> (x, y)` for files whose name ends with `suffix` (lower case)."""

    def register(read: Reader) -> Reader:
        READERS[suffix] = read
        return read

    return register


def read_upload(
    path: Path, filename: str, image_shape: tuple[int, int, int], max_unpacked: int, max_entries: int
) -> tuple[np.ndarray, list[str]]:
    """A stored upload -> images N x C x H x W (uint8 or float32 in [0, 1]) and N string labels."""
    upload = Upload(path, filename, image_shape, max_unpacked, max_entries)
    name = filename.lower()
    read = next((r for suffix, r in READERS.items() if name.endswith(suffix)), read_by_content)
    x, y = read(upload)
    x = check_pixels(to_nchw(x, image_shape, what=f"{filename}: x"), what=f"{filename}: x")
    return x, normalise_labels(y, len(x), filename)


def read_by_content(upload: Upload) -> tuple[np.ndarray, np.ndarray]:
    """A file without a known suffix: an archive of x.npy and y.npy is an .npz, any other zip holds
    class folders of images."""
    with open_archive(upload) as (_archive, infos):
        is_npz = {i.filename for i in infos} <= NPZ_MEMBERS
    return (read_npz if is_npz else read_image_zip)(upload)


@contextmanager
def open_archive(upload: Upload) -> Iterator[tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]]:
    """The upload as a zip (an .npz is one too; so is a file of unknown suffix), its members checked for
    encryption, compression and size before anything is unpacked."""
    try:
        archive = zipfile.ZipFile(upload.path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFile(f"{upload.filename}: not a readable .npz or .zip file ({exc})") from exc
    with archive:
        infos = archive.infolist()
        _check_bounds(upload.filename, infos, upload.max_unpacked, upload.max_entries)
        yield archive, infos


@reader(".npz")
def read_npz(upload: Upload) -> tuple[np.ndarray, np.ndarray]:
    """numpy's np.savez(x=images, y=labels); every member's .npy header is checked before np.load."""
    with open_archive(upload) as (archive, infos):
        for info in infos:
            with archive.open(info) as member:
                check_npy_header(
                    member, info.file_size, upload.max_unpacked, f"{upload.filename}: {info.filename}"
                )
    return _load_npz(upload.path, upload.filename)


@reader(".zip")
def read_image_zip(upload: Upload) -> tuple[np.ndarray, np.ndarray]:
    """A zip of class folders of PNG/JPEG files (class_name/image.png); a zip of x.npy and y.npy only is
    an .npz under another name."""
    with open_archive(upload) as (archive, infos):
        if {i.filename for i in infos} <= NPZ_MEMBERS:
            return read_npz(upload)
        return _read_image_zip(archive, infos, upload.filename, upload.image_shape)


def _check_bounds(filename: str, infos: list[zipfile.ZipInfo], max_unpacked: int, max_entries: int) -> None:
    for info in infos:
        if info.flag_bits & 0x1:
            raise CorruptFile(
                f"{filename}: entry {info.filename!r} is encrypted; upload an archive without a password"
            )
        if info.compress_type not in COMPRESSIONS:
            raise CorruptFile(
                f"{filename}: entry {info.filename!r} uses compression method {info.compress_type}; "
                "use stored or deflate (what numpy and most zip tools write)"
            )
    if len(infos) > max_entries:
        raise PayloadTooLarge(f"{filename}: {len(infos)} entries, more than the limit of {max_entries}")
    total = sum(i.file_size for i in infos)
    if total > max_unpacked:
        raise PayloadTooLarge(
            f"{filename}: unpacks to {total} bytes, more than the limit of {max_unpacked} "
            "(DGM_MAX_UNCOMPRESSED_BYTES); split it into smaller tasks"
        )


def check_npy_header(fp: IO[bytes], size: int, limit: int, what: str) -> None:
    """Read a .npy header and refuse an array larger than `limit` or than the `size` bytes that hold it.

    numpy allocates the whole array a header announces before it reads the data, so a 100-byte file
    claiming 10^12 elements must be stopped here, not by np.load.
    """
    try:
        version = np.lib.format.read_magic(fp)
        read = (
            np.lib.format.read_array_header_2_0 if version >= (2, 0) else np.lib.format.read_array_header_1_0
        )
        shape, _fortran, dtype = read(fp, max_header_size=10_000)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFile(f"{what}: not a readable .npy array without pickles ({exc})") from exc
    if dtype.hasobject:
        raise InvalidInput(
            f"{what}: holds object arrays, which are refused (no pickle); send uint8/float pixels and int or "
            "str labels"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        raise PayloadTooLarge(
            f"{what}: its header announces a {list(shape)} {dtype} array of {nbytes} bytes, more than the "
            f"limit of {limit} bytes; send smaller batches"
        )
    if nbytes > size:
        raise CorruptFile(
            f"{what}: its header announces {nbytes} bytes of data but it holds fewer ({size} bytes in all); "
            "the file is truncated or forged"
        )


def _load_npz(path: Path, filename: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = sorted({"x", "y"} - set(data.files))
            if missing:
                raise InvalidInput(
                    f"{filename}: missing array(s) {missing}; an .npz task needs `x` (images) and `y`"
                )
            return data["x"], data["y"]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise InvalidInput(
                f"{filename}: holds object arrays, which are refused (no pickle); save x as uint8/float "
                "and y as int or str arrays"
            ) from exc
        raise CorruptFile(f"{filename}: damaged .npz ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CorruptFile(f"{filename}: damaged .npz ({exc})") from exc


def safe_member(info: zipfile.ZipInfo, filename: str) -> PurePosixPath:
    """The entry's path, refusing absolute paths, `..`, drive letters and symlinks."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise UnsafeArchive(
            f"{filename}: entry {info.filename!r} points outside the archive root; refusing the zip"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchive(f"{filename}: entry {info.filename!r} is a symbolic link; zip plain files only")
    return PurePosixPath(name)


def _read_image_zip(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], filename: str, image_shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    members = [(safe_member(i, filename), i) for i in infos]
    files = [(p, i) for p, i in members if not i.is_dir() and not _ignored(p)]
    roots = {p.parts[0] for p, _ in files}
    if len(roots) == 1 and all(len(p.parts) == 3 for p, _ in files):  # zip of one top folder
        files = [(PurePosixPath(*p.parts[1:]), i) for p, i in files]
    images, labels = [], []
    for p, info in files:
        if len(p.parts) != 2 or p.suffix.lower() not in IMAGE_SUFFIXES:
            raise InvalidInput(
                f"{filename}: entry {info.filename!r} is not class_name/image.png|jpg; put each class's "
                "images in a folder named after the class"
            )
        try:
            data = archive.read(info)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CorruptFile(f"{filename}: entry {info.filename!r} is damaged ({exc})") from exc
        images.append(decode_image(data, image_shape, f"{filename}: {info.filename}", resize=False))
        labels.append(p.parts[0])
    if not images:
        raise InvalidInput(f"{filename}: no images found; expected class_name/*.png|jpg entries")
    return np.stack(images), np.array(labels)


def _ignored(p: PurePosixPath) -> bool:
    return p.parts[0] == "__MACOSX" or p.name.startswith(".")


def normalise_labels(y: np.ndarray, n: int, filename: str) -> list[str]:
    """Labels as strings, one per image; refuses empty, overlong and invisible-character labels.

    Which labels are empty or overlong is dgm/shared.bad_labels's rule, which the library applies too."""
    y = np.asarray(y)
    if y.dtype.kind not in "iuUS":
        raise InvalidInput(f"{filename}: labels y have dtype {y.dtype}; send integers or strings")
    if y.ndim != 1 or len(y) != n:
        raise InvalidInput(
            f"{filename}: {n} images but y has shape {list(y.shape)}; send one label per image"
        )
    labels = [v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()]
    if bad := bad_labels(labels):
        raise InvalidInput(
            f"{filename}: labels must be non-empty and at most {MAX_LABEL_CHARS} characters: "
            f"{[b[:40] for b in bad[:3]]}"
        )
    hidden = sorted({lab for lab in labels if any(unicodedata.category(ch) in INVISIBLE for ch in lab)})
    if hidden:
        raise InvalidInput(
            f"{filename}: labels may not hold control or formatting characters (such as NUL or a "
            "right-to-left override), which make one label display as another: "
            f"{[ascii(b) for b in hidden[:3]]}"
        )
    return labels


def split_holdout(labels: list[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: per class, round(count * fraction) samples go to the holdout. Index arrays."""
    if not 0 <= fraction < 1:
        raise InvalidParameter(f"holdout must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    arr = np.asarray(labels)
    train, hold = [], []
    for c in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(arr == c))
        k = int(round(len(idx) * fraction))
        hold.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(hold))


def check_counts(labels: list[str], minimum: int, filename: str) -> dict[str, int]:
    counts = dict(sorted(Counter(labels).items()))
    few = {c: n for c, n in counts.items() if n < minimum}
    if few:
        raise InvalidInput(
            f"{filename}: each class needs at least {minimum} training samples (after the holdout); too few: "
            f"{dict(list(few.items())[:10])}"
        )
    return counts


def to_npz_bytes(x: np.ndarray, labels: list[str]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.array(labels, dtype=str))
    return buf.getvalue()


def load_arrays(path: Path) -> tuple[np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as data:
        return data["x"], [str(v) for v in data["y"].tolist()]
