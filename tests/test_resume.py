"""Surviving faults: what a job killed outright (SIGKILL) leaves behind is never taken as finished work,
and is cleaned up when the job runs again."""
import pandas as pd

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
