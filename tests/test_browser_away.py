"""No alert is lost while the browser is cut off: an alert stored while the Live page's server was down appears on
the page once the server is back (the page reloads recent events after every reconnect of the live stream).
Real ``facewatch serve``, real event store, Debian's Chromium via Playwright."""
from __future__ import annotations

import time

import pytest
import yaml

from browser_util import CHROMIUM, Proc
from test_api import free_port
from stream.records import Event
from stream.store.events import EventStore

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")


def store_alert(path, identity: str) -> int:
    st = EventStore(path)
    t = time.time()
    try:
        return int(st.add(Event(ts=t, ts_capture=t, camera="door", kind="watchlist", identity=identity, score=0.99,
                                threshold=0.95, track_id=1, latency_ms=80.0)).id)
    finally:
        st.close()


def test_an_alert_stored_while_the_page_was_cut_off_is_shown_after_it_reconnects(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "cameras": [{"name": "door", "source": "rtsp://127.0.0.1:9/x"}],
                                   "api": {"port": port}, "metrics": {"enabled": False}}))
    store = tmp_path / "events.sqlite"
    store_alert(store, "Before Outage")
    serve = Proc(["-c", str(cfg), "serve"], tmp_path / "serve1.log")
    url = serve.wait_serving(60)
    assert url == f"http://127.0.0.1:{port}"  # nothing configured: loopback only
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(base_url=url)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto("/#/live")
            expect(page.locator(".alert-card", has_text="Before Outage")).to_be_visible(timeout=15000)
            expect(page.locator("#stream-indicator")).to_have_text("● LIVE", timeout=15000)
            serve.stop()
            expect(page.locator("#stream-banner")).to_be_visible(timeout=15000)
            eid = store_alert(store, "During Outage")  # the pipeline goes on storing alerts meanwhile
            serve = Proc(["-c", str(cfg), "serve"], tmp_path / "serve2.log")
            serve.wait_serving(60)
            card = page.locator(f'.alert-card[data-event-id="{eid}"]')
            expect(card).to_be_visible(timeout=30000)
            expect(card).to_contain_text("During Outage")
            expect(page.locator("#stream-indicator")).to_have_text("● LIVE", timeout=15000)
            assert page.locator("#stream-banner").is_hidden()
            # and what comes after the reconnect arrives live again
            later = store_alert(store, "After Outage")
            expect(page.locator(f'.alert-card[data-event-id="{later}"]')).to_be_visible(timeout=10000)
            assert not errors, errors
        finally:
            browser.close()
            serve.stop()
