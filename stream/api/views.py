"""How records look to API clients: events with snapshot URLs instead of server file paths."""
from __future__ import annotations

from typing import Any

from stream.records import Event

HIDDEN = {"chip_path", "frame_path"}  # where files live on the server is none of a client's business


def event_json(e: Event) -> dict[str, Any]:
    d = {k: v for k, v in e.public().items() if k not in HIDDEN}
    d["face_url"] = f"/api/events/{e.id}/face.jpg" if e.chip_path else None
    d["frame_url"] = f"/api/events/{e.id}/frame.jpg" if e.frame_path else None
    return d
