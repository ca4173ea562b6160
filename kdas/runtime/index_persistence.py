"""A gallery index on disk: one folder, written atomically, checked against its manifest.

    manifest.json   model identity (EmbeddingModelInfo), index type/params, counts, checksums
    index.faiss     the FAISS index, vectors keyed by 64-bit gallery ids
    gallery.sqlite  id, path, pid, camid, added
    model.onnx      the embedding model, so the folder is all a service needs

Saving builds the whole folder in a temp sibling and swaps it in, so a crash leaves the previous
index intact; loading checks every file's size (and sha256) first, so a flipped byte is caught
here and not as silently wrong search results.

A save holds an exclusive `flock` on the parent folder while its temp sibling exists, so a temp
sibling nobody holds that lock for was left by a writer that died (kill -9, power loss): opening
the index removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdas.errors import KdasError
from kdas.files import GALLERY_FILE, INDEX_FILE, MANIFEST_FILE, index_model_name
from kdas.runtime import faiss_backend as fb
from kdas.runtime.index_storage import GalleryStore
from kdas.runtime.manifest import IndexManifest, check_model, read_manifest
from kdas.runtime.metadata import GalleryTable, read_sqlite, write_sqlite
from kdas.runtime.model_meta import EmbeddingModelInfo
from kdas.utils.atomic import atomic_directory, atomic_write_json
from kdas.utils.hashing import sha256_file
from kdas.utils.outputs import check_out_dir

try:
    import fcntl
except ImportError:  # not POSIX: saves take no lock, so temp siblings are never deleted
    fcntl = None  # type: ignore[assignment]


def store_manifest(
    store: GalleryStore,
    info: EmbeddingModelInfo,
    model_path: Path | None,
    created: str,
    updated: str,
) -> IndexManifest:
    """The manifest of a store as it is now (its `files` are filled in when saved)."""
    return IndexManifest(
        model=info,
        index_type=store.index_type,
        index_params=store.params.to_dict(),
        dimension=store.dim,
        count=len(store.table),
        stored_vectors=store.stored_vectors,
        next_id=store.next_id,
        model_file=index_model_name(model_path) if model_path is not None else None,
        created=created,
        updated=updated,
    )


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link an unchanged file into the new folder (free), copy across filesystems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def model_files(model_path: Path) -> list[tuple[Path, str]]:
    """The files of a model and their names inside an index folder: one file, or an OpenVINO
    IR's .xml with its .bin."""
    name = index_model_name(model_path)
    files = [(model_path, name)]
    if model_path.suffix.lower() == ".xml":
        files.insert(0, (model_path.with_suffix(".bin"), str(Path(name).with_suffix(".bin"))))
    return files


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def check_target(target: Path) -> None:
    """Refuse, before any work, a place an index folder cannot be written to without destroying
    something: an existing file (the swap would replace it), a path below a file, or a folder
    that is not an index (saving replaces the whole folder)."""
    check_out_dir(target)
    if target.is_dir() and not (target / MANIFEST_FILE).is_file() and any(target.iterdir()):
        raise KdasError(
            f"{target} is a folder that is not a kdas index (it has no {MANIFEST_FILE}): "
            "saving an index there would replace everything in it; choose a new or empty folder"
        )


def write_folder(
    target: Path, store: GalleryStore, manifest: IndexManifest, model_path: Path | None
) -> None:
    """Write the index, its records, its model and the manifest (with checksums) atomically."""
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _writer_lock(target, wait=True) as held:
        if held:  # no other writer is live: every temp sibling is a dead one's
            _remove_temps(target)
        _write_folder(target, store, manifest, model_path)


def _write_folder(
    target: Path, store: GalleryStore, manifest: IndexManifest, model_path: Path | None
) -> None:
    with atomic_directory(target) as tmp:
        fb.write_index(store.faiss_index, tmp / INDEX_FILE)
        write_sqlite(store.table, tmp / GALLERY_FILE)
        names = [INDEX_FILE, GALLERY_FILE]
        if model_path is not None:
            for source, name in model_files(model_path):
                if not source.is_file():
                    raise KdasError(f"the index's model file {source} is gone")
                _link_or_copy(source, tmp / name)
                names.append(name)
        manifest.files = {name: _file_entry(tmp / name) for name in names}
        atomic_write_json(tmp / MANIFEST_FILE, manifest.to_dict())


def check_files(folder: Path, manifest: IndexManifest, verify: bool) -> None:
    """Every file the manifest lists is there with its size (and, with `verify`, its sha256)."""
    for name, meta in manifest.files.items():
        file = folder / name
        if not file.is_file():
            raise KdasError(f"index {folder} is incomplete: {name} is missing; rebuild it")
        if file.stat().st_size != meta.get("bytes") or (
            verify and sha256_file(file) != meta.get("sha256")
        ):
            raise KdasError(
                f"{file} is corrupt (size or checksum differs from the manifest): "
                "rebuild the index with `kdas index build`"
            )


