"""The same config and seed give the same metric histories for every model, compared
against values recorded before a change (tests/golden/record.py). The histories run in
float64, so one recording holds on every host kind; they must agree to 1e-6 relative,
which float64 rounding differences (< 1e-7 after 40 steps) meet and any change to the
model's arithmetic, initialisation, data order or schedule does not.

The LSTM models' default runs (the LayerNorm cell) were recorded on its Python loop, and
hybrid-bytenet on torch ops before its highway layers had a compiled epilogue; the compiled
kernels and the fallback (VAESTUDY_LSTM_EXT=0) must both reproduce them."""

import math
import os

import pytest

from tests.golden.record import RUNS, histories, recording
from textvae_core import lstm_ext

COMPILED_RUNS = ("hybrid-lstm", "lstm", "hybrid-bytenet")  # the runs the compiled kernels change

REL = 1e-6
ABS = 1e-7  # for metrics near 0 (an MI estimate is a difference of terms of order 1)


@pytest.fixture(scope="module")
def measured():
    return histories()


@pytest.fixture(scope="module")
def measured_python_loop():
    os.environ[lstm_ext.ENV] = "0"
    try:
        return histories(COMPILED_RUNS)
    finally:
        del os.environ[lstm_ext.ENV]


def first_difference(got: list[dict], want: list[dict]):
    if [r["step"] for r in got] != [r["step"] for r in want]:
        return "steps", [r["step"] for r in got], [r["step"] for r in want]
    for g, w in zip(got, want):
        if g.keys() != w.keys():
            return "keys", sorted(g), sorted(w)
        for key in w:
            if (g[key] is None) != (w[key] is None):
                return g["step"], key, g[key], w[key]
            if w[key] is not None and not math.isclose(g[key], w[key], rel_tol=REL, abs_tol=ABS):
                return g["step"], key, g[key], w[key]
    return None


@pytest.mark.parametrize("model", list(RUNS))
def test_metric_histories_match_the_recorded_ones(measured, model):
    assert [r["step"] for r in measured[model]] == [20, 40]
    assert first_difference(measured[model], recording()["histories"][model]) is None


def test_the_histories_took_the_compiled_kernels():
    """The histories above ran the compiled kernels wherever a compiler is present (CI's)."""
    assert lstm_ext.status()["compiled"], lstm_ext.status()["why_not"]


@pytest.mark.parametrize("model", COMPILED_RUNS)
def test_the_fallback_matches_the_recording_too(measured_python_loop, model):
    got = measured_python_loop[model]
    assert first_difference(got, recording()["histories"][model]) is None


def test_the_comparison_catches_a_small_change(measured):
    """A history off by 1e-5 relative in one metric is caught."""
    changed = [dict(r) for r in measured["conv"]]
    changed[-1]["valid/kl_bpc"] *= 1 + 1e-5
    assert first_difference(changed, measured["conv"])[1] == "valid/kl_bpc"
