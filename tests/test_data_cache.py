"""The decoded Omniglot cache never serves stale or broken data, and bad split files are refused.

Decoding the real archives costs a few seconds, so a module fixture decodes them once into a
reference cache that each test copies; the archives themselves are linked, or copied only where a
test changes them. Every test also checks that nothing else on disk was touched.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from helpers import png_data_offset
from PIL import Image

from htlib.data import DataError, load_omniglot, load_omniglot_arrays
from htlib.data import omniglot as omniglot_module
from htlib.data.omniglot import ARCHIVES, SPLIT_FILES

EVALUATION = ARCHIVES["evaluation"]


@pytest.fixture(scope="module")
def reference(omniglot_data_dir, tmp_path_factory):
    """(cache folder, arrays) from decoding the real archives once."""
    cache = tmp_path_factory.mktemp("reference-cache")
    return cache, load_omniglot_arrays(omniglot_data_dir, cache_dir=cache)


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The archives ("background", "evaluation") decoded during the test, in order."""
    calls = []
    real = omniglot_module._decode_archive

    def counting(path, part, size):
        calls.append(part)
        return real(path, part, size)

    monkeypatch.setattr(omniglot_module, "_decode_archive", counting)
    return calls


def _data_copy(tmp_path: Path, source: Path, copy: tuple[str, ...] = ()) -> Path:
    """A data dir whose archives link to the real ones (copied when in `copy`), with split copies."""
    root = tmp_path / "data" / "omniglot"
    (root / "splits" / "vinyals").mkdir(parents=True)
    for name in ARCHIVES.values():
        if name in copy:
            shutil.copy2(source / "omniglot" / name, root / name)
        else:
            (root / name).symlink_to(source / "omniglot" / name)
    for name in SPLIT_FILES.values():
        shutil.copy2(source / "omniglot" / name, root / name)
    return tmp_path / "data"


def _cache_copy(tmp_path: Path, reference) -> Path:
    return Path(shutil.copytree(reference[0], tmp_path / "cache"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _flip_keeping_size_and_mtime(path: Path, offset: int) -> None:
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def _assert_same(arrays, reference) -> None:
    images, names, ids = arrays
    assert np.array_equal(images, reference[1][0]) and names == reference[1][1]
    assert np.array_equal(ids, reference[1][2])


# ---------------------------------------------------------------- archives changed under the cache


def test_same_size_rewritten_archive_is_decoded_again(omniglot_data_dir, reference, decodes, tmp_path):
    data = _data_copy(tmp_path, omniglot_data_dir, copy=(EVALUATION,))
    cache = _cache_copy(tmp_path, reference)
    _assert_same(load_omniglot_arrays(data, cache_dir=cache), reference)
    assert decodes == []  # same bytes: served from the cache
    archive = data / "omniglot" / EVALUATION
    with zipfile.ZipFile(archive) as zf:
        first = zf.infolist()[0]
    # The local header's modification time: other bytes, same size, same mtime, same images.
    _flip_keeping_size_and_mtime(archive, first.header_offset + 10)
    _assert_same(load_omniglot_arrays(data, cache_dir=cache), reference)
    assert decodes == ["evaluation"]
    load_omniglot_arrays(data, cache_dir=cache)
    assert decodes == ["evaluation"]  # the rewritten cache serves the new bytes


def test_same_size_damaged_archive_is_refused_not_served(omniglot_data_dir, reference, tmp_path):
    data = _data_copy(tmp_path, omniglot_data_dir, copy=(EVALUATION,))
    cache = _cache_copy(tmp_path, reference)
    archive = data / "omniglot" / EVALUATION
    _flip_keeping_size_and_mtime(archive, png_data_offset(archive))
    cached = _files(cache)
    with pytest.raises(DataError, match=re.escape(str(archive)) + r" .*the archive is corrupt") as info:
        load_omniglot_arrays(data, cache_dir=cache)
    assert "htlib download omniglot" in str(info.value)
    assert _files(cache) == cached


def test_archive_with_other_images_than_the_official_is_refused(omniglot_data_dir, reference, tmp_path):
    data = _data_copy(tmp_path, omniglot_data_dir, copy=(EVALUATION,))
    cache = _cache_copy(tmp_path, reference)
    archive = data / "omniglot" / EVALUATION
    with zipfile.ZipFile(archive) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".png"))
        png = Image.open(BytesIO(zf.read(member)))
    redrawn = BytesIO()
    png.rotate(90).save(redrawn, format="PNG")
    with warnings.catch_warnings(), zipfile.ZipFile(archive, "a") as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": the later member is the one read
        zf.writestr(member, redrawn.getvalue())
    cached = _files(cache)
    with pytest.raises(DataError, match=re.escape(f"{archive} is not the official Omniglot {EVALUATION}")):
        load_omniglot_arrays(data, cache_dir=cache)
    assert _files(cache) == cached


