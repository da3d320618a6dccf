"""The model families, by name: the five genlab ships and those installed packages declare under the
`genlab.families` entry-point group (genlab/plugins.py). A checkpoint records a family's name; the class that
rebuilds it comes from this table — genlab's own code or a package the user installed — never from a path
or object stored in the file.

A plugin's code is imported only when its family is asked for (by name, or when every family is listed),
so a broken plugin never stands in the way of the built-in families; asking for it is one ConfigError
naming the entry point and its package."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from genlab.errors import CheckpointError, ConfigError, GenlabError

if TYPE_CHECKING:
    from genlab.models.base import GenerativeModel
    from genlab.plugins import FamilyPlugin

# family name -> (module, class): imported on first use
BUILTIN = {
    "vae": ("genlab.models.vae", "VAE"),
    "gan": ("genlab.models.gan", "GAN"),
    "vaegan": ("genlab.models.vaegan", "VAEGAN"),
    "diffusion": ("genlab.models.diffusion", "Diffusion"),
    "flow": ("genlab.models.flow", "Flow"),
}


def builtin_families() -> dict[str, type[GenerativeModel]]:
    """Family name -> LightningModule class, for the families genlab ships."""
    return {name: getattr(importlib.import_module(module), cls) for name, (module, cls) in BUILTIN.items()}


def plugins_by_name() -> dict[str, list[FamilyPlugin]]:
    """The installed family plugins by family name (read from package metadata; nothing is imported)."""
    from genlab.plugins import family_plugins

    found: dict[str, list[FamilyPlugin]] = {}
    for plugin in family_plugins():
        found.setdefault(plugin.name, []).append(plugin)
    return found


def family_names() -> list[str]:
    """Every family name: genlab's, then the installed plugins' (nothing of the plugins is imported)."""
    return [*BUILTIN, *(name for name in plugins_by_name() if name not in BUILTIN)]


def load_plugin(plugin: FamilyPlugin, clashes: list[FamilyPlugin] | None = None) -> type[GenerativeModel]:
    """Import a plugin's class and check it is a family genlab can run; one ConfigError naming the entry
    point and its package otherwise (never the plugin's traceback)."""
    from genlab.models.base import GenerativeModel

    def broken(problem: str) -> ConfigError:
        return ConfigError(
            f"{plugin.describe} {problem} Fix or uninstall that package (pip uninstall "
            f"{plugin.package.split(' ')[0]}); genlab's own families ({', '.join(BUILTIN)}) work without it."
        )

    if plugin.name in BUILTIN:
        raise broken(
            f"uses the name of genlab's built-in family {plugin.name!r}; a plugin needs a name of its own."
        )
    if clashes:
        others = ", ".join(p.describe for p in clashes)
        raise broken(f"has the same family name as {others}; each family needs a name of its own.")
    try:
        module_name, _, attribute = plugin.value.partition(":")
        obj = importlib.import_module(module_name.strip())
        for part in attribute.strip().split(".") if attribute.strip() else []:
            obj = getattr(obj, part)
    except GenlabError as exc:
        raise broken(f"could not be imported: {exc}") from None
    except BaseException as exc:  # noqa: BLE001 - a plugin's import may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        reason = " ".join(str(exc).split()) or "no message"
        raise broken(f"could not be imported ({type(exc).__name__}: {reason}).") from None
    if not (isinstance(obj, type) and issubclass(obj, GenerativeModel)):
        raise broken(
            f"points to {obj!r}, which is not a subclass of genlab.models.base.GenerativeModel (the model "
            "contract: README, 'Adding your own family')."
        )
    if obj.family != plugin.name:
        raise broken(
            f"points to {obj.__module__}.{obj.__qualname__}, whose `family` is {obj.family!r}; the class "
            f"must set family = {plugin.name!r}, the entry point's name, which its checkpoints record."
        )
    return obj


def families() -> dict[str, type[GenerativeModel]]:
    """Family name -> LightningModule class for every family: genlab's, then each installed plugin's
    (imported here; a broken plugin is a ConfigError naming it)."""
    known = builtin_families()
    for name, plugins in plugins_by_name().items():
        cls = load_plugin(plugins[0], plugins[1:])
        known[name] = cls
    return known


def family_class(name: object, source: str = "the checkpoint") -> type[GenerativeModel]:
    """The class of family `name`: genlab's own, or the installed plugin of that name (imported now); a
    CheckpointError naming the valid families when there is none, a ConfigError when its plugin is broken."""
    if isinstance(name, str) and name in BUILTIN:
        module, cls = BUILTIN[name]
        return getattr(importlib.import_module(module), cls)
    plugins = plugins_by_name().get(name) if isinstance(name, str) else None
    if not plugins:
        raise CheckpointError(
            f"{source} names the model family {name!r}, which is not one of genlab's families "
            f"({', '.join(family_names())}); genlab only rebuilds its own families and those of installed "
            "family plugins (README, 'Adding your own family'), and refuses anything else."
        )
    return load_plugin(plugins[0], plugins[1:])


def check_plugin_target(target: object) -> None:
    """When a config's `model._target_` is the class an installed plugin declares, load that plugin: a broken
    one is its one clear ConfigError before Hydra tries to import the class itself (nothing else imported)."""
    for name, plugins in plugins_by_name().items():
        if any(p.value.replace(":", ".").replace(" ", "") == target for p in plugins):
            family_class(name)


def family_of_target(target: object) -> str | None:
    """The family whose class a config's `model._target_` names, among genlab's families and the installed
    plugins that load (a broken plugin counts as no match here: it is reported when asked for by name)."""
    for name in family_names():
        try:
            cls = family_class(name)
        except GenlabError:
            continue
        if f"{cls.__module__}.{cls.__qualname__}" == target:
            return name
    return None
