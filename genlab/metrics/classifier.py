"""A LeNet-size domain classifier (LeCun et al. 1998) trained by genlab on a dataset's labelled training
split: its penultimate features give a domain FID/KID, its logits a domain Inception Score and class
coverage. Cached under `<paths.cache_dir>/classifiers/`, keyed by the data's identity (`describe()`: source
fingerprint, split, class filters, image size, channels) and the network's shape; the training recipe
(steps, seed) is recorded in the file. Read with `torch.load(weights_only=True)`: a cache file is data."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import CacheError, ConfigError, DataError


class LeNet(nn.Module):
    """Two conv blocks and two dense layers; `features` is the penultimate (feature_dim-wide) layer."""

    def __init__(self, channels: int, num_classes: int, feature_dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),  # any image size >= 4 gives the same dense layers
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """The same convention as the Inception backbone: uint8 [0, 255] or float [0, 1] in, float [0, 1] out."""
    return images.float().div(255) if images.dtype == torch.uint8 else images.float().clamp(0, 1)


class ClassifierFeatures(nn.Module):
    """A torchmetrics custom feature extractor from a trained LeNet: penultimate features, or logits
    with `output="logits"` (for InceptionScore)."""

    def __init__(self, net: LeNet, info: ClassifierInfo, path: Path, output: str = "features") -> None:
        super().__init__()
        self.net = net.eval()
        self.info = info
        self.weights_path = path
        self.output = output
        self.num_features = info.num_classes if output == "logits" else info.feature_dim
        self.eval()

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)

    def with_output(self, output: str) -> ClassifierFeatures:
        return ClassifierFeatures(self.net, self.info, self.weights_path, output)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from genlab.metrics.inception import full_precision

        x = to_unit_float(images)
        with full_precision(x.device):  # float32 features under any autocast, as the Inception's
            return self.net(x) if self.output == "logits" else self.net.features(x)


@dataclass
class ClassifierInfo:
    """What is stored next to the weights: how the classifier was trained and how good it is."""

    dataset: str
    image_size: int
    channels: int
    num_classes: int
    feature_dim: int
    width: int
    steps: int
    epochs: int
    seed: int
    train_images: int
    test_accuracy: float
    seconds: float
    data: dict = field(default_factory=dict)  # the data's describe(): what it was trained on
    outlier_weight: float = 0.0  # outlier exposure's λ (0 in files written before format 3)


CLASSIFIER_FORMAT = 3  # 2: keyed by the data's identity; 3: trained with outlier exposure


def classifier_key(datamodule, feature_dim: int = 128, width: int = 32) -> dict:
    """Everything that decides which classifier fits this data: the data's identity and the net's shape."""
    description = json.loads(json.dumps(datamodule.describe(), default=str))
    return {"data": description, "feature_dim": feature_dim, "width": width, "format": CLASSIFIER_FORMAT}


def classifier_path(cache_dir: str | Path, datamodule, feature_dim: int = 128, width: int = 32) -> Path:
    """Where the classifier for this data lives in the cache (name readable, digest of the whole key)."""
    key = classifier_key(datamodule, feature_dim, width)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{datamodule.name}_{datamodule.image_size}px_{datamodule.channels}ch_{digest}.pt"
    return Path(str(cache_dir)).expanduser() / "classifiers" / name


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_labelled_images(datamodule) -> None:
    datamodule.describe()  # cheap; an image folder learns its classes (sub-folders) from its file list
    if getattr(datamodule, "kind", "image") != "image":
        raise ConfigError(
            f"data={datamodule.name!r} holds 2-D points, not images: the classifier backbone needs labelled "
            "images. Mixtures are scored with mode coverage instead."
        )
    if not datamodule.num_classes:
        raise DataError(
            f"data={datamodule.name!r} has no class labels, so genlab cannot train a domain classifier "
            "on it. "
            "Use metrics.backbone=inception."
        )


@torch.no_grad()
def accuracy(net: LeNet, loader) -> float:
    net.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((net(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def small_shift(x: torch.Tensor) -> torch.Tensor:
    """The batch rolled by up to one pixel each way: small shifts make the features robust to the slight
    misalignment of generated digits."""
    shift = torch.randint(-1, 2, (2,)).tolist()
    return torch.roll(x, shifts=shift, dims=(2, 3))


def outliers(x: torch.Tensor) -> torch.Tensor:
    """Images that are no class at all, built from a real batch x in [0, 1]: uniform noise, the batch's own
    pixels shuffled (same brightness, no shape), and smooth blobs (noise upsampled from 1/4 to 1/7 of the
    size, then stretched to [0, 1]). One quarter of each kind in every call; shapes and range as x."""
    n, c, h, w = x.shape
    kinds = torch.randint(0, 3, (n,))
    noise = torch.rand_like(x)
    shuffled = x.flatten(1)[:, torch.randperm(c * h * w)].view_as(x)
    grid = int(torch.randint(4, 8, ()))
    coarse = torch.rand(n, c, max(2, h // grid), max(2, w // grid))
    blobs = F.interpolate(coarse, size=(h, w), mode="bilinear")
    low, high = blobs.amin(dim=(1, 2, 3), keepdim=True), blobs.amax(dim=(1, 2, 3), keepdim=True)
    blobs = ((blobs - low) / (high - low + 1e-6) * 1.6 - 0.6).clamp(0, 1)  # dark background, bright blobs
    choice = kinds.view(n, 1, 1, 1)
    return torch.where(choice == 0, noise, torch.where(choice == 1, shuffled, blobs))


def fit_classifier(
    net: LeNet,
    loader,
    steps: int,
    lr: float = 2e-3,
    transform=None,
    log=print,
    outlier_weight: float = 0.0,
) -> int:
    """The classifier's training loop: `steps` Adam steps of cross-entropy over `loader`'s batches, each batch
    passed through `transform` first (None: as is). With `outlier_weight` > 0, outlier exposure (Hendrycks
    et al. 2019, "Deep Anomaly Detection with Outlier Exposure", eq. 1 with λ = the weight): every step also
    pushes the softmax on `outliers(x)` towards uniform, so a max-softmax threshold rejects noise and blobs
    that a plain classifier labels with near-certainty. Returns the number of (partial) epochs run."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    epochs = math.ceil(steps / len(loader))  # a step budget suits small (digits) and large sets alike
    step = 0
    for epoch in range(epochs):
        net.train()
        for x, y in loader:
            if step == steps:
                break
            step += 1
            x = transform(x) if transform is not None else x
            loss = F.cross_entropy(net(x), y)
            if outlier_weight > 0:
                # cross-entropy from the outliers' softmax to the uniform distribution
                # (half a batch of outliers per step: as effective as a full one on MNIST, cheaper)
                odd = outliers(to_unit_float(x[: max(1, len(x) // 2)]))
                loss = loss - outlier_weight * net(odd).log_softmax(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        log(f"classifier epoch {epoch + 1}/{epochs}: train loss {loss.item():.4f}")
    return epochs


# outlier exposure's λ for the domain classifier: the paper's 0.5. Without it the MNIST LeNet gave uniform
# noise a top-class probability >= 0.9 in 97.6 % of cases, so noise counted as "recognisable"; with it 0 %
# (also for shuffled-pixel and blob images), at about the same test accuracy (0.9705 -> 0.9649) and real
# test digits' confident fraction (0.888 -> 0.892); 600 steps, seed 0
OUTLIER_WEIGHT = 0.5


def train_classifier(
    datamodule,
    cache_dir: str | Path,
    steps: int = 600,
    lr: float = 2e-3,
    seed: int = 0,
    feature_dim: int = 128,
    width: int = 32,
    log=print,
) -> Path:
    """Train the LeNet on the labelled training split, measure test accuracy, save into the cache."""
    check_labelled_images(datamodule)
    if steps < 1:
        raise ConfigError(f"steps={steps!r} must be a positive integer (optimizer steps of the classifier).")
    # inside a run (periodic eval) training must neither move the run's RNG nor inherit its no-grad mode
    with torch.random.fork_rng(), torch.inference_mode(False), torch.enable_grad():
        return _train_classifier(datamodule, cache_dir, steps, lr, seed, feature_dim, width, log)


def _train_classifier(datamodule, cache_dir, steps, lr, seed, feature_dim, width, log) -> Path:
    torch.manual_seed(seed)
    datamodule.setup("fit")
    datamodule.setup("test")
    net = LeNet(datamodule.channels, datamodule.num_classes, feature_dim, width)
    start = time.perf_counter()
    epochs = fit_classifier(
        net, datamodule.train_dataloader(), steps, lr, small_shift, log, outlier_weight=OUTLIER_WEIGHT
    )
    test_accuracy = accuracy(net, datamodule.test_dataloader())
    info = ClassifierInfo(
        dataset=datamodule.name,
        image_size=datamodule.image_size,
        channels=datamodule.channels,
        num_classes=datamodule.num_classes,
        feature_dim=feature_dim,
        width=width,
        steps=steps,
        epochs=epochs,
        seed=seed,
        train_images=len(datamodule.train_set),
        test_accuracy=round(test_accuracy, 5),
        seconds=round(time.perf_counter() - start, 2),
        data=classifier_key(datamodule, feature_dim, width)["data"],
        outlier_weight=OUTLIER_WEIGHT,
    )
    key = classifier_key(datamodule, feature_dim, width)
    path = classifier_path(cache_dir, datamodule, feature_dim, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": net.state_dict(), "info": asdict(info), "key": key}, tmp)
    tmp.replace(path)  # atomic: a parallel evaluation never reads half a file
    log(
        f"classifier for {info.dataset} ({info.image_size}px): test accuracy {test_accuracy:.4f}, "
        f"saved to {path}"
    )
    return path


def load_classifier(path: str | Path, key: dict | None = None) -> ClassifierFeatures | None:
    """The classifier stored at `path` (read as data only), or None when `key` is given and the file was
    trained for other data. A file that is not what genlab writes is a CacheError naming it."""
    from genlab.metrics.reference import read_cache_file

    path = Path(path)
    stored = read_cache_file(path, "domain-classifier")
    if key is not None and stored.get("key") != key:
        return None
    try:
        info = ClassifierInfo(**stored["info"])
        net = LeNet(info.channels, info.num_classes, info.feature_dim, info.width)
        net.load_state_dict(stored["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CacheError(
            f"the domain-classifier cache file {str(path)!r} is not a classifier genlab wrote "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}). Delete it and genlab retrains it."
        ) from None
    return ClassifierFeatures(net, info, path)


def resolve_classifier(
    datamodule, cache_dir: str | Path, train_if_missing: bool = True, steps: int = 600, log=print
) -> tuple[ClassifierFeatures, bool]:
    """The cached classifier for this dataset and size; trained now (and said so) when missing and
    `train_if_missing`, else a ConfigError giving the command. Returns (backbone, trained_now)."""
    check_labelled_images(datamodule)
    path = classifier_path(cache_dir, datamodule)
    if path.is_file() and (cached := load_classifier(path, classifier_key(datamodule))) is not None:
        return cached, False
    if not train_if_missing:
        raise ConfigError(
            f"no domain classifier for data={datamodule.name} at {datamodule.image_size}px in {path.parent}. "
            f"Train it once with `genlab train-classifier data={datamodule.name} "
            f"data.image_size={datamodule.image_size}` and the same other data settings (the cache is keyed "
            "by the data's source, split and class filters) and the same paths.cache_dir, or set "
            "metrics.train_classifier_if_missing=true."
        )
    log(
        f"no cached domain classifier for {datamodule.name} at {datamodule.image_size}px: training one now "
        f"({steps} steps; `genlab train-classifier` does this ahead of time)"
    )
    return load_classifier(train_classifier(datamodule, cache_dir, steps=steps, log=log)), True
