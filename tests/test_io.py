import os

import pandas as pd
import pytest

from cca.io import atomic_file, finish_shards, sharded, write_parquet


def test_atomic_file_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_written_files_are_not_private(tmp_path):
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    assert os.stat(tmp_path / "x.parquet").st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_sharded_resumes_after_an_interruption(tmp_path):
    df = pd.DataFrame({"i": range(10)})
    parts = tmp_path / "out.parquet.parts"
    calls = []

    def work(chunk, fail_at=None):
        calls.append(int(chunk.i.iloc[0]))
        if fail_at is not None and chunk.i.iloc[0] == fail_at:
            raise KeyboardInterrupt  # the job dies here
        return chunk.assign(sq=chunk.i ** 2)

    with pytest.raises(KeyboardInterrupt):
        sharded(df, 3, parts, "v1", lambda c: work(c, fail_at=6))
    assert sorted(p.name for p in parts.glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]
    calls.clear()
    out = sharded(df, 3, parts, "v1", work)
    assert calls == [6, 9]  # finished shards are reused, the rest redone
    assert list(out.i) == list(range(10)) and list(out.sq) == [i * i for i in range(10)]  # no duplicates
    finish_shards(parts)
    assert not parts.exists()


def test_sharded_discards_shards_of_other_inputs(tmp_path):
    df = pd.DataFrame({"i": range(4)})
    parts = tmp_path / "p"
    sharded(df, 2, parts, "old-settings", lambda c: c.assign(v=0))
    out = sharded(df, 2, parts, "new-settings", lambda c: c.assign(v=1))
    assert (out.v == 1).all()
