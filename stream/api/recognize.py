"""Recognition on demand for other systems: verify two photos (1:1) and identify every face of one (1:N),
with the same models, threshold and gallery (negative samples included) as the live pipeline."""
from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, File, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from stream.api.auth import require_token
from stream.api.state import ApiState
from stream.api.uploads import faces_of, main_face, read_image
from stream.store.gallery import accepts

router = APIRouter(prefix="/api", tags=["recognition"], dependencies=[Depends(require_token)])


def api_of(request: Request) -> ApiState:
    return request.app.state.api


@router.post("/verify", summary="1:1: are the largest faces of two photos the same person?")
async def verify(request: Request, a: UploadFile = File(...), b: UploadFile = File(...)) -> dict[str, Any]:
    api = api_of(request)
    (na, ia), (nb, ib) = await read_image(api, a), await read_image(api, b)

    def work() -> dict[str, Any]:
        fa, fb = main_face(api, na, ia), main_face(api, nb, ib)
        score = float(np.dot(fa.embedding, fb.embedding))
        thr = api.cfg.threshold
        return {"score": round(score, 4), "threshold": thr, "same": accepts(score, thr)}

    return await run_in_threadpool(work)


@router.post("/identify", summary="1:N: every face of a photo against the gallery (identity or null = unknown)")
async def identify(request: Request, file: UploadFile = File(...)) -> dict[str, Any]:
    api = api_of(request)
    _, image = await read_image(api, file)
    return await run_in_threadpool(_identify, api, image)


def _identify(api: ApiState, image: np.ndarray) -> dict[str, Any]:
    faces = faces_of(api, image)
    thr = api.cfg.threshold
    g = api.gallery_reader()
    cands = g.search(np.stack([f.embedding for f in faces]), k=api.cfg.matching.top_k) if (g is not None and faces) else []
    out = []
    for i, f in enumerate(faces):
        c = cands[i] if cands else None
        score = round(float(c.score), 4) if c is not None else None
        out.append({"box": [round(float(v), 1) for v in f.box], "det_score": round(f.det_score, 4),
                    "identity": c.accepted(thr) if c is not None else None, "score": score,
                    "candidates": [{"identity": c.identity, "score": score}] if c is not None and c.identity else []})
    return {"faces": out, "threshold": thr, "enrolled": len(g.persons()) if g is not None else 0}
