"""Hard samples (paper Table II): clips whose AU set also occurs with another emotion label.

A clip is *hard* under a rule when another clip of the same label protocol has the same AU key
and a different label. The rules differ only in the AU key:

- ``au-numbers`` (medn's rule, the one the paper states): the set of AU numbers, side and
  intensity dropped (``R12`` = ``L12`` = ``12``; ``1+2`` = ``2+1``);
- ``as-written``: the sheet's AU cell text exactly (order and L/R sides count);
- ``as-written-no-side``: the cell text with the L/R side letters removed (order counts).

On the real CAS(ME)^3 Part A sheet (v2) none of them gives the paper's 594 / 755 / 784
(3 / 4 / 7 classes): ``au-numbers`` gives 622 / 793 / 819, ``as-written`` 584 / 756 / 780 and
``as-written-no-side`` 593 / 764 / 788 (docs/annotations.md lists the other rules tried).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from medn.data.records import ClipRecord

PAPER_TABLE_II: dict[tuple[str, int], tuple[int, int]] = {
    ("casme3a", 3): (594, 699), ("casme3a", 4): (755, 860), ("casme3a", 7): (784, 860)}
DEFAULT_RULE = "au-numbers"
_SIDE = re.compile(r"[LRlr](?=\d)")


def _as_written(record: ClipRecord) -> str:
    text = record.extra.get("au_cell")
    if text is None:  # records made in code (synth) have no cell: their canonical form
        text = "+".join(str(n) for n in sorted(record.au_numbers))
    return text.replace(" ", "")


RULES: dict[str, tuple[str, Callable[[ClipRecord], Hashable]]] = {
    "au-numbers": ("same set of AU numbers (side and intensity dropped), another emotion",
                   lambda r: r.au_numbers),
    "as-written": ("same AU cell text as written (order and L/R sides count), another emotion",
                   _as_written),
    "as-written-no-side": ("same AU cell text with L/R removed (order counts), another emotion",
                           lambda r: _SIDE.sub("", _as_written(r))),
}


def hard_sample_count(records: Sequence[ClipRecord], labels: Sequence[str],
                      rule: str = DEFAULT_RULE) -> int:
    """How many of ``records`` share their AU key (``rule``) with a clip of another label."""
    key = RULES[rule][1]
    seen: dict[Hashable, set[str]] = defaultdict(set)
    for record, label in zip(records, labels, strict=True):
        seen[key(record)].add(label)
    return sum(1 for record in records if len(seen[key(record)]) > 1)


def hard_sample_report(dataset: str, task: int, records: Sequence[ClipRecord],
                       labels: Sequence[str]) -> dict[str, Any]:
    """``{"rule", "rule_text", "hard", "total", "share", "paper", "other_rules"}``; ``paper``
    is ``{"hard", "total"}`` of Table II where the paper gives one, else ``None``."""
    total = len(records)
    hard = hard_sample_count(records, labels)
    paper = PAPER_TABLE_II.get((dataset, task))
    return {"rule": DEFAULT_RULE, "rule_text": RULES[DEFAULT_RULE][0], "hard": hard,
            "total": total, "share": round(hard / total, 4) if total else None,
            "paper": None if paper is None else {"hard": paper[0], "total": paper[1]},
            "other_rules": {name: hard_sample_count(records, labels, name)
                            for name in RULES if name != DEFAULT_RULE}}
