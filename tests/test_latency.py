"""The demo run as a person waits for it: through the CLI and a worker, cold then warm."""
import pytest

from hierpoly.bench import latency


@pytest.mark.slow
@pytest.mark.process
def test_demo_timing_reports_walls_and_first_live_points():
    lines = []
    out = latency.measure_demo(quick=True, log=lines.append)
    for label in ("cold", "warm"):
        assert 0 < out[f"first_point_{label}"] <= out[f"seconds_{label}"]
    assert out["args"].startswith("--d 4") and len(lines) == 2
    # what makes the second run warm, checked as an event rather than by its time (load decides that)
    assert out["same_worker"] is True
