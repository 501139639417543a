"""Start safely: load the newest build that reads back whole; set aside the ones that do not.

A build that fails to load (a missing, empty or truncated file, a missing or unparsable manifest,
files that disagree with their manifest) is renamed to `builds/.broken-<id>-<tag>`, which pruning
and loading skip, and kept for inspection. The build that `current` names is tried first, then the
others newest first; with none left, the engine builds from the store (which holds every vector).
A whole build of another model is never set aside: named by `current` it raises IndexMismatch
(`recsys build` makes one for the loaded model), as a fallback it is skipped.
"""

from __future__ import annotations

import logging
import os
import uuid
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from recsys import index as idx
from recsys.errors import IndexMismatch
from recsys.neighbours import FILE as NEIGHBOURS_FILE

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
REQUIRED = (MANIFEST, "index.faiss", idx.ROWS_FILE, idx.HEADLINES_FILE, "lexical_rows.npz", idx.LEXICAL_FILE)
# what numpy, scipy and FAISS raise on a short or garbled file (FAISS: RuntimeError "read error")
READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, zipfile.BadZipFile)
_TYPES = {"str": str, "int": int, "bool": bool}


class _Broken(Exception):
    """A build that cannot be served; `tag` names its set-aside folder."""

    def __init__(self, tag: str, detail: str) -> None:
        super().__init__(detail)
        self.tag, self.detail = tag, detail


@dataclass(frozen=True)
class Loaded:
    """The build to serve (None: build from the store) and why it is not the one `current` names."""

    build: idx.SavedBuild | None
    warnings: list[str]


def load_valid(index_dir: Path, model: str, dimension: int, ef_search: int, read_only: bool = False) -> Loaded:
    """The build `current` names if it loads, else the newest other one that does; broken ones set aside
    (read-only: only skipped, and nothing on disk changes)."""
    builds = Path(index_dir) / "builds"
    if not read_only:
        idx.remove_stale_tmp(builds)
    current, warnings = _pointer(Path(index_dir), builds)
    for name in _candidates(builds, current):
        folder = builds / name
        try:
            manifest = _manifest(folder)
            if not _suits(manifest, model, dimension, is_current=name == current):
                if name == current:  # an older layout: rebuilt, as always
                    return Loaded(None, warnings)
                continue
            build = _read(folder, manifest, ef_search)
        except _Broken as exc:
            warnings.append(_set_aside(folder, exc, move=not read_only))
            continue
        if name != current:
            warnings.append(f"serving build {name} (made {manifest.created_at}) and the store's newer articles")
            log.warning("index: %s", warnings[-1])
        return Loaded(build, warnings)
    if warnings:
        warnings.append("no loadable build left: rebuilt from the store")
    return Loaded(None, warnings)


def _pointer(index_dir: Path, builds: Path) -> tuple[str | None, list[str]]:
    """The build `current` names, or None and why (nothing said when there are no builds yet)."""
    path = index_dir / "current"
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        return None, ([f"{path} is missing"] if _candidates(builds, None) else [])
    except (OSError, ValueError) as exc:
        name = f"<unreadable: {exc}>"
    if name and not name.startswith(".") and os.sep not in name and (builds / name).is_dir():
        return name, []
    aside = sorted(p.name for p in builds.glob(f".broken-{name}-*")) if name and os.sep not in name else []
    why = f"current names build {name!r}, which does not exist" + (f" (set aside as {aside[0]})" if aside else "")
    log.warning("index: %s", why)
    return None, [why]


