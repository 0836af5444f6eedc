"""Documentation that must stay true: every setting is in the README's configuration table, and
the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from shared.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(RACKSMITH_[A-Z0-9_]+)` \|", readme, re.MULTILINE))
    expected = {f"RACKSMITH_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    test_command = commands[1]
    assert "scripts/check" in test_command
    ci = (ROOT / ".ci" / "run").read_text()
    assert f'TEST_COMMAND="{test_command}"' in ci
    assert "RACKSMITH_TEST_DATABASE_URL=" in ci
