"""Edge cases of the pure decision classes in ``stream.pipeline.decisions`` (no models, sockets or clocks)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from stream.pipeline.decisions import AlertRules, Cooldown, EmbeddingBudget, LiveBatchCut, TrackVote, face_quality


# ============================================================================================ TrackVote
def vote(needed: int = 3) -> TrackVote:
    return TrackVote(needed=needed, start=0.0)


class TestTrackVote:
    def test_one_lucky_frame_does_not_decide(self):
        v = vote(3)
        v.add("alice", 0.99)
        assert v.identity() is None
        assert v.decide() is None

    def test_decides_exactly_when_needed_votes_reached(self):
        v = vote(3)
        v.add("alice", 0.6)
        v.add("alice", 0.7)
        assert v.decide() is None  # 2 of 3
        v.add("alice", 0.65)
        assert v.identity() == "alice"
        assert v.decide() == ("watchlist", "alice", 0.7)

    def test_needed_one_decides_on_first_vote(self):
        v = vote(1)
        v.add("bob", 0.5)
        assert v.decide() == ("watchlist", "bob", 0.5)

    def test_best_score_is_the_max_not_the_last(self):
        v = vote(3)
        for s in (0.5, 0.9, 0.7):
            v.add("alice", s)
        assert v.best["alice"] == 0.9
        assert v.decide() == ("watchlist", "alice", 0.9)

    def test_best_score_of_misses_is_the_max(self):
        v = vote(2)
        v.add(None, 0.3)
        v.add(None, 0.1)
        assert v.best[None] == 0.3
        assert v.misses == 2
        assert v.decide() == ("unknown", None, 0.3)

    def test_unknown_needs_needed_misses(self):
        v = vote(3)
        v.add(None, 0.2)
        v.add(None, 0.2)
        assert v.decide() is None
        v.add(None, 0.25)
        assert v.decide() == ("unknown", None, 0.25)

    def test_a_single_vote_prevents_unknown(self):
        v = vote(2)
        v.add("alice", 0.6)
        for _ in range(10):
            v.add(None, 0.1)
        assert v.misses == 10
        assert v.decide() is None
        assert v.identity() is None

    def test_a_single_vote_after_misses_still_prevents_unknown_if_not_yet_decided(self):
        v = vote(3)
        v.add(None, 0.1)
        v.add(None, 0.1)
        v.add("alice", 0.6)
        v.add(None, 0.1)
        assert v.decide() is None

    def test_misses_do_not_count_as_votes(self):
        v = vote(2)
        v.add(None, 0.1)
        v.add(None, 0.1)
        v.add(None, 0.1)
        assert sum(v.votes.values()) == 0
        assert v.identity() is None

    @pytest.mark.parametrize("order", [("alice", "bob"), ("bob", "alice")])
    def test_tie_goes_to_higher_best_score(self, order):
        scores = {"alice": (0.6, 0.62), "bob": (0.7, 0.8)}
        v = vote(2)
        for name in order:
            for s in scores[name]:
                v.add(name, s)
        assert v.votes["alice"] == v.votes["bob"] == 2
        assert v.identity() == "bob"
        assert v.decide() == ("watchlist", "bob", 0.8)

    def test_most_votes_wins_over_higher_score(self):
        v = vote(2)
        v.add("bob", 0.95)
        v.add("bob", 0.96)
        for _ in range(3):
            v.add("alice", 0.55)
        assert v.identity() == "alice"
        assert v.decide() == ("watchlist", "alice", 0.55)

    def test_identity_below_needed_is_not_a_candidate_even_with_more_score(self):
        v = vote(3)
        for _ in range(3):
            v.add("alice", 0.5)
        v.add("bob", 0.99)
        v.add("bob", 0.99)
        assert v.identity() == "alice"

    def test_watchlist_decided_only_once(self):
        v = vote(2)
        v.add("alice", 0.6)
        v.add("alice", 0.6)
        assert v.decide() == ("watchlist", "alice", 0.6)
        assert v.decide() is None
        v.add("alice", 0.9)  # more votes for an already decided identity: still nothing new
        assert v.decide() is None

    def test_unknown_decided_only_once(self):
        v = vote(2)
        v.add(None, 0.1)
        v.add(None, 0.1)
        assert v.decide() == ("unknown", None, 0.1)
        assert v.decide() is None
        v.add(None, 0.2)
        assert v.decide() is None

    def test_later_majority_for_another_identity_is_decided_too(self):
        v = vote(2)
        v.add("alice", 0.6)
        v.add("alice", 0.7)
        assert v.decide() == ("watchlist", "alice", 0.7)
        for s in (0.8, 0.75, 0.85):
            v.add("bob", s)
        assert v.identity() == "bob"
        assert v.decide() == ("watchlist", "bob", 0.85)
        assert v.decide() is None
        # alice regains the majority: she was already reported, so nothing new.
        for _ in range(5):
            v.add("alice", 0.7)
        assert v.identity() == "alice"
        assert v.decide() is None
        assert v.decided == {"alice", "bob"}

    def test_unknown_then_later_watchlist(self):
        v = vote(2)
        v.add(None, 0.1)
        v.add(None, 0.2)
        assert v.decide() == ("unknown", None, 0.2)
        v.add("alice", 0.6)
        assert v.decide() is None
        v.add("alice", 0.65)
        assert v.decide() == ("watchlist", "alice", 0.65)
        assert v.decide() is None

    def test_watchlist_track_never_becomes_unknown(self):
        v = vote(2)
        v.add("alice", 0.6)
        v.add("alice", 0.6)
        assert v.decide()[0] == "watchlist"
        for _ in range(5):
            v.add(None, 0.1)
        assert v.decide() is None


# ============================================================================================ Cooldown
class TestCooldown:
    def test_first_alert_allowed_then_suppressed_within_seconds(self):
        c = Cooldown(10.0)
        assert c.allow("cam", "alice", 100.0) is True
        assert c.allow("cam", "alice", 100.0) is False
        assert c.allow("cam", "alice", 109.999) is False

    def test_boundary_exactly_seconds_is_allowed(self):
        c = Cooldown(10.0)
        assert c.allow("cam", "alice", 100.0)
        assert not c.allow("cam", "alice", 109.5)
        assert c.allow("cam", "alice", 110.0)  # t - last == seconds
        assert not c.allow("cam", "alice", 119.0)  # cooldown restarted at 110
        assert c.allow("cam", "alice", 120.0)

    @pytest.mark.parametrize("first, second", [(("cam", "alice"), ("cam", "bob")), (("door", "alice"), ("hall", "alice"))],
                             ids=["other identity", "other camera"])
    def test_other_key_not_suppressed(self, first, second):
        c = Cooldown(10.0)
        assert c.allow(*first, 0.0)
        assert c.allow(*second, 1.0)
        assert not c.allow(*first, 5.0)
        assert not c.allow(*second, 5.0)

    def test_suppressed_attempts_do_not_restart_cooldown(self):
        c = Cooldown(10.0)
        assert c.allow("cam", "alice", 0.0)
        for t in (3.0, 6.0, 9.0, 9.99):
            assert not c.allow("cam", "alice", t)
        assert c.allow("cam", "alice", 10.0)

    def test_zero_cooldown_always_allows(self):
        c = Cooldown(0.0)
        assert all(c.allow("cam", "alice", 5.0) for _ in range(5))
        assert c.allow("cam", None, 5.0)
        assert c.allow("cam", None, 5.0)

    def test_unknown_faces_share_one_key_per_camera(self):
        c = Cooldown(10.0)
        assert c.allow("cam", None, 0.0)
        assert not c.allow("cam", None, 3.0)  # another unknown person, same key
        assert c.allow("other", None, 3.0)
        assert c.allow("cam", "alice", 3.0)  # a known identity is its own key
        assert c.allow("cam", None, 10.0)


# ============================================================================================ AlertRules
class TestAlertRules:
    RULES = {"wl": "watchlist", "unk": "unknown", "both": "both"}

    @pytest.mark.parametrize("camera,kind,wanted", [
        ("wl", "watchlist", True), ("wl", "unknown", False),
        ("unk", "watchlist", False), ("unk", "unknown", True),
        ("both", "watchlist", True), ("both", "unknown", True),
    ])
    def test_per_camera(self, camera, kind, wanted):
        assert AlertRules(self.RULES).wanted(camera, kind) is wanted

    def test_unknown_camera_uses_default_watchlist(self):
        r = AlertRules(self.RULES)
        assert r.wanted("nowhere", "watchlist") is True
        assert r.wanted("nowhere", "unknown") is False

    def test_unknown_camera_uses_given_default(self):
        r = AlertRules(self.RULES, default="unknown")
        assert r.wanted("nowhere", "watchlist") is False
        assert r.wanted("nowhere", "unknown") is True
        r = AlertRules({}, default="both")
        assert r.wanted("x", "watchlist") and r.wanted("x", "unknown")

    @pytest.mark.parametrize("kind", ["observation", "eos", "both", "", "WATCHLIST"])
    @pytest.mark.parametrize("camera", ["wl", "unk", "both", "nowhere"])
    def test_other_kinds_never_wanted(self, camera, kind):
        assert AlertRules(self.RULES, default="both").wanted(camera, kind) is False

    def test_rules_are_copied(self):
        src = {"cam": "unknown"}
        r = AlertRules(src)
        src["cam"] = "watchlist"
        assert r.wanted("cam", "unknown") is True
        assert r.wanted("cam", "watchlist") is False


# ============================================================================================ EmbeddingBudget
class TestEmbeddingBudget:
    def test_min_gap_spreads_the_budget_over_the_track_on_the_frame_clock(self):
        b = EmbeddingBudget(limit=3, min_gap_s=0.3)
        times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.65, 0.7]
        got = [bool(b.choose([1], [1.0], now=100.0, frame_times=[t])[0]) for t in times]
        assert got == [True, False, False, True, False, True, False]  # 0.0, 0.3, 0.65: 3 spaced looks
        # two faces of one track in one frame: one look; another track has its own clock
        c = EmbeddingBudget(limit=5, min_gap_s=0.3)
        assert c.choose([1, 1, 2], [0.9, 1.0, 0.5], now=0.0, frame_times=[5.0, 5.0, 5.0]).tolist() == [False, True, True]
        # a file scanned again (its clock goes back) starts the spacing over
        assert c.choose([1], [1.0], now=1.0, frame_times=[0.1]).tolist() == [True]

    def test_at_most_limit_per_track_across_calls(self):
        b = EmbeddingBudget(limit=3)
        got = [bool(b.choose([7], [0.9], now=float(i))[0]) for i in range(6)]
        assert got == [True, True, True, False, False, False]

    def test_mask_is_parallel_to_input(self):
        b = EmbeddingBudget(limit=10)
        m = b.choose([1, 2, 3], [0.5, 0.6, 0.7], now=0.0)
        assert m.dtype == np.bool_
        assert m.tolist() == [True, True, True]
        assert b.choose([], [], now=0.0).tolist() == []

    def test_best_chips_first_within_one_call(self):
        b = EmbeddingBudget(limit=2)
        q = [0.85, 0.95, 0.80, 0.99, 0.90]
        m = b.choose([1] * 5, q, now=0.0)
        assert m.tolist() == [False, True, False, True, False]

    def test_best_chips_first_limit_three(self):
        b = EmbeddingBudget(limit=3)
        q = [0.90, 0.97, 0.92, 0.99, 0.95, 0.91]
        m = b.choose([4] * 6, q, now=0.0)
        assert sorted(np.asarray(q)[m].tolist()) == [0.95, 0.97, 0.99]

    def test_keep_share_skips_chips_much_worse_than_best_in_one_call(self):
        b = EmbeddingBudget(limit=10, keep_share=0.8)
        m = b.choose([1, 1, 1], [1.0, 0.5, 0.85], now=0.0)
        assert m.tolist() == [True, False, True]

    def test_keep_share_across_calls_and_boundary(self):
        b = EmbeddingBudget(limit=10, keep_share=0.8)
        assert b.choose([1], [1.0], 0.0).tolist() == [True]
        assert b.choose([1], [0.79], 1.0).tolist() == [False]
        assert b.choose([1], [0.8], 2.0).tolist() == [True]  # exactly 0.8 x best is kept

    def test_skipped_chips_do_not_spend_the_budget(self):
        b = EmbeddingBudget(limit=2, keep_share=0.8)
        assert b.choose([1], [1.0], 0.0).tolist() == [True]
        assert b.choose([1], [0.3], 1.0).tolist() == [False]
        assert b.choose([1], [0.3], 2.0).tolist() == [False]
        assert b.choose([1], [0.9], 3.0).tolist() == [True]
        assert b.choose([1], [1.0], 4.0).tolist() == [False]  # limit 2 spent

    def test_best_so_far_rises_and_raises_the_bar(self):
        b = EmbeddingBudget(limit=10, keep_share=0.8)
        assert b.choose([1], [0.5], 0.0).tolist() == [True]
        assert b.choose([1], [0.45], 1.0).tolist() == [True]  # >= 0.4
        assert b.choose([1], [1.0], 2.0).tolist() == [True]
        assert b.choose([1], [0.5], 3.0).tolist() == [False]  # now < 0.8

    def test_independent_budgets_per_track(self):
        b = EmbeddingBudget(limit=1, keep_share=0.8)
        m = b.choose([1, 1, 2, 2], [0.9, 0.8, 0.5, 0.45], now=0.0)
        # track 2's 0.5 is far below track 1's 0.9 but is judged only against track 2's own best.
        assert m.tolist() == [True, False, True, False]
        assert b.choose([3], [0.1], 1.0).tolist() == [True]
        assert b.choose([1, 2, 3], [1.0, 1.0, 1.0], 2.0).tolist() == [False, False, False]

    def test_forget_drops_unseen_tracks_and_keeps_recent(self):
        b = EmbeddingBudget(limit=1, forget_s=60.0)
        b.choose([1], [0.9], now=0.0)
        b.choose([2], [0.9], now=50.0)
        b.forget(60.0)  # track 1 unseen for exactly forget_s: dropped
        assert set(b.tracks) == {2}
        # track 2 is still spent; track 1 starts over.
        assert b.choose([2], [0.9], now=61.0).tolist() == [False]
        assert b.choose([1], [0.9], now=61.0).tolist() == [True]

    def test_forgotten_track_fresh_budget_and_fresh_best(self):
        b = EmbeddingBudget(limit=2, keep_share=0.8, forget_s=10.0)
        assert b.choose([5, 5], [1.0, 0.95], now=0.0).tolist() == [True, True]
        assert b.choose([5], [1.0], now=1.0).tolist() == [False]
        b.forget(100.0)
        assert b.tracks == {}
        # fresh budget and the old best (1.0) no longer raises the bar
        assert b.choose([5, 5, 5], [0.3, 0.28, 0.2], now=100.0).tolist() == [True, True, False]

    def test_seen_without_embedding_still_counts_as_seen(self):
        b = EmbeddingBudget(limit=1, forget_s=60.0)
        b.choose([1], [0.9], now=0.0)
        assert b.choose([1], [0.9], now=50.0).tolist() == [False]  # over budget, but seen
        b.forget(100.0)
        assert 1 in b.tracks
        b.forget(110.0)
        assert 1 not in b.tracks


# ============================================================================================ LiveBatchCut
@dataclass
class F:
    camera: str
    seq: int


def cams(frames) -> list[str]:
    return [f.camera for f in frames]


class TestLiveBatchCut:
    def test_limit_is_one_before_any_observation(self):
        assert LiveBatchCut(max_batch=8, budget_ms=100.0).limit() == 1

    def test_limit_from_budget_and_cost(self):
        c = LiveBatchCut(max_batch=32, budget_ms=100.0)
        c.observe(4, 40.0)  # 10 ms per frame
        assert c.cost_ms == pytest.approx(10.0)
        assert c.limit() == 10

    def test_limit_floors(self):
        c = LiveBatchCut(max_batch=32, budget_ms=100.0)
        c.observe(1, 30.0)
        assert c.limit() == 3

    def test_limit_capped_at_max_batch(self):
        c = LiveBatchCut(max_batch=8, budget_ms=100.0)
        c.observe(4, 4.0)  # 1 ms per frame: 100 would fit
        assert c.limit() == 8

    def test_limit_at_least_one_when_a_frame_exceeds_budget(self):
        c = LiveBatchCut(max_batch=8, budget_ms=100.0)
        c.observe(1, 500.0)
        assert c.limit() == 1

    def test_observe_zero_frames_is_ignored(self):
        c = LiveBatchCut(max_batch=8, budget_ms=100.0)
        c.observe(0, 1000.0)
        assert c.cost_ms is None
        assert c.limit() == 1
        c.observe(2, 20.0)
        c.observe(0, 1000.0)
        assert c.cost_ms == pytest.approx(10.0)

    def test_ema_smoothing(self):
        c = LiveBatchCut(max_batch=32, budget_ms=100.0, smoothing=0.2)
        c.observe(2, 20.0)  # first observation taken as is: 10
        c.observe(1, 20.0)  # 0.8 * 10 + 0.2 * 20
        assert c.cost_ms == pytest.approx(12.0)
        assert c.limit() == 8  # 100 // 12
        c.observe(1, 2.0)  # 0.8 * 12 + 0.2 * 2 = 10.0
        assert c.cost_ms == pytest.approx(10.0)

    def test_cut_keeps_newest_per_camera_and_counts_stale(self):
        c = LiveBatchCut(max_batch=8, budget_ms=100.0)
        c.observe(1, 1.0)
        frames = [F("a", 1), F("a", 3), F("b", 5), F("a", 2), F("b", 4), F("c", 9)]
        keep, stale, overload = c.cut(frames, now=1.0)
        assert sorted((f.camera, f.seq) for f in keep) == [("a", 3), ("b", 5), ("c", 9)]
        assert stale == 3
        assert overload == 0

    def test_cut_empty(self):
        c = LiveBatchCut(max_batch=8, budget_ms=100.0)
        assert c.cut([], now=1.0) == ([], 0, 0)

    def test_cut_before_observe_takes_one_frame(self):
        c = LiveBatchCut(max_batch=8, budget_ms=100.0)
        keep, stale, overload = c.cut([F("a", 1), F("b", 1), F("c", 1)], now=1.0)
        assert len(keep) == 1
        assert (stale, overload) == (0, 2)

    def test_counts_under_overload_with_stale(self):
        c = LiveBatchCut(max_batch=2, budget_ms=100.0)
        c.observe(1, 1.0)
        frames = [F("a", 1), F("b", 1), F("c", 1), F("a", 2), F("d", 7)]
        keep, stale, overload = c.cut(frames, now=1.0)
        assert len(keep) == 2
        assert stale == 1
        assert overload == 2
        assert len(keep) + overload == 4  # every camera is either kept or dropped for overload
        for f in keep:
            if f.camera == "a":
                assert f.seq == 2

    def test_overload_round_robin_limit_one(self):
        c = LiveBatchCut(max_batch=1, budget_ms=100.0)
        c.observe(1, 1.0)
        served = []
        for i in range(6):
            keep, stale, overload = c.cut([F("a", i), F("b", i), F("c", i)], now=float(i + 1))
            assert (len(keep), stale, overload) == (1, 0, 2)
            served.append(keep[0].camera)
        assert served == ["a", "b", "c", "a", "b", "c"]

    def test_longest_ago_served_goes_first_regardless_of_input_order(self):
        c = LiveBatchCut(max_batch=1, budget_ms=100.0)
        c.observe(1, 1.0)
        assert cams(c.cut([F("a", 1)], now=1.0)[0]) == ["a"]
        assert cams(c.cut([F("b", 1)], now=2.0)[0]) == ["b"]
        # a was served at 1, b at 2, c never: c first, then a, then b
        assert cams(c.cut([F("b", 2), F("a", 2), F("c", 2)], now=3.0)[0]) == ["c"]
        assert cams(c.cut([F("b", 3), F("a", 3), F("c", 3)], now=4.0)[0]) == ["a"]
        assert cams(c.cut([F("b", 4), F("a", 4), F("c", 4)], now=5.0)[0]) == ["b"]

    def test_no_camera_starves_under_overload(self):
        c = LiveBatchCut(max_batch=2, budget_ms=100.0)
        c.observe(1, 1.0)
        names = ["a", "b", "c", "d", "e"]
        last_served = {n: 0 for n in names}
        counts = {n: 0 for n in names}
        for i in range(1, 31):
            keep, stale, overload = c.cut([F(n, i) for n in names], now=float(i))
            assert (len(keep), stale, overload) == (2, 0, 3)
            assert len(set(cams(keep))) == 2
            for n in cams(keep):
                counts[n] += 1
                last_served[n] = i
            # with 5 cameras and 2 slots, nobody waits more than 3 calls
            assert all(i - last_served[n] < 3 for n in names), (i, last_served)
        assert all(v >= 10 for v in counts.values()), counts

    def test_camera_with_no_frame_is_not_served(self):
        c = LiveBatchCut(max_batch=1, budget_ms=100.0)
        c.observe(1, 1.0)
        c.cut([F("a", 1)], now=1.0)
        c.cut([F("a", 2)], now=2.0)
        assert c.served == {"a": 2.0}
        assert cams(c.cut([F("a", 3), F("b", 1)], now=3.0)[0]) == ["b"]


def test_one_vote_names_a_person_at_once_but_unknown_needs_two_misses():
    v = vote(needed=1)
    v.add(None, 0.3)
    assert v.decide() is None  # one blurred first chip does not make the track unknown
    v.add("alice", 0.97)
    assert v.decide() == ("watchlist", "alice", 0.97)
    w = vote(needed=1)
    w.add(None, 0.3)
    w.add(None, 0.4)
    assert w.decide() == ("unknown", None, 0.4)


# ----------------------------------------------------------------------------------------- quality: pose
def test_frontality_is_high_for_the_template_and_falls_as_the_face_turns_or_tilts():
    from engines.face_model import CROP_TEMPLATE
    from stream.pipeline.decisions import FRONTAL_FLOOR, frontality

    frontal = CROP_TEMPLATE.copy()
    iod = frontal[1, 0] - frontal[0, 0]
    turned, more, tilted = frontal.copy(), frontal.copy(), frontal.copy()
    turned[2, 0] += 0.2 * iod  # nose off the eyes' midpoint: yaw
    more[2, 0] += 0.6 * iod
    tilted[2, 1] -= 0.3 * iod  # nose up towards the eyes: pitch
    f = frontality(np.stack([frontal, turned, more, tilted]))
    assert f[0] > 0.95 and f[0] > f[1] > f[2] and f[3] < f[0]
    assert f[2] == pytest.approx(FRONTAL_FLOOR)  # fully turned: the floor, never 0


def test_frontality_ignores_in_plane_roll():
    from engines.face_model import CROP_TEMPLATE
    from stream.pipeline.decisions import frontality

    c = CROP_TEMPLATE.mean(0)
    a = np.deg2rad(25)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rolled = (CROP_TEMPLATE - c) @ rot.T + c
    assert frontality(rolled[None])[0] == pytest.approx(frontality(CROP_TEMPLATE[None])[0], abs=1e-6)


def test_face_quality_ranks_a_frontal_look_above_a_turned_one_of_the_same_size_and_sharpness():
    from engines.face_model import CROP_TEMPLATE

    turned = CROP_TEMPLATE.copy()
    turned[2, 0] += 0.3 * (turned[1, 0] - turned[0, 0])
    q = face_quality(np.array([0.99, 0.99]), np.array([120, 120]), np.array([150, 150]), np.stack([CROP_TEMPLATE, turned]))
    assert q[0] > q[1] > 0
    assert face_quality(0.99, 120, 150) == pytest.approx(0.99)  # without landmarks: as before
