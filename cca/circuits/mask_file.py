"""DCM mask files (safetensors): per component site, ``<site>`` = selected (uint8, 0/1) and
``values.<site>`` = the learned mask in [0, 1] (float32); the run's facts in the metadata."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from cca.errors import CCAError
from cca.io import atomic_file


def save_mask(path: str | Path, values: dict[str, torch.Tensor], selected: dict[str, torch.Tensor],
              meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {name: sel.to(torch.uint8).contiguous() for name, sel in selected.items()}
    tensors.update({f"values.{name}": v.float().contiguous() for name, v in values.items()})
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"cca": json.dumps(meta, sort_keys=True)})


def load_mask(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(selected per site as bool tensors, metadata)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CCAError(f"mask file {p} does not exist: build it with snakemake (rule dcm_mask)")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("cca", "{}"))
            selected = {k: f.get_tensor(k).bool() for k in f.keys() if not k.startswith("values.")}
    except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
        raise CCAError(f"mask file {p} is not a readable safetensors mask ({e}): delete it and re-run") from e
    return selected, meta


def selection_indices(selected: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: torch.nonzero(v).flatten().tolist() for k, v in selected.items()}
