"""Face tracks across video frames: association, landmark smoothing, bridging of missed frames, scene cuts.

Per frame the tracker gets the selected detections (or none, on frames where detection is skipped) and returns one
:class:`TrackedFace` per live track with **smoothed** landmarks, from which the face is aligned; a smoothed track
gives a crop that does not jitter with the detector's pixel noise, which is most of the flicker of per-frame
restoration.

* Association: greedy on a score that is the box IoU with the track's predicted box, or failing that, landmarks
  within ``match_distance`` eye distances of the prediction.
* Smoothing: an alpha-beta (constant-velocity) filter on the five landmarks: a still face converges to a fixed
  point, a panning or zooming one is followed without steady-state lag. A measurement farther than
  ``reset_distance`` eye distances from the prediction resets the filter (a fast turn, not noise).
* Bridging: a track not matched on a frame is carried by sparse optical flow (Lucas-Kanade on its landmarks) or,
  when that fails, by its velocity, for at most ``max_missed`` frames, and dropped when it leaves the frame.
* Scene cuts: a colour-histogram jump between consecutive frames ends every track (new shot, new faces).

Coordinates: float64 (x, y) pixels of the upright frame, as ``faces/types.py``. Landmarks are (5, 2) in its order.
The whole state is numbers (:meth:`Tracker.state` / :meth:`Tracker.from_state`), so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..faces.types import FaceDetection


@dataclass(frozen=True)
class TrackConfig:
    """alpha, beta: gains of the alpha-beta filter (position, velocity), in (0, 1]; 1, 0 = no smoothing.
    match_iou: minimum IoU with the prediction; match_distance: else the mean landmark distance, in eye distances.
    reset_distance: a measurement this far (eye distances) from the prediction resets the smoother.
    max_missed: frames a track is bridged without a detection before it is dropped.
    cut_threshold: histogram distance in [0, 1] (half the L1 distance of 3 x 16-bin colour histograms) above which
        two consecutive frames are a scene cut; pans and zooms of one shot stay below ~0.1 in the tests.
    """

    alpha: float = 0.35
    beta: float = 0.05
    match_iou: float = 0.3
    match_distance: float = 0.5
    reset_distance: float = 0.6
    max_missed: int = 5
    cut_threshold: float = 0.3

    def __post_init__(self) -> None:
        if not (0 < self.alpha <= 1 and 0 <= self.beta <= 1):
            raise ValueError(f"alpha={self.alpha}, beta={self.beta}: need 0 < alpha <= 1 and 0 <= beta <= 1")
        if self.max_missed < 0:
            raise ValueError(f"max_missed={self.max_missed} must be >= 0")


@dataclass
class Track:
    """A live track. pos, vel: (5, 2) float64 smoothed landmarks and their velocity per frame; box: last box
    (x1, y1, x2, y2) moved with the landmarks; raw: the last measured (or flow-carried) landmarks."""

    id: int
    pos: np.ndarray
    vel: np.ndarray
    box: np.ndarray
    raw: np.ndarray
    score: float
    first: int
    missed: int = 0
    detected: int = 1
    bridged: int = 0


@dataclass(frozen=True, eq=False)
class TrackedFace:
    """A face on one frame: its track id, the detection to align from (smoothed landmarks), and whether the
    detector found it on this frame (False: bridged by the track)."""

    track: int
    detection: FaceDetection
    detected: bool


@dataclass
class TrackStats:
    """Per-track totals for the report."""

    first: int
    last: int
    detected: int = 0
    bridged: int = 0


def eye_distance(landmarks: np.ndarray) -> float:
    return float(max(np.linalg.norm(landmarks[1] - landmarks[0]), 1.0))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def color_histogram(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> (48,) float64, three 16-bin channel histograms of a 64 px thumbnail, each summing to 1."""
    h, w = rgb.shape[:2]
    scale = 64 / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    hist = [np.bincount(small[..., c].ravel() // 16, minlength=16) for c in range(3)]
    return np.concatenate(hist).astype(np.float64) / small[..., 0].size


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Half the mean per-channel L1 distance of two :func:`color_histogram` s, in [0, 1]."""
    return float(np.abs(a - b).sum() / 6)


class Tracker:
    """Feed frames in order with :meth:`update`; see the module docstring."""

    def __init__(self, config: TrackConfig | None = None):
        self.config = config or TrackConfig()
        self.tracks: list[Track] = []
        self.next_id = 0
        self.stats: dict[int, TrackStats] = {}
        self.cuts: list[int] = []
        self._prev_gray: np.ndarray | None = None
        self._prev_hist: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------------------------

    def observe(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The per-frame features the tracker keeps of the previous frame: (gray (H, W) uint8, histogram)."""
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), color_histogram(rgb)

    def is_cut(self, rgb: np.ndarray) -> bool:
        """Whether ``rgb`` starts a new shot relative to the previous frame given to :meth:`update`."""
        if self._prev_hist is None:
            return False
        return histogram_distance(self._prev_hist, color_histogram(rgb)) > self.config.cut_threshold

    def prime(self, rgb: np.ndarray) -> None:
        """Set the previous frame without tracking (resuming: the frame before the first one processed)."""
        self._prev_gray, self._prev_hist = self.observe(rgb)

    def update(self, index: int, rgb: np.ndarray, detections: list[FaceDetection] | None) -> list[TrackedFace]:
        """Frame ``index`` (uint8 (H, W, 3) RGB) with its selected detections, or None when detection was skipped on
        this frame -> the faces to restore, ordered by track id. A scene cut ends all tracks first."""
        cfg = self.config
        gray, hist = self.observe(rgb)
        if self._prev_hist is not None and histogram_distance(self._prev_hist, hist) > cfg.cut_threshold:
            self.cuts.append(index)
            self.tracks = []
        flow = self._flow(gray)
        for t in self.tracks:  # predictions
            t.pos = t.pos + t.vel
        matched: dict[int, FaceDetection] = {}
        if detections is not None:
            matched, unmatched = self._associate(detections)
        out: list[TrackedFace] = []
        keep: list[Track] = []
        for t in self.tracks:
            d = matched.get(t.id)
            if d is not None:
                self._correct(t, d.landmarks_array())
                t.box, t.score, t.missed = np.asarray(d.box, np.float64), d.score, 0
                t.detected += 1
            else:
                # missed counts only frames the detector looked at; between keyframes the flow carries the track
                t.missed += detections is not None
                carried = flow.get(t.id)
                if carried is not None:
                    self._correct(t, carried)
                shift = t.pos.mean(0) - (t.box[:2] + t.box[2:]) / 2
                t.box = t.box + np.tile(shift, 2)
                t.bridged += 1
                if t.missed > cfg.max_missed or not _inside(t.box, rgb.shape[1], rgb.shape[0]):
                    continue
            keep.append(t)
        self.tracks = keep
        if detections is not None:
            for d in unmatched:
                lm = d.landmarks_array()
                self.tracks.append(Track(self.next_id, lm.copy(), np.zeros_like(lm), np.asarray(d.box, np.float64),
                                         lm.copy(), d.score, index))
                self.next_id += 1
        for t in self.tracks:
            s = self.stats.setdefault(t.id, TrackStats(first=index, last=index))
            s.last = index
            fresh = t.id in matched or t.first == index
            s.detected += fresh
            s.bridged += not fresh
            box = _box_around(t.box, t.pos)
            out.append(TrackedFace(t.id, FaceDetection.from_arrays(box, t.score, t.pos), bool(fresh)))
        self._prev_gray, self._prev_hist = gray, hist
        return out

    # ------------------------------------------------------------------------------------------------------------

    def _associate(self, detections: list[FaceDetection]) -> tuple[dict[int, FaceDetection], list[FaceDetection]]:
        cfg = self.config
        pairs = []
        for t in self.tracks:
            pred_box = t.box + np.tile(t.pos.mean(0) - (t.box[:2] + t.box[2:]) / 2, 2)
            for j, d in enumerate(detections):
                iou = box_iou(pred_box, np.asarray(d.box))
                dist = float(np.linalg.norm(d.landmarks_array() - t.pos, axis=1).mean()) / eye_distance(t.pos)
                if iou >= cfg.match_iou or dist <= cfg.match_distance:
                    pairs.append((-(iou + max(0.0, 1 - dist)), t.id, j))
        pairs.sort()
        matched: dict[int, FaceDetection] = {}
        used: set[int] = set()
        for _, tid, j in pairs:
            if tid in matched or j in used:
                continue
            matched[tid] = detections[j]
            used.add(j)
        return matched, [d for j, d in enumerate(detections) if j not in used]

    def _correct(self, t: Track, z: np.ndarray) -> None:
        """Alpha-beta filter step on (5, 2) landmarks ``z`` (t.pos holds the prediction)."""
        cfg = self.config
        residual = z - t.pos
        t.raw = z.copy()
        if float(np.linalg.norm(residual, axis=1).mean()) > cfg.reset_distance * eye_distance(z):
            t.pos, t.vel = z.copy(), np.zeros_like(z)
            return
        t.pos = t.pos + cfg.alpha * residual
        t.vel = t.vel + cfg.beta * residual

    def _flow(self, gray: np.ndarray) -> dict[int, np.ndarray]:
        """Lucas-Kanade flow of each track's last raw landmarks from the previous frame -> (5, 2) where found."""
        if self._prev_gray is None or not self.tracks or self._prev_gray.shape != gray.shape:
            return {}
        pts = np.concatenate([t.raw for t in self.tracks]).astype(np.float32).reshape(-1, 1, 2)
        win = int(np.clip(min(eye_distance(t.raw) for t in self.tracks) * 0.6, 7, 31)) | 1
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(self._prev_gray, gray, pts, None, winSize=(win, win), maxLevel=3)
        out = {}
        for k, t in enumerate(self.tracks):
            ok = status[5 * k:5 * k + 5].ravel()
            if ok.all():
                out[t.id] = nxt[5 * k:5 * k + 5].reshape(5, 2).astype(np.float64)
        return out

    # ------------------------------------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to continue (except the previous frame, which :meth:`prime` restores): JSON numbers."""
        return {
            "config": asdict(self.config),
            "next_id": self.next_id,
            "cuts": list(self.cuts),
            "stats": {str(k): asdict(v) for k, v in self.stats.items()},
            "tracks": [
                {"id": t.id, "pos": t.pos.tolist(), "vel": t.vel.tolist(), "box": t.box.tolist(), "raw": t.raw.tolist(),
                 "score": t.score, "first": t.first, "missed": t.missed, "detected": t.detected, "bridged": t.bridged}
                for t in self.tracks
            ],
        }

    @classmethod
    def from_state(cls, state: dict) -> Tracker:
        """Inverse of :meth:`state`. JSON keeps float64 exactly (repr round-trips), so resumed runs are identical."""
        tracker = cls(TrackConfig(**state["config"]))
        tracker.next_id = state["next_id"]
        tracker.cuts = list(state["cuts"])
        tracker.stats = {int(k): TrackStats(**v) for k, v in state["stats"].items()}
        arr = np.asarray
        tracker.tracks = [
            Track(t["id"], arr(t["pos"], np.float64), arr(t["vel"], np.float64), arr(t["box"], np.float64),
                  arr(t["raw"], np.float64), t["score"], t["first"], t["missed"], t["detected"], t["bridged"])
            for t in state["tracks"]
        ]
        return tracker


def _inside(box: np.ndarray, width: int, height: int) -> bool:
    """At least half of the box lies inside the frame."""
    iw = max(0.0, min(box[2], width) - max(box[0], 0.0))
    ih = max(0.0, min(box[3], height) - max(box[1], 0.0))
    return iw * ih >= 0.5 * (box[2] - box[0]) * (box[3] - box[1])


def _box_around(box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The track's box re-centred on the smoothed landmarks (alignment uses only the landmarks; the box is for
    the report and for association)."""
    shift = landmarks.mean(0) - (box[:2] + box[2:]) / 2
    return box + np.tile(shift, 2)
