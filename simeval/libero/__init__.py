"""simeval's side of LIBERO: building and checking the separate Python environment LIBERO's own code runs in
(hf-libero needs robosuite 1.4.0, simeval pins 1.5.2), its assets and its config (``simeval setup libero``)."""
