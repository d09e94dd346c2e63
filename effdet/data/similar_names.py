"""Class names that probably spell one class: the same words in another case or with other separators
(`licence_plate`, `Licence Plate`), a plural (`plate`, `plates`), an abbreviation (`lp` or `lic. plate` for
`licence plate`) or a typo (`raccoon`, `racoon`). A dataset that spells one class two ways trains two classes,
and the rare spelling drags the score down; `similar_classes` finds such pairs and proposes the `class_aliases`
that merge each rare spelling into the common one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from effdet.data.records import Problem, warning

SIMILAR_CLASS_NAMES = "similar_class_names"
"""The problem code of two class names that look like one class."""

_SEPARATORS = re.compile(r"[\s_\-./]+")


@dataclass(frozen=True)
class SimilarPair:
    """Two class names that look like one class: `alias` (fewer boxes) would merge into `name`."""

    alias: str
    name: str
    alias_boxes: int
    name_boxes: int
    reason: str


def words(name: str) -> list[str]:
    """The lower-case words of a class name, split at spaces, `_`, `-`, `.` and `/`."""
    return [word for word in _SEPARATORS.split(name.lower()) if word]


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning a into b."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def _abbreviates(short: list[str], full: list[str]) -> bool:
    """`lp` or `lic plate` for `licence plate`: the initials of a name of two or more words, or each word a
    prefix of the full name's word (at least one of them shortened)."""
    if len(full) >= 2 and len(short) == 1 and short[0] == "".join(word[0] for word in full):
        return True
    return (
        len(short) == len(full) >= 2
        and all(full_word.startswith(word) for word, full_word in zip(short, full, strict=True))
        and short != full
    )


def _typo(a: list[str], b: list[str]) -> bool:
    """One letter off in a word of five or more letters (two in one of nine or more); numbers must agree."""
    if len(a) != len(b) or re.findall(r"\d+", " ".join(a)) != re.findall(r"\d+", " ".join(b)):
        return False
    differing = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(differing) != 1:
        return False
    x, y = differing[0]
    shorter = min(len(x), len(y))
    allowed = 2 if shorter >= 9 else 1 if shorter >= 5 else 0
    return 0 < edit_distance(x, y) <= allowed


def why_similar(a: str, b: str) -> str | None:
    """Why two distinct class names look like one class ('case or separators', 'plural', 'abbreviation',
    'spelling'), or None when they look like different classes."""
    words_a, words_b = words(a), words(b)
    if not words_a or not words_b or a == b:
        return None
    if words_a == words_b:
        return "case or separators"
    if [_singular(w) for w in words_a] == [_singular(w) for w in words_b]:
        return "plural"
    if _abbreviates(words_a, words_b) or _abbreviates(words_b, words_a):
        return "abbreviation"
    if _typo(words_a, words_b):
        return "spelling"
    return None


def similar_classes(box_counts: dict[str, int]) -> list[SimilarPair]:
    """Pairs of class names (name -> boxes) that look like one class, each rare spelling paired with the most
    common name of its group (so the aliases of all pairs merge a group into one name, without chains);
    sorted by that name, then the alias."""
    names = sorted(box_counts, key=lambda name: (-box_counts[name], name))
    group: dict[str, str] = {}  # name -> the most common name it was found similar to
    reasons: dict[str, str] = {}
    for index, name in enumerate(names):
        for earlier in names[:index]:
            reason = why_similar(earlier, name)
            if reason is not None:
                group[name] = group.get(earlier, earlier)
                reasons[name] = reason
                break
    pairs = [
        SimilarPair(alias, name, box_counts[alias], box_counts[name], reasons[alias]) for alias, name in group.items()
    ]
    return sorted(pairs, key=lambda pair: (pair.name, pair.alias))


def similar_class_problems(box_counts: dict[str, int]) -> list[Problem]:
    """A `similar_class_names` warning per pair `similar_classes` finds, naming both classes with their box counts
    and carrying the merge as `class_aliases` (what the dashboard offers in one click)."""
    problems = []
    for pair in similar_classes(box_counts):
        aliases = {pair.alias: pair.name}
        message = (
            f"classes {json.dumps(pair.name)} ({pair.name_boxes} boxes) and {json.dumps(pair.alias)} "
            f"({pair.alias_boxes} boxes) look like one class ({pair.reason}); merge them with class_aliases "
            f"{json.dumps(aliases)} (PATCH /v1/datasets/{{id}}, or effdet convert --class-aliases)"
        )
        problems.append(warning("", SIMILAR_CLASS_NAMES, message).model_copy(update={"class_aliases": aliases}))
    return problems
