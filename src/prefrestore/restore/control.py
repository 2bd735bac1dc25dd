"""Controlled restoration of aligned faces: the fidelity dial, best-of-N reranking, the identity guard and colour.

    outcomes = restore_controlled(restorer, crops, RestoreOptions(candidates=4), seed=0, batch_size=8,
                                  scorers=Scorers.for_options(opts))

For each uint8 (S, S, 3) RGB aligned crop, in this order:

1. **Candidates.** ``options.candidates`` = N restorations with seeds ``seed, seed + 1, ..., seed + N - 1`` (all
   faces' candidates batched together when the restorer declares :data:`PER_FACE_SEEDS`, as ``FaceRestorer`` does), at
   ``options.fidelity`` when set (the restorer maps it onto its sampling controls, ``models/fidelity_dial.py``).
   Candidate 0 is exactly the N = 1 result, and N = 1 runs nothing extra.
2. **Colour.** Each candidate gets its input's colour (``options.color_fix``, :func:`prefrestore.faces.paste.
   match_color`: "lowfreq" replaces the restoration's low frequencies by the input's), so ``restored_faces/``,
   ``--aligned`` outputs and API results no longer drift darker and redder; paste-back matches again to the photo.
3. **Rerank** (N > 1 only). score = sum_k w_k * reward_k(candidate, input) with the offline rewards of
   ``prefrestore.rewards`` against the input crop (there is no ground truth): ``identity_dlib`` (cosine of dlib
   descriptors, in [-1, 1]), ``brisque`` (-BRISQUE/100, in [-1, 0], no reference), ``lmd_mtcnn`` (1 / (1 + d/20),
   d the mean MTCNN 5-point distance in px at 512 px, 0.01 when a face is not found). Default weights 1, 0.5, 0.5
   (``options.rerank_weights``). The highest score wins; a tie goes to the lowest seed, so the choice is a
   function of the seed.
4. **Identity guard** (``options.identity_guard``). Every face gets its identity distance and similarity to
   the input and its MTCNN landmark distance (px at the crop's size). ``options.identity_net`` picks the network:
   ``dlib`` (the dlib package; Euclidean distance) or ``mobileface`` (torch; distance = 1 - cosine). With "flag"
   or "fallback", a face whose distance exceeds ``options.guard_threshold`` (``identity_threshold``, else the
   network's default) is flagged; "fallback" then restores it again at fidelity 1
   (the setting closest to the input) and uses that if it passes, else keeps the input crop itself (the report
   says which: ``action``). The guard needs dlib (``[identity]``); without it, faces are not checked and the
   outcome says so in ``notes``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..faces.identity import IdentityScore, IdentityScorer, identity_available, load_identity_scorer
from ..faces.paste import BlendConfig, match_color
from ..io.photo_io import float_to_pixels
from ..metrics.color import face_delta_e
from .options import DEFAULT_RERANK_WEIGHTS, RestoreOptions

logger = logging.getLogger(__name__)

FALLBACK_FIDELITY = 1.0


class SetupError(UserError):
    """The options cannot run with this restorer or install (a rerank reward is missing, the restorer has no
    fidelity dial): the same for every face, so a run stops with this one line instead of failing each photo."""


# A restorer's optional abilities, declared in its ``capabilities`` (``pipeline.Restorer``), never probed:
FIDELITY_DIAL = "fidelity"
"""``restore(..., fidelity=f)`` maps f in [0, 1] onto its sampling; ``setting(f)`` -> the dial's
:class:`~prefrestore.models.fidelity_dial.FidelityPoint`; ``fidelity_table`` (source, calibrated)."""
PER_FACE_SEEDS = "seeds"
"""``restore(..., seeds=[...])``: one seed per face of a call (best-of-N batches a face's candidates together)."""
CAPABILITIES = frozenset({FIDELITY_DIAL, PER_FACE_SEEDS})


def can(restorer, capability: str) -> bool:
    """Whether ``restorer`` declares ``capability`` (one of :data:`CAPABILITIES`) in its ``capabilities``."""
    return capability in restorer.capabilities


def check_capabilities(restorer, options: RestoreOptions) -> None:
    """A one-line :class:`SetupError` when ``options`` need an ability ``restorer`` does not declare (today: the
    fidelity dial for ``--fidelity``); the identity guard's fallback without a dial is a note, not an error."""
    _require_dial(restorer, options.fidelity)


def _require_dial(restorer, fidelity: float | None) -> None:
    if fidelity is not None and not can(restorer, FIDELITY_DIAL):
        raise SetupError("--fidelity: this restorer has no fidelity dial (use a prefrestore model)")


@dataclass(frozen=True)
class Candidate:
    """One best-of-N sample: its seed, rerank score and the unweighted reward parts."""

    seed: int
    score: float
    parts: dict[str, float]


@dataclass(frozen=True, eq=False)
class FaceOutcome:
    """What happened to one face. ``restored``: uint8 (S, S, 3) RGB, what is written and pasted.

    identity: input -> ``restored`` (None without dlib). landmark_distance: mean MTCNN 5-point distance in px of
    the crop (None when either image has no face found or the guard is off). flagged: the guard found the chosen
    restoration too far from the input (it stays True when a fallback replaced it); action: "fallback: fidelity 1"
    or "fallback: input" when a fallback was used. color_delta_e: Delta E 2000 of the face-region mean colour,
    input vs the raw restoration ("raw") and vs the colour-fixed one ("fixed").
    """

    restored: np.ndarray
    identity: IdentityScore | None = None
    landmark_distance: float | None = None
    candidates: tuple[Candidate, ...] = ()
    chosen: int = 0
    flagged: bool = False
    action: str | None = None
    rejected_identity: IdentityScore | None = None
    fidelity: dict | None = None
    color_delta_e: dict[str, float] | None = None
    notes: tuple[str, ...] = ()

    def report(self) -> dict:
        """The JSON fields this face adds to ``reports/NAME.json``."""
        r: dict = {}
        if self.identity is not None:
            r.update(
                identity_similarity=round(self.identity.similarity, 4),
                identity_distance=round(self.identity.distance, 4),
            )
        if self.landmark_distance is not None:
            r["landmark_distance_px"] = round(self.landmark_distance, 2)
        if self.fidelity is not None:
            r["fidelity"] = {k: round(v, 4) for k, v in self.fidelity.items()}
        if self.candidates:
            r["candidates"] = [
                {"seed": c.seed, "score": round(c.score, 4), "parts": {k: round(v, 4) for k, v in c.parts.items()}}
                for c in self.candidates
            ]
            r["chosen_seed"] = self.candidates[self.chosen].seed
        if self.color_delta_e is not None:
            r["color_delta_e"] = {k: round(v, 3) for k, v in self.color_delta_e.items()}
        r["identity_guard"] = {"flagged": self.flagged, "action": self.action}
        if self.rejected_identity is not None:
            r["identity_guard"]["rejected_identity_distance"] = round(self.rejected_identity.distance, 4)
        if self.notes:
            r["notes"] = list(self.notes)
        return r


@dataclass
class Scorers:
    """The models the options need, built once per run. identity: dlib, or the torch network that
    ``options.identity_net`` names (:class:`prefrestore.metrics.identity.NetIdentityScorer`; None: not installed,
    or not wanted);
    landmarks: MTCNN 5 points (built on first use); rerank: the composite reward (built on first use, N > 1)."""

    identity: IdentityScorer | None = None
    rerank_weights: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    _landmarks: object | None = None
    _rerank: object | None = None
    notes: list[str] = field(default_factory=list)  # rewards left out of the default rerank

    @classmethod
    def for_options(
        cls, options: RestoreOptions, *, identity: IdentityScorer | None | str = "auto", device: str = "cpu"
    ) -> Scorers:
        """``identity="auto"`` loads dlib when installed; pass a scorer or None to choose. With
        ``options.identity_net`` other than dlib, any scorer but None is replaced by that network's (its missing
        weights are a one-line :class:`SetupError`). Building the rerank reward here (N > 1) makes a missing reward
        a one-line error before any face is restored."""
        if options.identity_net != "dlib" and identity is not None and options.identity_guard != "off":
            from ..errors import MetricUnavailable
            from ..metrics.identity import NetIdentityScorer

            try:
                scorer = NetIdentityScorer(options.identity_net, device=device)
            except MetricUnavailable as err:
                raise SetupError(f"--identity-net {options.identity_net}: {err}") from err
        else:
            scorer = load_identity_scorer() if identity == "auto" else identity
        s = cls(identity=scorer, rerank_weights=dict(options.rerank_weights), device=device)
        if options.candidates > 1:
            _ = s.rerank
        return s

    @property
    def landmarks(self):
        if self._landmarks is None:
            from ..metrics.landmarks import DetectLandmarks

            self._landmarks = DetectLandmarks(device=self.device)
        return self._landmarks

    @property
    def rerank(self):
        """The composite rerank reward. A reward of the *default* weights that cannot load here (BRISQUE without
        its model file, dlib not installed) is left out with a logged note (in ``notes``); one the user named is a
        :class:`SetupError`, as is a default with no reward left."""
        if self._rerank is None:
            from ..rewards.composite import CompositeReward, build_reward

            weights = {k: v for k, v in self.rerank_weights.items() if v != 0}
            default = dict(self.rerank_weights) == DEFAULT_RERANK_WEIGHTS
            rewards = {}
            for name in weights:
                try:
                    rewards[name] = build_reward(name, device=self.device)
                except (UserError, ImportError) as err:
                    if not default:
                        raise SetupError(
                            f"--candidates: the rerank reward {name} is unavailable ({err}); install "
                            f"it or drop it from --rerank-weights"
                        ) from None
                    note = (
                        f"--candidates: the default rerank reward {name} is unavailable here ({err}); reranking "
                        "without it"
                    )
                    logger.warning("%s", note)
                    self.notes.append(note)
            if not rewards:
                raise SetupError(
                    "--candidates: none of the default rerank rewards is available here; name one "
                    "that is, e.g. --rerank-weights ssim=1"
                )
            self._rerank = CompositeReward(rewards, {k: weights[k] for k in rewards})
        return self._rerank


def _checked(restored: Sequence[np.ndarray], batch: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(restored) != len(batch):
        raise ValueError(f"restorer returned {len(restored)} images for {len(batch)} faces")
    for r, c in zip(restored, batch, strict=True):
        if r.shape != c.shape or r.dtype != np.uint8:
            raise ValueError(f"restorer returned {r.dtype} {r.shape}, expected uint8 {c.shape}")
    return list(restored)


def sample_candidates(
    restorer,
    crops: Sequence[np.ndarray],
    *,
    n: int,
    seed: int,
    batch_size: int,
    fidelity: float | None = None,
    progress=None,
) -> list[list[np.ndarray]]:
    """-> out[k][i]: face i restored with seed + k. Batched across faces and candidates when the restorer takes
    per-face ``seeds`` (:data:`PER_FACE_SEEDS`); otherwise one call per candidate seed (batched across faces)."""
    kw = {} if fidelity is None else {"fidelity": fidelity}
    _require_dial(restorer, fidelity)
    out: list[list[np.ndarray]] = [[] for _ in range(n)]
    if n > 1 and can(restorer, PER_FACE_SEEDS):
        jobs = [(k, i) for i in range(len(crops)) for k in range(n)]  # a face's candidates side by side
        flat: dict[tuple[int, int], np.ndarray] = {}
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            batch = [crops[i] for _, i in chunk]
            res = _checked(restorer.restore(batch, seed=seed, seeds=[seed + k for k, _ in chunk], **kw), batch)
            flat.update(zip(chunk, res, strict=True))
            if progress:
                progress("faces_restored", sum(1 for k, _ in chunk if k == n - 1))
        return [[flat[k, i] for i in range(len(crops))] for k in range(n)]
    for k in range(n):
        for start in range(0, len(crops), batch_size):
            batch = list(crops[start : start + batch_size])
            out[k] += _checked(restorer.restore(batch, seed=seed + k, **kw), batch)
            if progress:  # every restorer call ends with an event (a stage boundary: a server can stop there)
                progress("faces_restored", len(batch) if k == n - 1 else 0)
    return out


def fix_color(restored: np.ndarray, reference: np.ndarray, mode: str, *, sigma: float | None = None) -> np.ndarray:
    """uint8 (S, S, 3) RGB restoration -> the same with ``reference``'s colour (``mode``: lowfreq, meanstd, none;
    ``sigma``: lowfreq's low-pass, fraction of S, default :class:`BlendConfig`'s)."""
    if mode == "none":
        return restored
    blend = BlendConfig(color_match=mode) if sigma is None else BlendConfig(color_match=mode, color_sigma=sigma)
    return float_to_pixels(match_color(restored, reference, blend), np.uint8)


def rerank(
    scorers: Scorers, crops: Sequence[np.ndarray], cands: list[list[np.ndarray]], seed: int
) -> list[tuple[int, tuple[Candidate, ...]]]:
    """Score every candidate against its input -> per face (index of the best, all candidates' scores)."""
    from ..io.image import to_model

    n, b = len(cands), len(crops)
    restored = to_model([cands[k][i] for i in range(b) for k in range(n)])
    lq = to_model([crops[i] for i in range(b) for _ in range(n)])
    total, parts = scorers.rerank(restored, lq, lq)  # the input is the reference of psnr / ssim (no GT here)
    out = []
    for i in range(b):
        rows = range(i * n, (i + 1) * n)
        scored = tuple(
            Candidate(seed + k, float(total[r]), {name: float(p[r]) for name, p in parts.items()})
            for k, r in enumerate(rows)
        )
        best = int(np.argmax([c.score for c in scored]))  # first maximum: the lowest seed wins a tie
        out.append((best, scored))
    return out


def restore_controlled(
    restorer,
    crops: Sequence[np.ndarray],
    options: RestoreOptions,
    *,
    seed: int,
    batch_size: int,
    scorers: Scorers,
    progress=None,
) -> list[FaceOutcome]:
    """Aligned crops -> one :class:`FaceOutcome` per crop (see the module docstring for the steps)."""
    crops = list(crops)
    if not crops:
        return []
    n = options.candidates
    cands = sample_candidates(
        restorer, crops, n=n, seed=seed, batch_size=batch_size, fidelity=options.fidelity, progress=progress
    )
    raws = cands
    cands = [[fix_color(r, c, options.color_fix) for r, c in zip(row, crops, strict=True)] for row in cands]
    notes: list[str] = []
    if n > 1:
        ranked = rerank(scorers, crops, cands, seed)
        notes += scorers.notes
    else:
        ranked = [(0, ()) for _ in crops]
    chosen = [cands[best][i] for i, (best, _) in enumerate(ranked)]
    raw_chosen: list[np.ndarray | None] = [raws[best][i] for i, (best, _) in enumerate(ranked)]

    identity = _identities(scorers.identity, crops, chosen, notes)
    guard = options.identity_guard
    if guard != "off" and scorers.identity is None and not identity_available():
        notes.append("identity guard inactive: dlib is not installed (pip install prefrestore[identity])")
    threshold = options.guard_threshold
    flagged = [guard != "off" and s is not None and s.distance > threshold for s in identity]
    actions: list[str | None] = [None] * len(crops)
    rejected: list[IdentityScore | None] = [None] * len(crops)
    if guard == "fallback" and any(flagged):
        idx = [i for i, f in enumerate(flagged) if f]
        safer = _fallback(restorer, [crops[i] for i in idx], options, seed, batch_size, notes)
        safer_ids = (
            _identities(scorers.identity, [crops[i] for i in idx], safer, notes)
            if safer is not None
            else [None] * len(idx)
        )
        for j, i in enumerate(idx):
            rejected[i] = identity[i]
            s = safer_ids[j]
            if safer is not None and s is not None and s.distance <= threshold:
                chosen[i], identity[i], actions[i] = safer[j], s, f"fallback: fidelity {FALLBACK_FIDELITY:g}"
            else:
                chosen[i], actions[i] = crops[i], "fallback: input"
                identity[i] = IdentityScore(similarity=1.0, distance=0.0)
            raw_chosen[i] = None
    landmarks = _landmarks(scorers, crops, chosen, notes) if guard != "off" else [None] * len(crops)
    fid = None
    if options.fidelity is not None and can(restorer, FIDELITY_DIAL):
        p = restorer.setting(options.fidelity)
        fid = {
            "fidelity": p.fidelity,
            "start_sigma": p.start_sigma,
            "guidance_scale": p.guidance_scale,
            "input_blend": p.input_blend,
        }
    out = []
    for i, crop in enumerate(crops):
        color = None
        if raw_chosen[i] is not None:
            color = {"raw": face_delta_e(crop, raw_chosen[i]), "fixed": face_delta_e(crop, chosen[i])}
        out.append(
            FaceOutcome(
                chosen[i],
                identity[i],
                landmarks[i],
                ranked[i][1],
                ranked[i][0],
                flagged[i],
                actions[i],
                rejected[i],
                fid,
                color,
                tuple(notes),
            )
        )
    return out


def _fallback(
    restorer, crops, options: RestoreOptions, seed: int, batch_size: int, notes: list[str]
) -> list[np.ndarray] | None:
    """The fidelity-1 restorations of flagged faces, colour-fixed; None when the restorer has no dial."""
    if not can(restorer, FIDELITY_DIAL):
        notes.append("identity guard: this restorer has no fidelity dial; flagged faces fall back to the input")
        return None
    try:
        (res,) = sample_candidates(restorer, crops, n=1, seed=seed, batch_size=batch_size, fidelity=FALLBACK_FIDELITY)
    except ValueError as err:  # e.g. explicit --start-sigma: the dial cannot be used
        notes.append(f"identity guard: no fidelity-1 fallback ({err}); flagged faces fall back to the input")
        return None
    return [fix_color(r, c, options.color_fix) for r, c in zip(res, crops, strict=True)]


def _identities(scorer: IdentityScorer | None, inputs, restored, notes: list[str]) -> list[IdentityScore | None]:
    """Identity scores, or Nones (and a note) when there is no scorer or dlib fails: the score is a report and a
    guard input, so its failure does not fail the face."""
    if scorer is None:
        return [None] * len(inputs)
    try:
        return list(scorer.compare(inputs, restored))
    except (RuntimeError, ValueError) as err:  # dlib raises RuntimeError
        notes.append(f"identity similarity not computed ({type(err).__name__}: {err})")
        return [None] * len(inputs)


def _landmarks(scorers: Scorers, inputs, restored, notes: list[str]) -> list[float | None]:
    from ..metrics.landmarks import landmark_distance

    out: list[float | None] = []
    try:
        for a, b in zip(inputs, restored, strict=True):
            pa, pb = scorers.landmarks.pair(b, a)
            out.append(None if pa is None or pb is None else landmark_distance(pa, pb))
    except (RuntimeError, ValueError) as err:
        notes.append(f"landmark agreement not computed ({type(err).__name__}: {err})")
        return [None] * len(inputs)
    return out