def _candidates(builds: Path, current: str | None) -> list[str]:
    """`current` first, then every other finished build, newest first (names sort by time)."""
    names = sorted((p.name for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   reverse=True) if builds.is_dir() else []
    return ([current] if current else []) + [n for n in names if n != current]


def _manifest(folder: Path) -> idx.Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise _Broken("manifest", f"{MANIFEST} is missing")
    try:
        manifest = idx.read_manifest(path)
    except (OSError, ValueError) as exc:
        raise _Broken("manifest", f"{MANIFEST} is not valid JSON: {exc}") from exc
    except TypeError as exc:  # keys missing or unknown, or not an object at all
        raise _Broken("manifest", f"{MANIFEST} has the wrong keys: {exc}") from exc
    wrong = [f.name for f in fields(manifest)
             if not isinstance(getattr(manifest, f.name), _TYPES.get(f.type, object))]
    if wrong:
        raise _Broken("manifest", f"{MANIFEST} has values of the wrong type: {', '.join(wrong)}")
    return manifest


def _suits(manifest: idx.Manifest, model: str, dimension: int, is_current: bool) -> bool:
    """Whether to read the build: not if it is of an older layout or (as a fallback) of another model."""
    if manifest.model != model or manifest.dimension != dimension:
        if is_current:
            raise IndexMismatch(
                f"index build {manifest.build_id} was made with model {manifest.model!r} "
                f"(dimension {manifest.dimension}) but the loaded model is {model!r} (dimension "
                f"{dimension}); run `recsys build` to rebuild it for this model")
        log.info("index build %s is of model %r: not a fallback for %r, left as it is",
                 manifest.build_id, manifest.model, model)
        return False
    if manifest.format != idx.FORMAT:
        log.info("index build %s has an older layout; building anew", manifest.build_id)
        return False
    return True


def _read(folder: Path, manifest: idx.Manifest, ef_search: int) -> idx.SavedBuild:
    missing = [f for f in REQUIRED if not (folder / f).is_file()]
    if missing:
        raise _Broken("missing", f"{', '.join(missing)} missing")
    empty = [f for f in REQUIRED if (folder / f).stat().st_size == 0]
    if empty:
        raise _Broken("empty", f"{', '.join(empty)} empty (0 bytes)")
    try:
        build = idx.load_build(folder, manifest, ef_search)
        problem = mismatch(build) or _neighbours_mismatch(folder, manifest.count)
    except READ_ERRORS as exc:
        raise _Broken("unreadable", _short(exc)) from exc
    if problem:
        raise _Broken("mismatch", problem)
    return build


def mismatch(build: idx.SavedBuild) -> str | None:
    """How a build's files disagree with its manifest, or None when they agree."""
    m, n = build.manifest, build.manifest.count
    newest = int(build.vids.max()) if len(build.vids) else 0
    checks = [
        (build.folder.name == m.build_id, f"{MANIFEST} is build {m.build_id}'s"),
        (build.index.d == m.dimension, f"index.faiss has dimension {build.index.d}, the manifest {m.dimension}"),
        (build.index.ntotal == n, f"index.faiss holds {build.index.ntotal} vectors, the manifest {n}"),
        (len(build.vids) == n, f"{idx.ROWS_FILE} has {len(build.vids)} rows, the manifest {n}"),
        (newest == m.max_vid, f"{idx.ROWS_FILE} ends at vid {newest}, the manifest at {m.max_vid}"),
        (build.headlines.shape == (n, m.dimension),
         f"{idx.HEADLINES_FILE} has shape {build.headlines.shape}, the manifest ({n}, {m.dimension})"),
        (build.lexical_rows.shape[0] == n,
         f"lexical_rows.npz has {build.lexical_rows.shape[0]} rows, the manifest {n}"),
        (sum(len(s.rows) for s in build.by_lang.values()) == n, f"the language indexes do not hold {n} rows"),
    ]
    checks += [(s.index.d == m.dimension and s.index.ntotal == len(s.rows) and bool(np.all(s.rows < n)),
                f"lang-{code}.faiss does not match its rows") for code, s in build.by_lang.items()]
    return next((why for ok, why in checks if not ok), None)


def _neighbours_mismatch(folder: Path, count: int) -> str | None:
    """The saved neighbour lists are optional (made again when absent or empty), but must be this build's."""
    path = folder / NEIGHBOURS_FILE
    if not path.exists():
        return None
    with np.load(path) as data:
        rows = len(data["count"])
    return None if rows in (0, count) else f"{NEIGHBOURS_FILE} has {rows} lists, the manifest {count} rows"


def _set_aside(folder: Path, exc: _Broken, move: bool = True) -> str:
    """Rename a broken build out of the way (kept for a look) and say why, for the log and /healthz."""
    target = folder.with_name(f".broken-{folder.name}-{exc.tag}")
    if not move:
        why = f"build {folder.name} failed to load ({exc.tag}: {exc.detail}); skipped (read-only)"
        log.warning("index: %s", why)
        return why
    if target.exists():
        target = target.with_name(f"{target.name}-{uuid.uuid4().hex[:6]}")
    try:
        os.replace(folder, target)
        where = f"set aside as {target.name}"
    except OSError as err:  # e.g. another worker moved it first: loading skips it all the same
        where = f"not set aside ({err.strerror})"
    why = f"build {folder.name} failed to load ({exc.tag}: {exc.detail}); {where}"
    log.warning("index: %s", why)
    return why


def _short(exc: BaseException) -> str:
    """The useful end of an error: FAISS prefixes its C++ location to the message."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.rsplit("Error: ", 1)[-1][:200]