# ---------------------------------------------------------------- the cache itself broken


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_cache_is_rebuilt_with_a_warning(omniglot_data_dir, reference, decodes, tmp_path, damage):
    cache = _cache_copy(tmp_path, reference)
    broken = cache / "omniglot_evaluation_28px.npz"
    kept = cache / "omniglot_background_28px.npz"
    kept_bytes = kept.read_bytes()
    good = broken.read_bytes()
    broken.write_bytes(b"not a cache\n" * 1000 if damage == "garbage" else good[: len(good) // 2])
    with pytest.warns(UserWarning, match=re.escape(str(broken)) + " is unreadable"):
        _assert_same(load_omniglot_arrays(omniglot_data_dir, cache_dir=cache), reference)
    assert decodes == ["evaluation"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: loads cleanly from now on
        _assert_same(load_omniglot_arrays(omniglot_data_dir, cache_dir=cache), reference)
    assert decodes == ["evaluation"] and kept.read_bytes() == kept_bytes
    assert sorted(p.name for p in cache.iterdir()) == sorted([broken.name, kept.name])  # no temp files


def _unwritable_folder(tmp_path: Path) -> Path:
    """A cache folder that cannot be written: read-only, or (as root, who ignores permissions)
    a path below a regular file."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    folder.chmod(0o700)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    return blocker / "cache"


def test_unwritable_cache_folder_runs_uncached(omniglot_data_dir, reference, tmp_path):
    cache = _unwritable_folder(tmp_path)
    before = _files(tmp_path)
    with pytest.warns(UserWarning, match=r"Could not write the Omniglot cache .*HTLIB_CACHE") as record:
        _assert_same(load_omniglot_arrays(omniglot_data_dir, cache_dir=cache), reference)
    assert all(str(cache) in str(w.message) for w in record)
    assert _files(tmp_path) == before


# ---------------------------------------------------------------- split files


def _with_split_line(tmp_path, omniglot_data_dir, split: str, line: str) -> tuple[Path, Path, int]:
    """A data dir whose `split` file gains `line` at its end: (data dir, that file, line number)."""
    data = _data_copy(tmp_path, omniglot_data_dir)
    path = data / "omniglot" / SPLIT_FILES[split]
    lines = path.read_text().splitlines() + [line]
    path.write_text("\n".join(lines) + "\n")
    return data, path, len(lines)


def test_split_putting_a_character_in_two_splits_is_refused(omniglot_data_dir, reference, tmp_path):
    train_first = (omniglot_data_dir / "omniglot" / SPLIT_FILES["train"]).read_text().splitlines()[0]
    data, val, line_no = _with_split_line(tmp_path, omniglot_data_dir, "val", train_first)
    train = data / "omniglot" / SPLIT_FILES["train"]
    before = _files(data)
    with pytest.raises(DataError, match=re.escape(f"{val}:{line_no} and {train}:1")) as info:
        load_omniglot("test", "vinyals", data, cache_dir=_cache_copy(tmp_path, reference))
    assert "in both val and train" in str(info.value) and "download omniglot" in str(info.value)
    assert _files(data) == before


def test_split_naming_an_unknown_character_is_refused(omniglot_data_dir, reference, tmp_path):
    data, test, line_no = _with_split_line(tmp_path, omniglot_data_dir, "test", "Klingon/character01/rot000")
    before = _files(data)
    with pytest.raises(DataError, match=re.escape(f"{test}:{line_no}: Klingon/character01")):
        load_omniglot("train", "vinyals", data, cache_dir=_cache_copy(tmp_path, reference))
    assert _files(data) == before


def test_split_file_that_differs_from_the_official_is_refused(omniglot_data_dir, reference, tmp_path):
    data = _data_copy(tmp_path, omniglot_data_dir)
    val = data / "omniglot" / SPLIT_FILES["val"]
    val.write_text("\n".join(val.read_text().splitlines()[:-1]) + "\n")  # one class fewer
    with pytest.raises(DataError, match=re.escape(f"{val} is not the official Omniglot") + ".*687 lines"):
        load_omniglot("val", "vinyals", data, cache_dir=_cache_copy(tmp_path, reference))
