"""The synthetic corpus's grammar: sentences with known per-sentence latent factors.

Each sentence draws a topic (its own subject nouns, objects and verbs), a tense (verb form,
"will" for the future) and a length bucket (short: one clause; long: 2-3 clauses with
adjectives and a prepositional phrase). The subject noun comes right after "the", so the
topic is readable within the first ~12 characters of a sentence.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

TOPICS = ("sea", "kitchen", "market", "school")
TENSES = ("past", "present", "future")
LENGTHS = ("short", "long")
_SUBJECTS = (
    ("sailor", "captain", "fisher", "diver"),
    ("cook", "baker", "chef", "waiter"),
    ("banker", "trader", "broker", "dealer"),
    ("teacher", "student", "pupil", "tutor"),
)
_OBJECTS = (
    ("boat", "ship", "net", "anchor", "harbor", "island", "sail", "rope"),
    ("bread", "soup", "cake", "apple", "cheese", "oven", "plate", "pie"),
    ("stock", "bond", "fund", "share", "price", "loan", "coin", "deal"),
    ("book", "lesson", "exam", "essay", "class", "poem", "letter", "test"),
)
_VERBS = (  # (base, present 3rd person, past)
    (
        ("sail", "sails", "sailed"),
        ("row", "rows", "rowed"),
        ("tie", "ties", "tied"),
        ("mend", "mends", "mended"),
        ("steer", "steers", "steered"),
        ("drag", "drags", "dragged"),
        ("load", "loads", "loaded"),
        ("paint", "paints", "painted"),
    ),
    (
        ("bake", "bakes", "baked"),
        ("boil", "boils", "boiled"),
        ("taste", "tastes", "tasted"),
        ("slice", "slices", "sliced"),
        ("serve", "serves", "served"),
        ("fry", "fries", "fried"),
        ("eat", "eats", "ate"),
        ("wash", "washes", "washed"),
    ),
    (
        ("buy", "buys", "bought"),
        ("sell", "sells", "sold"),
        ("trade", "trades", "traded"),
        ("lend", "lends", "lent"),
        ("pay", "pays", "paid"),
        ("value", "values", "valued"),
        ("hedge", "hedges", "hedged"),
        ("price", "prices", "priced"),
    ),
    (
        ("read", "reads", "read"),
        ("teach", "teaches", "taught"),
        ("study", "studies", "studied"),
        ("write", "writes", "wrote"),
        ("grade", "grades", "graded"),
        ("learn", "learns", "learned"),
        ("copy", "copies", "copied"),
        ("mark", "marks", "marked"),
    ),
)
_ADJECTIVES = ("old", "new", "small", "big", "quiet", "busy", "young", "red")
_PREPOSITIONS = ("near", "with", "after", "before", "behind", "for")
_CONJUNCTIONS = ("and", "but", "while", "because")
SYNTHETIC_TRAIN, SYNTHETIC_VALID = 20_000, 2_000
STREAM_TRAIN, STREAM_VALID, STREAM_PROBE, STREAM_TEST = 0, 1, 2, 3  # STREAM_TEST: words only


def _sentence(topic: int, tense: int, long_: int, draws: list[int]) -> str:
    """One sentence for the given factors; word choices come from `draws` (uniform ints)."""
    u = iter(draws)

    def pick(words):
        return words[next(u) % len(words)]

    def clause(adjective: bool) -> list[str]:
        subject = pick(_SUBJECTS[topic])
        base, present, past = pick(_VERBS[topic])
        words = ["the", subject, (past, present, "will " + base)[tense], "the"]
        if adjective or next(u) % 2:
            words.append(pick(_ADJECTIVES))
        return words + [pick(_OBJECTS[topic])]

    if not long_:
        words = clause(adjective=False)
    else:
        words = clause(adjective=True) + [
            pick(_PREPOSITIONS),
            "the",
            pick(_ADJECTIVES),
            pick(_OBJECTS[topic]),
        ]
        for _ in range(1 + next(u) % 2):
            words += [pick(_CONJUNCTIONS)] + clause(adjective=True)
    return " ".join(words) + " .\n"


def generate_sentences(seed: int, n: int, stream: int) -> tuple[list[str], dict[str, np.ndarray]]:
    if seed < 0 or n < 0:
        raise DataError(f"synthetic text needs seed >= 0 and n_sentences >= 0, got {seed}, {n}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))
    factors = {
        "topic": rng.integers(0, len(TOPICS), n),
        "tense": rng.integers(0, len(TENSES), n),
        "length": rng.integers(0, len(LENGTHS), n),
    }
    draws = rng.integers(0, 1 << 30, size=(n, 20)).tolist()  # a long sentence uses at most 18
    rows = zip(
        factors["topic"].tolist(), factors["tense"].tolist(), factors["length"].tolist(), draws
    )
    sentences = [_sentence(topic, tense, long_, d) for topic, tense, long_, d in rows]
    return sentences, {k: v.astype(np.int64) for k, v in factors.items()}


def synthetic_text(seed: int = 0, n_sentences: int = 20000) -> tuple[str, dict[str, np.ndarray]]:
    """`n_sentences` lines of grammar text for `seed`, and each sentence's latent factors:
    {"topic": 0..3, "tense": 0..2 (past, present, future), "length": 0..1 (short, long)},
    arrays aligned with `text.splitlines()`."""
    sentences, factors = generate_sentences(seed, n_sentences, STREAM_TRAIN)
    return "".join(sentences), factors


def synthetic_probe_set(
    seed: int, n: int, length: int, vocab
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n fragments (n, length) int64 of freshly generated text, each starting at the start of
    a sentence (running on into the next sentences when it is shorter; no padding), and the
    factors of that first sentence: labels for a probe on a VAE's posterior means."""
    if length < 1:
        raise DataError(f"synthetic_probe_set needs length >= 1, got {length}")
    extra = length // 20 + 2  # the shortest sentence has more than 20 characters
    sentences, factors = generate_sentences(seed, n + extra, STREAM_PROBE)
    starts = np.cumsum([0] + [len(s) for s in sentences[:n]])[:n]
    ids = vocab.encode("".join(sentences)).astype(np.int64)
    fragments = ids[starts[:, None] + np.arange(length)]  # (n, length)
    return fragments, {k: v[:n] for k, v in factors.items()}
