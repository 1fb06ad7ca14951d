"""``ScanReportBuilder``: the scan report built from hand-fed decisions, in video time."""
from __future__ import annotations

import pytest

from pydantic import ValidationError

from stream.pipeline.decisions import AlertRules, Cooldown
from stream.pipeline.messages import SourceSummary
from stream.records import Appearance, ScanEvent, ScanReport, VideoReport
from stream.scan.report import NOT_READ, ScanReportBuilder, allowed_shortfall, video_status

BOX = [10.0, 20.0, 50.0, 80.0]


def builder(sources=None, rules=None, cooldown=30.0, observations=False, default="watchlist") -> ScanReportBuilder:
    sources = sources or {"door": "/v/door.mp4"}
    return ScanReportBuilder(sources, AlertRules(rules or {}, default=default), Cooldown(cooldown), observations=observations)


def dec(b: ScanReportBuilder, kind: str, track: int, identity: str | None = None, score: float = 0.0, *,
        camera: str = "door", t: float | None = 0.0, frame: int | None = 0, start: float | None = 0.0,
        box=None, threshold: float = 0.5):
    return b.decision(camera, kind, track, identity, score, threshold, t, frame, start, list(box or BOX))


def read(camera: str, expected: int | None = 100, decoded: int = 100, processed: int | None = None, errors: int = 0,
         failure: str | None = None) -> SourceSummary:
    """What capture would report of one file."""
    return SourceSummary(camera, 0.0, frames_expected=expected, frames_decoded=decoded,
                         frames_processed=decoded if processed is None else processed, decode_errors=errors,
                         failure=failure)


def video(report: ScanReport, camera: str):
    (v,) = [v for v in report.videos if v.camera == camera]
    return v


# ----------------------------------------------------------------------------------------- events
class TestEvents:
    def test_watchlist_decision_raises_event_with_fields(self):
        b = builder()
        e = dec(b, "watchlist", 3, "alice", 0.812345678, t=12.3456789, frame=308, start=11.0, threshold=0.42)
        assert isinstance(e, ScanEvent)
        assert e.model_dump() == {"kind": "watchlist", "identity": "alice", "score": 0.8123, "threshold": 0.42,
                                  "video_time": 12.346, "frame_index": 308, "track_id": 3, "track_start": 11.0,
                                  "box": BOX}
        assert b.build().videos[0].events == [e]

    def test_observation_never_raises_event(self):
        b = builder(default="both", observations=True)
        assert dec(b, "observation", 1, "alice", 0.9, t=1.0) is None
        assert dec(b, "observation", 2, None, 0.0, t=2.0) is None
        assert b.build().videos[0].events == []

    def test_eos_kind_never_raises_event(self):
        b = builder(default="both")
        assert dec(b, "eos", 0, None, 0.0, t=5.0) is None
        assert b.build().videos[0].events == []

    def test_unknown_camera_ignored(self):
        b = builder()
        assert dec(b, "watchlist", 1, "alice", 0.9, camera="nowhere") is None
        r = b.build()
        assert [v.camera for v in r.videos] == ["door"]
        assert r.videos[0].events == [] and r.videos[0].track_identity == {}

    def test_video_time_none_counts_as_zero(self):
        b = builder()
        e = dec(b, "watchlist", 1, "alice", 0.9, t=None, frame=None, start=None)
        assert e.video_time == 0.0
        assert e.frame_index is None and e.track_start is None

    def test_cooldown_in_video_time(self):
        b = builder(cooldown=10.0)
        assert dec(b, "watchlist", 1, "alice", 0.9, t=100.0) is not None
        assert dec(b, "watchlist", 2, "alice", 0.9, t=105.0) is None  # another track, same person, within 10 s
        assert dec(b, "watchlist", 3, "alice", 0.9, t=109.999) is None
        assert dec(b, "watchlist", 4, "alice", 0.9, t=110.0) is not None  # exactly 10 s later
        assert dec(b, "watchlist", 5, "bob", 0.9, t=110.5) is not None
        events = b.build().videos[0].events
        assert [(e.track_id, e.identity, e.video_time) for e in events] == \
            [(1, "alice", 100.0), (4, "alice", 110.0), (5, "bob", 110.5)]

    def test_cooldown_is_per_camera(self):
        b = builder({"door": "d.mp4", "hall": "h.mp4"}, cooldown=30.0)
        assert dec(b, "watchlist", 1, "alice", 0.9, camera="door", t=5.0) is not None
        assert dec(b, "watchlist", 1, "alice", 0.9, camera="hall", t=5.0) is not None
        assert dec(b, "watchlist", 2, "alice", 0.9, camera="door", t=6.0) is None
        r = b.build()
        assert len(video(r, "door").events) == 1
        assert len(video(r, "hall").events) == 1

    def test_unknown_faces_share_one_cooldown_per_camera(self):
        b = builder(default="unknown", cooldown=10.0)
        assert dec(b, "unknown", 1, None, 0.2, t=0.0) is not None
        assert dec(b, "unknown", 2, None, 0.2, t=5.0) is None
        assert dec(b, "unknown", 3, None, 0.2, t=10.0) is not None

    def test_unwanted_decision_does_not_consume_cooldown(self):
        # "unknown" decisions on a watchlist-only camera must not start the (camera, None) cooldown,
        # and a suppressed watchlist event must not restart it.
        cd = Cooldown(10.0)
        b = ScanReportBuilder({"door": "d.mp4"}, AlertRules({"door": "watchlist"}), cd)
        assert dec(b, "unknown", 1, None, 0.2, t=0.0) is None
        assert ("door", None) not in cd.last
        assert dec(b, "watchlist", 2, "alice", 0.9, t=0.0) is not None
        assert dec(b, "watchlist", 3, "alice", 0.9, t=5.0) is None
        assert dec(b, "watchlist", 4, "alice", 0.9, t=10.0) is not None

    def test_events_in_order_of_decisions(self):
        b = builder(default="both", cooldown=0.0)
        dec(b, "unknown", 1, None, 0.1, t=1.0)
        dec(b, "watchlist", 2, "alice", 0.9, t=2.0)
        dec(b, "watchlist", 3, "bob", 0.8, t=3.0)
        assert [(e.kind, e.identity) for e in b.build().videos[0].events] == \
            [("unknown", None), ("watchlist", "alice"), ("watchlist", "bob")]


