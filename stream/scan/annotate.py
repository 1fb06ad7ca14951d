"""Annotated copy of a scanned video: boxes with track identities (green = watchlist, grey = unknown)."""
from __future__ import annotations

from pathlib import Path

import cv2


def annotate_video(src: str, observations: list, track_identity: dict[str, str | None], out: Path) -> Path:
    """Write ``out``: ``src`` with each observed face's box and its track's identity drawn on."""
    by_frame: dict[int, list] = {}
    for frame_index, track_id, box in observations:
        by_frame.setdefault(int(frame_index), []).append((str(track_id), box))
    cap = cv2.VideoCapture(src)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    idx = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        for tid, box in by_frame.get(idx, []):
            name = track_identity.get(tid)
            color = (0, 200, 0) if name else (160, 160, 160)
            x1, y1, x2, y2 = (int(v) for v in box)
            cv2.rectangle(frame, (x1, y1), (x2, y2), color, 2)
            cv2.putText(frame, name or "unknown", (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2)
        writer.write(frame)
        idx += 1
    cap.release()
    writer.release()
    return out
