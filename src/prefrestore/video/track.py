"""Face tracks across video frames: association, landmark smoothing, bridging of missed frames, scene cuts.

Per frame the tracker gets the selected detections (or none, on frames where detection is skipped) and returns one
:class:`TrackedFace` per live track with **smoothed** landmarks, from which the face is aligned; a smoothed track
gives a crop that does not jitter with the detector's pixel noise, which is most of the flicker of per-frame
restoration.

* Association: greedy on a score that is the box IoU with the track's predicted box, or failing that, landmarks
  within ``match_distance`` eye distances of the prediction.
* Motion and smoothing: each track is carried from frame to frame by the similarity transform (shift, zoom,
  turn) fitted to Lucas-Kanade optical flow of a grid of points on the face, which is precise to a fraction of
  a pixel because it pools the whole face; the detection then only corrects drift, with gain ``alpha``
  (``pos += alpha * (detected - pos)``). Detector noise on the landmarks (about a pixel on small, noisy faces) is
  so reduced about ``sqrt(alpha / (2 - alpha))`` times, and pans and zooms are followed by the flow without
  lag. The correction moves the crop on every frame the detector runs, and a still face's crop moved by even
  0.01 px moves its pasted restoration visibly (0.43 of the flicker benchmark's 0-255 scale on a static clip at
  alpha 0.05, 0.007 without the correction): alpha 0.02 halves that and still pulls flow drift back within ~50
  frames. An alpha-beta filter on the landmarks alone was measured first: at the alpha that follows a pan, the
  crop still jittered enough to undo temporal blending (``benchmarks/bench_video_flicker.py``). A detection
  farther than ``reset_distance`` eye distances from the track resets it (a fast turn the flow missed).
* Bridging: a track not matched on a frame is carried by the flow alone for at most ``max_missed`` frames, and
  dropped when it leaves the frame.
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
    """alpha: weight of the detection against the flow-carried landmarks, in (0, 1]; 1 = raw detections.
    match_iou: minimum IoU with the prediction; match_distance: else the mean landmark distance, in eye distances.
    reset_distance: a measurement this far (eye distances) from the prediction resets the smoother.
    max_missed: frames a track is bridged without a detection before it is dropped.
    cut_threshold: histogram distance in [0, 1] (half the L1 distance of 3 x 16-bin colour histograms) above which
        two consecutive frames are a scene cut; pans and zooms of one shot stay below ~0.1 in the tests.
    """

    alpha: float = 0.02
    match_iou: float = 0.3
    match_distance: float = 0.5
    reset_distance: float = 0.6
    max_missed: int = 5
    cut_threshold: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha} must be in (0, 1]")
        if self.max_missed < 0:
            raise ValueError(f"max_missed={self.max_missed} must be >= 0")


@dataclass
class Track:
    """A live track. pos: (5, 2) float64 smoothed landmarks; box: (x1, y1, x2, y2) the last detection's box,
    carried by the flow since."""

    id: int
    pos: np.ndarray
    box: np.ndarray
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
        for t in self.tracks:  # carry every track by the flow from the previous frame
            m = self._motion(t.box, gray)
            if m is not None:
                t.pos = t.pos @ m[:, :2].T + m[:, 2]
                t.box = _transform_box(t.box, m)
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
                t.bridged += 1
                if t.missed > cfg.max_missed or not _inside(t.box, rgb.shape[1], rgb.shape[0]):
                    continue
            keep.append(t)
        self.tracks = keep
        if detections is not None:
            for d in unmatched:
                lm = d.landmarks_array()
                self.tracks.append(Track(self.next_id, lm, np.asarray(d.box, np.float64), d.score, index))
                self.next_id += 1
        for t in self.tracks:
            s = self.stats.setdefault(t.id, TrackStats(first=index, last=index))
            s.last = index
            fresh = t.id in matched or t.first == index
            s.detected += fresh
            s.bridged += not fresh
            out.append(TrackedFace(t.id, FaceDetection.from_arrays(t.box, t.score, t.pos), bool(fresh)))
        self._prev_gray, self._prev_hist = gray, hist
        return out

    # ------------------------------------------------------------------------------------------------------------

    def _associate(self, detections: list[FaceDetection]) -> tuple[dict[int, FaceDetection], list[FaceDetection]]:
        cfg = self.config
        pairs = []
        for t in self.tracks:
            for j, d in enumerate(detections):
                iou = box_iou(t.box, np.asarray(d.box))
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
        """Pull the flow-carried landmarks t.pos towards the detected ones ``z`` (5, 2) with gain alpha."""
        residual = z - t.pos
        if float(np.linalg.norm(residual, axis=1).mean()) > self.config.reset_distance * eye_distance(z):
            t.pos = z.copy()
        else:
            t.pos = t.pos + self.config.alpha * residual

    def _motion(self, box: np.ndarray, gray: np.ndarray) -> np.ndarray | None:
        """(2, 3) similarity carrying the face in ``box`` from the previous frame to ``gray``, from Lucas-Kanade
        flow of a 6 x 6 grid over the box's central 80 %, fitted robustly (LMedS; OpenCV seeds it, so it is
        deterministic); None without a previous frame, with fewer than 6 points tracked, or when it moves no
        corner of the box by 0.01 px."""
        if self._prev_gray is None or self._prev_gray.shape != gray.shape:
            return None
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        gx, gy = np.meshgrid(np.linspace(x0 + 0.1 * w, x1 - 0.1 * w, 6), np.linspace(y0 + 0.1 * h, y1 - 0.1 * h, 6))
        pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
        inside = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] < gray.shape[1]) & (pts[:, 1] < gray.shape[0])
        pts = pts[inside].reshape(-1, 1, 2)
        if len(pts) < 6:
            return None
        win = int(np.clip(min(w, h) / 3, 7, 31)) | 1
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(self._prev_gray, gray, pts, None, winSize=(win, win), maxLevel=3)
        ok = status.ravel() == 1
        if ok.sum() < 6:
            return None
        m, _ = cv2.estimateAffinePartial2D(pts[ok], nxt[ok], method=cv2.LMEDS)
        if m is None:
            return None
        m = m.astype(np.float64)
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
        if np.abs(corners @ m[:, :2].T + m[:, 2] - corners).max() < 0.01:
            return None  # LK's residual on unchanged pixels (1e-5 px): a still face keeps exactly the same crop
        return m

    # ------------------------------------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to continue (except the previous frame, which :meth:`prime` restores): JSON numbers."""
        return {
            "config": asdict(self.config),
            "next_id": self.next_id,
            "cuts": list(self.cuts),
            "stats": {str(k): asdict(v) for k, v in self.stats.items()},
            "tracks": [
                {
                    "id": t.id,
                    "pos": t.pos.tolist(),
                    "box": t.box.tolist(),
                    "score": t.score,
                    "first": t.first,
                    "missed": t.missed,
                    "detected": t.detected,
                    "bridged": t.bridged,
                }
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
            Track(
                t["id"],
                arr(t["pos"], np.float64),
                arr(t["box"], np.float64),
                t["score"],
                t["first"],
                t["missed"],
                t["detected"],
                t["bridged"],
            )
            for t in state["tracks"]
        ]
        return tracker


def _inside(box: np.ndarray, width: int, height: int) -> bool:
    """At least half of the box lies inside the frame."""
    iw = max(0.0, min(box[2], width) - max(box[0], 0.0))
    ih = max(0.0, min(box[3], height) - max(box[1], 0.0))
    return iw * ih >= 0.5 * (box[2] - box[0]) * (box[3] - box[1])


def _transform_box(box: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The axis-aligned box around ``box``'s corners mapped by the (2, 3) affine ``m``."""
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
    pts = corners @ m[:, :2].T + m[:, 2]
    return np.concatenate([pts.min(0), pts.max(0)])
