"""Omniglot (Lake et al., 2015) read from the official archives, verified, decoded once, cached.

Layout of the data directory, and of any download source (`source=` / HTLIB_SOURCE), below
`<data_dir>/omniglot/` and `<source>/` respectively::

    images_background.zip      images_background/<Alphabet>/characterNN/XXXX_YY.png
    images_evaluation.zip      images_evaluation/<Alphabet>/characterNN/XXXX_YY.png
    splits/vinyals/{train,val,test,trainval}.txt   (the "vinyals" split; one Alphabet/characterNN/rotDDD a line)

XXXX is the character id (0001-0964 background, 0965-1623 evaluation), YY the drawing
(01-20). Images are 105x105 1-bit; we resize them with area averaging (antialiased) and
invert them so that ink is bright: uint8, ink 255, background 0.

Every file is checked against a fingerprint of its *content* pinned below (PINS), so a faithful
re-pack of the official archives passes and a damaged or different file does not: for an archive,
the SHA-256 of the lines `<member name> <SHA-256 of its PNG bytes>` in name order (the same text
`unzip` + `sha256sum` would give), with its counts; for a split file, the SHA-256 of its sorted
non-empty lines. An archive is verified while it is decoded; the decoded cache then records the
SHA-256 of the archive's bytes, so later loads only hash the file (~15 ms) instead of re-reading it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
import warnings
import zipfile
import zlib
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from htlib.data.base import ClassImages, DataError
from htlib.data.download import fetch
from htlib.data.paths import SOURCE_ENV
from htlib.data.paths import cache_dir as resolve_cache_dir
from htlib.data.paths import data_dir as resolve_data_dir
from htlib.errors import ConfigError
from htlib.utils import write_atomic


class Fingerprint(NamedTuple):
    """What a file holds: SHA-256 of its content (see the module docstring) and its counts."""

    sha256: str
    items: int  # PNG images of an archive, lines of a split file
    characters: int


ARCHIVES = {"background": "images_background.zip", "evaluation": "images_evaluation.zip"}
SPLIT_FILES = {s: f"splits/vinyals/{s}.txt" for s in ("train", "val", "test", "trainval")}
# The official content, computed from a verified copy of the official files with
# archive_fingerprint / split_fingerprint, and the same by shell tools:
#   unzip A.zip; find images_* -name '*.png' | LC_ALL=C sort | xargs sha256sum | awk '{print $2" "$1}' | sha256sum
#   sed 's/^[[:space:]]*//;s/[[:space:]]*$//' S.txt | grep -v '^$' | LC_ALL=C sort | sha256sum
PINS = {
    "images_background.zip": Fingerprint("6f409a2bd478149eb6a627fa7d5f65178a081ce9a266bf1ff0c4103d05d68c31", 19280, 964),
    "images_evaluation.zip": Fingerprint("bdd85c7b78adf4685ccadb1b785d29e6fdbdebe9dd8482e9922be7dd7c12fbbb", 13180, 659),
    SPLIT_FILES["train"]: Fingerprint("546a87d22138d29c749f104f12a2a3789637977375cd965bddb3a9053f39bcfa", 4112, 1028),
    SPLIT_FILES["val"]: Fingerprint("ff75fc09eb450fda99c4e5dfac8d2fc92f8f7d19fc8e95265004b9887e56d5a8", 688, 172),
    SPLIT_FILES["test"]: Fingerprint("75aae2826773007d778e2e2ba702bbc58f431aeb882a21053ec98364e943c3a9", 1692, 423),
    SPLIT_FILES["trainval"]: Fingerprint("15fe9e04e1b8d26232fc38b98959f08a7085ab9780653e0442a3a66873b04cfd", 4800, 1200),
}
NEEDED = (*ARCHIVES.values(), *(SPLIT_FILES[s] for s in ("train", "val", "test")))  # what loading reads
EXPECTED_CHARACTERS = {part: PINS[name].characters for part, name in ARCHIVES.items()}
DRAWINGS_PER_CHARACTER = 20
TOTAL_CHARACTERS = 1623
# Official addresses; each follows the layout above below its base.
OFFICIAL_ARCHIVES_URL = "https://github.com/brendenlake/omniglot/raw/master/python"
OFFICIAL_SPLITS_URL = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot"
SPLITS = ("vinyals", "lake", "reference", "paper")
# The "paper" split: the authors' Omniglot script shuffles the 1623 characters with Python's
# random.shuffle seeded 2022 (its --shuffle_labels_seed) and then cuts positions 0-1149 / 1150-1199 /
# 1200-1622 of the shuffled order into train / val / test.
PAPER_SHUFFLE_SEED = 2022
PAPER_BOUNDS = {"train": (0, 1150), "val": (1150, 1200), "test": (1200, 1623)}
CACHE_VERSION = 2
_MEMBER = re.compile(r"^images_(background|evaluation)/([^/]+)/(character\d+)/(\d{4})_(\d{2})\.png$")
_SPLIT_LINE = re.compile(r"^([^/]+/character\d+)/rot(000|090|180|270)$")

HOW_TO_GET = (
    "Get the official files with `python -m htlib download omniglot --data-dir DIR` "
    "(or htlib.data.download_omniglot(DIR)), or download images_background.zip and "
    "images_evaluation.zip from https://github.com/brendenlake/omniglot (folder python/) into "
    "DIR/omniglot/, then point htlib at DIR with data_dir=... or HTLIB_DATA=DIR. "
    "Without the real data, the notebooks run offline on the synthetic dataset (dataset='synthetic')."
)
FETCH_AGAIN = (
    "Delete it and run `python -m htlib download omniglot` (or `make download`) to fetch the "
    "official file, or point HTLIB_DATA at a verified copy."
)


def omniglot_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return resolve_data_dir(data_dir) / "omniglot"


def missing_files(data_dir: str | os.PathLike | None = None) -> list[str]:
    """The files loading needs (NEEDED) that are not in <data_dir>/omniglot."""
    root = omniglot_dir(data_dir)
    return [name for name in NEEDED if not (root / name).is_file()]


def _archive_path(root: Path, part: str) -> Path:
    path = root / ARCHIVES[part]
    if not path.is_file():
        raise DataError(f"Omniglot archive not found: looked for {path}. {HOW_TO_GET}")
    return path


# ---------------------------------------------------------------- reading and fingerprints


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"{path} is not a readable zip archive ({exc}); it is probably truncated or "
            f"corrupt. Delete it and fetch it again. {HOW_TO_GET}"
        ) from exc


def _index_members(archive: zipfile.ZipFile, path: Path, part: str) -> tuple[dict, dict]:
    """drawings[character][drawing number] = member name, and char_ids[character] = id."""
    drawings: dict[str, dict[int, str]] = {}
    char_ids: dict[str, int] = {}
    for member in archive.namelist():
        match = _MEMBER.match(member)
        if match is None:  # folders, and anything a re-pack may add: not part of the dataset
            continue
        arch_part, alphabet, character, char_id, drawing = match.groups()
        if arch_part != part:
            raise DataError(f"{path} holds {member}, which belongs to the {arch_part} set")
        key = f"{alphabet}/{character}"
        drawings.setdefault(key, {})[int(drawing)] = member
        char_ids[key] = int(char_id)
    return drawings, char_ids


def _read_member(archive: zipfile.ZipFile, path: Path, member: str) -> bytes:
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:  # CRC or inflate errors
        raise DataError(f"Could not read {member} in {path} ({exc}); the archive is corrupt. "
                        f"{FETCH_AGAIN}") from exc


def _manifest_sha256(member_digests: dict[str, str]) -> str:
    text = "".join(f"{name} {member_digests[name]}\n" for name in sorted(member_digests))
    return hashlib.sha256(text.encode()).hexdigest()


def archive_fingerprint(path: str | os.PathLike, part: str) -> Fingerprint:
    """The content fingerprint of an Omniglot archive (`part`: "background" or "evaluation")."""
    path = Path(path)
    with _open_archive(path) as archive:
        drawings, _ = _index_members(archive, path, part)
        digests = {member: hashlib.sha256(_read_member(archive, path, member)).hexdigest()
                   for by_number in drawings.values() for member in by_number.values()}
    return Fingerprint(_manifest_sha256(digests), len(digests), len(drawings))


def split_fingerprint(path: str | os.PathLike) -> Fingerprint:
    """The content fingerprint of a split file: its sorted non-empty lines, and its counts."""
    lines = sorted(line.strip() for line in Path(path).read_bytes().splitlines() if line.strip())
    digest = hashlib.sha256(b"".join(line + b"\n" for line in lines)).hexdigest()
    return Fingerprint(digest, len(lines), len({line.rsplit(b"/", 1)[0] for line in lines}))


def file_fingerprint(path: str | os.PathLike, name: str) -> Fingerprint:
    """The fingerprint of the file stored at `path` under the layout name `name` (a key of PINS)."""
    for part, archive_name in ARCHIVES.items():
        if name == archive_name:
            return archive_fingerprint(path, part)
    return split_fingerprint(path)


def _describe(found: Fingerprint, name: str) -> str:
    unit = "images" if name.endswith(".zip") else "lines"
    return f"{found.characters} characters, {found.items} {unit}, content SHA-256 {found.sha256[:16]}..."


def _mismatch(name: str, found: Fingerprint) -> str | None:
    """None when `found` is the official content of `name`, else how it differs."""
    if found == PINS[name]:
        return None
    return f"it holds {_describe(found, name)}; the official file holds {_describe(PINS[name], name)}"


def _require_official(path: Path, name: str, found: Fingerprint) -> None:
    mismatch = _mismatch(name, found)
    if mismatch:
        raise DataError(f"{path} is not the official Omniglot {name}: {mismatch}. It is damaged or "
                        f"another version. {FETCH_AGAIN}")


def _decode_png(data: bytes, size: int, path: Path, member: str) -> np.ndarray:
    try:
        img = Image.open(BytesIO(data)).convert("L")
    except Exception as exc:  # PIL raises many types on damaged PNGs
        raise DataError(f"Could not decode {member} in {path} ({exc}); the archive is corrupt. "
                        f"{FETCH_AGAIN}") from exc
    img = img.resize((size, size), Image.Resampling.BOX)
    return 255 - np.asarray(img, dtype=np.uint8)


def _decode_archive(path: Path, part: str, size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Decode and verify one archive: (names, character ids, uint8 (chars, 20, size, size))."""
    with _open_archive(path) as archive:
        drawings, char_ids = _index_members(archive, path, part)
        _check_counts(path, part, drawings)
        names = sorted(drawings, key=lambda k: char_ids[k])
        images = np.empty((len(names), DRAWINGS_PER_CHARACTER, size, size), dtype=np.uint8)
        digests = {}  # the fingerprint comes almost free while every member is read anyway
        for i, key in enumerate(names):
            for j, drawing in enumerate(sorted(drawings[key])):
                member = drawings[key][drawing]
                data = _read_member(archive, path, member)
                digests[member] = hashlib.sha256(data).hexdigest()
                images[i, j] = _decode_png(data, size, path, member)
    found = Fingerprint(_manifest_sha256(digests), len(digests), len(drawings))
    _require_official(path, ARCHIVES[part], found)
    return names, np.asarray([char_ids[k] for k in names], dtype=np.int64), images


