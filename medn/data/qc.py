"""Per-clip quality records of preprocessing: where the face was, how much of the crop lay outside
the source image, how much flow there is on the face and outside it, and the outliers.

A record (a JSON-ready dict, cached with the clip) holds: ``face_box`` ``[left, top, right,
bottom]`` dlib's box in source-frame px (may run off the frame; ``None`` for synth),
``interocular_px`` the distance of the eye centres in source px, ``outside_share`` the share of
crop pixels outside the source image, ``margin`` the crop margin used, ``flow_face`` the mean
flow magnitude (px at the crop size, over all T-1 flows) on crop pixels inside the image, and
``flow_outside`` the same on pixels outside it (0 after masking; ``None`` when nothing is
outside).

Outliers (``outliers``): a clip without a face (failed), a crop more than
``OUTSIDE_FLAG`` outside the image, a face flow above ``FLOW_FLAG`` times the dataset's median,
or an inter-ocular distance below ``IOD_FLAG`` times the dataset's median (a wrong, small face).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medn.data.dataset import Preparation
    from medn.data.prepared import PreparedDataset

OUTSIDE_FLAG = 0.25
FLOW_FLAG = 3.0
IOD_FLAG = 0.5
QC_FIELDS = ("clip", "face_box", "interocular_px", "outside_share", "flow_face", "flow_outside")
CSV_FIELDS = ("clip", "row", "status", *QC_FIELDS[1:], "margin", "reason")


def qc_rows(source: Preparation | PreparedDataset) -> list[dict[str, Any]]:
    """One row per clip: ``clip, row, status, <QC fields>, margin, reason``.

    From a ``Preparation``: every clip, failed ones with their reason. From a
    ``PreparedDataset``: its clips (status ``prepared``) then its ``missing`` clips (``failed``).
    """
    rows: list[dict[str, Any]] = []
    if hasattr(source, "outcomes"):
        for outcome in source.outcomes:
            rows.append({"clip": outcome.record.key, "row": outcome.record.row,
                         "status": outcome.status, **_qc_values(outcome.qc),
                         "reason": outcome.reason})
        return rows
    for qc in source.qc:
        rows.append({"clip": qc["clip"], "row": qc.get("row"), "status": "prepared",
                     **_qc_values(qc), "reason": None})
    for missing in source.missing:
        rows.append({"clip": missing.clip, "row": missing.row, "status": "failed",
                     **_qc_values({}), "reason": missing.reason})
    return rows


def _qc_values(qc: dict[str, Any]) -> dict[str, Any]:
    return {name: qc.get(name) for name in (*QC_FIELDS[1:], "margin")}


def qc_table_csv(source: Preparation | PreparedDataset) -> str:
    """The QC table as CSV text (header ``CSV_FIELDS``; the face box as ``l t r b``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in qc_rows(source):
        box = row["face_box"]
        writer.writerow({**row, "face_box": "" if box is None else " ".join(map(str, box)),
                         **{k: "" for k, v in row.items() if v is None and k != "face_box"}})
    return out.getvalue()


def qc_json_records(source: Preparation) -> list[dict[str, Any]]:
    """The ``qc`` list of ``medn data prepare --json``: the QC fields of every prepared clip."""
    return [{"clip": o.record.key, **{k: o.qc.get(k) for k in QC_FIELDS[1:]}}
            for o in source.outcomes if o.status != "failed"]


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def outliers(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(clip, why)`` for every clip a person should look at (see the module docstring)."""
    prepared = [r for r in rows if r["status"] != "failed"]
    flow_median = _median(r["flow_face"] for r in prepared)
    iod_median = _median(r["interocular_px"] for r in prepared)
    flagged: list[tuple[str, str]] = []
    for row in rows:
        if row["status"] == "failed":
            if (row["reason"] or "").startswith("no face"):
                flagged.append((row["clip"], "no face found"))
            continue
        outside = row["outside_share"] or 0.0
        if outside > OUTSIDE_FLAG:
            flagged.append((row["clip"], f"crop {outside:.0%} outside the image"))
        flow = row["flow_face"]
        if flow is not None and flow_median and flow > FLOW_FLAG * flow_median:
            flagged.append((row["clip"], f"face flow {flow:.3f} px = {flow / flow_median:.1f}x "
                                         f"the median {flow_median:.3f}"))
        iod = row["interocular_px"]
        if iod is not None and iod_median and iod < IOD_FLAG * iod_median:
            flagged.append((row["clip"], f"inter-ocular distance {iod:.0f} px, the median is "
                                         f"{iod_median:.0f}: a small or wrong face?"))
    return flagged


def summary(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Medians and maxima of the QC figures over the prepared clips."""
    prepared = [r for r in rows if r["status"] != "failed"]

    def pick(name: str) -> list[float]:
        return [r[name] for r in prepared if r[name] is not None]

    out: dict[str, float | None] = {}
    for name in ("interocular_px", "outside_share", "flow_face", "flow_outside"):
        values = pick(name)
        out[f"{name}_median"] = statistics.median(values) if values else None
        out[f"{name}_max"] = max(values) if values else None
    return out


def dumps(payload: dict[str, Any]) -> str:
    """``payload`` as one line of JSON (no NaN: a non-finite number is an error)."""
    return json.dumps(payload, allow_nan=False)
