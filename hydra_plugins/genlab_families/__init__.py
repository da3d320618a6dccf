"""Hydra search-path plugin shipped with genlab: the `conf/` folders of installed genlab family plugins
(entry-point group `genlab.families`, see genlab/plugins.py) join the config search path after genlab's own
configs, so `model=<plugin family>` composes. It acts only when genlab's own config folder is being searched
(any other Hydra application in the environment is left alone) and never raises: a plugin without a config
folder is reported by genlab when its family is asked for."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class GenlabFamilyConfigs(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from genlab.plugins import plugin_conf_dirs
        from genlab.runtime.conf import conf_dir

        ours = conf_dir().resolve()
        searched = {
            Path(str(element.path).removeprefix("file://")).resolve()
            for element in search_path.get_path()
            if element.path and "://" not in str(element.path).replace("file://", "")
        }
        if ours not in searched:
            return
        try:
            folders = plugin_conf_dirs()
        except Exception:  # broken package metadata: genlab names the problem when a family is asked for
            return
        for folder in folders:
            search_path.append(provider="genlab-family-plugin", path=f"file://{folder}")
