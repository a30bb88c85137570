"""The reviews of lab 3 (``academy/03-rnn``): the grammar that writes them, and what a model can get right on them.

A review is ``"<opener><clause>[, <aside>, ...,] but <clause>, <aside><ending>"``; each clause has a sentiment word,
flipped when "not" precedes it, and the clause after "but" decides the label.  The lab's ``make_reviews`` (given in
the learner's file) is this grammar; the grader draws from its own copy here (``tests/academy/`` checks that the two
write the same reviews), so that editing ``lab.py`` cannot change what it is graded on.

    "the café was not great, to be honest, but the 寿司 seemed schön, this time 😀"
     └── first clause ──┘└─── aside ───┘     └─ second clause: decides ─┘└ aside ┘
                        (far reviews only)

Pure Python: the grader encodes the texts itself.
"""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import product
from typing import NamedTuple

SUBJECTS = ["the café", "our hotel", "the crème brûlée", "this film", "le service", "the ramen 🍜", "the staff",
            "die Suppe", "the plot", "the 寿司", "my room", "the tapas", "the tram", "the app"]
VERBS = ["was", "is", "seemed", "felt", "looked"]
POSITIVE = ["good", "great", "lovely", "délicieux", "superb", "schön"]
NEGATIVE = ["bad", "awful", "bland", "rude", "horrible", "schlecht"]
OPENERS = ["", "", "", "honestly, ", "well… ", "ok so ", "¡ay! "]
ASIDES = ["to be honest", "if I am fair", "on the whole", "after a long wait", "for a Tuesday", "at first",
          "as my friend said", "in the evening", "all things considered", "this time", "ehrlich gesagt", "la verdad",
          "正直に言うと", "à vrai dire"]
ENDINGS = ["", "", ".", "!", " 😀", " 🙁", "..."]
NEGATED = 0.3  # the chance that a clause is negated
FAR = 0.5  # the chance that an aside stands between the first clause and "but"


class Review(NamedTuple):
    text: str
    label: int
    swapped: str  # the same review, its two clauses the other way round: the same bag of bytes
    swapped_label: int  # ... labelled by its new second clause
    far: bool  # an aside between the first clause and "but": no 9-byte window sees a clause's word and "but"


def clause(rng: random.Random) -> tuple[str, int]:
    """One clause ("the café was not great") and its sentiment: 1 positive, 0 negative."""
    positive = rng.random() < 0.5
    negated = rng.random() < NEGATED
    word = rng.choice(POSITIVE if positive else NEGATIVE)
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {'not ' if negated else ''}{word}", int(positive != negated)


def _aside(rng: random.Random, parts: int) -> str:
    return "".join(f", {rng.choice(ASIDES)}" for _ in range(parts))


def draw_reviews(n: int, seed: int) -> list[Review]:
    """The lab's reviews ("<clause>[, <aside>,] but <clause>, <aside>"), each with its clauses swapped too."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        opener = rng.choice(OPENERS)
        (first, first_label), (second, second_label) = clause(rng), clause(rng)
        before = (_aside(rng, rng.choice((1, 2))) + ",") if rng.random() < FAR else ""
        after = _aside(rng, 1) + rng.choice(ENDINGS)
        rows.append(Review(f"{opener}{first}{before} but {second}{after}", second_label,
                           f"{opener}{second}{before} but {first}{after}", first_label, bool(before)))
    return rows


def reviews(n: int, seed: int, swapped: bool = False) -> tuple[list[str], list[int]]:
    """The lab's make_reviews(n, seed): texts and labels; ``swapped`` writes each review's two clauses the other way
    round (and labels it by its new second clause): the same bag of words."""
    rows = draw_reviews(n, seed)
    if swapped:
        return [r.swapped for r in rows], [r.swapped_label for r in rows]
    return [r.text for r in rows], [r.label for r in rows]


def order_probes(n: int = 200) -> tuple[list[str], list[str]]:
    """``n`` pairs of reviews, "<a> but <b>" and "<b> but <a>", that end on their second clause: a model that reads
    the order, trained or not, gives them different outputs; an order-blind one gives them the same."""
    rng = random.Random(20)
    pairs = [(a, b) for a, b in ((clause(rng)[0], clause(rng)[0]) for _ in range(n)) if a != b]
    return [f"{a} but {b}" for a, b in pairs], [f"{b} but {a}" for a, b in pairs]


def order_blind_ceiling(negated: float = NEGATED) -> float:
    """The best accuracy of any model that ignores word order (a bag of words, a bag of bytes): exact, by
    enumerating both clauses' polarity and negation.  It sees which sentiment words and how many "not" a review
    has, never which clause they are in: the clauses are drawn alike, so both orders are equally likely."""
    mass: dict[tuple[tuple[int, int], int], list[float]] = defaultdict(lambda: [0.0, 0.0])  # bag -> P(bag, y)
    for p1, n1, p2, n2 in product((0, 1), repeat=4):
        prob = 0.25 * (negated if n1 else 1 - negated) * (negated if n2 else 1 - negated)
        mass[(min(p1, p2), max(p1, p2)), n1 + n2][p2 ^ n2] += prob
    return sum(max(joint) for joint in mass.values())


ORDER_BLIND_CEILING = order_blind_ceiling()  # 0.645: 0.75 when no clause or both are negated, 0.5 when one is
# On far reviews a 9-byte window sees each clause's sentiment ("not great" fits in it) but not which clause comes after
# "but": right when the two clauses agree (half of the reviews), a coin flip otherwise.
WINDOW_CEILING = 0.5 * 1.0 + 0.5 * 0.5
