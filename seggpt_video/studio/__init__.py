"""The studio: make the first mask, propagate, review and correct, in a browser.

A small Starlette server (``server.py``) in front of the Python API, serving a static page
(``static/``) and a JSON API under ``/api/``. What it keeps under the output folder OUT:

- ``OUT/studio.json``: the objects (id, name, colour) and the annotated frames;
- ``OUT/annotations/<frame>.png``: DAVIS palette PNGs, what ``run --mask FRAME:FILE`` reads;
- ``OUT/results/``: what ``seggpt_video.load().write`` (= ``seggpt-video run``) writes.

Importing this package needs the ``studio`` extra (starlette, uvicorn, opencv-python-headless);
the ``studio`` command imports it only when it runs.
"""
