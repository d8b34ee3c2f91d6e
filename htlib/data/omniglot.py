"""Omniglot (Lake et al., 2015) read from the official archives, decoded once, cached.

Layout expected in the data directory (the official one)::

    <data_dir>/omniglot/images_background.zip   images_background/<Alphabet>/characterNN/XXXX_YY.png
    <data_dir>/omniglot/images_evaluation.zip   images_evaluation/<Alphabet>/characterNN/XXXX_YY.png
    <data_dir>/omniglot/splits/vinyals/{train,val,test}.txt   (only for the "vinyals" split)

XXXX is the character id (0001-0964 background, 0965-1623 evaluation), YY the drawing
(01-20). Images are 105x105 1-bit; we resize them with area averaging (antialiased) and
invert them so that ink is bright: uint8, ink 255, background 0.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from htlib.data.base import ClassImages, DataError
from htlib.data.paths import cache_dir as resolve_cache_dir
from htlib.data.paths import data_dir as resolve_data_dir

ARCHIVES = {"background": "images_background.zip", "evaluation": "images_evaluation.zip"}
EXPECTED_CHARACTERS = {"background": 964, "evaluation": 659}
DRAWINGS_PER_CHARACTER = 20
TOTAL_CHARACTERS = 1623
OFFICIAL_URL = "https://github.com/brendenlake/omniglot/raw/master/python/{name}"
VINYALS_SPLIT_URL = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/"
    "data/omniglot/splits/vinyals/{split}.txt"
)
SPLITS = ("vinyals", "lake", "reference")
CACHE_VERSION = 1
_MEMBER = re.compile(r"^images_(background|evaluation)/([^/]+)/(character\d+)/(\d{4})_(\d{2})\.png$")

HOW_TO_GET = (
    "Get the official archives with `python -m htlib download omniglot --data-dir DIR` "
    "(or htlib.data.download_omniglot(DIR)), or download images_background.zip and "
    "images_evaluation.zip from https://github.com/brendenlake/omniglot (folder python/) into "
    "DIR/omniglot/, then point htlib at DIR with data_dir=... or HTLIB_DATA=DIR. "
    "Without the real data, the notebooks run offline on the synthetic dataset (dataset='synthetic')."
)


def omniglot_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return resolve_data_dir(data_dir) / "omniglot"


def _archive_path(root: Path, part: str) -> Path:
    path = root / ARCHIVES[part]
    if not path.is_file():
        raise DataError(f"Omniglot archive not found: looked for {path}. {HOW_TO_GET}")
    return path


def _decode_archive(path: Path, part: str, size: int) -> tuple[list[str], list[int], np.ndarray]:
    """Decode one archive into (names, character ids, uint8 (chars, 20, size, size))."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"{path} is not a readable zip archive ({exc}); it is probably truncated or "
            f"corrupt. Delete it and fetch it again. {HOW_TO_GET}"
        ) from exc
    drawings: dict[str, dict[int, str]] = {}
    char_ids: dict[str, int] = {}
    with archive:
        for member in archive.namelist():
            match = _MEMBER.match(member)
            if match is None:
                continue
            arch_part, alphabet, character, char_id, drawing = match.groups()
            if arch_part != part:
                raise DataError(f"{path} holds {member}, which belongs to the {arch_part} set")
            key = f"{alphabet}/{character}"
            drawings.setdefault(key, {})[int(drawing)] = member
            char_ids[key] = int(char_id)
        _check_counts(path, part, drawings)
        names = sorted(drawings, key=lambda k: char_ids[k])
        images = np.empty((len(names), DRAWINGS_PER_CHARACTER, size, size), dtype=np.uint8)
        for i, key in enumerate(names):
            for j, drawing in enumerate(sorted(drawings[key])):
                try:
                    data = archive.read(drawings[key][drawing])
                    img = Image.open(BytesIO(data)).convert("L")
                except Exception as exc:  # zlib / PIL errors on damaged members
                    raise DataError(
                        f"Could not decode {drawings[key][drawing]} in {path} ({exc}); the "
                        f"archive is corrupt. Delete it and fetch it again. {HOW_TO_GET}"
                    ) from exc
                img = img.resize((size, size), Image.Resampling.BOX)
                images[i, j] = 255 - np.asarray(img, dtype=np.uint8)
    return names, [char_ids[k] for k in names], images


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


def _fingerprint(root: Path) -> dict[str, int]:
    return {part: (root / name).stat().st_size for part, name in ARCHIVES.items()}


