import pandas as pd
import pytest

from cca.errors import CCAError
from cca.tasks.splits import split_instances


def _instances(templates=("a/0", "a/1", "a/2"), n=50):
    return pd.DataFrame([{"template_id": t, "instance_id": f"{t}#{i}", "index": i}
                         for t in templates for i in range(n)])


def test_sizes_and_disjointness():
    df = split_instances(_instances(), seed=0, train=26, val=4, test=20)
    counts = df.groupby(["template_id", "split"]).size().unstack()
    assert (counts["train"] == 26).all() and (counts["val"] == 4).all() and (counts["test"] == 20).all()
    assert df["instance_id"].is_unique


def test_seed_changes_split_and_is_deterministic():
    a = split_instances(_instances(), 0, 26, 4, 20)
    b = split_instances(_instances(), 0, 26, 4, 20)
    c = split_instances(_instances(), 1, 26, 4, 20)
    pd.testing.assert_frame_equal(a, b)
    assert set(a[a.split == "test"].instance_id) != set(c[c.split == "test"].instance_id)


def test_one_templates_split_does_not_depend_on_the_others():
    a = split_instances(_instances(("a/0", "a/1")), 3, 26, 4, 20)
    b = split_instances(_instances(("a/1",)), 3, 26, 4, 20)
    assert list(a[a.template_id == "a/1"].instance_id) == list(b.instance_id)


def test_too_few_instances_names_template():
    with pytest.raises(CCAError, match="template a/0 has 10 instances"):
        split_instances(_instances(("a/0",), n=10), 0, 26, 4, 20)