def _check_counts(
    folder: Path, manifest: IndexManifest, faiss_index: Any, table: GalleryTable
) -> None:
    if faiss_index.d != manifest.dimension or faiss_index.ntotal != manifest.stored_vectors:
        raise KdasError(
            f"{folder / INDEX_FILE} holds {faiss_index.ntotal} x {faiss_index.d} vectors, the "
            f"manifest says {manifest.stored_vectors} x {manifest.dimension}: rebuild the index"
        )
    if len(table) != manifest.count:
        raise KdasError(
            f"{folder / GALLERY_FILE} lists {len(table)} images, the manifest says "
            f"{manifest.count}: rebuild the index"
        )
    if len(table) and manifest.next_id <= int(table.ids[-1]):
        raise KdasError(
            f"{folder / MANIFEST_FILE} says the next gallery id is {manifest.next_id}, but "
            f"{folder / GALLERY_FILE} already holds id {int(table.ids[-1])}: rebuild the index"
        )


def check_params(folder: Path, manifest: IndexManifest) -> fb.IndexParams:
    """The manifest's index type and parameters, checked as a build checks them."""
    source = folder / MANIFEST_FILE
    try:
        params = fb.IndexParams.from_dict(manifest.index_params)
        params.validate(manifest.index_type)
    except KdasError as exc:
        raise KdasError(f"{source}: {exc}; rebuild the index") from None
    except (TypeError, ValueError) as exc:
        raise KdasError(
            f"{source}: index_params are malformed ({exc}); rebuild the index"
        ) from None
    return params


def read_folder(
    folder: Path, expected_model: EmbeddingModelInfo | None, verify: bool
) -> tuple[IndexManifest, Any, GalleryTable]:
    """(manifest, FAISS index, records) of an index folder, refusing one built by a model other
    than `expected_model`, an incomplete or corrupt one, and one whose counts disagree.
    Temp folders a crashed save left beside it are removed first."""
    remove_stale_temps(folder)
    manifest = read_manifest(folder)
    if expected_model is not None:
        check_model(manifest, expected_model, folder)
    check_params(folder, manifest)
    check_files(folder, manifest, verify)
    faiss_index = fb.read_index(folder / INDEX_FILE)
    table = read_sqlite(folder / GALLERY_FILE)
    _check_counts(folder, manifest, faiss_index, table)
    return manifest, faiss_index, table


# --- temp siblings of crashed saves -------------------------------------------------------------
def _temp_pattern(folder: Path) -> re.Pattern[str]:
    """The names `kdas.utils.atomic.atomic_directory` gives its temp siblings: the new folder
    (mkdtemp: `.NAME.` + 8 random characters + `.tmp`, which after the swap holds the previous
    folder while it is deleted) and, where renameat2 is missing, the previous one (`.NAME.old-PID`).
    """
    return re.compile(rf"\.{re.escape(folder.name)}\.(?:[a-z0-9_]{{8}}\.tmp|old-[0-9]+)")


def temp_siblings(folder: Path) -> list[Path]:
    """The temp folders of saves of `folder` that are beside it now (live or dead)."""
    pattern = _temp_pattern(folder)
    try:
        entries = list(folder.parent.iterdir())
    except OSError:
        return []
    return sorted(
        p for p in entries if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()
    )


@contextlib.contextmanager
def _writer_lock(folder: Path, wait: bool) -> Iterator[bool]:
    """An exclusive flock on the parent folder (no lock file to leave behind); yields whether it
    is held: False when another process holds it and `wait` is off, or where flock is missing or
    refused (then a save goes ahead unlocked and nothing is deleted)."""
    if fcntl is None:
        yield False
        return
    try:
        fd = os.open(folder.parent, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except OSError:
            held = False
        yield held
    finally:
        os.close(fd)  # releases the lock


def _remove_temps(folder: Path) -> list[Path]:
    """Delete `folder`'s temp siblings (the caller holds the writer lock), never the folder
    itself, and only beside a complete index: with the index missing, a crash between the two
    renames of the fallback swap left the only copies in them."""
    if not (folder / MANIFEST_FILE).is_file():
        return []
    removed = []
    for path in temp_siblings(folder):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temp folders a save that died (kill -9, power loss) left beside `folder`;
    returns them. Nothing is removed while a live writer holds the lock: its temp is in use."""
    if not temp_siblings(folder):
        return []
    with _writer_lock(folder, wait=False) as held:
        return _remove_temps(folder) if held else []
