"""Parse the FACS action-unit strings of the annotation sheets into sets of ``ActionUnit``.

The grammar (every rule is documented with an example in ``docs/annotations.md``):

* a cell is terms joined by ``+`` (spaces around ``+`` are ignored): ``4+7``, ``L12 + 61``;
* an atom is ``[AU][SIDE]NUMBER[INTENSITY][?]``: ``12``, ``AU4``, ``R12C``, ``A1B``, ``T23``.
  SIDE is ``L``/``R`` (unilateral left/right), ``A`` (asymmetric: both sides, one stronger),
  ``T``/``B`` (top/bottom lip, FACS's lip-AU prefixes, e.g. ``T18``, ``B28``); INTENSITY is a
  FACS letter ``A``..``E``. ``/`` between sides or intensities means "or" (SAMM's symbol key):
  ``A/L12`` keeps side ``"A/L"``, ``4A/B`` keeps intensity ``"A/B"``. A trailing ``?`` marks the
  AU uncertain;
* ``X or Y [or Z]``, with or without parentheses (``(R6 or R12)``, ``L12 or L14``): each
  alternative is kept with ``uncertain=True``;
* ``ref(X)`` (SAMM): AU X noted by the coder for reference, not certainly part of the
  movement: kept with ``uncertain=True``;
* a cell that is only ``?`` (CASME II): the coder could not name the AU: an empty set;
* known non-AU descriptors (``soft focus``, a FACS gaze descriptor) are not AUs: they are
  returned as notes, never silently dropped.

Anything else raises ``AUParseError`` naming the offending term.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from medn.data.annotations.sheet import cell_text
from medn.data.records import ActionUnit

# Non-AU descriptors found in the sheets; they are reported as notes, not AUs.
KNOWN_DESCRIPTORS: frozenset[str] = frozenset({"soft focus"})

_ATOM = re.compile(
    r"^(?:AU\s*)?"
    r"(?P<side>[LRATB](?:/[LRATB])*)?"
    r"(?P<number>\d{1,2})"
    r"(?P<intensity>[A-E](?:/[A-E])*)?"
    r"(?P<question>\?)?$"
)
_REF = re.compile(r"^ref\s*\((?P<inner>.*)\)$", re.IGNORECASE)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)


class AUParseError(ValueError):
    """An AU string (or one term of it) that follows none of the documented forms."""


@dataclass(frozen=True)
class ParsedAUs:
    """The result of parsing one AU cell: the AUs and any non-AU descriptors found."""

    aus: frozenset[ActionUnit]
    notes: tuple[str, ...] = ()
    unidentified: bool = False


def parse_au_atom(term: str) -> ActionUnit:
    """Parse one AU atom such as ``12``, ``AU4``, ``R12C``, ``A/L12``, ``4A/B`` or ``12?``."""
    text = term.strip().upper()
    match = _ATOM.match(text)
    if match is None:
        raise AUParseError(
            f"AU term {term!r} is not of the form [AU][L|R|A|T|B]NUMBER[A-E][?] "
            "(e.g. '12', 'AU4', 'R12C', 'T23', '4A/B')")
    number = int(match["number"])
    if number == 0:
        raise AUParseError(f"AU term {term!r}: there is no AU 0")
    return ActionUnit(number=number, side=match["side"], intensity=match["intensity"],
                      uncertain=match["question"] is not None)


def _split_top_level(text: str) -> list[str]:
    """Split on ``+`` outside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise AUParseError(f"AU string {text!r} has an unmatched ')'")
        if char == "+" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise AUParseError(f"AU string {text!r} has an unmatched '('")
    parts.append("".join(current))
    return parts


def _parse_term(term: str) -> tuple[list[ActionUnit], list[str]]:
    """Parse one ``+``-separated term into AUs and descriptor notes."""
    text = term.strip()
    if not text:
        raise AUParseError("empty AU term (two '+' in a row, or a leading/trailing '+')")
    if text.lower() in KNOWN_DESCRIPTORS:
        return [], [text.lower()]
    ref = _REF.match(text)
    if ref is not None:
        aus, notes = _parse_term(ref["inner"])
        return [replace(au, uncertain=True) for au in aus], notes
    if text.startswith("(") and text.endswith(")"):
        return _parse_term(text[1:-1])
    alternatives = _OR.split(text)
    if len(alternatives) > 1:
        return [replace(parse_au_atom(alt), uncertain=True) for alt in alternatives], []
    return [parse_au_atom(text)], []


def parse_au_string(value: object) -> ParsedAUs:
    """Parse one AU cell (``'4+7'``, ``'AU4 + R12C'``, ``'(R6 or R12)+R15'``, ``'?'``, 12, ...).

    Returns the set of ``ActionUnit`` (side, intensity and uncertainty kept) and the non-AU
    descriptors found. A blank cell or ``'?'`` gives an empty set with ``unidentified=True``.
    Raises ``AUParseError`` for any other form.
    """
    text = cell_text(value)
    if text in {"", "?"}:
        return ParsedAUs(aus=frozenset(), notes=(), unidentified=True)
    aus: list[ActionUnit] = []
    notes: list[str] = []
    for term in _split_top_level(text):
        try:
            term_aus, term_notes = _parse_term(term)
        except AUParseError as err:
            raise AUParseError(f"in AU string {text!r}: {err}") from None
        aus.extend(term_aus)
        notes.extend(term_notes)
    return ParsedAUs(aus=frozenset(aus), notes=tuple(notes))
