"""Pass-level trials: the track rule scored on passes built from labelled photos, exactly as it decides live.

Why: the live system decides a track, not a photo pair (``engines.aggregate``): the cosine of the track's mean
embedding with a person's template (the mean of their enrolled samples). A threshold calibrated on photo pairs
says nothing about that score (means of looks score higher, for impostors too), so the track rule is calibrated
on trials of its own. A *pass* is what a camera sees of one person walking by: ``length`` (m) photos of them, in a
random order, standing in for the embeddings of a track as they arrive. For every identity with at least k + m
photos, ``draws`` seeded draws split its photos into an enrolment set of k (its template) and a pass of m OTHER
photos (a genuine trial); every identity with at least m photos also gets a pass per draw, and each pass is
scored against the template of every other identity (of the same family with ``within_families``: a family may
hold one person under two names): an impostor trial.

The live rule decides a track once it has ``min_chips`` (``matching.votes``) embeddings and decides again as
each further one arrives, up to ``matching.max_embeddings_per_track``. So a pass is accepted when ANY of its
prefixes of length min_chips..m reaches the threshold, and its score is the maximum over those prefixes: an
impostor that would have been named after 2 looks counts as a false accept even if 5 looks would have cleared
it. Scores are computed with equal quality weights (photos have no track quality).

Everything is numpy on the embeddings of a :class:`~stream.eval.photos.LabelledPhotos`; the draws are made once for
every identity of the folder in identity order, so a subset of identities (an identity half) sees exactly the
passes the whole folder has for them and a result is reproducible from the seed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from engines.aggregate import templates as mean_templates

if TYPE_CHECKING:  # the CLI imports this module for its constants; the heavy ones load when used
    from stream.eval.identify import OpenSet
    from stream.eval.photos import LabelledPhotos

#: Seeded draws (enrolment set + pass) per identity; 200 gives wild_dev ~40,000 impostor passes within families
#: at k = 3, m = 3 (issue 17's measurement), enough to back a pass FAR of 1e-3 with room for false accepts.
DEFAULT_DRAWS = 200

#: The derivation of ``stream.eval.rates.MARGINS`` for the cohort-normalised track score (dlib) (:func:`cohort_normalised`), in its units (impostor
#: standard deviations of a template against the cohort): ``python tools/threshold_splits.py --rule track
#: --cohort-norm --root ../shared/data/faces/wild_dev/ids --root ../shared/data/faces/lab_dev/ids --derive 100``:
#: wild_dev median -0.446, 95 % +0.650, 99 % +0.794, max +1.017 (lab_dev 95 % +0.695, 99 % +1.025, max +1.247).
#: A measured option, off in the product (``calibrate --cohort-norm`` reports it, never writes it): at the same
#: promise it accepted fewer genuine passes on unseen halves than the plain track rule (``--cohort-norm --splits
#: 100``: mean unseen TAR 34.4 % vs 55.5 % on wild_dev, 34.0 % vs 43.3 % on lab_dev; more TAR in 34 and 38 of 100
#: splits). Why it cannot win here: what a threshold must hold back are pairs of look-alike people, and a per-person
#: statistic against other faces does not see that one pair is close.
COHORT_NORM_MARGIN = 0.794


class PassError(ValueError):
    """Pass trials that cannot be built from the data (no identity has enough photos); the message says why."""


@dataclass(frozen=True)
class PassBlock:
    """The pass trials of one family (or of every identity, when families are not kept apart).

    ``scores[d, p, t]`` is the prefix-max cosine of draw ``d``'s pass of ``pass_owner[p]`` with draw ``d``'s
    template of ``tmpl_owner[t]``; where the owners are the same identity it is a genuine trial (pass and
    enrolment photos disjoint by construction), else an impostor one. ``at_best[d, t, u]``: the genuine pass of
    ``tmpl_owner[t]`` against template ``u`` at the prefix where its own template scores highest (for TPIR).
    """

    name: str
    pass_owner: np.ndarray  # (P,) identity ids with >= m photos
    tmpl_owner: np.ndarray  # (T,) identity ids with >= k + m photos (a subset of pass_owner)
    tmpl_pos: np.ndarray  # (T,) position of each template owner in pass_owner
    scores: np.ndarray  # (D, P, T) float64
    at_best: np.ndarray  # (D, T, T) float64
    templates: np.ndarray  # (D, T, dim) float32 unit templates (for cohort statistics)

    def subset(self, keep: np.ndarray) -> "PassBlock":
        """The block restricted to identities in ``keep`` (identity ids)."""
        p = np.isin(self.pass_owner, keep)
        t = np.isin(self.tmpl_owner, keep)
        pos = np.cumsum(p) - 1
        return PassBlock(self.name, self.pass_owner[p], self.tmpl_owner[t], pos[self.tmpl_pos[t]],
                         self.scores[:, p][:, :, t], self.at_best[:, t][:, :, t], self.templates[:, t])

    @property
    def impostor_mask(self) -> np.ndarray:
        """(P, T) True where the pass owner is not the template owner."""
        return self.pass_owner[:, None] != self.tmpl_owner[None, :]


@dataclass(frozen=True)
class PassTrials:
    """Genuine and impostor passes of a labelled folder (see the module docstring); ``subset`` restricts them."""

    enroll: int  # k: photos per template
    length: int  # m: photos per pass
    min_chips: int  # the first prefix length that decides (matching.votes)
    draws: int  # draws per identity actually used
    seed: int
    within_families: bool
    blocks: tuple[PassBlock, ...]
    identities: int  # identities of the folder (before any subset)
    normalised: str = ""  # "" for plain cosines, else how the scores were normalised (cohort_normalised)
    rule: str = "track"  # track: mean of the pass vs template; votes: min_chips-th best look vs the best sample

    def subset(self, identities: np.ndarray | None) -> "PassTrials":
        """The trials among ``identities`` only (all when None): an identity half's passes and templates."""
        if identities is None:
            return self
        keep = np.asarray(identities)
        return replace(self, blocks=tuple(b.subset(keep) for b in self.blocks))

    @property
    def template_owners(self) -> np.ndarray:
        return np.concatenate([b.tmpl_owner for b in self.blocks]) if self.blocks else np.empty(0, np.int64)

    def genuine(self) -> np.ndarray:
        """Prefix-max score of every genuine pass: one per (template owner, draw)."""
        out = [b.scores[:, b.tmpl_pos, np.arange(len(b.tmpl_owner))].ravel() for b in self.blocks]
        return np.concatenate(out) if out else np.empty(0)

    def impostors(self) -> np.ndarray:
        """Prefix-max score of every impostor pass: a pass of one identity against another's template, same draw."""
        out = [b.scores[:, b.impostor_mask].ravel() for b in self.blocks]
        return np.concatenate(out) if out else np.empty(0)

    def largest_gallery(self) -> int:
        """The largest N at which FPIR can be measured: N templates of one block plus a stranger with a pass."""
        sizes = [len(b.tmpl_owner) if len(b.pass_owner) > len(b.tmpl_owner) else len(b.tmpl_owner) - 1
                 for b in self.blocks]
        return max(sizes, default=0)

    def open_set(self, gallery_size: int) -> "OpenSet":
        """The passes as an :class:`~stream.eval.identify.OpenSet` at gallery size N, so FPIR (every gallery of N
        templates within a block, in closed form), its bound, the threshold search and TPIR are the photo code's.

        A non-mated pass is a false positive when its score (prefix-max) with ANY of the N templates reaches the
        threshold, which is when some prefix's best template does: the live rule's false alarm. Passes of template
        owners see the other T-1 templates, passes of identities too small to enrol see all T; each is one
        "family" of the OpenSet. TPIR is a lower bound: a genuine pass counts as found when, at the prefix where
        its own template scores highest, that template is rank-1 in the gallery and reaches the threshold.
        """
        from stream.eval.identify import OpenSet, _FamilyOpenSet

        fams, skipped = [], {}
        for b in self.blocks:
            t_n = len(b.tmpl_owner)
            if t_n - 1 >= gallery_size:
                own_rows = b.scores[:, b.tmpl_pos]  # (D, T, T): template owners' passes against every template
                off = ~np.eye(t_n, dtype=bool)
                others = own_rows[:, off].reshape(-1, t_n - 1)
                own = own_rows[:, np.arange(t_n), np.arange(t_n)].ravel()
                best = b.at_best[:, off].reshape(-1, t_n - 1)
                below = np.count_nonzero(best < own[:, None], axis=1)
                fams.append(_FamilyOpenSet(f"{b.name}:enrolled", others, own, below))
            else:
                skipped[f"{b.name}:enrolled"] = t_n
            stranger = ~np.isin(b.pass_owner, b.tmpl_owner)
            if stranger.any() and t_n >= gallery_size:
                fams.append(_FamilyOpenSet(f"{b.name}:strangers", b.scores[:, stranger].reshape(-1, t_n),
                                           np.empty(0), np.empty(0, np.int64)))
            elif stranger.any():
                skipped[f"{b.name}:strangers"] = t_n
        return OpenSet(gallery_size, self.enroll, fams, skipped)

    def describe(self) -> str:
        """How the trials were made, for reports: k, m, the first deciding prefix, draws."""
        how = ("max over prefixes" if self.rule == "track" else
               f"the votes rule: accepted when {self.min_chips} looks reach the threshold against the person's best sample")
        return (f"passes of {self.length} photos scored from {self.min_chips} ({how}), {'templates' if self.rule == 'track' else 'enrolments'} of "
                f"{self.enroll}, {self.draws} draws per identity" + (f", {self.normalised}" if self.normalised else ""))


