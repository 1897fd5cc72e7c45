"""Surviving faults: what a job killed outright (SIGKILL) leaves behind is never taken as finished work,
and is cleaned up when the job runs again."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cca.cli.common import shard_fingerprint
from cca.config import ROOT
from cca.io import remove_stale_temporaries, write_parquet


def test_a_temporary_left_by_a_killed_writer_is_removed_when_the_artifact_is_written_again(tmp_path):
    """SIGKILL skips the cleanup of an atomic write, so its temporary stays next to the artifact;
    the next write of that artifact removes it, and leaves other artifacts' temporaries alone."""
    from cca.io import atomic_dir

    killed_file = tmp_path / ".greedy.parquet.k3j_x9q2.tmp"
    killed_file.write_bytes(b"half a parquet file")
    killed_dir = tmp_path / ".merged.ab12cd34.tmp"
    (killed_dir / "sub").mkdir(parents=True)
    (killed_dir / "sub" / "model.safetensors").write_bytes(b"half")
    other = tmp_path / ".curve.parquet.zz99yy88.tmp"   # another artifact's, e.g. written right now
    other.write_bytes(b"")
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "greedy.parquet")
    with atomic_dir(tmp_path / "merged") as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".curve.parquet.zz99yy88.tmp", "greedy.parquet", "merged"]
    assert [p.name for p in (tmp_path / "merged").iterdir()] == ["config.json"]
    remove_stale_temporaries(tmp_path / "curve.parquet")
    assert not other.exists()


def test_shards_of_other_inputs_with_the_same_instance_ids_are_not_reused(tmp_path):
    """Instance ids are <template>#<index>: other instances (another instances.seed) keep the same ids, and
    a rebuilt checkpoint keeps its path. Shards an interrupted run left must not be taken as finished work
    for them: the shard fingerprint follows the input tables' contents and the checkpoint's files."""
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    instances = tmp_path / "instances.parquet"
    settings = {"generation": {"backend": "hf"}}
    write_parquet(pd.DataFrame({"instance_id": ["t#0", "t#1"], "question": ["1 + 1?", "2 + 2?"]}), instances)
    first = shard_fingerprint(settings, checkpoint, [instances])
    assert shard_fingerprint(settings, checkpoint, [instances]) == first
    write_parquet(pd.DataFrame({"instance_id": ["t#0", "t#1"], "question": ["3 + 3?", "4 + 4?"]}), instances)
    second = shard_fingerprint(settings, checkpoint, [instances])
    assert second != first
    (checkpoint / "model.safetensors").write_bytes(b"other weights")
    assert shard_fingerprint(settings, checkpoint, [instances]) not in (first, second)
    assert shard_fingerprint({"generation": {"backend": "vllm"}}, checkpoint, [instances]) != second


# --- The whole workflow killed with SIGKILL inside each long rule, then resumed -----------------------------

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile")]
TINY = Path(__file__).parent / "data" / "config_tiny.yaml"
MODEL = "tiny-gsm"
TABLE = f"results/{MODEL}/table.csv"

# (rule, its log under results/<model>/logs, its output, when to kill). "first shard": as soon as the rule has
# checkpointed one shard of its work; a fraction: that far into the rule's duration in the uninterrupted run.
# Each killed run asks for that output only, so no run does the work of a later kill point. The math evaluation
# is the w/o mask model's: on the tiny model that update keeps its weights, while the w/ mask update chooses the
# base model and its evaluation is a copy of the original's (no work to kill).
KILL_POINTS = [
    ("greedy_traces", "greedy_traces", "traces/greedy.parquet", "first shard"),
    ("error_localization", "error_localization_branching_seed0", "seed0/error_localization_branching.parquet", 0.5),
    ("dcm_mask", "dcm_branching_seed0_lambda0.01", "seed0/branching/masks/lambda0.01.safetensors", 0.5),
    ("targeted_update", "update_branching_mask_seed0", "seed0/branching/mask/update.json", 0.5),
    ("evaluate_math", "math_branching/nomask_seed0", "seed0/branching/nomask/math.json", 0.5),
]


def _resume_config(workdir: Path) -> None:
    """The tiny trained model, one seed, the branching method only, no controls (their rules are update rules
    like the others): every long rule, as few jobs as possible."""
    cfg = yaml.safe_load(TINY.read_text())
    tiny = cfg["profiles"]["tiny"]
    tiny["seeds"] = [0]
    tiny["controls"] = []
    tiny["localization"]["methods"] = ["branching"]
    tiny["dcm"]["lambdas"] = [1.0e-2]
    cfg["models"] = {MODEL: cfg["models"][MODEL]}
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def _snakemake_command(workdir: Path, target: str = TABLE) -> list[str]:
    return [*SNAKEMAKE, "--directory", str(workdir), "--cores", "2", "--rerun-incomplete", target]


