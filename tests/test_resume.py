"""Surviving faults: what a job killed outright (SIGKILL) leaves behind is never taken as finished work,
and is cleaned up when the job runs again."""
import pandas as pd

from cca.cli import shard_fingerprint
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