# ----------------------------------------------------------------------------------------- alert_on
class TestAlertOn:
    SOURCES = {"wl": "wl.mp4", "unk": "unk.mp4", "both": "both.mp4", "dflt": "dflt.mp4"}
    RULES = {"wl": "watchlist", "unk": "unknown", "both": "both"}

    @pytest.mark.parametrize("camera,kind,raised", [
        ("wl", "watchlist", True), ("wl", "unknown", False),
        ("unk", "watchlist", False), ("unk", "unknown", True),
        ("both", "watchlist", True), ("both", "unknown", True),
        ("dflt", "watchlist", True), ("dflt", "unknown", False),
    ])
    def test_rules_per_camera(self, camera, kind, raised):
        b = builder(self.SOURCES, self.RULES)
        ident = "alice" if kind == "watchlist" else None
        e = dec(b, kind, 1, ident, 0.7, camera=camera, t=1.0)
        assert (e is not None) is raised
        assert len(video(b.build(), camera).events) == int(raised)

    def test_unwanted_watchlist_still_names_the_track(self):
        b = builder(self.SOURCES, self.RULES)
        assert dec(b, "watchlist", 4, "alice", 0.7, camera="unk", start=2.0, t=3.0) is None
        v = video(b.build(), "unk")
        assert v.events == []
        assert v.track_identity == {"4": "alice"}
        assert v.appearances == {"alice": Appearance(first_seen=2.0, last_seen=3.0, best_score=0.7)}

    def test_suppressed_watchlist_still_names_the_track(self):
        b = builder(cooldown=60.0)
        dec(b, "watchlist", 1, "alice", 0.7, start=0.0, t=1.0)
        assert dec(b, "watchlist", 2, "alice", 0.9, start=4.0, t=5.0) is None
        v = b.build().videos[0]
        assert v.track_identity == {"1": "alice", "2": "alice"}
        assert v.appearances["alice"] == Appearance(first_seen=0.0, last_seen=5.0, best_score=0.9)


