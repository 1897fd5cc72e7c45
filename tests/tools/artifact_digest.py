"""Digest of every artifact under a results directory, to compare two runs of the same workflow.

    python tests/tools/artifact_digest.py RESULTS_DIR > digest.txt

One line per file: its path relative to RESULTS_DIR and the SHA-256 of its bytes; JSON files are hashed
after removing every "seconds" key (wall times differ between runs). Logs, benchmark timings and
Snakemake's own bookkeeping are left out. Two runs whose digests are equal wrote the same artifacts.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

SKIP_DIRS = {"logs", "benchmarks", ".snakemake"}


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def digest(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".json":
        data = json.dumps(_without_seconds(json.loads(data)), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def digests(root: Path) -> dict[str, str]:
    out = {}
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if f.is_file() and not SKIP_DIRS & set(rel.parts):
            out[rel.as_posix()] = digest(f)
    return out


if __name__ == "__main__":
    for rel, h in digests(Path(sys.argv[1])).items():
        print(f"{h}  {rel}")
