"""Every study's trial configs, built for every preset: per-model KL ramps (the LSTM VAE's
later than a hybrid's), the paper's LayerNorm LSTM, equal footing for compared baselines,
and three seeds for each grid study's cpu preset."""

import json

import pytest
from click.testing import CliRunner

from cli.main import cli
from studies.loading import builtin_studies, load_study
from studies.spec import PRESET_NAMES

STUDIES = list(builtin_studies())
# Studies that train a published recipe's model, not the paper's: their own cell, schedule and
# model (test_ptb_words_trains_texars_recipe); the paper's invariants below hold for the rest.
RECIPES = ("ptb-words",)
PAPER_STUDIES = [n for n in STUDIES if n not in RECIPES]
LSTM_MODELS = ("lstm", "hybrid-lstm")


def configs(study, preset):
    """Every trial config of a preset (a search study: one per model it can sample)."""
    if study.is_grid:
        return [study.trial_config(preset, p) for p in study.points(preset)]
    models = study.space["model"].choices if "model" in study.space else (study.model,)
    return [study.trial_config(preset, {"model": m}) for m in models]


@pytest.mark.parametrize("name", PAPER_STUDIES)
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_the_lstm_vae_ramps_later_than_a_hybrid_in_every_preset(name, preset):
    study = load_study(name)
    lstm = study.trial_config(preset, {"model": "lstm"})
    for hybrid in ("hybrid-lstm", "hybrid-bytenet"):
        other = study.trial_config(preset, {"model": hybrid})
        assert lstm.anneal_start > other.anneal_start and lstm.anneal_end > other.anneal_end
        assert other.anneal_end - other.anneal_start >= 0.2 * other.anneal_start
    assert lstm.anneal_end - lstm.anneal_start >= 0.2 * lstm.anneal_start
    # each trial's ramp is its own model's, whatever the study
    for config in configs(study, preset):
        own = study.trial_config(preset, {"model": config.model})
        assert (config.anneal_start, config.anneal_end) == (own.anneal_start, own.anneal_end)


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_every_lstm_of_every_preset_is_the_layernorm_cell(name):
    """The paper's LSTM in every trial of every preset of every paper study, `remedies`
    included, and `show --json` says so per model; the fused cell is never a preset's."""
    study = load_study(name)
    shown = json.loads(CliRunner().invoke(cli, ["show", name, "--json"]).output)
    for preset in study.presets:
        found = [c for c in configs(study, preset) if c.model in LSTM_MODELS]
        assert all(c.lstm_cell == "layernorm" for c in found), preset
        cells = shown["presets"][preset]["lstm_cells"]
        assert set(cells.values()) <= {"layernorm"}
        assert set(cells) == {c.model for c in found} or not study.is_grid


@pytest.mark.parametrize("name", PAPER_STUDIES)
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_trial_of_a_study_trains_the_same_number_of_steps(name, preset):
    study = load_study(name)
    assert len({c.steps for c in configs(study, preset)}) == 1
    # and every model it could train would too
    assert (
        len({study.trial_config(preset, {"model": m}).steps for m in LSTM_MODELS + ("conv",)}) == 1
    )


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_historyless_conv_and_lstm_have_the_same_latent_size(preset):
    study = load_study("historyless")
    sizes = {c.model: c.latent for c in configs(study, preset)}
    assert set(sizes) == {"conv", "lstm"} and sizes["conv"] == sizes["lstm"]
    if preset != "smoke":  # as released; smoke shrinks both alike
        assert sizes["conv"] == 100


@pytest.mark.parametrize("name", STUDIES)
def test_show_json_lists_grid_seeds_overrides_and_claims_with_controls(name):
    result = CliRunner().invoke(cli, ["show", name, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    study = load_study(name)
    for preset in PRESET_NAMES:
        p = shown["presets"][preset]
        if name not in RECIPES:  # the paper's per-model ramps
            assert set(p["model_overrides"]) >= {"lstm", "hybrid-lstm", "hybrid-bytenet"}
            assert (
                p["model_overrides"]["lstm"]["anneal_start"]
                > p["model_overrides"]["hybrid-lstm"]["anneal_start"]
            )
        if study.is_grid:
            declared = study.presets[preset].grid or study.grid  # the study file's own data
            assert p["grid"] == {k: list(v) for k, v in declared.items()}
            assert p["trials"] == len(study.points(preset)) * len(p["seeds"])
    if study.is_grid:
        assert shown["presets"]["cpu"]["seeds"] == ([0] if name in RECIPES else [0, 1, 2])
    assert [c["id"] for c in shown["claims"]] == [c.id for c in study.claims]
    for c, declared in zip(shown["claims"], study.claims):
        assert [k["text"] for k in c["controls"]] == [k.text for k in declared.controls]


def test_list_keeps_its_columns_apart():
    """`vaestudy list`: one row per built-in study, the name, what it reproduces and its title
    each starting at the same column on every row, with at least two spaces before each."""
    out = CliRunner().invoke(cli, ["list"]).output.splitlines()
    assert [line.split()[0] for line in out] == STUDIES
    for i, name in enumerate(STUDIES):
        study = load_study(name)
        line = out[i]
        what, title = line.index(study.reproduces, len(name)), line.rindex(study.title)
        assert line[what - 2 : what] == "  " and line[title - 2 : title] == "  ", line
        assert (what, title) == (
            out[0].index(load_study(STUDIES[0]).reproduces),
            out[0].rindex(load_study(STUDIES[0]).title),
        ), line


def test_ptb_words_trains_texars_recipe():
    """ptb-words: texar-pytorch's vae_text recipe in every preset (its plain cell, default
    initialisation, embeddings, dropout, KL start, decay on plateau, selection), one seed on cpu
    and three in paper; every epoch one report over the whole valid split."""
    study = load_study("ptb-words")
    for preset in ("cpu", "paper"):
        (config,) = configs(study, preset)
        assert config.model == "lstm" and config.tokens == "word" and config.corpus == "ptb"
        assert (config.lstm_cell, config.init, config.embed, config.hidden, config.latent) == (
            "fused",
            "default",
            256,
            256,
            32,
        )
        assert config.z_every_step and config.dropout == 0.0
        assert (config.embed_dropout, config.output_dropout) == (0.5, 0.5)
        assert (config.batch_size, config.lr, config.grad_clip) == (32, 1e-3, 5.0)
        assert (config.kl_start, config.anneal_start, config.anneal_end) == (0.1, 0, 13_146)
        assert (config.plateau, config.plateau_factor, config.plateau_decays) == (2, 0.5, 5)
        assert config.select_best and config.eval_every == 0 and config.eval_batches == 0
    assert configs(study, "paper")[0].steps == 100 * 1315
    shown = json.loads(CliRunner().invoke(cli, ["show", "ptb-words", "--json"]).output)
    assert shown["presets"]["cpu"]["seeds"] == [0] and shown["presets"]["paper"]["seeds"] == [
        0,
        1,
        2,
    ]
