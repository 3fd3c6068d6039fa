"""The MEDN paper's published numbers, exactly as printed, for putting beside a study's table.

Every number is CAS(ME)^3 (Part A), LOSO, UF1/UAR. Tables V, VI and VII are the 3-class task;
Table IV gives the full MEDN for 3, 4 and 7 classes. Fig. 6 (the lambda curves) prints no
numbers in the text, only its caption, so the lambda-grid study has no paper column.
Rows are keyed by the label the shipped study gives its variant (``studies/*.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_DATASET = "casme3a"
PAPER_DATASET_LABEL = "CAS(ME)^3"

PAPER_TITLES: dict[str, str] = {
    "table5": "Table V",
    "table6": "Table VI",
    "table7": "Table VII",
    "fig6": "Fig. 6",
}

# (UF1, UAR) per row, 3-class CAS(ME)^3.
TABLE5: dict[str, tuple[float, float]] = {
    "No.1": (0.6876, 0.6324),
    "No.2": (0.7032, 0.6543),
    "No.3": (0.7262, 0.6885),
    "No.4": (0.7463, 0.7043),
    "No.5": (0.7568, 0.7294),
}
TABLE6: dict[str, tuple[float, float]] = {
    "[1]": (0.6873, 0.6324),
    "[2]": (0.7044, 0.6429),
    "[4]": (0.7032, 0.6543),
    "[8]": (0.6986, 0.6534),
    "[1,2,4]": (0.7467, 0.7058),
    "[1,2,4,8]": (0.7568, 0.7294),
    "[1,1,2,2,4,4,8,8]": (0.7521, 0.7301),
}
TABLE7: dict[str, tuple[float, float]] = {
    "ResNet-18": (0.7223, 0.6789),
    "ResNet-34": (0.7134, 0.6625),
    "ViT-B/16": (0.7342, 0.6987),
    "LED": (0.7568, 0.7294),
}
# Table IV: the full MEDN on CAS(ME)^3 per task (classes).
TABLE4: dict[int, tuple[float, float]] = {
    3: (0.7568, 0.7294),
    4: (0.6514, 0.6102),
    7: (0.4906, 0.4631),
}
FIG6_NOTE = ("Fig. 6 (the lambda_au / lambda_orth curves) gives no numbers in the paper's "
             "text, only its caption; there is no paper column for this study.")

_TABLES = {"table5": TABLE5, "table6": TABLE6, "table7": TABLE7}
# The row of each table that is the full MEDN (so Table IV gives it for 4 and 7 classes).
FULL_MEDN_ROW = {"table5": "No.5", "table6": "[1,2,4,8]", "table7": "LED"}


@dataclass(frozen=True)
class PaperValue:
    """One published (UF1, UAR) pair and where it is printed."""

    uf1: float
    uar: float
    source: str


def paper_value(paper: str | None, label: str, task: int) -> PaperValue | None:
    """The paper's numbers for the row ``label`` of ``paper`` on ``task`` classes, if printed.

    3 classes: the row of Table V/VI/VII. 4 or 7 classes: only the full-MEDN row has numbers
    (Table IV). Fig. 6 and unknown rows: None.
    """
    table = _TABLES.get(paper or "")
    if table is None:
        return None
    if task == 3 and label in table:
        uf1, uar = table[label]
        return PaperValue(uf1, uar, PAPER_TITLES[paper or ""])
    if label == FULL_MEDN_ROW[paper or ""] and task in TABLE4:
        uf1, uar = TABLE4[task]
        return PaperValue(uf1, uar, "Table IV")
    return None


def paper_note(paper: str | None, task: int) -> str | None:
    """What the paper columns are, or why there are none, for ``paper`` on ``task`` classes."""
    if paper == "fig6":
        return FIG6_NOTE
    if paper not in _TABLES:
        return None
    title = PAPER_TITLES[paper]
    if task == 3:
        return f"paper columns: {title}, {PAPER_DATASET_LABEL} 3-class, as printed"
    if task in TABLE4:
        return (f"{title} is 3-class only; the full-MEDN row shows Table IV "
                f"({PAPER_DATASET_LABEL} {task}-class)")
    return f"{title} is 3-class only; the paper prints no {task}-class numbers"
