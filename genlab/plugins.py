"""Model families from installed packages: the `genlab.families` entry-point group.

A package adds a family by declaring it in its pyproject.toml,

    [project.entry-points."genlab.families"]
    plain_ae = "genlab_example_family.autoencoder:PlainAutoencoder"

(the entry point's name is the family's name and equals the class's `family`), and by shipping its
config as `conf/model/<name>.yaml` inside its top-level package (`genlab_example_family/conf/model/
plain_ae.yaml`): that folder joins Hydra's config search path after genlab's own (hydra_plugins/
genlab_families), so `genlab train model=plain_ae` composes it.

Reading the entry points imports nothing (package metadata only); a plugin's code is imported by
`genlab.models.registry` when its family is asked for. Nothing here is read by `genlab --help`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

GROUP = "genlab.families"


@dataclass(frozen=True)
class FamilyPlugin:
    """One entry of the `genlab.families` group: a family an installed package declares."""

    name: str  # the entry point's name: the family's name
    value: str  # "package.module:Class"
    package: str  # the distribution that declares it, with its version

    @property
    def module(self) -> str:
        return self.value.split(":", 1)[0].strip()

    @property
    def describe(self) -> str:
        """How an error names the plugin: entry point and installed package."""
        return f"the family plugin {self.name!r} (entry point {self.name} = {self.value!r} of {self.package})"

    def conf_dir(self) -> Path | None:
        """`conf/` inside the plugin's top-level package (found without importing it), if it exists."""
        top = self.module.split(".", 1)[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        for location in locations:
            folder = Path(location) / "conf"
            if folder.is_dir():
                return folder
        return None


def family_plugins() -> list[FamilyPlugin]:
    """Every entry point of the `genlab.families` group in the installed packages, in a stable order (read
    from package metadata: nothing is imported). A package found twice on sys.path counts once."""
    from importlib.metadata import entry_points

    found: dict[tuple[str, str], FamilyPlugin] = {}
    for entry in entry_points(group=GROUP):
        dist = getattr(entry, "dist", None)
        package = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown package"
        found.setdefault((entry.name, entry.value), FamilyPlugin(entry.name, entry.value, package))
    return sorted(found.values(), key=lambda p: (p.name, p.value))


def plugin_conf_dirs() -> list[Path]:
    """The config folders of the installed family plugins (each once), for Hydra's search path."""
    folders: list[Path] = []
    for plugin in family_plugins():
        folder = plugin.conf_dir()
        if folder is not None and folder not in folders:
            folders.append(folder)
    return folders
