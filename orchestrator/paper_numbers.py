"""The MEDN paper's published numbers, exactly as printed, for putting beside a study's table.

Tables IV-VII are CAS(ME)^3 (Part A), LOSO, UF1/UAR. Tables V, VI and VII are the 3-class task;
Table IV gives the full MEDN for 3, 4 and 7 classes, beside other methods' published numbers.
Table III is CASME II and SAMM (3 classes, the MEGC2019 CDE grouping) with their Average, the
full MEDN beside fifteen other methods. Fig. 6 (the lambda curves) prints no numbers in the
text, only its caption, so the lambda-grid study has no paper column.
Rows of Tables V-VII are keyed by the label the shipped study gives its variant
(``studies/*.yaml``); Tables III and IV are assembled by ``orchestrator.main_results``.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_DATASET = "casme3a"
PAPER_DATASET_LABEL = "CAS(ME)^3"

PAPER_TITLES: dict[str, str] = {
    "table3": "Table III",
    "table4": "Table IV",
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


@dataclass(frozen=True)
class ReferenceRow:
    """One method's row of Table III as printed: its name (with year and reference number),
    whether it relies on apex-frame annotations, and (UF1, UAR) per dataset key
    (``casme2``, ``samm``, ``average``); None where the paper prints "-"."""

    method: str
    apex: bool
    scores: dict[str, tuple[float | None, float | None]]


TABLE3_DATASETS: dict[str, str] = {"casme2": "CASME II", "samm": "SAMM"}
TABLE3_AVERAGE = "average"


def _t3(method: str, apex: bool, *values: float | None) -> ReferenceRow:
    keys = (*TABLE3_DATASETS, TABLE3_AVERAGE)
    pairs = {k: (values[2 * i], values[2 * i + 1]) for i, k in enumerate(keys)}
    return ReferenceRow(method, apex, pairs)


# Table III, other methods, in the paper's order: CASME II UF1, UAR, SAMM UF1, UAR, Average
# UF1, UAR. The paper's Average of STSTNet (UF1 0.7489) and AUGCN (UF1 0.8271) is not the mean
# of its two printed values (0.7485, 0.82745); kept as printed.
TABLE3_OTHERS: tuple[ReferenceRow, ...] = (
    _t3("CapsuleNet (2019) [41]", True, 0.7068, 0.7018, 0.6209, 0.5989, 0.6639, 0.6504),
    _t3("STSTNet (2019) [26]", True, 0.8382, 0.8686, 0.6588, 0.6810, 0.7489, 0.7748),
    _t3("Neural (2019) [30]", True, 0.8293, 0.8209, 0.7754, 0.7152, 0.8024, 0.7681),
    _t3("MTMNet (2020) [48]", True, 0.8700, 0.8720, 0.8250, 0.8190, 0.8475, 0.8455),
    _t3("AUGCN (2021) [17]", True, 0.8798, 0.8710, 0.7751, 0.7890, 0.8271, 0.8300),
    _t3("MERASTC (2021) [12]", False, 0.9330, 0.9500, 0.8300, 0.8460, 0.8815, 0.8980),
    _t3("ME-PLAN (2022) [60]", False, 0.8941, 0.8962, 0.7358, 0.7687, 0.8149, 0.8325),
    _t3("GLEFFN (2023) [11]", False, 0.8825, 0.9110, 0.7458, 0.7843, 0.8142, 0.8477),
    _t3("Micron-BERT (2023) [35]", True, 0.9034, 0.8914, None, None, None, None),
    _t3("MFDAN (2024) [2]", True, 0.9134, 0.9326, 0.7871, 0.8196, 0.8503, 0.8761),
    _t3("MPFNet-P (2025) [33]", True, 0.8790, 0.8950, 0.7910, 0.8260, 0.8350, 0.8605),
    _t3("MER-CLIP (2025) [29]", False, 0.9409, 0.9487, 0.8321, 0.8434, 0.8865, 0.8961),
    _t3("SODA4MER (2025) [53]", False, 0.8870, 0.8809, None, None, None, None),
    _t3("GAMDSS (2026) [28]", True, 0.9362, None, 0.8523, None, 0.8943, None),
    _t3("MPFNet-C (2026) [34]", True, 0.9110, 0.9230, 0.7950, 0.8390, 0.8530, 0.8810),
)
# Table III, MEDN's own row (no apex frame): (UF1, UAR) per dataset and their average.
TABLE3: dict[str, tuple[float, float]] = {
    "casme2": (0.9118, 0.8912),
    "samm": (0.8835, 0.8679),
    TABLE3_AVERAGE: (0.8977, 0.8796),
}
TABLE3_MEDN = ReferenceRow("MEDN (paper)", False, dict(TABLE3))

# Table IV, other methods: (method, classes, UF1, UAR), in the paper's order per task.
TABLE4_OTHERS: tuple[tuple[str, int, float, float], ...] = (
    ("STSTNet (2019) [26]", 3, 0.3795, 0.3792),
    ("Micron-BERT (2023) [35]", 3, 0.5604, 0.6125),
    ("HTNet (2024) [45]", 3, 0.5767, 0.5415),
    ("Lite-Point-GCN (2025) [56]", 3, 0.6819, 0.7412),
    ("Micron-BERT (2023) [35]", 4, 0.4718, 0.4913),
    ("Lite-Point-GCN (2025) [56]", 4, 0.4764, 0.5366),
    ("Micron-BERT (2023) [35]", 7, 0.3264, 0.3254),
    ("Lite-Point-GCN (2025) [56]", 7, 0.3564, 0.4159),
)
# The datasets each table's numbers are on (a study run on another dataset compares trends).
PAPER_DATASETS: dict[str, tuple[str, ...]] = {
    "table3": tuple(TABLE3_DATASETS),
    "table4": (PAPER_DATASET,), "table5": (PAPER_DATASET,), "table6": (PAPER_DATASET,),
    "table7": (PAPER_DATASET,), "fig6": (PAPER_DATASET,),
}
MAIN_RESULTS_PAPERS = ("table3", "table4")
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
    if paper in MAIN_RESULTS_PAPERS:
        return (f"one dataset and task of {PAPER_TITLES[paper]}; `medn report` on the study "
                "assembles the whole table with the published rows")
    if paper not in _TABLES:
        return None
    title = PAPER_TITLES[paper]
    if task == 3:
        return f"paper columns: {title}, {PAPER_DATASET_LABEL} 3-class, as printed"
    if task in TABLE4:
        return (f"{title} is 3-class only; the full-MEDN row shows Table IV "
                f"({PAPER_DATASET_LABEL} {task}-class)")
    return f"{title} is 3-class only; the paper prints no {task}-class numbers"


def dataset_note(paper: str | None, dataset: str) -> str | None:
    """The report's warning when ``dataset`` is not the one ``paper``'s numbers are on."""
    if paper not in PAPER_TITLES or dataset in PAPER_DATASETS.get(paper, (PAPER_DATASET,)):
        return None
    where = ("CASME II and SAMM" if paper == "table3" else PAPER_DATASET_LABEL)
    return (f"different dataset: {dataset} (the paper's numbers are {where}); compare "
            "trends, not values")