def _check_counts(path: Path, part: str, drawings: dict[str, dict[int, str]]) -> None:
    expected = EXPECTED_CHARACTERS[part]
    if len(drawings) != expected:
        raise DataError(
            f"{path} holds {len(drawings)} characters, expected {expected} for the official "
            f"{part} set. The archive is incomplete or not the official one. {HOW_TO_GET}"
        )
    bad = {k: len(v) for k, v in drawings.items() if len(v) != DRAWINGS_PER_CHARACTER}
    if bad:
        example = next(iter(bad.items()))
        raise DataError(
            f"{path}: {len(bad)} characters do not have exactly {DRAWINGS_PER_CHARACTER} "
            f"drawings (e.g. {example[0]} has {example[1]}). {HOW_TO_GET}"
        )


# ---------------------------------------------------------------- decoded cache, one file per archive


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()  # hashlib.file_digest would need Python 3.11
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_cache(cache: Path, meta: dict, shape: tuple[int, ...]):
    """(names, ids, images) from `cache` when it was built from the same archive bytes, else None.

    An unreadable cache is reported and ignored: the caller decodes afresh and overwrites it.
    """
    if not cache.is_file():
        return None
    try:
        with np.load(cache) as stored:
            if json.loads(str(stored["meta"])) != meta:
                return None  # built from other bytes (or by another htlib): decode afresh
            images, names, ids = stored["images"], [str(n) for n in stored["names"]], stored["char_ids"]
        if images.shape != shape or len(names) != shape[0] or ids.shape != shape[:1]:
            raise ValueError(f"arrays of shape {images.shape}, expected {shape}")
    except Exception as exc:  # noqa: BLE001 (whatever is wrong with a cache, a decode replaces it)
        warnings.warn(f"The Omniglot cache {cache} is unreadable ({type(exc).__name__}: {exc}); "
                      f"decoding the archive again and rewriting the cache.", stacklevel=4)
        return None
    return names, ids, images


