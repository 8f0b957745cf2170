"""Every measure a run reports, defined once: its name, the splits it is reported under, its
unit and which way is better. Every layer names measures through this module: the Trainer's
reports (`prefixed` refuses a name it does not know), the history table, the collapse rule,
the study summary and the claims' checks, tracking and the report. A metric's key is
"<split>/<name>" ("valid/kl_bpc"), as MLflow runs and committed results have always read it;
the learning rate is the one key without a split ("lr").

A new measure is one more `Measure(...)` in `VOCABULARY`; a study file may name a measure by its
key string, and the study is checked against this vocabulary when it loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

SPLITS = ("train", "valid", "test")  # test: a word corpus's final report only
# splits whose rows a history table holds only for reports that measured them
SPARSE_SPLITS = ("test",)
GROUPS = ("time", "system")  # per-trial timings and the worker's system measures
UNITS = (
    "bits/char",
    "nats",
    "nats/sentence",
    "perplexity",
    "count",
    "share",
    "variance",
    "seconds",
    "megabytes",
    "percent",
    "per second",
    "weight",
    "step",
    "accuracy",
)
DIRECTIONS = ("lower", "higher", "neither")

T, V, TV, VT = ("train",), ("valid",), ("train", "valid"), ("valid", "test")


@dataclass(frozen=True)
class Measure:
    name: str
    splits: tuple[str, ...]  # where it is reported (SPLITS or GROUPS); () for "lr" alone
    unit: str
    direction: str  # which way is better: "lower", "higher" or "neither"
    doc: str
    # the study summary's measures: "char" and "word" corpora's final valid (and test) values
    summary: str | None = None
    history: bool = True  # a column of the Trainer's history table

    def __post_init__(self) -> None:
        if self.unit not in UNITS or self.direction not in DIRECTIONS:
            raise ValueError(
                f"measure {self.name}: unit {self.unit!r}, direction {self.direction!r}"
            )
        if any(s not in SPLITS + GROUPS for s in self.splits):
            raise ValueError(f"measure {self.name}: splits {self.splits}")

    def key(self, split: str | None = "valid") -> str:
        """The metric's key under `split` ("valid/kl_bpc"); "lr" has no split."""
        if not self.splits:
            return self.name
        if split not in self.splits:
            raise ValueError(
                f"measure {self.name!r} is not reported under {split!r}: it is under "
                f"{', '.join(self.splits)}"
            )
        return f"{split}/{self.name}"


_PROBES = tuple(
    Measure(
        f"probe_{factor}_{kind}",
        V,
        "accuracy",
        "higher" if kind == "acc" else "neither",
        f"synthetic corpus: a linear probe's accuracy on the {factor} factor"
        if kind == "acc"
        else f"synthetic corpus: the {factor} probe's majority-class accuracy",
    )
    for factor in ("topic", "tense", "length")
    for kind in ("acc", "chance")
)