# ----------------------------------------------------------------------------------------- appearances
class TestAppearances:
    def test_aggregated_over_tracks_of_one_identity(self):
        b = builder(cooldown=0.0)
        # track 1: on screen 2.0 .. 9.0, best 0.7
        dec(b, "observation", 1, None, 0.0, start=2.0, t=2.0)
        dec(b, "watchlist", 1, "alice", 0.7, start=2.0, t=4.0)
        dec(b, "observation", 1, "alice", 0.7, start=2.0, t=9.0)
        # track 2: 20.0 .. 25.0, best 0.9
        dec(b, "watchlist", 2, "alice", 0.9, start=20.0, t=21.0)
        dec(b, "observation", 2, "alice", 0.9, start=20.0, t=25.0)
        # track 3: 1.5 .. 3.0, best 0.6 (earliest start, lowest score)
        dec(b, "watchlist", 3, "alice", 0.6, start=1.5, t=3.0)
        # track 4: bob
        dec(b, "watchlist", 4, "bob", 0.8, start=5.0, t=6.0)
        v = b.build().videos[0]
        assert v.appearances == {
            "alice": Appearance(first_seen=1.5, last_seen=25.0, best_score=0.9),
            "bob": Appearance(first_seen=5.0, last_seen=6.0, best_score=0.8),
        }

    def test_last_seen_never_moves_backwards(self):
        b = builder()
        dec(b, "watchlist", 1, "alice", 0.7, start=0.0, t=10.0)
        dec(b, "observation", 1, "alice", 0.7, start=0.0, t=4.0)  # out of order
        assert b.build().videos[0].appearances["alice"].last_seen == 10.0

    def test_later_watchlist_on_same_track_renames_it(self):
        b = builder(cooldown=0.0)
        dec(b, "watchlist", 1, "alice", 0.6, start=0.0, t=1.0)
        dec(b, "watchlist", 1, "bob", 0.8, start=0.0, t=3.0)
        v = b.build().videos[0]
        assert v.track_identity == {"1": "bob"}
        assert v.appearances == {"bob": Appearance(first_seen=0.0, last_seen=3.0, best_score=0.8)}
        assert [e.identity for e in v.events] == ["alice", "bob"]

    def test_unknown_tracks_have_no_appearance(self):
        b = builder(default="both")
        dec(b, "unknown", 1, None, 0.2, start=0.0, t=1.0)
        dec(b, "observation", 2, None, 0.0, start=3.0, t=3.0)
        v = b.build().videos[0]
        assert v.appearances == {}
        assert v.track_identity == {"1": None, "2": None}

    def test_track_identity_mapping(self):
        b = builder(default="both", cooldown=0.0)
        dec(b, "observation", 7, None, 0.0, t=0.5)
        dec(b, "watchlist", 7, "alice", 0.9, t=1.0)
        dec(b, "unknown", 8, None, 0.1, t=1.0)
        dec(b, "watchlist", 9, "bob", 0.8, t=1.0)
        dec(b, "observation", 10, None, 0.0, t=1.0)
        assert b.build().videos[0].track_identity == {"7": "alice", "8": None, "9": "bob", "10": None}

    def test_tracks_are_per_camera(self):
        b = builder({"door": "d.mp4", "hall": "h.mp4"})
        dec(b, "watchlist", 1, "alice", 0.9, camera="door", start=1.0, t=2.0)
        dec(b, "observation", 1, None, 0.0, camera="hall", start=5.0, t=6.0)
        r = b.build()
        assert video(r, "door").track_identity == {"1": "alice"}
        assert video(r, "hall").track_identity == {"1": None}
        assert video(r, "hall").appearances == {}


