"""A gallery index on disk: one folder, written atomically, checked against its manifest.

    manifest.json   model identity (EmbeddingModelInfo), index type/params, counts, checksums
    index.faiss     the FAISS index, vectors keyed by 64-bit gallery ids
    gallery.sqlite  id, path, pid, camid, added
    model.onnx      the embedding model, so the folder is all a service needs

Saving builds the whole folder in a temp sibling and swaps it in, so a crash leaves the previous
index intact; loading checks every file's size (and sha256) first, so a flipped byte is caught
here and not as silently wrong search results.
"""

from __future__ import annotations

import os
import shutil
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


def write_folder(
    target: Path, store: GalleryStore, manifest: IndexManifest, model_path: Path | None
) -> None:
    """Write the index, its records, its model and the manifest (with checksums) atomically."""
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


def read_folder(
    folder: Path, expected_model: EmbeddingModelInfo | None, verify: bool
) -> tuple[IndexManifest, Any, GalleryTable]:
    """(manifest, FAISS index, records) of an index folder, refusing one built by a model other
    than `expected_model`, an incomplete or corrupt one, and one whose counts disagree."""
    manifest = read_manifest(folder)
    if expected_model is not None:
        check_model(manifest, expected_model, folder)
    check_files(folder, manifest, verify)
    faiss_index = fb.read_index(folder / INDEX_FILE)
    table = read_sqlite(folder / GALLERY_FILE)
    _check_counts(folder, manifest, faiss_index, table)
    return manifest, faiss_index, table
