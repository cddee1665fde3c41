"""Upload formats (core/datasets.py): one reader per suffix, the shared checks after every reader."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.datasets import READERS, Upload, read_upload
from core.errors import CorruptFile, InvalidInput

SHAPE = (1, 4, 4)
X = np.arange(6 * 16, dtype=np.uint8).reshape(6, 4, 4)
Y = np.array(["a", "a", "a", "b", "b", "b"])


def npz(path: Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def read(path: Path, filename: str | None = None) -> tuple[np.ndarray, list[str]]:
    return read_upload(path, filename or path.name, SHAPE, 1 << 20, 100)


def test_registry_holds_npz_and_zip():
    assert set(READERS) == {".npz", ".zip"}


def test_a_new_format_is_one_reader_and_gets_the_shared_checks(tmp_path: Path, monkeypatch):
    """A reader returns raw arrays; layout, pixels and labels are checked for it by read_upload."""

    def read_txt(upload: Upload) -> tuple[np.ndarray, np.ndarray]:
        rows = [line.split(",") for line in upload.path.read_text().splitlines()]
        return np.array([[int(v) for v in r[1:]] for r in rows], np.uint8).reshape(-1, 4, 4), np.array(
            [r[0] for r in rows]
        )

    monkeypatch.setitem(READERS, ".csv", read_txt)
    good = tmp_path / "t.csv"
    good.write_text("\n".join(f"{lab}," + ",".join(["7"] * 16) for lab in ["a", "b"]))
    x, labels = read(good)
    assert x.shape == (2, 1, 4, 4) and labels == ["a", "b"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a\u202eb," + ",".join(["7"] * 16))  # a right-to-left override
    with pytest.raises(InvalidInput, match="bad.csv: labels may not hold control"):
        read(bad)


def test_npz_and_zip_read_by_suffix(tmp_path: Path):
    x, labels = read(npz(tmp_path / "t.npz", x=X, y=Y))
    assert x.shape == (6, 1, 4, 4) and labels == list(Y)
    x, labels = read(npz(tmp_path / "t.zip", x=X, y=Y))  # np.savez output under a .zip name
    assert x.shape == (6, 1, 4, 4) and labels == list(Y)


def test_unknown_suffix_is_read_by_content(tmp_path: Path):
    x, labels = read(npz(tmp_path / "upload", x=X, y=Y))
    assert x.shape == (6, 1, 4, 4) and labels == list(Y)
    path = tmp_path / "upload.bin"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", b"hello")
    with pytest.raises(InvalidInput, match="is not class_name/image"):
        read(path)


def test_a_file_that_is_no_archive_is_refused_as_corrupt(tmp_path: Path):
    path = tmp_path / "t.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(CorruptFile, match=r"t.npz: not a readable .npz or .zip file"):
        read(path)
