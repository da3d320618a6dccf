"""Console output: the composed config as a rich tree, printed once (rank 0) when a run starts."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

# top-level sections shown first, in this order; the rest follow as they come
SECTION_ORDER = ("data", "model", "trainer", "callbacks", "logger", "paths")


def config_tree(cfg: DictConfig, order: Sequence[str] = SECTION_ORDER):
    """A rich Tree: one branch per config section, its YAML (interpolations resolved) as the leaf."""
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", style="bold", guide_style="dim")
    scalars = {k: v for k, v in cfg.items() if not isinstance(v, DictConfig)}
    sections = [k for k in order if k in cfg] + [k for k in cfg if k not in order and k not in scalars]
    for name in sections:
        node = cfg[name]
        try:
            text = OmegaConf.to_yaml(node, resolve=True)
        except Exception:  # an interpolation only the running job can resolve
            text = OmegaConf.to_yaml(node)
        tree.add(f"[bold]{name}[/]").add(Syntax(text.rstrip() or "{}", "yaml", theme="ansi_dark"))
    if scalars:
        text = OmegaConf.to_yaml(OmegaConf.create({k: cfg[k] for k in scalars}), resolve=True)
        tree.add("[bold]run[/]").add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    return tree


def print_config_tree(cfg: DictConfig) -> None:
    """Print the tree to stdout; without a terminal rich writes plain text (no colour codes in logs)."""
    from rich.console import Console

    Console(soft_wrap=True).print(config_tree(cfg))