def load_omniglot_arrays(
    data_dir: str | os.PathLike | None = None,
    image_size: int = 28,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """All 1,623 characters as uint8 (1623, 20, size, size), their names and character ids.

    The first call decodes both archives (seconds) and writes a cache; later calls
    reload the cache (well under a second) as long as the archives have not changed.
    """
    root = omniglot_dir(data_dir)
    paths = {part: _archive_path(root, part) for part in ARCHIVES}
    fingerprint = _fingerprint(root)
    cache = resolve_cache_dir(cache_dir) / f"omniglot_{image_size}px.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta == {"version": CACHE_VERSION, "archives": fingerprint}:
                return stored["images"], [str(n) for n in stored["names"]], stored["char_ids"]
    start = time.perf_counter()
    names, ids, parts = [], [], []
    for part, path in paths.items():
        part_names, part_ids, part_images = _decode_archive(path, part, image_size)
        names += part_names
        ids += part_ids
        parts.append(part_images)
    images = np.concatenate(parts)
    char_ids = np.asarray(ids, dtype=np.int64)
    if len(names) != TOTAL_CHARACTERS or not np.array_equal(char_ids, np.arange(1, TOTAL_CHARACTERS + 1)):
        raise DataError(
            f"Expected character ids 1..{TOTAL_CHARACTERS} across both archives; got "
            f"{len(names)} characters. The archives are not the official ones. {HOW_TO_GET}"
        )
    meta = json.dumps({"version": CACHE_VERSION, "archives": fingerprint})
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, images=images, names=np.asarray(names), char_ids=char_ids, meta=np.asarray(meta))
    os.replace(tmp, cache)  # atomic: a crash never leaves a half-written cache
    if verbose:
        print(f"Decoded {images.shape[0] * images.shape[1]:,} Omniglot images in "
              f"{time.perf_counter() - start:.1f} s; cached at {cache}")
    return images, names, char_ids


def _read_vinyals(root: Path, split: str) -> list[tuple[str, int]]:
    path = root / "splits" / "vinyals" / f"{split}.txt"
    if not path.is_file():
        raise DataError(
            f"Vinyals split file not found: {path}. Fetch it with "
            f"`python -m htlib download omniglot --data-dir DIR` or from {VINYALS_SPLIT_URL.format(split=split)}."
        )
    entries = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        *char_parts, rot = line.split("/")
        if not rot.startswith("rot") or len(char_parts) != 2:
            raise DataError(f"{path}:{line_no}: expected 'Alphabet/characterNN/rotDDD', got {line!r}")
        entries.append(("/".join(char_parts), int(rot[3:]) // 90))
    return entries


def _split_classes(
    split_scheme: str, split: str, names: list[str], char_ids: np.ndarray, root: Path
) -> list[tuple[int, int]]:
    """(character index, quarter turns) for each class of the split."""
    if split_scheme == "vinyals":
        index = {name: i for i, name in enumerate(names)}
        out = []
        for name, rot in _read_vinyals(root, split):
            if name not in index:
                raise DataError(f"Vinyals split names {name}, which is not in the Omniglot archives")
            out.append((index[name], rot))
        return out
    if split_scheme == "reference":
        # Character ids 1-1150 train, 1151-1200 val, 1201-1623 test, as in the authors' scripts.
        bounds = {"train": (0, 1150), "val": (1150, 1200), "test": (1200, 1623)}[split]
        return [(i, 0) for i in range(len(names)) if bounds[0] <= char_ids[i] - 1 < bounds[1]]
    # lake: background alphabets train, evaluation alphabets test; the last five background
    # alphabets (alphabetical order) are held out as validation.
    background = sorted({n.split("/")[0] for n, cid in zip(names, char_ids) if cid <= 964})
    val_alphabets = set(background[-5:])
    def part_of(name: str, cid: int) -> str:
        if cid > 964:
            return "test"
        return "val" if name.split("/")[0] in val_alphabets else "train"
    return [(i, 0) for i, (n, cid) in enumerate(zip(names, char_ids)) if part_of(n, int(cid)) == split]


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
        "reference" character ids 1-1150 / 1151-1200 / 1201-1623 as in the authors' scripts.
    """
    if split_scheme not in SPLITS:
        raise ValueError(f"Unknown Omniglot split scheme {split_scheme!r}; choose one of {SPLITS}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"Unknown split {split!r}; choose 'train', 'val' or 'test'")
    images, names, char_ids = load_omniglot_arrays(data_dir, image_size, cache_dir)
    classes = _split_classes(split_scheme, split, names, char_ids, omniglot_dir(data_dir))
    tensor = torch.from_numpy(images).unsqueeze(2)  # (1623, 20, 1, H, W)
    source = torch.tensor([c for c, _ in classes], dtype=torch.long)
    rotation = torch.tensor([r for _, r in classes], dtype=torch.long)
    class_names = [f"{names[c]}/rot{90 * r:03d}" if split_scheme == "vinyals" else names[c] for c, r in classes]
    return ClassImages(tensor, source, rotation, class_names, split, "omniglot",
                       info={"split_scheme": split_scheme, "image_size": image_size}, source_names=names)


def download_omniglot(data_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Fetch the official archives and the Vinyals split files into <data_dir>/omniglot.

    Only called when a user asks for it; tests and CI never download.
    """
    root = omniglot_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    targets = {root / name: OFFICIAL_URL.format(name=name) for name in ARCHIVES.values()}
    for split in ("train", "val", "test", "trainval"):
        targets[root / "splits" / "vinyals" / f"{split}.txt"] = VINYALS_SPLIT_URL.format(split=split)
    for path, url in targets.items():
        if path.is_file() and not force:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"downloading {url} -> {path}")
        tmp = path.with_name(path.name + ".part")
        try:
            urllib.request.urlretrieve(url, tmp)
        except OSError as exc:
            raise DataError(
                f"Could not download {url} ({exc}). Check your connection, or copy the files "
                f"by hand into {root} (layout in htlib/data/omniglot.py)."
            ) from exc
        os.replace(tmp, path)
    return root
