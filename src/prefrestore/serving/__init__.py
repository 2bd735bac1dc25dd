"""`prefrestore serve`: a web page and a versioned HTTP API over the whole-photo restore path.

The server is a thin driver: uploads are written into the server's own work folder and restored by
:func:`prefrestore.restore.file_run.run_plan` (detection, alignment, batched restoration, paste-back, reports), exactly as
``prefrestore restore`` does; nothing here detects or restores faces itself.

Modules: ``schemas`` (the request options: the photo settings plus ``prefrestore.restore.options``, and server
settings), ``jobs``
(bounded queue, batching across queued requests, per-job timeout, cancel, TTL cleanup), ``runner`` (one batch of jobs
-> ``run_plan``), ``app`` (the FastAPI application and its upload limits), ``routes`` (the routes in groups, auth,
shared state), ``uploads`` (reading one upload and its options), ``static/`` (the page: plain HTML/JS/CSS).
FastAPI and uvicorn are the optional extra ``pip install prefrestore[serve]``; ``schemas`` and ``jobs`` need neither.
"""
