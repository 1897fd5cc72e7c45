"""Finished candidates of an update's sweep, kept on disk until the job ends, so that a job killed part way
(an interrupted run, a cluster's time limit) resumes at its first unfinished (lambda, lr).

A candidate is one trained (lambda, lr) of ``cca.update.sweep.update_runs``: its record at its best look, its
curve rows and its state there (a masked update's row deltas with their axes, or a whole-weight update's
state dict). Each is stored under a key that holds the job's fingerprint (settings, checkpoint, inputs,
seed: ``cca.cli.common.shard_fingerprint``), so a candidate of other settings or data is never taken; files
are written atomically, a candidate's state before its record, so a record on disk always has its state.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path


class CandidateStore:
    """``directory``: where the candidates go (the job's own folder, ``.candidates``); ``fingerprint``: what
    the job depends on."""

    def __init__(self, directory: str | Path, fingerprint: str):
        self.dir = Path(directory)
        self.fingerprint = fingerprint

    def _stem(self, label: str) -> Path:
        key = hashlib.sha256(f"{self.fingerprint}/{label}".encode()).hexdigest()[:20]
        return self.dir / key

    def get(self, label: str):
        """(record, rows, state) of a finished candidate ``label``, or None."""
        from safetensors.torch import load_file

        stem = self._stem(label)
        record_path = stem.with_suffix(".json")
        if not record_path.exists():
            return None
        saved = json.loads(record_path.read_text())
        state = None
        if saved["state"] is not None:
            tensors = load_file(str(stem.with_suffix(".safetensors")))
            state = (tensors, saved["state"]["axes"]) if saved["state"]["kind"] == "delta" else tensors
        return saved["record"], saved["rows"], state

    def put(self, label: str, record: dict, rows: list[dict], state) -> None:
        from safetensors.torch import save_file

        from cca.io import atomic_file, write_json

        self.dir.mkdir(parents=True, exist_ok=True)
        stem = self._stem(label)
        meta = None
        if state is not None:
            tensors, meta = ((state[0], {"kind": "delta", "axes": state[1]}) if isinstance(state, tuple)
                             else (state, {"kind": "state_dict"}))
            with atomic_file(stem.with_suffix(".safetensors")) as tmp:
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        write_json({"label": label, "record": record, "rows": rows, "state": meta}, stem.with_suffix(".json"))

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