def _without_timings(obj):
    """A JSON summary less its wall-clock fields ("seconds"), the only thing in it that may differ."""
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _artifacts(results: Path) -> dict[str, object]:
    """Every Parquet table and the table.csv as bytes, every JSON summary less its timings, by relative path."""
    out = {}
    for p in sorted(results.rglob("*")):
        if p.is_file() and p.suffix in (".parquet", ".csv"):
            out[str(p.relative_to(results))] = p.read_bytes()
        elif p.is_file() and p.suffix == ".json" and "checkpoint" not in p.parts and "merged" not in p.parts:
            out[str(p.relative_to(results))] = _without_timings(json.loads(p.read_text()))
    return out


def _leftovers(results: Path) -> list[str]:
    return [str(p.relative_to(results)) for p in results.rglob("*")
            if p.name.endswith((".tmp", ".parts")) or p.name.startswith(".weights.")]


def _unlock(workdir: Path) -> None:
    """A killed Snakemake leaves its lock on the working directory; the user's first step after a kill."""
    subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--unlock"], capture_output=True, text=True,
                   timeout=300, check=True)


def _bench_seconds(results: Path, log: str) -> float:
    return float(pd.read_csv(results / "benchmarks" / f"{log}.tsv", sep="\t")["s"].iloc[0])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    _resume_config(workdir)
    proc = subprocess.run(_snakemake_command(workdir), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def _kill_inside(workdir: Path, reference: Path, rule: str, log: str, output: str, when) -> None:
    """Start the workflow, SIGKILL it (Snakemake and every job: the whole process group) inside ``rule``."""
    results = workdir / "results" / MODEL
    log_file, out = results / "logs" / f"{log}.log", results / output
    assert not log_file.exists() and not out.exists()
    if when != "first shard":
        delay = when * _bench_seconds(reference / "results" / MODEL, log)
    _unlock(workdir)
    proc = subprocess.Popen(_snakemake_command(workdir, f"results/{MODEL}/{output}"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    started = None
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the workflow ended before {rule} could be killed:\n" \
                                        f"{proc.stderr.read().decode()[-3000:]}"
            if started is None and log_file.exists():
                started = time.monotonic()
            if started is not None:
                if when == "first shard":
                    due = (out.parent / f"{out.name}.parts" / "part-00000.parquet").is_file()
                else:
                    due = time.monotonic() - started >= delay
                if due:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{rule} did not start within 15 minutes")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists(), f"{rule} had already finished when the workflow was killed: kill earlier"


def test_a_workflow_killed_inside_each_long_rule_resumes_to_the_same_table(uninterrupted, tmp_path):
    """SIGKILL the whole workflow inside generation, branching, DCM, update and evaluation in turn, each time
    resuming with --unlock then --rerun-incomplete; the final table equals the uninterrupted run's, every
    Parquet artifact is byte-identical to it (the HF backend is deterministic on a fixed seed; JSON summaries
    equal but for wall-clock seconds), and no temporary file, shard folder or half-written checkpoint is left."""
    workdir = tmp_path / "killed"
    workdir.mkdir()
    _resume_config(workdir)
    reference = uninterrupted
    # The tiny model's checkpoint is the same bytes either way; copying it saves its training.
    shutil.copytree(reference / "results" / MODEL / "checkpoint", workdir / "results" / MODEL / "checkpoint")
    for rule, log, output, when in KILL_POINTS:
        _kill_inside(workdir, reference, rule, log, output, when)
    greedy_parts = workdir / "results" / MODEL / "traces" / "greedy.parquet.parts"
    _unlock(workdir)
    proc = subprocess.run(_snakemake_command(workdir), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not greedy_parts.exists()
    ours, theirs = workdir / "results" / MODEL, reference / "results" / MODEL
    assert pd.read_csv(ours / "table.csv").equals(pd.read_csv(theirs / "table.csv"))
    a, b = _artifacts(ours), _artifacts(theirs)
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name] != b[name]]
    assert not different, f"not byte-identical after the kills: {different}"
    assert _leftovers(ours) == []
    again = subprocess.run([*_snakemake_command(workdir), "-n"], capture_output=True, text=True, timeout=600)
    assert "Nothing to be done" in again.stdout + again.stderr
