"""Speed paths that must not change results: the GAN's and VAE-GAN's single-pass training steps, the frozen
FID Inception, and the `speed.*` options."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import ConfigError
from genlab.runtime.speed import apply_speed_options, speed_settings
from tests.conftest import quiet_trainer


def test_speed_settings_check_keys_and_values():
    off = {"channels_last": False, "compile": False, "reuse_memory": False}
    assert speed_settings(None) == off
    assert speed_settings({"channels_last": True}) == {**off, "channels_last": True}
    with pytest.raises(ConfigError, match=r"speed\.chanels_last .*channels_last, compile, reuse_memory"):
        speed_settings({"chanels_last": True})
    with pytest.raises(ConfigError, match=r"speed\.compile='yes' must be true or false"):
        speed_settings({"compile": "yes"})


def test_channels_last_keeps_outputs_and_parameter_names():
    from genlab.models.vae import VAE

    torch.manual_seed(0)
    model = VAE(image_size=16, channels=1, latent_dim=4, width=8).eval()
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        before = model.reconstruct(x)
    names = list(model.state_dict())
    assert apply_speed_options(model, {"channels_last": True, "compile": False}) == ["channels_last"]
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == names  # checkpoints unchanged
    with torch.no_grad():
        torch.testing.assert_close(model.reconstruct(x), before, rtol=1e-5, atol=1e-6)


# A fresh process (the malloc setting is process-wide): an 8 MiB block, above glibc's default 128 KiB mmap
# threshold, gets its own mmap (mallinfo2's hblkhd grows by its size) unless speed.reuse_memory moved the
# threshold.
MALLOC_PROBE = """
import ctypes, json, sys
from genlab.runtime.speed import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
applied = reuse_freed_memory() if sys.argv[1] == "on" else False
before = libc.mallinfo2().hblkhd
block = libc.malloc(8 << 20)
print(json.dumps({"applied": applied, "again": reuse_freed_memory() if applied else None,
                  "mmapped": libc.mallinfo2().hblkhd - before}))
"""


@pytest.mark.skipif(
    __import__("platform").libc_ver()[0] != "glibc", reason="speed.reuse_memory tunes glibc's malloc"
)
@pytest.mark.parametrize("mode", ["off", "on", "user env"])
def test_reuse_memory_keeps_large_blocks_on_the_heap(mode, tmp_path):
    import ctypes
    import json
    import os
    import subprocess
    import sys

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc < 2.33 has no mallinfo2")
    env = dict(os.environ)
    if mode == "user env":  # the user's own malloc setting wins: genlab leaves malloc alone
        env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    out = subprocess.run(
        [sys.executable, "-c", MALLOC_PROBE, "off" if mode == "off" else "on"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    probe = json.loads(out.stdout)
    if mode == "on":
        assert probe["applied"] is True and probe["again"] is True
        assert probe["mmapped"] == 0  # the 8 MiB block came from the heap, reusable after a free
    else:
        assert probe["applied"] is False
        assert probe["mmapped"] >= 8 << 20


class CountingNet(torch.nn.Module):
    """Counts forward passes of a wrapped network."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)


def fit(model, steps: int = 3) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(8 * steps, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=8)
    quiet_trainer().fit(model, loader)


def test_gan_step_runs_the_generator_once_per_batch():
    from genlab.models.gan import GAN

    model = GAN(image_size=16, channels=1, latent_dim=4, width=8)
    model.generator = CountingNet(model.generator)
    before = [p.detach().clone() for p in model.generator.parameters()]
    fit(model, steps=3)
    assert model.generator.calls == 3  # one pass serves the D step and the G step
    assert model.g_steps == 3
    assert all(not torch.equal(b, p) for b, p in zip(before, model.generator.parameters(), strict=True))


def test_vaegan_step_takes_all_three_gradients_from_one_discriminator_pass():
    """Algorithm 1 of Larsen et al.: one discriminator pass, three gradients. The discriminator's update
    equals the one a second pass over the same (detached) images with the same weights gives."""
    import copy

    import torch.nn.functional as F

    from genlab.models.vaegan import VAEGAN

    torch.manual_seed(0)
    model = VAEGAN(image_size=16, channels=1, latent_dim=4, width=8, disc_width=8, margin=None)
    reference = copy.deepcopy(model.discriminator)
    inputs = []  # what entered the discriminator's first block, pass by pass
    model.discriminator.blocks[0].register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach()))
    fit(model, steps=1)
    (images,) = inputs  # one pass over real, reconstructed and prior images
    n = len(images) // 3

    _, _, opt_disc = model.configure_optimizers()  # the same optimizer settings, for the reference
    opt = type(opt_disc)(reference.parameters(), **opt_disc.defaults)
    logits = reference(images).flatten()
    loss_d = F.softplus(-logits[:n]).mean() + F.softplus(logits[n:]).mean()
    opt.zero_grad()
    loss_d.backward()
    opt.step()
    trained = dict(model.discriminator.named_parameters())
    for name, p in reference.named_parameters():
        torch.testing.assert_close(trained[name], p, rtol=1e-5, atol=1e-6, msg=name)