# ----------------------------------------------------------------------------------------- status
class TestStatus:
    def test_complete_when_every_announced_frame_decoded(self):
        assert video_status(105, 105, 0, None) == ("complete", None)
        assert video_status(None, 40, 0, None) == ("complete", None)  # the container says nothing: nothing missing

    def test_tolerance_is_one_frame_or_one_percent(self):
        assert allowed_shortfall(30) == 1 and allowed_shortfall(1000) == 10
        assert video_status(30, 29, 0, None)[0] == "complete"
        assert video_status(30, 28, 0, None)[0] == "partial"
        assert video_status(1000, 990, 0, None)[0] == "complete"
        assert video_status(1000, 989, 0, None)[0] == "partial"

    def test_partial_when_decoding_stopped_early(self):
        status, reason = video_status(105, 48, 0, None)
        assert status == "partial" and "48 of the 105" in reason and "\n" not in reason

    def test_partial_on_decode_errors_even_with_every_frame(self):
        status, reason = video_status(30, 30, 2, None)
        assert status == "partial" and "2 frame(s) failed to decode" in reason
        status, reason = video_status(30, 10, 2, None)  # both problems, one line
        assert status == "partial" and "10 of the 30" in reason and "failed to decode" in reason

    def test_failed_when_not_opened_or_nothing_decoded(self):
        assert video_status(None, 0, 0, "no such file") == ("failed", "no such file")
        status, reason = video_status(105, 0, 0, None)
        assert status == "failed" and "no frame could be decoded of the 105" in reason
        assert video_status(None, 0, 0, None)[0] == "failed"

    def test_record_refuses_a_status_without_reason_and_a_complete_with_one(self):
        VideoReport(file="a.mp4", camera="a", status="complete")
        with pytest.raises(ValidationError):
            VideoReport(file="a.mp4", camera="a", status="partial")
        with pytest.raises(ValidationError):
            VideoReport(file="a.mp4", camera="a", status="complete", reason="all fine")
        with pytest.raises(ValidationError):
            VideoReport(file="a.mp4", camera="a", status="half", reason="x")
        with pytest.raises(ValidationError):
            VideoReport(file="a.mp4", camera="a", status="complete", frames_decoded=-1)


# ----------------------------------------------------------------------------------------- sources
class TestSources:
    def test_complete_only_after_every_source_ended_and_was_summarised(self):
        b = builder({"a": "a.mp4", "b": "b.mp4", "c": "c.mp4"})
        assert not b.complete
        b.end("a")
        b.source(read("a"))
        assert not b.complete
        b.source(read("c"))  # the summary may come first ...
        b.end("c")
        assert not b.complete
        b.end("nowhere")
        b.source(read("nowhere"))
        assert not b.complete
        b.end("b")  # ... or the end of stream
        assert not b.complete
        b.source(read("b"))
        assert b.complete

    def test_counts_and_status_come_from_the_summary(self):
        b = builder({"a": "a.mp4", "b": "b.mp4", "c": "c.mp4"})
        b.source(read("a", expected=120, decoded=120, processed=40))
        b.source(read("b", expected=105, decoded=48))
        b.source(read("c", expected=None, decoded=0, failure="a FIFO (named pipe), not a regular file: not opened"))
        r = b.build()
        a, bb, c = (video(r, n) for n in "abc")
        assert (a.status, a.reason, a.frames_expected, a.frames_decoded, a.frames_processed, a.decode_errors) == \
            ("complete", None, 120, 120, 40, 0)
        assert (bb.status, bb.frames_expected, bb.frames_decoded) == ("partial", 105, 48) and "48 of the 105" in bb.reason
        assert (c.status, c.frames_expected, c.frames_decoded) == ("failed", None, 0) and "FIFO" in c.reason
        assert a.human_lines()[0] == "a.mp4: complete, 120 of 120 frames decoded, 40 processed"
        assert bb.human_lines()[0].startswith("b.mp4: PARTIAL, 48 of 105 frames decoded, 48 processed: decoding stopped")
        assert c.human_lines()[0] == "c.mp4: FAILED, 0 of ? frames decoded, 0 processed: " \
                                     "a FIFO (named pipe), not a regular file: not opened"

    def test_a_source_never_summarised_is_failed_not_clean(self):
        b = builder({"a": "a.mp4"})
        b.end("a")
        v = b.build().videos[0]
        assert (v.status, v.reason, v.frames_decoded, v.frames_expected) == ("failed", NOT_READ, 0, None)

    def test_videos_in_input_order_with_files(self):
        b = builder({"z": "/v/z.mp4", "a": "/v/a.mp4", "m": "/v/m.mp4"})
        r = b.build()
        assert [(v.camera, v.file) for v in r.videos] == [("z", "/v/z.mp4"), ("a", "/v/a.mp4"), ("m", "/v/m.mp4")]

    def test_no_sources_is_complete(self):
        b = ScanReportBuilder({}, AlertRules({}), Cooldown(1.0))
        assert b.complete
        assert b.build() == ScanReport(videos=[])


