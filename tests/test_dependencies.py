"""What the default install declares: HEIC/AVIF readers, the open_clip minimum that works, and
a CI script that tests that minimum after running the README's test command."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]


def _requirement(name: str) -> str:
    (found,) = [d for d in _project()["dependencies"] if re.match(rf"{name}\b", d, re.I)]
    return found


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_heic_and_avif_are_in_the_default_install():
    """pi-heif (decode-only: BSD-3 with LGPL libheif/libde265, no GPL x265 as pillow-heif's
    wheels have) is a dependency, and Pillow new enough to read AVIF itself."""
    assert _requirement("pi-heif").startswith("pi-heif>=")
    assert _version(_requirement("Pillow")) >= (11, 2)
    for extra in _project()["optional-dependencies"].values():
        assert not any(re.match(r"(pillow|pi)[-_]heif", d, re.I) for d in extra)


def test_open_clip_minimum_is_one_that_works():
    """2.29-3.0 break CLIP-IQA+ prompt learning (text_global_pool has no eos_token_id); ViT
    position-embedding interpolation also needs 2.32+. The installed one meets the minimum."""
    minimum = _version(_requirement("open_clip_torch"))
    assert minimum >= (3, 1, 0)
    assert _version(metadata.version("open_clip_torch")) >= minimum


def test_ci_runs_the_readme_command_first_then_the_open_clip_minimum():
    readme = (ROOT / "README.md").read_text("utf-8")
    ci = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    commands = [line for line in ci if line.strip() and not line.lstrip().startswith("#")]
    assert commands[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']
    readme_command = commands[2]
    assert readme_command.startswith("command -v exiftool") and readme_command in readme
    # The version CI installs in its second venv is the declared minimum, found the same way.
    sed = next(line for line in commands if line.startswith("min_open_clip="))
    script = sed.split("=", 1)[1].removeprefix("$(").removesuffix(")")
    found = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                           check=True, timeout=30).stdout.strip()
    assert found == _requirement("open_clip_torch").split(">=", 1)[1]
    assert any('open_clip_torch==$min_open_clip' in line for line in commands)
    assert any("tests/test_coop.py" in line and "tests/test_clipiqa.py" in line
               for line in commands)
