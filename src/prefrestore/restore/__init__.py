"""The inference app: whole-photo and aligned-crop restoration, the restoration controls, file runs and the
Python API.

Top to bottom (the ``restore`` layers contract in pyproject.toml): ``distributed`` (one run split across ranks) ->
``file_run`` (inputs on disk -> output folders and JSON reports) -> ``aligned_crops`` -> ``pipeline`` (detect ->
align -> restore -> paste back, in memory) and ``api`` (``load_restorer``/``load_model``) -> ``control`` (fidelity
dial, best-of-N reranking, identity guard, colour) -> ``realesrgan`` (the background upsampler) -> ``options`` (the
settings tree of a request, declared once). Image and file I/O sit below, in :mod:`prefrestore.io`.
"""