# ----------------------------------------------------------------------------------------- observations
class TestObservations:
    def test_not_kept_unless_asked(self):
        b = builder(observations=False)
        dec(b, "observation", 1, None, 0.0, frame=3)
        assert b.build().videos[0].observations is None

    def test_kept_when_asked(self):
        b = builder(observations=True, default="both")
        dec(b, "observation", 1, None, 0.0, frame=3, box=[1.0, 2.0, 3.0, 4.0])
        dec(b, "observation", 2, "alice", 0.9, frame=None, box=[5.0, 6.0, 7.0, 8.0])
        dec(b, "watchlist", 2, "alice", 0.9, frame=4)  # decisions are not observations
        dec(b, "unknown", 1, None, 0.1, frame=4)
        assert b.build().videos[0].observations == [(3, 1, [1.0, 2.0, 3.0, 4.0]), (0, 2, [5.0, 6.0, 7.0, 8.0])]

    def test_kept_but_empty(self):
        b = builder(observations=True)
        assert b.build().videos[0].observations == []


# ----------------------------------------------------------------------------------------- build
class TestBuild:
    def _full(self) -> ScanReportBuilder:
        b = builder({"door": "/v/door.mp4", "hall": "/v/hall.mp4"}, {"door": "both"}, cooldown=5.0, observations=True)
        dec(b, "observation", 1, None, 0.0, camera="door", t=0.5, frame=12, start=0.5)
        dec(b, "watchlist", 1, "alice", 0.81234567, camera="door", t=1.25, frame=30, start=0.5)
        dec(b, "unknown", 2, None, 0.12, camera="door", t=2.0, frame=48, start=1.0)
        dec(b, "watchlist", 5, "bob", 0.7, camera="hall", t=3.0, frame=72, start=None)
        b.source(read("door", expected=240, decoded=240))
        b.end("door")
        b.source(read("hall", expected=100, decoded=80, errors=3))
        b.end("hall")
        return b

    def test_returns_scan_report(self):
        r = self._full().build()
        assert isinstance(r, ScanReport)
        door, hall = r.videos
        assert (door.camera, door.frames_decoded, door.status, door.reason) == ("door", 240, "complete", None)
        assert (hall.camera, hall.frames_decoded, hall.decode_errors, hall.status) == ("hall", 80, 3, "partial")
        assert "80 of the 100" in hall.reason and "3 frame(s) failed to decode" in hall.reason
        assert [(e.kind, e.identity, e.score) for e in door.events] == [("watchlist", "alice", 0.8123), ("unknown", None, 0.12)]
        assert [e.identity for e in hall.events] == ["bob"]
        assert door.appearances == {"alice": Appearance(first_seen=0.5, last_seen=1.25, best_score=0.81234567)}
        assert hall.appearances == {"bob": Appearance(first_seen=0.0, last_seen=3.0, best_score=0.7)}
        assert door.observations == [(12, 1, BOX)]

    def test_round_trips_through_json(self):
        r = self._full().build()
        back = ScanReport.model_validate_json(r.model_dump_json())
        assert back == r
        assert back.model_dump() == r.model_dump()
        assert back.videos[0].track_identity == {"1": "alice", "2": None}

    def test_round_trips_without_observations(self):
        b = builder()
        dec(b, "watchlist", 1, "alice", 0.9, t=1.0)
        r = b.build()
        back = ScanReport.model_validate_json(r.model_dump_json(indent=1))
        assert back == r
        assert back.videos[0].observations is None

    def test_build_is_repeatable_and_sees_later_decisions(self):
        b = builder(cooldown=0.0)
        dec(b, "watchlist", 1, "alice", 0.9, t=1.0)
        first = b.build()
        assert b.build() == first
        dec(b, "watchlist", 2, "bob", 0.8, t=2.0)
        second = b.build()
        assert set(second.videos[0].appearances) == {"alice", "bob"}
        assert second.videos[0].track_identity == {"1": "alice", "2": "bob"}