def _write_cache(cache: Path, meta: dict, names: list[str], ids: np.ndarray, images: np.ndarray) -> bool:
    """Write the cache atomically; an unwritable place costs a warning, never the decoded data."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, images=images, names=np.asarray(names), char_ids=ids, meta=np.asarray(json.dumps(meta)))

    try:
        write_atomic(cache, write)
    except OSError as exc:
        warnings.warn(f"Could not write the Omniglot cache {cache} ({exc}); going on without it, so "
                      f"the next load decodes again. Point HTLIB_CACHE (or cache_dir=) at a writable "
                      f"folder.", stacklevel=4)
        return False
    return True


def _load_archive(path: Path, part: str, size: int, cache_root: Path, verbose: bool):
    """One archive's (names, ids, images): from its cache when that was built from these very bytes."""
    cache = cache_root / f"omniglot_{part}_{size}px.npz"
    # The cache is written only after the archive matched its pin, so equal bytes mean verified.
    meta = {"version": CACHE_VERSION, "archive_sha256": _file_sha256(path),
            "content_sha256": PINS[ARCHIVES[part]].sha256}
    shape = (EXPECTED_CHARACTERS[part], DRAWINGS_PER_CHARACTER, size, size)
    cached = _read_cache(cache, meta, shape)
    if cached is not None:
        return cached
    start = time.perf_counter()
    names, ids, images = _decode_archive(path, part, size)
    written = _write_cache(cache, meta, names, ids, images)
    if verbose:
        print(f"Decoded and verified {images.shape[0] * images.shape[1]:,} images of {path.name} in "
              f"{time.perf_counter() - start:.1f} s" + (f"; cached at {cache}" if written else ""))
    return names, ids, images


