"""The inference app: the pipeline object, whole-photo and aligned-crop restoration, the restoration controls, file
runs and the Python API.

    from prefrestore.restore import RestoreSettings, load_pipeline
    pipe = load_pipeline(RestoreSettings.from_flat({"model": "default"}))   # every component, once
    restored = pipe.restore_image(rgb)                                        # uint8 (H, W, 3) RGB in and out

Top to bottom (the ``restore`` layers contract in pyproject.toml): ``distributed`` (one run split across ranks) ->
``file_run`` (inputs on disk -> output folders and JSON reports) -> ``loaded`` (the pipeline object: the loaded
components and what every driver calls) -> ``aligned_crops`` -> ``pipeline`` (detect -> align -> restore -> paste
back, in memory) and ``api`` (``load_restorer``/``load_model``) -> ``control`` (fidelity dial, best-of-N reranking,
identity guard, colour; the restorer capabilities) -> ``realesrgan`` (the background upsampler) and ``ranks`` (this
process's rank and device) -> ``options`` (the settings tree of a request, declared once). Image and file I/O sit
below, in :mod:`prefrestore.io`.

``Pipeline``, ``load_pipeline`` and ``RestoreSettings`` are imported on first use, so importing this package
(``prefrestore restore --help``) loads no torch.
"""

_LAZY = {"Pipeline": "loaded", "load_pipeline": "loaded", "RestoreSettings": "options"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
