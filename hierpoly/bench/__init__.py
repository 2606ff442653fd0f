"""Measurement, in one room: how fast a training step is (timing, against ``engine.reference``), what the
presets would take here (projections), what a person waits for (latency), and what a page rerun costs as the
store grows (page). ``report`` puts them together for ``python -m hierpoly bench``. A benchmark, not a test:
nothing here asserts a speed."""
