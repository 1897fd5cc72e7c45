"""Digest of every artifact under a results directory, to compare two runs of the same workflow.

    python tests/tools/artifact_digest.py RESULTS_DIR > digest.txt

One line per file: its path relative to RESULTS_DIR and the SHA-256 of its bytes; JSON files, and the
metadata of safetensors files (JSON strings in their header), are hashed after removing every "seconds" and
"seconds_..." key (wall times differ between runs) with keys sorted (safetensors writes its metadata map in no fixed order). Logs, benchmark timings and
Snakemake's own bookkeeping are left out. Two runs whose digests are equal wrote the same artifacts.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

SKIP_DIRS = {"logs", "benchmarks", ".snakemake"}


def _without_seconds(value):
    """``value`` without its wall-clock entries: the keys "seconds" and "seconds_<per what>"."""
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds" and not k.startswith("seconds_")}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def _safetensors_canonical(data: bytes) -> bytes:
    """The tensors' bytes and the header with its metadata values parsed, timings removed, keys sorted."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    parsed = {}
    for key, text in meta.items():
        try:
            parsed[key] = _without_seconds(json.loads(text))
        except ValueError:
            parsed[key] = text
    return json.dumps({"header": header, "metadata": parsed}, sort_keys=True).encode() + data[8 + n:]


def digest(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".json":
        data = json.dumps(_without_seconds(json.loads(data)), sort_keys=True).encode()
    elif path.suffix == ".safetensors":
        data = _safetensors_canonical(data)
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
