"""The pipeline object: every loaded component of restoration, built once, and what the drivers call.

    >>> from prefrestore.restore import RestoreSettings, load_pipeline
    >>> pipe = load_pipeline(RestoreSettings.from_flat({"model": "tiny"}))  # restorer, detector, scorers, upsampler
    >>> restored = pipe.restore_image(photo)     # uint8 (H, W, 3) RGB in, upscaled RGB out
    >>> result = pipe.restore_photo(photo)       # the same with the per-face report (PhotoResult)

:func:`load_pipeline` (or :meth:`Pipeline.from_pretrained`) builds the restorer (``api.load_restorer``), the MTCNN
detector, the identity scorer of the guard, the rerank scorers and the background upsampler from one settings
object (the settings tree, :class:`~prefrestore.restore.options.RestoreSettings`), on one device: under
``torchrun`` / ``accelerate launch`` ``cuda`` becomes the rank's GPU (:func:`on_rank` ->
:func:`~prefrestore.restore.ranks.rank_device`, the only place that maps devices). The pipeline owns the run's
device, batch size and seed (its :class:`~prefrestore.restore.pipeline.PipelineConfig`); every driver builds one and
calls its methods: ``prefrestore restore`` (``file_run.run_plan``), videos, the server (in memory), ``make demo``
and ``prefrestore eval``. The stages themselves stay functions of their inputs (``pipeline.py``,
``aligned_crops.py``, ``control.py``); this module only holds what they share.

A restorer's optional abilities are declared, not probed: ``Restorer.capabilities`` (``control.FIDELITY_DIAL``,
``control.PER_FACE_SEEDS``). A pipeline whose settings need an ability its restorer lacks is refused in one line
when it is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UserError
from ..faces.detect import FaceDetector
from ..faces.identity import IdentityScorer
from ..io.io_safety import shown
from ..io.photo_io import Photo
from .aligned_crops import AlignedResult, restore_aligned
from .control import FaceOutcome, Scorers, check_capabilities, restore_controlled
from .options import RestoreOptions, RestoreSettings, SamplingSettings
from .pipeline import PhotoResult, PipelineConfig, Progress, Restorer, failure, restore_photos
from .ranks import Ranks, rank_device


def on_rank(settings: RestoreSettings, ranks: Ranks | None = None) -> RestoreSettings:
    """The same settings with this process's checked device (``cuda`` -> ``cuda:LOCAL_RANK`` under a launcher,
    :func:`~prefrestore.restore.ranks.rank_device`; an unavailable device is a one-line UserError). Idempotent."""
    device = rank_device(settings.sampling.device, ranks)
    return dataclasses.replace(settings, sampling=dataclasses.replace(settings.sampling, device=device))


@dataclass(eq=False)
class Pipeline:
    """The loaded components and the run's settings (see the module docstring); build with :func:`load_pipeline`,
    or directly from components (a baseline or a test's stand-in restorer)."""

    restorer: Restorer
    detector: FaceDetector | None = None
    config: PipelineConfig = field(default_factory=PipelineConfig)
    identity: IdentityScorer | None = None
    device: str = "cpu"
    scorer_cache: dict[tuple, Scorers] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_capabilities(self.restorer, self.config.options)

    @classmethod
    def from_pretrained(cls, model: str = "default", **settings: Any) -> Pipeline:
        """In the diffusers manner: ``load_pipeline`` of the default settings with ``model`` and any other settings
        by name (``device="cuda"``, ``upscale=4``, ``candidates=4``, ...; the names of the settings tree)."""
        return load_pipeline(RestoreSettings.from_flat({"model": model, **settings}))

    @property
    def resolution(self) -> int:
        return self.restorer.resolution

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    def with_config(self, config: PipelineConfig) -> Pipeline:
        """The same loaded components under another run's settings (a server request's); scorers are shared, and
        a loaded background upsampler stays when ``config`` names its kind."""
        if config.upsampler == "realesrgan" and not isinstance(self.config.upsampler, str):
            config = dataclasses.replace(config, upsampler=self.config.upsampler)
        return dataclasses.replace(self, config=config, scorer_cache=self.scorer_cache)

    def scorers(self, options: RestoreOptions | None = None) -> Scorers:
        """The identity/landmark/rerank models of ``options`` (default: the config's), built once per rerank
        weights, identity network and guard and kept (the rerank reward and landmarks load on first use)."""
        options = options or self.config.options
        key = (*sorted(options.rerank_weights.items()), options.identity_net, options.identity_guard)
        if key not in self.scorer_cache:
            if len(self.scorer_cache) >= 8:
                self.scorer_cache.clear()
            self.scorer_cache[key] = Scorers.for_options(options, identity=self.identity, device=self.device)
        return self.scorer_cache[key]

    # -- what the drivers call ------------------------------------------------------------------------------------

    def restore_crops(self, faces: Sequence[np.ndarray], *, seed: int | None = None) -> list[np.ndarray]:
        """Aligned uint8 (S, S, 3) RGB crops -> the restorer's outputs, ``batch_size`` per call, no controls
        (what ``prefrestore eval`` scores); ``seed`` defaults to the config's."""
        seed = self.config.seed if seed is None else seed
        out: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            out += self.restorer.restore(list(faces[start : start + self.batch_size]), seed=seed)
        return out

    def restore_faces(self, crops: Sequence[np.ndarray], *, progress: Progress | None = None) -> list[FaceOutcome]:
        """Aligned crops -> one :class:`~prefrestore.restore.control.FaceOutcome` per crop under the config's
        options (fidelity, best-of-N, identity guard, colour)."""
        c = self.config
        return restore_controlled(
            self.restorer,
            crops,
            c.options,
            seed=c.seed,
            batch_size=c.batch_size,
            scorers=self.scorers(),
            progress=progress,
        )

    def restore_photos(
        self, items: Iterable[tuple[Hashable, Photo]], *, progress: Progress | None = None
    ) -> Iterator[PhotoResult]:
        """(key, photo) pairs -> one :class:`~prefrestore.restore.pipeline.PhotoResult` per photo, in order: the
        restored photo (``result.photo``) and per face its alignment, restoration and scores."""
        if self.detector is None:
            raise UserError(
                "this pipeline was built without a face detector (detector=False): it restores aligned crops only"
            )
        return restore_photos(
            items, self.restorer, self.detector, self.config, progress=progress, scorers=self.scorers()
        )

    def restore_photo(self, photo: Photo | np.ndarray, *, progress: Progress | None = None) -> PhotoResult:
        """One photo in memory (a :class:`~prefrestore.io.photo_io.Photo` or uint8 (H, W, 3) RGB) -> its result."""
        photo = photo if isinstance(photo, Photo) else Photo(color=photo)
        (result,) = self.restore_photos([(0, photo)], progress=progress)
        return result

    def restore_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> uint8 (round(H*s), round(W*s), 3) RGB, s = ``config.upscale``. Raises
        RuntimeError with the photo's one-line error on failure."""
        result = self.restore_photo(image)
        if result.error:
            raise RuntimeError(result.error)
        return result.photo.color

    def restore_aligned(
        self, items: Iterable[tuple[Hashable, Photo]], *, progress: Progress | None = None
    ) -> Iterator[AlignedResult]:
        """Already-aligned crops (``--aligned``) -> one result each; the detector, when loaded, only checks that
        each input is a crop (a whole photo fails, one line, instead of being squashed)."""
        return restore_aligned(
            items, self.restorer, self.config, progress=progress, scorers=self.scorers(), detector=self.detector
        )


def load_pipeline(
    settings: RestoreSettings | None = None,
    *,
    ranks: Ranks | None = None,
    detector: bool = True,
    detector_min_face_size: float | None = None,
    deterministic: bool = True,
    dtype: Any = None,
) -> Pipeline:
    """Load every component ``settings`` asks for, once, on this process's device -> the :class:`Pipeline`.

    settings: the settings tree (default: its defaults): ``sampling`` (model, steps, guidance, start sigma,
        numerics, device, batch size, seed), ``photo`` (upscale, detection, colour, background upsampler and tile),
        ``output.identity`` ("auto": the dlib identity scorer when installed), ``control``.
    detector: load the MTCNN detector (False: aligned crops only); it looks for faces down to
        ``detector_min_face_size`` px (None: ``control.min_face_size``, at least 12).
    deterministic, dtype: :func:`prefrestore.restore.api.load_restorer`'s (greedy decoding; the model's dtype).

    A model that cannot be loaded, Real-ESRGAN weights that are not converted, an unavailable device or a setting
    the restorer cannot honour are one-line UserErrors. The rerank scorers of the control options are built here
    too, so a missing reward fails before any input is read.
    """
    settings = on_rank(settings or RestoreSettings(), ranks)
    device = settings.sampling.device
    config = PipelineConfig.for_settings(settings)
    if config.upsampler == "realesrgan":
        from . import realesrgan

        config = dataclasses.replace(config, upsampler=realesrgan.build(device=device, tile=settings.photo.bg_tile))
    restorer = _load_restorer(settings.sampling, deterministic, dtype)  # no seed, no batch size: the config's
    face_detector = None
    if detector:
        from ..faces.detect import build_detector

        low = max(12.0, config.options.min_face_size) if detector_min_face_size is None else detector_min_face_size
        face_detector = build_detector("mtcnn", device=device, min_face_size=low)
    identity = None
    if settings.output.identity == "auto":
        from ..faces.identity import load_identity_scorer

        identity = load_identity_scorer()
    pipe = Pipeline(restorer, face_detector, config, identity=identity, device=device)
    pipe.scorers()
    return pipe


def _load_restorer(sampling: SamplingSettings, deterministic: bool, dtype: Any):
    """``api.load_restorer`` for the sampling settings; any failure of a model folder (unreadable JSON, a tokenizer
    that wants to run code, a config too large to allocate) is one UserError line naming --model."""
    from . import api

    model = sampling.model or "default"
    try:
        return api.load_restorer(
            model,
            device=sampling.device,
            steps=sampling.steps,
            guidance_scale=sampling.guidance_scale,
            start_sigma=sampling.start_sigma,
            deterministic=deterministic,
            dtype=dtype,
            numerics="official" if sampling.official_numerics else None,
            flip_ensemble={"on": True, "off": False}.get(sampling.flip_ensemble),
        )
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as err:
        raise UserError(
            f"--model {shown(model)}: {failure('loading the model', err)}; check the model folder or "
            "pass --model default"
        ) from None
