"""Word-level corpora (tokens=word): tokenisation, the split rules, sentence batches and their
padding, the recipe's schedule (KL start, decay on plateau, model selection), the field's
measures, and the ptb-words study's smoke run."""

from __future__ import annotations

import base64
import json
import math
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from conftest import ROOT, run_vaestudy
from textvae_core.checkpoint import load_checkpoint
from textvae_core.config import ConfigError, make_config
from textvae_core.data import load_corpus
from textvae_core.errors import DataError
from textvae_core.evaluation import Evaluator, unigram_sentence_nats
from textvae_core.losses import KLSchedule, sequence_nll
from textvae_core.models import build_model
from textvae_core.tokens import PAD, UNK
from textvae_core.train import Trainer, fit
from textvae_core.vocab import vocabulary_from_json
from textvae_core.words import (
    EOS,
    SentenceBatcher,
    WordVocabulary,
    fixed_batches,
    split_lines,
)

SHARED = ROOT.parent / "shared" / "data"
needs_ptb = pytest.mark.skipif(
    not (SHARED / "ptb" / "ptb.test.txt").is_file(), reason=f"PTB files not found in {SHARED}"
)

SUBJECTS = ("the cat", "a dog", "my aunt", "the old man", "our teacher")
VERBS = {"ate": ("the fish", "an apple"), "read": ("a book", "the paper", "a long letter")}


def _sentence(rng: random.Random) -> str:
    """Structured sentences: a verb fixes its objects, so a word model beats the unigram."""
    verb = rng.choice(sorted(VERBS))
    tail = " and slept" if rng.random() < 0.3 else ""
    return f"{rng.choice(SUBJECTS)} {verb} {rng.choice(VERBS[verb])}{tail} ."


