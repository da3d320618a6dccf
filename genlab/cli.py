"""The `genlab` console script: argv -> command name + Hydra overrides; nothing else."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

from genlab.errors import ConfigError, GenlabError, bad_choice, print_error
from genlab.runtime.conf import conf_dir

COMMANDS_DIR = Path(__file__).resolve().parent / "commands"


def commands() -> dict[str, str]:
    """Command name -> one-line description. Every public module in genlab/commands/ with a `main`
    is a command (`train_classifier.py` -> `genlab train-classifier`); read from source, not imported."""
    found = {}
    for path in sorted(COMMANDS_DIR.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            doc = (ast.get_docstring(tree) or "").strip().splitlines()
            found[path.stem.replace("_", "-")] = doc[0] if doc else ""
    return found


HELP = """usage: genlab <command> [hydra overrides ...]

Commands:
{commands}

Every command composes conf/<command>.yaml with Hydra: override any value with key=value,
pick a config with group=name (e.g. model=vae data=mnist trainer=cpu), sweep with -m.
`genlab <command> --help` shows the command's config groups and composed config.
"""


def group_choices(group: str) -> list[str] | None:
    """Names of the configs in conf/<group>/ and in the installed family plugins' conf/<group>/ (on Hydra's
    search path: hydra_plugins/genlab_families), or None when that is not one of genlab's groups."""
    from genlab.plugins import plugin_conf_dirs

    folder = conf_dir() / group
    if not folder.is_dir() or group.startswith("hydra"):
        return None  # hydra/* groups also come from Hydra and its plugins
    names = {p.stem for p in folder.glob("*.yaml")}
    for plugin_conf in plugin_conf_dirs():
        names |= {p.stem for p in (plugin_conf / group).glob("*.yaml")}
    return sorted(names)


def check_group_overrides(overrides: list[str]) -> None:
    """Reject `group=name` (or `group=[a,b]` for the dict groups logger and callbacks) when
    conf/<group>/name.yaml does not exist, before Hydra starts."""
    for override in overrides:
        if override.startswith("-") or "=" not in override:
            continue
        key, value = override.split("=", 1)
        key = key.lstrip("+~")
        if "@" in key or any(c in value for c in "(){}$*"):
            continue  # sweep functions, packages and interpolations are Hydra's to check
        choices = group_choices(key)
        if choices is None:
            continue
        for name in value.strip("[]").split(","):
            name = name.strip().strip("'\"")
            if name not in choices and name.lower() not in ("null", ""):
                raise unknown_config(key, name, choices)


def unknown_config(group: str, name: str, choices: list[str]) -> ConfigError:
    """The error for `group=name` without a config; for an installed family plugin without its config, which
    file it lacks."""
    if group == "model":
        from genlab.plugins import family_plugins

        for plugin in family_plugins():
            if plugin.name == name:
                return ConfigError(
                    f"model={name!r}: {plugin.describe} ships no config conf/model/{name}.yaml inside its "
                    f"top-level package, so Hydra cannot compose it. Add that file to the package (README, "
                    f"'Adding your own family'). Valid choices: {', '.join(choices)}."
                )
    return bad_choice(group, name, choices)


def takes_group(command: str, group: str) -> bool:
    """Whether conf/<command>.yaml composes the config group `group` (read as text, nothing imported)."""
    path = conf_dir() / f"{command.replace('-', '_')}.yaml"
    return path.is_file() and re.search(rf"^\s*-\s*{group}\s*:", path.read_text(), re.M) is not None


def prepare_overrides(command: str, overrides: list[str]) -> list[str]:
    """What runs before Hydra composes: group names and output folders are checked, and `trainer.X` for
    any pl.Trainer argument X becomes an override Hydra accepts (genlab.runtime.checks)."""
    if any(o in ("--help", "-h", "--hydra-help", "--info") for o in overrides):
        return overrides
    from genlab.runtime import checks

    check_group_overrides(overrides)
    checks.check_output_overrides(overrides)
    if takes_group(command, "trainer") and any(o.startswith("trainer.") for o in overrides):
        overrides = checks.trainer_overrides(overrides)
    return overrides


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        available = commands()
        width = max(len(n) for n in available)
        lines = "\n".join(f"  {n.ljust(width)}  {d}" for n, d in available.items())
        print(HELP.format(commands=lines))
        sys.exit(0 if args else 2)
    command, overrides = args[0], args[1:]
    try:
        available = commands()
        if command not in available:
            raise ConfigError(
                f"unknown command {command!r}. Valid commands: {', '.join(available)}. "
                "Run `genlab --help` for what each does."
            )
        overrides = prepare_overrides(command, overrides)
        module = importlib.import_module(f"genlab.commands.{command.replace('-', '_')}")
        module.main(overrides)
    except GenlabError as err:
        print_error(err)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