def load_omniglot_arrays(
    data_dir: str | os.PathLike | None = None,
    image_size: int = 28,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """All 1,623 characters as uint8 (1623, 20, size, size), their names and character ids.

    The first call verifies and decodes both archives (seconds) and writes a cache per archive;
    later calls reload the cache (a fraction of a second) as long as the archive bytes are the
    same. A changed archive is decoded (and verified) afresh.
    """
    root = omniglot_dir(data_dir)
    paths = {part: _archive_path(root, part) for part in ARCHIVES}
    cache_root = resolve_cache_dir(cache_dir, create=False)
    loaded = [_load_archive(paths[part], part, image_size, cache_root, verbose) for part in ARCHIVES]
    names = [name for part_names, _, _ in loaded for name in part_names]
    char_ids = np.concatenate([ids for _, ids, _ in loaded])
    images = np.concatenate([part_images for _, _, part_images in loaded])
    if len(names) != TOTAL_CHARACTERS or not np.array_equal(char_ids, np.arange(1, TOTAL_CHARACTERS + 1)):
        raise DataError(
            f"Expected character ids 1..{TOTAL_CHARACTERS} across both archives; got "
            f"{len(names)} characters. The archives are not the official ones. {HOW_TO_GET}"
        )
    return images, names, char_ids


# ---------------------------------------------------------------- splits


def _read_split_file(path: Path) -> list[tuple[int, str, int]]:
    """(line number, character, quarter turns) for each non-empty line of a Vinyals split file."""
    if not path.is_file():
        raise DataError(f"Vinyals split file not found: {path}. Fetch it with "
                        f"`python -m htlib download omniglot --data-dir DIR` (layout in htlib/data/omniglot.py).")
    entries = []
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        match = _SPLIT_LINE.match(line)
        if match is None:
            raise DataError(f"{path}:{line_no}: expected 'Alphabet/characterNN/rotDDD' "
                            f"(DDD: 000, 090, 180 or 270), got {line!r}")
        entries.append((line_no, match.group(1), int(match.group(2)) // 90))
    return entries


def _refuse(problem: str, offenders: list[str], root: Path, limit: int = 8) -> None:
    if not offenders:
        return
    shown = "\n  ".join(offenders[:limit])
    more = f"\n  ... and {len(offenders) - limit} more" if len(offenders) > limit else ""
    raise DataError(f"The Vinyals split {problem}:\n  {shown}{more}\nThe split files are damaged or "
                    f"not the official ones: delete {root / 'splits'} and run `python -m htlib "
                    f"download omniglot` to fetch them again.")


def _refuse_unknown(paths: dict[str, Path], entries: dict, index: dict[str, int], root: Path) -> None:
    _refuse("names characters that are not in the Omniglot archives",
            [f"{paths[s]}:{n}: {name}" for s in paths for n, name, _ in entries[s] if name not in index],
            root)


def _refuse_overlap(paths: dict[str, Path], entries: dict, root: Path) -> None:
    """Train, val and test must not share a character, and no class may be listed twice."""
    first_split: dict[str, tuple[str, int]] = {}  # character -> (split, line) where it first appears
    first_line: dict[tuple[str, int], tuple[str, int]] = {}  # (character, rotation) -> same
    offenders = []
    for split, split_entries in entries.items():
        for n, name, rot in split_entries:
            other, other_n = first_split.setdefault(name, (split, n))
            if other != split:
                offenders.append(f"{paths[split]}:{n} and {paths[other]}:{other_n}: {name} is in "
                                 f"both {split} and {other}")
                continue
            twice, twice_n = first_line.setdefault((name, rot), (split, n))
            if twice_n != n:
                offenders.append(f"{paths[split]}:{n} repeats {paths[twice]}:{twice_n} ({name}/rot{90 * rot:03d})")
    _refuse("puts characters in two splits, or lists a class twice", offenders, root)


def _vinyals_classes(root: Path, split: str, names: list[str]) -> list[tuple[int, int]]:
    """(character index, quarter turns) of each class of `split`, after checking all three files."""
    paths = {s: root / SPLIT_FILES[s] for s in ("train", "val", "test")}
    entries = {s: _read_split_file(path) for s, path in paths.items()}
    index = {name: i for i, name in enumerate(names)}
    _refuse_unknown(paths, entries, index, root)
    _refuse_overlap(paths, entries, root)
    for s, path in paths.items():  # last: the checks above say more precisely what is wrong
        _require_official(path, SPLIT_FILES[s], split_fingerprint(path))
    return [(index[name], rot) for _, name, rot in entries[split]]


def _split_classes(
    split_scheme: str, split: str, names: list[str], char_ids: np.ndarray, root: Path
) -> list[tuple[int, int]]:
    """(character index, quarter turns) for each class of the split."""
    if split_scheme == "vinyals":
        return _vinyals_classes(root, split, names)
    if split_scheme == "reference":
        # The authors' index ranges taken on character ids 1-1623 WITHOUT their shuffle: contiguous
        # ids, so train and test share almost no alphabet (kept for comparison; "paper" is theirs).
        low, high = PAPER_BOUNDS[split]
        return [(i, 0) for i in range(len(names)) if low <= char_ids[i] - 1 < high]
    if split_scheme == "paper":
        low, high = PAPER_BOUNDS[split]
        chosen = set(paper_character_order(len(names))[low:high])
        return [(i, 0) for i in range(len(names)) if char_ids[i] - 1 in chosen]
    # lake: background alphabets train, evaluation alphabets test; the last five background
    # alphabets (alphabetical order) are held out as validation.
    background = sorted({n.split("/")[0] for n, cid in zip(names, char_ids) if cid <= 964})
    val_alphabets = set(background[-5:])
    def part_of(name: str, cid: int) -> str:
        if cid > 964:
            return "test"
        return "val" if name.split("/")[0] in val_alphabets else "train"
    return [(i, 0) for i, (n, cid) in enumerate(zip(names, char_ids)) if part_of(n, int(cid)) == split]


def paper_character_order(count: int = 1623) -> list[int]:
    """Character indices (id - 1) in the order the authors' script cuts its splits from: Python's
    random.shuffle of 0..count-1 seeded PAPER_SHUFFLE_SEED. We order characters by their official id
    (0001-0964 background, 0965-1623 evaluation); that the authors' cached array has the same order
    is an assumption, so the split has their sizes and nature (test characters drawn at random, from
    alphabets seen in training), not necessarily their exact characters."""
    order = list(range(count))
    random.Random(PAPER_SHUFFLE_SEED).shuffle(order)
    return order


def load_omniglot(
    split: str = "train",
    split_scheme: str = "vinyals",
    data_dir: str | os.PathLike | None = None,
    image_size: int = 28,
    cache_dir: str | os.PathLike | None = None,
) -> ClassImages:
    """One split of Omniglot as ClassImages.

    split_scheme:
        "vinyals"   standard split files, each rotation a distinct class (1028/172/423 x 4);
        "lake"      background alphabets (minus 5 held out for validation) vs evaluation alphabets;
        "paper"     the authors' split: characters shuffled with seed 2022, then 1150 / 50 / 423;
                    unrotated classes (the "paper" protocol, htlib.data.protocols);
        "reference" the authors' ranges on contiguous character ids, without their shuffle.
    """
    if split_scheme not in SPLITS:
        raise ConfigError(f"Unknown Omniglot split scheme {split_scheme!r}; choose one of {SPLITS}")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"Unknown split {split!r}; choose 'train', 'val' or 'test'")
    images, names, char_ids = load_omniglot_arrays(data_dir, image_size, cache_dir)
    classes = _split_classes(split_scheme, split, names, char_ids, omniglot_dir(data_dir))
    tensor = torch.from_numpy(images).unsqueeze(2)  # (1623, 20, 1, H, W)
    source = torch.tensor([c for c, _ in classes], dtype=torch.long)
    rotation = torch.tensor([r for _, r in classes], dtype=torch.long)
    class_names = [f"{names[c]}/rot{90 * r:03d}" if split_scheme == "vinyals" else names[c] for c, r in classes]
    return ClassImages(tensor, source, rotation, class_names, split, "omniglot",
                       info={"split_scheme": split_scheme, "image_size": image_size}, source_names=names)


# ---------------------------------------------------------------- download


def source_urls(source: str | None = None) -> dict[str, str]:
    """The address of each file of the layout: below `source` (else HTLIB_SOURCE), laid out as in
    the module docstring (e.g. <source>/splits/vinyals/train.txt); else the official addresses."""
    source = source or os.environ.get(SOURCE_ENV) or None

    def base(name: str) -> str:
        return source or (OFFICIAL_SPLITS_URL if name.startswith("splits/") else OFFICIAL_ARCHIVES_URL)

    return {name: f"{base(name).rstrip('/')}/{name}" for name in PINS}


def _verify_download(tmp: Path, name: str, dest: Path, url: str) -> None:
    try:
        mismatch = _mismatch(name, file_fingerprint(tmp, name))
    except DataError as exc:  # not even a readable zip
        mismatch = f"it cannot be read ({exc.__cause__ or exc})"
    if mismatch:
        raise DataError(
            f"{dest.name} as downloaded from {url} is not the official Omniglot file: {mismatch}. "
            f"Nothing was kept. Run the download again; if it fails the same way, the source serves "
            f"other files: check --source / {SOURCE_ENV}, or leave them unset for the official source."
        )


def download_omniglot(
    data_dir: str | os.PathLike | None = None,
    force: bool = False,
    source: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch the archives and the Vinyals split files into <data_dir>/omniglot; returns that folder.

    Files already there are kept unless `force` (they are verified when loaded). Each download is
    verified against its pinned fingerprint before it takes its name; an interrupted one continues
    where it stopped on the next call. `source` (else HTLIB_SOURCE) replaces the official addresses.
    """
    root = omniglot_dir(data_dir)
    hint = (f"Check your connection; or fetch from a mirror with --source URL or {SOURCE_ENV}=URL "
            f"(URL/images_background.zip, URL/splits/vinyals/train.txt, ...); or copy the files into "
            f"{root} by hand (layout in htlib/data/omniglot.py).")
    for name, url in source_urls(source).items():
        dest = root / name
        if dest.is_file() and not force:
            continue
        print(f"[htlib] fetching {url}", flush=True)
        fetch(url, dest, hint=hint, progress=progress,
              verify=lambda tmp, name=name, dest=dest, url=url: _verify_download(tmp, name, dest, url))
    return root