def _prefix_vectors(e: np.ndarray, min_chips: int) -> np.ndarray:
    """(..., m, d) unit embeddings in arrival order -> (..., m - min_chips + 1, d): the track vector of every prefix
    of length min_chips..m, as ``engines.aggregate.track_vector`` computes it with equal weights (the normalised sum
    of unit vectors; float32 like the live rule)."""
    c = np.cumsum(e.astype(np.float32), axis=-2)[..., min_chips - 1:, :]
    return c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)


def pass_trials(ls: "LabelledPhotos", *, enroll: int = 3, length: int = 3, min_chips: int = 2,
                draws: int = DEFAULT_DRAWS, seed: int = 0, within_families: bool = False,
                max_passes: int = 5_000_000, identities: np.ndarray | None = None, rule: str = "track") -> PassTrials:
    """The pass trials of a labelled folder (module docstring), restricted to ``identities`` when given.

    ``enroll`` k photos make a template (``engines.aggregate.templates``); ``length`` m photos make a pass, scored
    from ``min_chips`` on. When the impostor passes of ``draws`` draws would exceed ``max_passes``, fewer draws
    are used (said in ``draws``). Raises :class:`PassError` when no identity has k + m photos.

    ``rule="votes"`` scores the same passes by the live votes rule instead (``recognition.rule: votes``): each look
    is compared with each enrolled sample of a person (its best one counts, as the gallery search does) and the
    pass scores the ``min_chips``-th best of its looks, so the pass is accepted at a threshold exactly when at least
    ``matching.votes`` looks reach it. (Live, a look votes only for its top-1 identity, so this is an upper bound of
    the live false accepts against one person.) The same seeded draws, so both rules see the same passes.
    """
    if rule not in ("track", "votes"):
        raise PassError(f"unknown pass rule {rule!r}: track or votes")
    if not 1 <= min_chips <= length:
        raise PassError(f"a pass of {length} photos cannot be decided from {min_chips} (needs 1 <= min_chips <= length)")
    if enroll < 1 or draws < 1:
        raise PassError("passes need at least 1 enrolment photo and 1 draw")
    counts = np.bincount(ls.ident, minlength=len(ls.identities))
    passers = np.flatnonzero(counts >= length)
    enrolled = np.flatnonzero(counts >= enroll + length)
    if len(enrolled) == 0:
        raise PassError(f"no identity has {enroll + length} photos with a face ({enroll} to enrol + a pass of {length}); "
                        f"the most any has is {int(counts.max())}: use a smaller --enroll or --pass-length")
    fam = ls.families if within_families else np.array(["all"] * len(ls.identities))
    groups = sorted(set(fam[enrolled]))
    # impostor passes per draw, to cap the draws (a folder with thousands of identities)
    per_draw = sum(int(np.sum(fam[passers] == g)) * int(np.sum(fam[enrolled] == g)) - int(np.sum(fam[enrolled] == g))
                   for g in groups)
    d_used = int(min(draws, max(1, max_passes // max(per_draw, 1))))
    rng = np.random.default_rng(seed)
    dim = ls.emb.shape[1]
    pass_vec: dict[int, np.ndarray] = {}  # identity -> (D, L, dim) prefix vectors (votes: the looks themselves)
    tmpl_vec: dict[int, np.ndarray] = {}  # identity -> (D, dim) templates
    samp_vec: dict[int, np.ndarray] = {}  # identity -> (D, k, dim) enrolled samples (votes)
    for i in passers:  # every identity, in order, so a subset sees the same draws
        photos = ls.photos_of(int(i))
        order = np.argsort(rng.random((draws, len(photos))), axis=1)[:d_used]  # a random permutation per draw
        if i in enrolled:
            enrol, walk = photos[order[:, :enroll]], photos[order[:, enroll:enroll + length]]
            _, tmpl_vec[int(i)] = mean_templates(ls.emb[enrol.ravel()], np.repeat(np.arange(d_used), enroll))
            samp_vec[int(i)] = ls.emb[enrol]
        else:
            walk = photos[order[:, :length]]
        pass_vec[int(i)] = _prefix_vectors(ls.emb[walk], min_chips) if rule == "track" else ls.emb[walk]
    blocks = []
    for g in groups:
        p_own = np.array([i for i in passers if fam[i] == g], dtype=np.int64)
        t_own = np.array([i for i in enrolled if fam[i] == g], dtype=np.int64)
        if len(p_own) < 2:
            continue  # one identity: no impostor pass in this block
        v = np.stack([pass_vec[int(i)] for i in p_own], axis=1)  # (D, P, L, dim)
        t = np.stack([tmpl_vec[int(i)] for i in t_own], axis=1)  # (D, T, dim)
        tpos = np.searchsorted(p_own, t_own)
        scores = np.empty((d_used, len(p_own), len(t_own)), np.float64)
        at_best = np.empty((d_used, len(t_own), len(t_own)), np.float64)
        step = max(1, int(20_000_000 // max(len(p_own) * v.shape[2] * len(t_own), 1)))
        if rule == "votes":
            smp = np.stack([samp_vec[int(i)] for i in t_own], axis=1)  # (D, T, k, dim)
            for d0 in range(0, d_used, step):
                look = np.einsum("dplx,dtkx->dpltk", v[d0:d0 + step], smp[d0:d0 + step]).max(axis=4)  # best sample
                scores[d0:d0 + step] = np.sort(look, axis=2)[:, :, v.shape[2] - min_chips].astype(np.float64)
            at_best[:] = scores[:, tpos]
            blocks.append(PassBlock(str(g), p_own, t_own, tpos, scores, at_best, t))
            continue
        for d0 in range(0, d_used, step):  # chunks of draws keep the (D, P, L, T) product small
            s = np.einsum("dplk,dtk->dplt", v[d0:d0 + step], t[d0:d0 + step]).astype(np.float64)
            scores[d0:d0 + step] = s.max(axis=2)
            own = s[:, tpos, :, np.arange(len(t_own))]  # (T, d, L): fancy indices first
            best_l = own.argmax(axis=2).T  # (d, T)
            g_rows = s[:, tpos]  # (d, T, L, T)
            at_best[d0:d0 + step] = np.take_along_axis(g_rows, best_l[:, :, None, None], axis=2)[:, :, 0, :]
        blocks.append(PassBlock(str(g), p_own, t_own, tpos, scores, at_best, t))
    out = PassTrials(enroll, length, min_chips, d_used, seed, within_families, tuple(blocks), len(ls.identities),
                     rule=rule)
    return out.subset(identities)


def cohort_normalised(trials: PassTrials, ls: "LabelledPhotos", cohort: np.ndarray) -> PassTrials:
    """The trials with every score z-normalised per template against a distractor cohort (issue 17, req. 4).

    For each template (each enrolled person, each draw), mu and sd of its cosine with every photo of the ``cohort``
    identities, leaving out the template's own identity and the pass owner's (a cohort is other faces: a stranger
    walking by is not in it, and the cohort must not hold the look-alike it is scored against); the score becomes
    (s - mu) / sd. Why try it: some people attract impostors (their template sits in a crowded part of the
    space), and one global threshold then costs everyone recall to hold those few back; normalising by each
    person's own impostor statistics could let one threshold fit all. Monotone per template, so the prefix-max
    and every accept decision commute with it.
    """
    cohort = np.unique(np.asarray(cohort, dtype=np.int64))
    n_c = np.bincount(ls.ident, minlength=len(ls.identities)).astype(np.float64)
    in_c = np.zeros(len(ls.identities), bool)
    in_c[cohort] = True
    photos = np.flatnonzero(in_c[ls.ident])
    owner = ls.ident[photos]
    order = np.argsort(owner, kind="stable")
    photos, owner = photos[order], owner[order]
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    cid = owner[starts]  # cohort identities with photos, in order
    blocks = []
    for b in trials.blocks:
        d_n, t_n = b.templates.shape[:2]
        if t_n == 0:  # no template left in this block (an identity half): nothing to normalise
            blocks.append(b)
            continue
        s1 = np.zeros((d_n, t_n, len(ls.identities)))
        s2 = np.zeros_like(s1)
        if len(photos):
            sims = (b.templates.reshape(-1, b.templates.shape[-1]) @ ls.emb[photos].T).astype(np.float64)
            s1[:, :, cid] = np.add.reduceat(sims, starts, axis=1).reshape(d_n, t_n, -1)
            s2[:, :, cid] = np.add.reduceat(sims * sims, starts, axis=1).reshape(d_n, t_n, -1)
        tot1, tot2, tot_n = s1[:, :, cid].sum(-1), s2[:, :, cid].sum(-1), n_c[cid].sum()

        def norm(scores: np.ndarray, probe_owner: np.ndarray) -> np.ndarray:
            """(D, Q, T) scores of passes of ``probe_owner`` (Q,) against the block's templates, normalised."""
            t_own = b.tmpl_owner
            excl_t = in_c[t_own].astype(float)  # the template's own identity leaves the cohort
            other = (probe_owner[:, None] != t_own[None, :]) & in_c[probe_owner][:, None]  # and the pass owner
            a1 = tot1 - excl_t * s1[:, np.arange(t_n), t_own]  # (D, T)
            a2 = tot2 - excl_t * s2[:, np.arange(t_n), t_own]
            an = tot_n - excl_t * n_c[t_own]  # (T,)
            q1 = a1[:, None, :] - other * s1[:, :, probe_owner].transpose(0, 2, 1)  # (D, Q, T)
            q2 = a2[:, None, :] - other * s2[:, :, probe_owner].transpose(0, 2, 1)
            qn = an[None, :] - other * n_c[probe_owner][:, None]  # (Q, T)
            if np.any(qn < 2):
                raise PassError(f"cohort normalisation needs >= 2 cohort photos per template after leaving out the two "
                                f"identities of a trial; block {b.name} has {int(qn.min())}")
            mu = q1 / qn
            sd = np.sqrt(np.maximum(q2 / qn - mu * mu, 1e-12))
            return (scores - mu) / sd

        blocks.append(replace(b, scores=norm(b.scores, b.pass_owner), at_best=norm(b.at_best, b.tmpl_owner)))
    return replace(trials, blocks=tuple(blocks),
                   normalised=f"z-normalised per template against a cohort of {len(cid)} identities")


def pass_summary(trials: PassTrials) -> dict:
    """Counts for reports: identities with a template, passes, genuine and impostor trials."""
    return {"rule": trials.rule, "enroll": trials.enroll, "pass_length": trials.length, "min_chips": trials.min_chips,
            "draws": trials.draws, "seed": trials.seed, "template_identities": int(len(trials.template_owners)),
            "pass_identities": int(sum(len(b.pass_owner) for b in trials.blocks)),
            "genuine_passes": int(sum(b.scores.shape[0] * len(b.tmpl_owner) for b in trials.blocks)),
            "impostor_passes": int(sum(b.scores.shape[0] * int(b.impostor_mask.sum()) for b in trials.blocks)),
            "normalised": trials.normalised, "how": trials.describe()}