def write_corpus(folder: Path, n: tuple[int, int, int] = (600, 80, 80), seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in zip(("train", "valid", "test"), n):
        (folder / f"{name}.txt").write_text("\n".join(_sentence(rng) for _ in range(count)) + "\n")
    return folder


def word_config(corpus: Path, **extra):
    values = dict(
        corpus=str(corpus),
        tokens="word",
        embed=16,
        init="default",
        hidden=32,
        latent=8,
        batch_size=16,
        eval_every=0,
        eval_batches=0,
        steps=60,
        mi_pool=0,
        lstm_cell="fused",
    )
    values.update(extra)
    return make_config(values.pop("model", "lstm"), "tiny", values)


# --- tokenisation and splits ------------------------------------------------------------------
def test_word_tokenisation_round_trips(tmp_path):
    folder = write_corpus(tmp_path / "c")
    corpus = load_corpus(str(folder), tokens="word")
    lines = (folder / "valid.txt").read_text().splitlines()
    assert len(corpus.valid) == len(lines)
    for i in (0, 7, len(lines) - 1):
        ids = corpus.valid.ids[corpus.valid.offsets[i] : corpus.valid.offsets[i + 1]]
        assert ids[-1] == EOS and EOS not in ids[:-1]
        assert corpus.vocab.decode(ids) == " ".join(lines[i].split())
    # the vocabulary travels as JSON (checkpoints, logged models) and comes back the same
    again = vocabulary_from_json(corpus.vocab.to_json())
    assert isinstance(again, WordVocabulary) and again == corpus.vocab


def test_vocab_cap_keeps_frequent_words_and_maps_the_rest_to_unk():
    sentences = [["a", "b", "a", "<unk>"], ["c", "a", "b"], ["d"]]
    vocab = WordVocabulary.from_sentences(sentences, cap=4)  # <eos>, <unk>, a, b
    assert vocab.words == ("<eos>", "a", "b") and vocab.size == 4 + 3
    assert vocab.encode_sentence(["a", "c", "<unk>", "b"])[1:3] == [UNK, UNK]
    assert vocab.decode(vocab.encode_sentence(["d", "a"])) == "<unk> a"
    with pytest.raises(DataError, match="vocab_size=2 does not fit"):
        WordVocabulary.from_sentences(sentences, cap=2)
    with pytest.raises(ConfigError, match="vocab_size"):
        make_config("lstm", "tiny", {"vocab_size": 10})  # characters have no word cap


def test_single_file_is_split_80_10_10_by_lines(tmp_path):
    rng = random.Random(1)
    lines = [_sentence(rng) for _ in range(50)]
    path = tmp_path / "one.txt"
    path.write_text("\n\n".join(lines) + "\n")  # blank lines are not sentences
    corpus = load_corpus(str(path), tokens="word")
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (40, 5, 5)
    train, valid, test = split_lines(list(range(3)))
    assert (train, valid, test) == ([0], [1], [2])
    last = corpus.test.ids[corpus.test.offsets[-2] :]
    assert corpus.vocab.decode(last) == " ".join(lines[-1].split())


def test_bad_word_corpora_are_one_line_and_exit_2(tmp_path):
    folder = write_corpus(tmp_path / "c")
    (folder / "test.txt").write_text("\n  \n")  # an empty split
    with pytest.raises(DataError, match="the test split has no sentences"):
        load_corpus(str(folder), tokens="word")
    runner = CliRunner()
    for sets, message in (
        ([f"corpus={folder}"], "the test split has no sentences"),
        ([f"corpus={write_corpus(tmp_path / 'd')}", "vocab_size=2"], "vocab_size=2 is not allowed"),
    ):
        args = ["train", "lstm", "--preset", "tiny", "--set", "tokens=word"]
        args += [a for s in sets for a in ("--set", s)]
        res = runner.invoke(cli, [*args, "--out", str(tmp_path / "out")])
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1


# --- batches and padding ----------------------------------------------------------------------
@pytest.mark.parametrize("model", ["lstm", "hybrid-lstm", "conv"])
def test_a_sentence_scores_the_same_alone_and_in_a_padded_batch(tmp_path, model):
    folder = write_corpus(tmp_path / "c")
    extra = dict(model=model, length=24, conv_channels=(8, 16), deconv_out=16)
    cfg = word_config(folder, **extra)
    corpus = load_corpus(str(folder), tokens="word")
    torch.manual_seed(0)
    net = build_model(cfg, corpus.vocab.size).eval()
    batch = next(
        x for _, x in fixed_batches(corpus.valid, 16) if len(set((x != PAD).sum(1).tolist())) > 1
    )
    lengths = (batch != PAD).sum(1)
    with torch.no_grad():
        together = sequence_nll(net(batch, sample=False).logits, batch)
        for row in range(batch.shape[0]):
            alone = batch[row : row + 1, : lengths[row]]
            own = sequence_nll(net(alone, sample=False).logits, alone)
            torch.testing.assert_close(own[0], together[row], rtol=1e-5, atol=1e-4)


def test_batches_cover_each_epoch_once_and_resume_where_they_left_off(tmp_path):
    corpus = load_corpus(str(write_corpus(tmp_path / "c")), tokens="word")
    a = SentenceBatcher(corpus.train, 32, seed=3)
    epoch = [a.sample() for _ in range(a.steps_per_epoch)]
    assert sum(x.shape[0] for x in epoch) == len(corpus.train) == 600
    tokens = sum(int((x != PAD).sum()) for x in epoch)
    assert tokens == corpus.train.tokens  # every sentence once, padding aside
    for _ in range(5):
        a.sample()
    b = SentenceBatcher(corpus.train, 32, seed=99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for _ in range(a.steps_per_epoch + 3):  # across the next epoch's start
        assert torch.equal(a.sample(), b.sample())


# --- measures ---------------------------------------------------------------------------------
def test_ppl_is_exp_of_total_nll_over_tokens_and_nll_is_rec_plus_kl(tmp_path):
    folder = write_corpus(tmp_path / "c")
    cfg = word_config(folder, iw_samples=3, iw_sentences=20)
    corpus = load_corpus(str(folder), tokens="word")
    torch.manual_seed(0)
    net = build_model(cfg, corpus.vocab.size)
    m = Evaluator(net, corpus, cfg, torch.device("cpu")).evaluate(cfg.iw_samples, split="valid")
    tokens = sum(len(line.split()) + 1 for line in (folder / "valid.txt").read_text().splitlines())
    assert m["sentences"] == 80
    assert m["ppl"] == pytest.approx(math.exp(m["nll_nats"] * 80 / tokens), rel=1e-9)
    assert m["nll_nats"] == pytest.approx(m["rec_nats"] + m["kl_nats"], rel=1e-9)
    assert m["iw_sentences"] == 20 and m["iw_nll_nats"] > 0
    # the unigram floor: the training tokens' frequencies, summed over each valid sentence
    counts = {}
    for line in (folder / "train.txt").read_text().splitlines():
        for w in [*line.split(), "<eos>"]:
            counts[w] = counts.get(w, 0) + 1
    total = sum(counts.values()) + corpus.vocab.size - UNK  # add-one over UNK and every word
    by_hand = (
        -sum(
            math.log((counts.get(w, 0) + 1) / total)
            for line in (folder / "valid.txt").read_text().splitlines()
            for w in [*line.split(), "<eos>"]
        )
        / 80
    )
    assert unigram_sentence_nats(corpus) == pytest.approx(by_hand, rel=1e-9)


def test_a_word_lstm_vae_beats_the_unigram_nll(tmp_path):
    """Within a fixed budget (300 steps of 16 sentences), the valid NLL falls below the
    training tokens' unigram NLL by more than 20%."""
    folder = write_corpus(tmp_path / "c")
    cfg = word_config(folder, steps=300, eval_every=100, lr=3e-3)
    trainer = fit(cfg)
    final = trainer.history[-1].metrics
    unigram = final["valid/unigram_nats"]
    assert final["valid/nll_nats"] < 0.8 * unigram, (final["valid/nll_nats"], unigram)
    assert "test/nll_nats" in final and not any("test/" in k for k in trainer.history[0].metrics)


# --- the recipe's schedule --------------------------------------------------------------------
def test_kl_start_rises_at_the_ramps_slope_and_caps_at_one():
    sched = KLSchedule(start=0, end=100, initial=0.1)
    assert sched.weight_at(0) == pytest.approx(0.1)
    assert sched.weight_at(50) == pytest.approx(0.6)
    assert sched.weight_at(90) == 1.0 and sched.weight_at(500) == 1.0


def test_plateau_halves_lr_goes_back_to_the_best_and_stops_at_the_last_decay(tmp_path):
    """texar's rule: at a decay the model and optimiser go back to the best report's and the
    lr becomes half the best report's, so a second plateau without a new best keeps lr / 2."""
    folder = write_corpus(tmp_path / "c")
    cfg = word_config(folder, plateau=2, plateau_decays=3, select_best=True)
    trainer = Trainer(cfg)
    selection = trainer.selection

    def observe(*values):
        for v in values:
            trainer.train_step()  # the model moves on between reports
            selection.observe({"nll_nats": v}, step=trainer.step)

    observe(10.0)  # the best: its weights are kept
    best = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    observe(11.0)
    assert selection.decays == 0 and trainer.lr == pytest.approx(cfg.lr)
    observe(12.0)  # 2 reports without a better bound: decay, back to the best
    assert selection.decays == 1 and trainer.lr == pytest.approx(cfg.lr / 2)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, best[k]), k
    observe(10.5, 10.2)  # a plateau again, no new best: back to the best, lr half of its
    assert selection.decays == 2 and trainer.lr == pytest.approx(cfg.lr / 2)
    observe(9.0)  # a new best at lr / 2
    assert not trainer.stopped and selection.step == trainer.step
    observe(9.5, 9.6)  # the third decay halves the new best's lr, and is the last
    assert selection.decays == 3 and trainer.lr == pytest.approx(cfg.lr / 4) and trainer.stopped


def test_a_plateau_stop_ends_training_with_a_final_report_of_the_selected_model(tmp_path):
    folder = write_corpus(tmp_path / "c")
    # lr so high that the bound stops improving fast: the plateau ends the run early
    cfg = word_config(folder, steps=2000, eval_every=10, plateau=1, plateau_decays=2, lr=0.05)
    trainer = fit(cfg)
    last = trainer.history[-1]
    assert last.final and trainer.stopped and last.step < cfg.steps
    assert last.metrics["train/plateau_decays"] == 2
    selected = last.metrics["valid/selected_step"]
    best = min(r.metrics["valid/nll_nats"] for r in trainer.history[:-1])
    at_selected = [r for r in trainer.history if r.step == selected][0]
    assert at_selected.metrics["valid/nll_nats"] == pytest.approx(best)


def test_a_word_run_resumes_to_the_same_numbers_and_its_checkpoint_keeps_the_vocab(tmp_path):
    folder = write_corpus(tmp_path / "c")
    cfg = word_config(folder, steps=40, eval_every=10, plateau=1, select_best=True)
    whole = fit(cfg)
    ckpt = tmp_path / "ckpt.pt"

    def stop_at_20(rep, trainer):
        if rep.step == 20:
            trainer.save(ckpt)

    fit(cfg, on_report=stop_at_20)
    resumed = fit(cfg, resume_from=ckpt)

    def numbers(rep):  # all but the clock's
        return {k: v for k, v in rep.metrics.items() if not k.endswith("_per_s")}

    assert len(whole.history) == len(resumed.history) == 4
    for a, b in zip(whole.history, resumed.history):
        assert a.step == b.step and numbers(a) == pytest.approx(numbers(b), nan_ok=True)
    model, config, vocab = load_checkpoint(ckpt)
    assert isinstance(vocab, WordVocabulary) and vocab == whole.vocab and config.tokens == "word"


@needs_ptb
def test_ptb_words_has_the_anchors_counts():
    corpus = load_corpus("ptb", SHARED, fetch=False, tokens="word", vocab_size=10_000)
    assert len(corpus.test) == 3761 and corpus.test.tokens - len(corpus.test) == 78_669
    assert len(corpus.vocab.words) + 1 == 10_000  # + <unk>
    assert np.asarray(corpus.train.lengths).max() == 83  # no sentence is cut for the LSTM VAE


# --- the study --------------------------------------------------------------------------------
@pytest.mark.integration
def test_ptb_words_smoke_study_runs_and_reports_the_test_split(tmp_path):
    folder = tmp_path / "ptb-words"
    run_vaestudy("run", "ptb-words", "--preset", "smoke", "--storage", str(folder))
    import pyarrow.parquet as pq

    (row,) = pq.read_table(folder / "summary.parquet").to_pylist()
    assert row["status"] == "completed" and row["test_nll_nats"] > 0
    assert math.isfinite(row["test_ppl"]) and math.isfinite(row["test_kl_nats"])
    report = (folder / "report.md").read_text()
    assert "anchor-test-nll" in report and "(single seed)" in report and "test NLL" in report
    # MLflow: the trial's curves in nats per sentence, the test split logged once, and the
    # study's shared view charting the word measures
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    run = client.get_run(row["mlflow_run_id"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid/nll_nats")] == [
        20,
        40,
        60,
    ]
    assert len(client.get_metric_history(run.info.run_id, "test/nll_nats")) == 1
    assert "valid/total_bpc" not in run.data.metrics
    exp = client.get_experiment(run.info.experiment_id)
    view = json.loads(exp.tags["mlflow.sharedViewState.vaestudy-curves"])
    state = zlib.decompress(base64.b64decode(view["state"][len("deflate;") :])).decode()
    assert "valid/nll_nats" in state and "valid/kl_bpc" not in state


@pytest.mark.parametrize(
    "variant", ["hybrid", "lstm+free-bits", "lstm+cyclical", "lstm+aggressive", "lstm+bn-vae"]
)
def test_every_ptb_words_variant_trains_on_words(variant):
    """The `variants` preset's models (the hybrid on padded sentences, the remedied LSTM VAEs)
    train on a word corpus: the smoke sizes, 10 steps, one report with the word measures."""
    from studies.loading import load_study
    from textvae_core import fit

    study = load_study("ptb-words")
    assert variant in study.grid_for("variants")["variant"]
    config = study.trial_config("smoke", {"variant": variant}, {"steps": 10, "eval_every": 10})
    m = fit(config).history[-1].metrics
    assert math.isfinite(m["valid/nll_nats"]) and m["valid/nll_nats"] > 0, m
    assert m["valid/nll_nats"] == pytest.approx(m["valid/rec_nats"] + m["valid/kl_nats"])
    assert config.model == ("hybrid-lstm" if variant == "hybrid" else "lstm")
