"""The HIERPOLY_* settings: declared once, listed in the README as declared, read from nowhere else."""
from __future__ import annotations

import re
from pathlib import Path

from hierpoly import settings

REPO = Path(__file__).resolve().parent.parent


def _readme_rows() -> dict[str, str | None]:
    rows = re.findall(r"^\| `(HIERPOLY_\w+)` \| (`[^`]*`|—) \| .+ \|$", (REPO / "README.md").read_text(), re.M)
    return {name: None if default == "—" else default.strip("`") for name, default in rows}


def test_the_readme_table_lists_every_setting_with_its_default():
    assert _readme_rows() == {s.name: s.default for s in settings.SETTINGS}


def test_no_module_reads_the_environment_for_a_setting_itself():
    """Only settings.py reads HIERPOLY_* variables (setting one for a child process is fine)."""
    reads = re.compile(r"(?:environ\.get|getenv)\(\s*[\"']HIERPOLY_|environ\[[\"']HIERPOLY_\w+[\"']\](?!\s*=)")
    files = [*(REPO / "hierpoly").rglob("*.py"), REPO / "app.py", *(REPO / "pages").glob("*.py")]
    offenders = [str(p.relative_to(REPO)) for p in files if p.name != "settings.py" and reads.search(p.read_text())]
    assert offenders == []


def test_every_setting_the_code_names_is_declared():
    """A HIERPOLY_* name in the package or the pages (read directly or through a helper) is one of the settings."""
    files = [*(REPO / "hierpoly").rglob("*.py"), REPO / "app.py", *(REPO / "pages").glob("*.py")]
    named = {name for path in files for name in re.findall(r"\bHIERPOLY_[A-Z_]*[A-Z]\b", path.read_text())}
    assert named - {s.name for s in settings.SETTINGS} == set()


def test_an_unset_setting_reads_as_its_default_and_a_set_one_as_given(monkeypatch):
    monkeypatch.delenv("HIERPOLY_MAX_FLOPS", raising=False)
    assert settings.text("HIERPOLY_MAX_FLOPS") == "1e17"
    monkeypatch.setenv("HIERPOLY_MAX_FLOPS", "5")
    assert settings.text("HIERPOLY_MAX_FLOPS") == "5"


def test_every_switch_of_the_suite_is_set_by_ci_and_described():
    """A test that skips without Chromium, Ray or root has a HIERPOLY_REQUIRE_* switch that CI sets, so it fails there."""
    switch = re.compile(r"\bHIERPOLY_REQUIRE_[A-Z_]*[A-Z]\b")
    used = {name for path in (REPO / "tests").glob("test_*.py") if path.name != "test_settings.py"
            for name in switch.findall(path.read_text())}
    set_by_ci = set(switch.findall((REPO / ".ci" / "run").read_text()))
    assert used == set_by_ci == set(switch.findall((REPO / "README.md").read_text()))
    assert {"HIERPOLY_REQUIRE_BROWSER", "HIERPOLY_REQUIRE_RAY", "HIERPOLY_REQUIRE_FULL_DISK"} <= used