VOCABULARY: tuple[Measure, ...] = (
    # --- characters: bits per character ------------------------------------------------------
    Measure("total_bpc", TV, "bits/char", "lower", "rec + KL: the bound at KL weight 1", "char"),
    Measure("rec_bpc", TV, "bits/char", "lower", "reconstruction, Eq. 3", "char"),
    Measure("kl_bpc", TV, "bits/char", "neither", "KL(q(z|x) || p(z))", "char"),
    Measure("aux_bpc", TV, "bits/char", "lower", "the hybrids' auxiliary term, Eq. 2", "char"),
    Measure("kl_weight", T, "weight", "neither", "the KL term's weight at the report"),
    Measure("chars_per_s", T, "per second", "higher", "training characters per second"),
    Measure("active_units", VT, "count", "higher", "dimensions with Var_x(mu) > 0.01", "char"),
    Measure("mutual_info", VT, "nats", "higher", "I(x; z) on the report's examples", "char"),
    Measure("z_gain_bpc", V, "bits/char", "higher", "rec with another's z minus own", "char"),
    Measure("iw_nll_bpc", V, "bits/char", "lower", "final: importance-weighted bound", "char"),
    Measure("mi_pool", VT, "nats", "higher", "final: I(x; z) over a larger pool", "char"),
    Measure("unigram_bpc", V, "bits/char", "neither", "final: training chars' entropy", "char"),
    # --- remedies' own measures ---------------------------------------------------------------
    Measure("aggressive", T, "share", "neither", "aggressive mode still on (1) or over (0)"),
    Measure("encoder_updates", T, "count", "neither", "encoder-only updates since the report"),
    Measure("encoder_s", T, "seconds", "neither", "their seconds"),
    Measure("bn_mu_var", V, "variance", "neither", "BN-VAE: batch variance of mu"),
    Measure("free_bits_active", T, "share", "neither", "free bits: dimensions at the floor"),
    *_PROBES,
    # --- words: nats per sentence, perplexity per token ---------------------------------------
    Measure("nll_nats", ("train", *VT), "nats/sentence", "lower", "rec + KL per sentence", "word"),
    Measure("rec_nats", ("train", *VT), "nats/sentence", "lower", "reconstruction", "word"),
    Measure("kl_nats", ("train", *VT), "nats/sentence", "neither", "KL per sentence", "word"),
    Measure("aux_nats", ("train", *VT), "nats/sentence", "lower", "hybrids' aux term", "word"),
    Measure("ppl", ("train", *VT), "perplexity", "lower", "exp(total NLL / tokens)", "word"),
    Measure("tokens_per_s", T, "per second", "higher", "training tokens per second"),
    Measure("z_gain_nats", VT, "nats/sentence", "higher", "rec with another's z - own", "word"),
    Measure("iw_nll_nats", VT, "nats/sentence", "lower", "final: IW bound", "word"),
    Measure("iw_ppl", VT, "perplexity", "lower", "final: the IW bound's perplexity", "word"),
    Measure("iw_sentences", VT, "count", "neither", "final: sentences of the IW bound"),
    Measure("unigram_nats", V, "nats/sentence", "neither", "final: unigram NLL", "word"),
    Measure("sentences", VT, "count", "neither", "sentences measured"),
    Measure("truncated", VT, "count", "neither", "sentences cut at the model's max", "word"),
    Measure("plateau_decays", T, "count", "neither", "lr decays on plateau so far", "word"),
    Measure("selected_step", V, "step", "neither", "final: the selected model's step", "word"),
    # --- outside the history table --------------------------------------------------------
    Measure("lr", (), "weight", "neither", "the learning rate at the report", history=False),
    *(
        Measure(f"{part}_s", ("time",), "seconds", "neither", f"final: {part} seconds", None, False)
        for part in ("train", "eval", "final", "checkpoint", "report")
    ),
    Measure("process_cpu_percent", ("system",), "percent", "neither", "CPU", None, False),
    Measure("process_rss_megabytes", ("system",), "megabytes", "neither", "RSS", None, False),
    Measure("gpu_memory_megabytes", ("system",), "megabytes", "neither", "CUDA peak", None, False),
    Measure("gpu_utilization_percent", ("system",), "percent", "neither", "NVML", None, False),
)
MEASURES: dict[str, Measure] = {m.name: m for m in VOCABULARY}
HISTORY_NAMES = tuple(m.name for m in VOCABULARY if m.history)  # the history table's columns
CHAR_SUMMARY = tuple(m.name for m in VOCABULARY if m.summary == "char")
WORD_SUMMARY = tuple(m.name for m in VOCABULARY if m.summary == "word")
# the word corpora's test measures, as the summary names them ("test_nll_nats")
TEST_SUMMARY = tuple(f"test_{m.name}" for m in VOCABULARY if "test" in m.splits and m.summary)


def measure(name: str) -> Measure:
    if name not in MEASURES:
        raise ValueError(f"{name!r} is not a measure: expected one of {', '.join(MEASURES)}")
    return MEASURES[name]


def key(split: str | None, name: str) -> str:
    """A metric's key, checked against the vocabulary: key("valid", "kl_bpc")."""
    return measure(name).key(split)


def parse_key(text: str) -> tuple[str | None, Measure]:
    """(split, measure) of a metric key such as "valid/kl_bpc"; ValueError if it names none."""
    split, _, name = text.rpartition("/")
    found = measure(name)
    found.key(split or None)  # raises unless reported under that split
    return split or None, found


def prefix(split: str) -> str:
    """The keys' prefix of a split or group: "valid/", "system/"."""
    if split not in SPLITS + GROUPS:
        raise ValueError(f"{split!r} is not a split or group: expected one of {SPLITS + GROUPS}")
    return f"{split}/"


def prefixed(split: str, values: Mapping[str, float]) -> dict[str, float]:
    """`values` ({name: value}) keyed "<split>/<name>", each name checked."""
    return {key(split, k): v for k, v in values.items()}
