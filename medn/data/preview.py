"""Contact sheets of prepared clips: the aligned frames and the flow magnitude, as PNG files.

One PNG holds up to ``CLIPS_PER_SHEET`` clips; each clip takes two rows: its T aligned frames
(onset first), and under frames 1..T-1 the magnitude of the flow from the onset to that frame
(one colour scale per clip, its maximum in the title), with crop pixels outside the source
image tinted. Clips are chosen outliers first (``medn.data.qc.outliers``), then spread evenly
over the dataset in sheet order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medn.data.preprocess import ClipOutcome

CLIPS_PER_SHEET = 6


def choose_clips(outcomes: Sequence[ClipOutcome], count: int,
                 flagged: Sequence[str] = ()) -> list[ClipOutcome]:
    """Up to ``count`` prepared clips: the ``flagged`` ones first, then evenly spread."""
    prepared = [o for o in outcomes if o.status != "failed" and o.frames is not None]
    by_key = {o.record.key: o for o in prepared}
    chosen: list[ClipOutcome] = []
    for key in flagged:
        if key in by_key and by_key[key] not in chosen and len(chosen) < count:
            chosen.append(by_key[key])
    rest = [o for o in prepared if o not in chosen]
    room = count - len(chosen)
    if room > 0 and rest:
        picks = np.unique(np.linspace(0, len(rest) - 1, min(room, len(rest))).round().astype(int))
        chosen.extend(rest[i] for i in picks)
    return chosen


def _title(outcome: ClipOutcome, label: str | None) -> str:
    qc = outcome.qc
    parts = [outcome.record.key]
    if label:
        parts.append(label)
    if qc.get("interocular_px") is not None:
        parts.append(f"IOD {qc['interocular_px']:.0f} px")
    parts.append(f"outside {qc.get('outside_share') or 0:.1%}")
    if qc.get("flow_face") is not None:
        parts.append(f"face flow {qc['flow_face']:.3f} px")
    numbers = outcome.frame_numbers
    if numbers:
        parts.append(f"frames {numbers[0]}..{numbers[-1]}")
    return "  |  ".join(parts)


def write_contact_sheets(outcomes: Sequence[ClipOutcome], out_dir: Path, name: str,
                         labels: dict[str, str] | None = None) -> list[Path]:
    """Write the contact sheets of ``outcomes`` (prepared clips) into ``out_dir``; their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for start in range(0, len(outcomes), CLIPS_PER_SHEET):
        group = outcomes[start:start + CLIPS_PER_SHEET]
        steps = max(o.frames.shape[0] for o in group)
        fig, axes = plt.subplots(2 * len(group), steps, figsize=(1.3 * steps, 2.9 * len(group)),
                                 squeeze=False)
        for row, outcome in enumerate(group):
            frames = outcome.frames
            flow = outcome.flow.astype(np.float32)
            magnitude = np.hypot(flow[:, 0], flow[:, 1])
            vmax = max(float(magnitude.max()), 1e-3)
            outside = (frames[0] == 0) & (magnitude.max(axis=0) == 0)  # black, no flow
            for t in range(steps):
                top, bottom = axes[2 * row, t], axes[2 * row + 1, t]
                for ax in (top, bottom):
                    ax.set_xticks([])
                    ax.set_yticks([])
                if t < frames.shape[0]:
                    top.imshow(frames[t], cmap="gray", vmin=0, vmax=255)
                    top.set_xlabel(str(outcome.frame_numbers[t]), fontsize=7, labelpad=1)
                if 1 <= t <= magnitude.shape[0]:
                    bottom.imshow(magnitude[t - 1], cmap="magma", vmin=0, vmax=vmax)
                    if outside.any():
                        tint = np.zeros((*outside.shape, 4))
                        tint[outside] = (0.2, 0.4, 1.0, 0.35)
                        bottom.imshow(tint)
                elif t == 0:
                    bottom.text(0.5, 0.5, f"|flow|\nmax {vmax:.2f} px", ha="center",
                                va="center", fontsize=7, transform=bottom.transAxes)
                    bottom.set_frame_on(False)
            label = (labels or {}).get(outcome.record.key)
            axes[2 * row, 0].set_title(_title(outcome, label), fontsize=8, loc="left")
        height = 2.9 * len(group)
        fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.3 / height,
                            bottom=0.15 / height, wspace=0.05, hspace=0.35)
        path = out_dir / f"{name}_{start // CLIPS_PER_SHEET + 1:02d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
