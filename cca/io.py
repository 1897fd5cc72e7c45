"""Atomic artifact writes: a file or directory appears complete or not at all.

Every writer builds its output under a temporary name in the destination's own
directory and renames it into place, so an interrupted job never leaves a file
that Snakemake (or a person) would take as finished. A temporary left by a writer
that was killed outright is removed when the same artifact is written again.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd

from cca.errors import CCAError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _parent(path: Path) -> Path:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CCAError(f"cannot create directory {parent}: {e.strerror}; choose a writable results directory") from e
    if not os.access(parent, os.W_OK):
        raise CCAError(f"cannot write to {parent}: permission denied; choose a writable results directory")
    return parent


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` that an earlier writer left behind.

    A writer killed outright (SIGKILL, out of memory, power loss) never runs its cleanup, so its
    ``.<name>.<random>.tmp`` stays next to ``path``. One job writes a given artifact at a time, so
    when a new write of ``path`` starts, any such temporary is stale.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    for stale in path.parent.iterdir():
        if pattern.fullmatch(stale.name):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    parent = _parent(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; artifacts are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; it replaces ``path`` if the block succeeds."""
    path = Path(path)
    parent = _parent(path)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for f in tmp.rglob("*"):
            os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise CCAError(f"{path} does not exist: build it first (snakemake --cores all {path})")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise CCAError(f"{path} is not a readable Parquet file ({type(e).__name__}): delete it and rebuild") from e


def sharded(df: pd.DataFrame, shard_size: int, parts_dir: str | Path, fingerprint: str, fn, desc: str = "shards"):
    """Apply ``fn`` (DataFrame -> DataFrame) to consecutive shards of ``df``, checkpointing each result.

    Finished shards are written atomically under ``parts_dir``; a re-run after an interruption
    reuses them when ``fingerprint`` (what the work depends on) is unchanged, and redoes the rest.
    Returns the concatenated result and removes ``parts_dir``.
    """
    from tqdm import tqdm

    parts = Path(parts_dir)
    stamp = parts / "fingerprint.txt"
    if parts.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        with atomic_file(stamp) as tmp:
            tmp.write_text(fingerprint)
    n = max(1, -(-len(df) // shard_size))
    results = []
    for i in tqdm(range(n), desc=desc, unit="shard", disable=None):
        path = parts / f"part-{i:05d}.parquet"
        if path.is_file():
            results.append(pd.read_parquet(path))
            continue
        out = fn(df.iloc[i * shard_size:(i + 1) * shard_size])
        write_parquet(out, path)
        results.append(out)
    return pd.concat(results, ignore_index=True) if results else pd.DataFrame()


def finish_shards(parts_dir: str | Path) -> None:
    shutil.rmtree(parts_dir, ignore_errors=True)


def write_sharded(df: pd.DataFrame, shard_size: int, out: str | Path, fingerprint: str, fn, desc: str) -> pd.DataFrame:
    """``sharded`` into ``<out>.parts``, then the whole table written atomically to ``out`` and the shards removed."""
    parts = f"{out}.parts"
    result = sharded(df, shard_size, parts, fingerprint, fn, desc=desc)
    write_parquet(result, out)
    finish_shards(parts)
    return result
