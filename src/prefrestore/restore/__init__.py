"""The inference app: the pipeline object, whole-photo and aligned-crop restoration, the restoration controls, file
runs and the Python API.

    from prefrestore.restore import PipelineSettings, load_pipeline
    pipe = load_pipeline(PipelineSettings(model="default"))   # every component, once
    restored = pipe.restore_image(rgb)                          # uint8 (H, W, 3) RGB in and out

Top to bottom (the ``restore`` layers contract in pyproject.toml): ``distributed`` (one run split across ranks) ->
``file_run`` (inputs on disk -> output folders and JSON reports) -> ``loaded`` (the pipeline object: the loaded
components and what every driver calls) -> ``aligned_crops`` -> ``pipeline`` (detect -> align -> restore -> paste
back, in memory) and ``api`` (``load_restorer``/``load_model``) -> ``control`` (fidelity dial, best-of-N reranking,
identity guard, colour; the restorer capabilities) -> ``realesrgan`` (the background upsampler) and ``ranks`` (this
process's rank and device) -> ``options`` (the restoration-control options, declared once). Image and file I/O sit
below, in :mod:`prefrestore.io`.

``Pipeline``, ``PipelineSettings`` and ``load_pipeline`` are imported from ``loaded`` on first use, so importing
this package (``prefrestore restore --help``) loads no torch.
"""

_LAZY = ("Pipeline", "PipelineSettings", "load_pipeline")


def __getattr__(name: str):
    if name in _LAZY:
        from . import loaded

        return getattr(loaded, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
