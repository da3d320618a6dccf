"""Every `genlab …` command the README shows composes and passes the command's checks as written: a key
renamed or removed in conf/ breaks this test, not a reader's first try. Commands with placeholders
(`<run>`, `<date>`) and `--help` are skipped; sweeps (`-m`) compose every job, as `genlab train -m` does
before it starts. Nothing is trained here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from genlab.runtime.conf import conf_dir

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """The `genlab …` lines of the README's code blocks, continuation lines joined, comments dropped."""
    commands, in_block, pending = [], False, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.startswith("genlab "):
            commands.append(re.split(r"\s+#", text)[0].strip())
    return commands


COMMANDS = readme_commands()
# the example family plugin's commands (README, "Adding your own family") compose once it is installed;
# tests/test_plugins.py installs it and runs the same steps through the console script
NEEDS_EXAMPLE_PLUGIN = ("model=rae", ",rae]")
RUNNABLE = [c for c in COMMANDS if "<" not in c and "--help" not in c and len(shlex.split(c)) > 1]


def test_the_readme_shows_commands():
    assert len(RUNNABLE) >= 25, RUNNABLE  # the parser found the code blocks


@pytest.mark.parametrize("command", RUNNABLE)
def test_readme_command_composes_and_passes_its_checks(command, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from genlab.models.registry import family_names
    from genlab.runtime.checks import check_command_config
    from genlab.runtime.sweep import check_sweep_composes, register_resolvers

    if any(text in command for text in NEEDS_EXAMPLE_PLUGIN) and "rae" not in family_names():
        pytest.skip("needs examples/genlab-example-family installed (tests/test_plugins.py runs it)")
    monkeypatch.chdir(tmp_path)  # relative paths in the commands land here, if anything reads them
    _, name, *overrides = shlex.split(command)
    config_name = name.replace("-", "_")
    if not (conf_dir() / f"{config_name}.yaml").is_file():
        pytest.skip(f"`genlab {name}` takes no Hydra config")
    register_resolvers()
    if "-m" in overrides or "--multirun" in overrides:
        check_sweep_composes(conf_dir(), config_name, [o for o in overrides if o not in ("-m", "--multirun")])
        return
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name=config_name):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    check_command_config(config_name, cfg)
