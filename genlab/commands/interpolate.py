"""Walk the latent space between pairs of test images (or prior samples): PNG grid and GIF, a row per pair.
Conditional models: `hold=class` walks the style with the class fixed, `hold=style` switches the class."""

from __future__ import annotations

import torch

from genlab.commands._checkpoint import load_checkpoint_run, output_dir, report
from genlab.errors import ConfigError, bad_choice
from genlab.latent import PATHS, interpolation_path
from genlab.runtime.launch import run_command

HOLDS = ("class", "style")


def pick_pairs(dataset, pairs: int, seed: int, with_labels: bool = False):
    """`pairs` (start, end) images from `dataset`, drawn at random (fixed by `seed`); each end image has
    another class than its start where the data allows, so every row morphs one class into another.
    `with_labels` also returns the start and end images' labels."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    if len(order) < 2 * pairs:
        raise ConfigError(f"pairs={pairs} needs {2 * pairs} images but the split holds only {len(order)}.")
    starts, ends, used, labels = [], [], set(), []
    for index in order:
        if len(starts) == pairs:
            break
        if index in used:
            continue
        used.add(index)
        label = int(dataset[index][1])
        partner = next((j for j in order if j not in used and int(dataset[j][1]) != label), None)
        if partner is None:  # a single class left: any other image will do
            partner = next(j for j in order if j not in used)
        used.add(partner)
        starts.append(dataset[index][0])
        ends.append(dataset[partner][0])
        labels.append((label, int(dataset[partner][1])))
    if with_labels:
        start_labels, end_labels = torch.as_tensor(labels).T
        return torch.stack(starts), torch.stack(ends), start_labels, end_labels
    return torch.stack(starts), torch.stack(ends)


def save_gif(frames: list[torch.Tensor], path, seconds: float, scale: int) -> None:
    """Frames (C, H, W) in [0, 1] as a looping GIF that plays forward then back, enlarged `scale` times."""
    from PIL import Image

    images = []
    for frame in frames + frames[-2:0:-1]:
        frame = frame.clamp(0, 1).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        array = (frame * 255).round().byte().permute(1, 2, 0).numpy()
        images.append(Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array))
    duration_ms = max(20, round(1000 * seconds / len(images)))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)


@torch.no_grad()
def interpolate(cfg) -> None:
    import math

    from torchvision.utils import make_grid

    from genlab.callbacks.samples import save_grid

    if not isinstance(cfg.pairs, int) or cfg.pairs < 1:
        raise ConfigError(f"pairs={cfg.pairs!r} must be a positive number of rows.")
    if not isinstance(cfg.steps, int) or cfg.steps < 2:
        raise ConfigError(f"steps={cfg.steps!r} must be at least 2 (the two endpoints), e.g. steps=10.")
    methods = [cfg.paths_between] if isinstance(cfg.paths_between, str) else list(cfg.paths_between)
    for method in methods:
        if method not in PATHS:
            raise bad_choice("paths_between", method, PATHS)
    run = load_checkpoint_run(cfg)
    model, device = run.model, run.device
    out = output_dir(cfg)
    hold = conditional_hold(cfg, model)
    if hold is not None:
        return report(interpolate_conditional(cfg, run, methods, hold, out))

    if getattr(model, "has_encoder", False) or getattr(model, "invertible", False):
        starts, ends = pick_pairs(run.image_split(cfg.split), cfg.pairs, cfg.seed)
        if model.has_encoder:  # posterior means
            z_start, z_end = model.encode(starts.to(device))[0], model.encode(ends.to(device))[0]
        else:  # a deterministic code: the flow's exact z, diffusion's DDIM-inverted noise
            z_start, z_end = model.encode(starts.to(device)), model.encode(ends.to(device))
        ends_shown = (starts, ends) if cfg.show_originals else None
    else:  # no encoder (e.g. a GAN): walk between draws from the prior N(0, I)
        generator = torch.Generator().manual_seed(int(cfg.seed))
        z_start = torch.randn(cfg.pairs, model.latent_dim, generator=generator).to(device)
        z_end = torch.randn(cfg.pairs, model.latent_dim, generator=generator).to(device)
        ends_shown = None

    written = []
    for method in methods:
        path = interpolation_path(z_start, z_end, cfg.steps, method)  # (pairs, steps, D)
        images = model.decode(path.flatten(0, 1)).cpu()
        images = images.unflatten(0, (cfg.pairs, cfg.steps))  # (pairs, steps, C, H, W)
        if images.dim() != 5:
            raise ConfigError(
                f"interpolate draws image grids, but the {model.family!r} model decodes to points."
            )
        rows = images
        if ends_shown is not None:  # the real images at both ends of each row
            rows = torch.cat([ends_shown[0][:, None], images, ends_shown[1][:, None]], dim=1)
        written.append(save_grid(rows.flatten(0, 1), out / f"interpolation_{method}.png", nrow=rows.shape[1]))
        tiles_per_row = math.ceil(math.sqrt(cfg.pairs))
        frames = [
            make_grid(images[:, t], nrow=tiles_per_row, padding=2, pad_value=1.0) for t in range(cfg.steps)
        ]
        scale = max(1, 64 // images.shape[-1])
        gif = out / f"interpolation_{method}.gif"
        save_gif(frames, gif, cfg.gif_seconds, scale)
        written.append(gif)
    report(written)


def conditional_hold(cfg, model) -> str | None:
    """`hold` checked against the model: None for unconditional models, `class` by default otherwise."""
    from genlab.commands._conditional import require_conditional

    hold = cfg.get("hold")
    if hold is None:
        return "class" if getattr(model, "conditional", False) else None
    require_conditional(model, f"hold={hold}")
    if hold not in HOLDS:
        raise bad_choice("hold", hold, HOLDS)
    return hold


def start_latents(
    cfg, run, model, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(z_start, z_end, the rows' classes, real end images or None): encoded pairs of test images for
    encoder families (each encoded with its own label), prior draws otherwise. A row's class is `label`
    when given, else its start image's class (encoder families) or the classes in turn."""
    from genlab.commands._conditional import label_list

    if getattr(model, "has_encoder", False):
        dataset = run.image_split(cfg.split)
        starts, ends, y_start, y_end = pick_pairs(dataset, cfg.pairs, cfg.seed, with_labels=True)
        z_start = model.encode(starts.to(device), y_start.to(device))[0]
        z_end = model.encode(ends.to(device), y_end.to(device))[0]
        shown = (starts, ends) if cfg.show_originals else None
    else:
        generator = torch.Generator().manual_seed(int(cfg.seed))
        z_start = torch.randn(cfg.pairs, model.latent_dim, generator=generator).to(device)
        z_end = torch.randn(cfg.pairs, model.latent_dim, generator=generator).to(device)
        y_start, shown = torch.arange(cfg.pairs) % model.num_classes, None
    if cfg.get("label") is not None:
        y_start = torch.as_tensor(label_list("label", cfg.label, model.num_classes) * cfg.pairs)
    return z_start, z_end, y_start.to(device), shown


