"""The same config and seed give bit-identical metric histories for every model on CPU,
compared against values recorded before a refactor (tests/golden/record.py)."""

import json

import pytest

from tests.golden.record import GOLDEN, histories


@pytest.fixture(scope="module")
def measured():
    return histories()


@pytest.mark.parametrize("model", ["conv", "hybrid-lstm", "hybrid-bytenet", "lstm"])
def test_metric_histories_are_bit_identical_to_the_recorded_ones(measured, model):
    recorded = json.loads(GOLDEN.read_text())[model]
    assert [r["step"] for r in measured[model]] == [r["step"] for r in recorded] == [20, 40]
    for got, want in zip(measured[model], recorded):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == want[key], (model, got["step"], key)  # exact, not approximate
