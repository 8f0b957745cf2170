"""The same config and seed give bit-identical metric histories for every model on CPU,
compared against values recorded before a refactor (tests/golden/record.py). CPU kernels
differ between host kinds in their last bits, so a run must equal, exactly, one of the
recordings (each made from a reference commit on one kind of host)."""

import pytest

from tests.golden.record import histories, recordings


@pytest.fixture(scope="module")
def measured():
    return histories()


def first_difference(got: list[dict], want: list[dict]):
    if [r["step"] for r in got] != [r["step"] for r in want]:
        return "steps", [r["step"] for r in got], [r["step"] for r in want]
    for g, w in zip(got, want):
        if g.keys() != w.keys():
            return "keys", sorted(g), sorted(w)
        for key in w:
            if g[key] != w[key]:  # exact, not approximate
                return g["step"], key, g[key], w[key]
    return None


@pytest.mark.parametrize("model", ["conv", "hybrid-lstm", "hybrid-bytenet", "lstm"])
def test_metric_histories_are_bit_identical_to_the_recorded_ones(measured, model):
    assert [r["step"] for r in measured[model]] == [20, 40]
    differences = {rec["host"]: first_difference(measured[model], rec["histories"][model]) for rec in recordings()}
    assert None in differences.values(), differences