@torch.no_grad()
def interpolate_conditional(cfg, run, methods: list[str], hold: str, out) -> list:
    """hold=class: each row walks from one latent to another with its class fixed (the style changes);
    hold=style: each row keeps one latent and switches the class, one column per class."""
    import math

    from torchvision.utils import make_grid

    from genlab.callbacks.samples import save_grid

    model, device = run.model, run.device
    z_start, z_end, row_classes, shown = start_latents(cfg, run, model, device)
    walks = {}  # file name -> decoded rows (pairs, columns, C, H, W)
    if hold == "style":
        classes = torch.arange(model.num_classes, device=device)
        images = model.decode(z_start.repeat_interleave(len(classes), 0), classes.repeat(cfg.pairs))
        walks["interpolation_classes"] = images.cpu().unflatten(0, (cfg.pairs, len(classes)))
    else:
        for method in methods:
            path = interpolation_path(z_start, z_end, cfg.steps, method)  # (pairs, steps, D)
            images = model.decode(path.flatten(0, 1), row_classes.repeat_interleave(cfg.steps))
            walks[f"interpolation_{method}"] = images.cpu().unflatten(0, (cfg.pairs, cfg.steps))
    written = []
    for name, images in walks.items():
        rows = images
        if shown is not None:  # the real images at the start (and, walking the style, the end) of each row
            rows = torch.cat(
                [shown[0][:, None], images, *([shown[1][:, None]] if hold == "class" else [])], 1
            )
        written.append(save_grid(rows.flatten(0, 1), out / f"{name}.png", nrow=rows.shape[1]))
        tiles_per_row = math.ceil(math.sqrt(cfg.pairs))
        frames = [
            make_grid(images[:, t], nrow=tiles_per_row, padding=2, pad_value=1.0)
            for t in range(images.shape[1])
        ]
        save_gif(frames, out / f"{name}.gif", cfg.gif_seconds, max(1, 64 // images.shape[-1]))
        written.append(out / f"{name}.gif")
    return written


def main(overrides: list[str]) -> None:
    run_command("interpolate", interpolate, overrides)
