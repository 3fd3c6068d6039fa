"""Every AU-string form of the real sheets parses to the documented ActionUnit set."""

from __future__ import annotations

import pytest

from medn.data.annotations import AUParseError, parse_au_string
from medn.data.records import ActionUnit as AU


@pytest.mark.parametrize(("text", "expected"), [
    ("4+7", {AU(4), AU(7)}),
    ("12", {AU(12)}),
    (12, {AU(12)}),                       # an Excel number cell
    (12.0, {AU(12)}),
    ("R12", {AU(12, side="R")}),
    ("L14", {AU(14, side="L")}),
    ("T23", {AU(23, side="T")}),          # FACS lip prefix: top lip
    ("B28", {AU(28, side="B")}),          # bottom lip
    ("A12", {AU(12, side="A")}),          # SAMM: asymmetric
    ("AU4 + R12C", {AU(4), AU(12, side="R", intensity="C")}),
    ("au4+r12c", {AU(4), AU(12, side="R", intensity="C")}),
    ("4+6+7+9+43E", {AU(4), AU(6), AU(7), AU(9), AU(43, intensity="E")}),
    ("A1B+A2C", {AU(1, side="A", intensity="B"), AU(2, side="A", intensity="C")}),
    ("7C+A12B", {AU(7, intensity="C"), AU(12, side="A", intensity="B")}),
    ("4A/B", {AU(4, intensity="A/B")}),   # SAMM key: "/" = or
    ("10A/B", {AU(10, intensity="A/B")}),
    ("A/L12", {AU(12, side="A/L")}),
    ("12+15 ", {AU(12), AU(15)}),
    ("L12 + 61", {AU(12, side="L"), AU(61)}),
    ("ref(24)", {AU(24, uncertain=True)}),
    ("12A+ref(24)", {AU(12, intensity="A"), AU(24, uncertain=True)}),
    ("7B+ ref(43)", {AU(7, intensity="B"), AU(43, uncertain=True)}),
    ("ref(7B)+43C", {AU(7, intensity="B", uncertain=True), AU(43, intensity="C")}),
    ("ref(L10)+A12B", {AU(10, side="L", uncertain=True), AU(12, side="A", intensity="B")}),
    ("(R6 or R12)", {AU(6, side="R", uncertain=True), AU(12, side="R", uncertain=True)}),
    ("(R6 or R12) + R15", {AU(6, side="R", uncertain=True), AU(12, side="R", uncertain=True),
                           AU(15, side="R")}),
    ("L12 or L14", {AU(12, side="L", uncertain=True), AU(14, side="L", uncertain=True)}),
    ("R14A or 17A or 24A", {AU(14, side="R", intensity="A", uncertain=True),
                            AU(17, intensity="A", uncertain=True),
                            AU(24, intensity="A", uncertain=True)}),
    ("12?", {AU(12, uncertain=True)}),
    ("24+T18+16", {AU(24), AU(18, side="T"), AU(16)}),
])
def test_au_forms(text: object, expected: set[AU]) -> None:
    parsed = parse_au_string(text)
    assert parsed.aus == frozenset(expected)
    assert parsed.notes == ()
    assert not parsed.unidentified


@pytest.mark.parametrize("text", ["?", "", None, float("nan"), " ? "])
def test_question_mark_and_blank_give_an_empty_unidentified_set(text: object) -> None:
    parsed = parse_au_string(text)
    assert parsed.aus == frozenset()
    assert parsed.unidentified


def test_descriptor_is_a_note_not_an_au() -> None:
    parsed = parse_au_string("R14+17+soft focus")
    assert parsed.aus == frozenset({AU(14, side="R"), AU(17)})
    assert parsed.notes == ("soft focus",)


def test_side_and_intensity_are_kept_apart_from_the_number() -> None:
    parsed = parse_au_string("A12+A7")
    assert {au.number for au in parsed.aus} == {7, 12}
    assert {au.side for au in parsed.aus} == {"A"}


@pytest.mark.parametrize(("text", "fragment"), [
    ("4&7", "'4&7'"),
    ("4++7", "empty AU term"),
    ("+4", "empty AU term"),
    ("(R6 or R12", "unmatched '('"),
    ("R6)", "unmatched ')'"),
    ("X12", "'X12'"),
    ("12F", "'12F'"),
    ("smile", "'smile'"),
    ("0", "no AU 0"),
    ("123", "'123'"),
])
def test_bad_forms_raise_naming_the_term(text: str, fragment: str) -> None:
    with pytest.raises(AUParseError, match="AU") as info:
        parse_au_string(text)
    assert fragment in str(info.value)
