"""LIBERO's side of simeval: what runs in LIBERO's own interpreter (``worker.py``), the plain-data
messages both interpreters exchange (``wire.py``), a pixel-reading probe policy both can run, and
the data the side environment is built and checked from (pinned requirements, the asset manifest,
the task catalogue). Nothing here imports simeval or the rest of ``envs``."""
