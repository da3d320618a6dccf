"""The contract every model family keeps (loading a family from a checkpoint: models/loading.py).

A family is a LightningModule with:
- `sample(n, generator=None) -> Tensor`: images in [0, 1] shaped (n, C, H, W) (or points (n, 2));
  conditional families (`model.conditional=true`) take `labels=` there and in `encode`/`decode`/`reconstruct`;
- `latent_dim`, and `decode(z)` where a latent exists; `encode(x) -> (mu, logvar)` and
  `reconstruct(x)` where an encoder exists (`has_encoder = True`);
- `training_step` returning a dict of named losses (checked by the divergence guard) and logging them
  as `train/loss_<part>`; `validation_step` logging `val/loss` (what "best" checkpoints minimise) and,
  where reconstruction exists, `val/recon_mse`;
- hyperparameters saved with `save_hyperparameters(ignore=["optimizer"])`, so `load_model(path)`
  needs no config;
- optionally, for `genlab export`: `sampling_network` (its kind), `sampling_parts()` (the sub-modules and
  buffers sampling needs) and `sampling_graph()` (a plain module from latents to images, for ONNX and
  TorchScript).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch

from genlab import __version__
from genlab.errors import ConfigError, bad_choice
from genlab.nets.conditioning import with_label_maps, with_label_vector

# where samples draw z from (GaussianEncoderDecoder.setup_prior)
PRIORS = ("auto", "normal", "gmm")

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def check_warmup(lr_warmup_steps: int) -> None:
    """model.lr_warmup_steps must be a non-negative integer (see GenerativeModel.with_warmup)."""
    if not isinstance(lr_warmup_steps, int) or lr_warmup_steps < 0:
        raise ConfigError(
            f"model.lr_warmup_steps={lr_warmup_steps!r} must be an integer >= 0 (0: no warm-up)."
        )


@torch.no_grad()
def update_ema(
    ema: torch.nn.Module, live: torch.nn.Module, steps: int, decay: float, buffers: bool = True
) -> None:
    """One EMA step of `live`'s weights into `ema` (Karras et al. 2018). The decay warms up as
    min(decay, (1+t)/(10+t)) after t = `steps` earlier updates, so short runs are not stuck near the initial
    weights (as TensorFlow's ExponentialMovingAverage with num_updates); with `buffers`, batch-norm statistics
    follow `live`'s. One foreach call per list instead of a Python loop of per-tensor ops."""
    rate = 1 - min(decay, (1 + steps) / (10 + steps))
    torch._foreach_lerp_(list(ema.parameters()), list(live.parameters()), rate)
    if buffers and (targets := list(ema.buffers())):  # (an MLP has none; foreach wants at least one)
        torch._foreach_copy_(targets, list(live.buffers()))


@dataclass
class SamplingGraph:
    """What `genlab export` writes as ONNX / TorchScript: a plain nn.Module (no LightningModule) in eval
    mode whose forward takes the named inputs in order (one example batch each; the batch dimension is
    dynamic) and returns the output, and one sentence saying what it computes."""

    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    output: str
    computes: str


class GenerativeModel(pl.LightningModule):
    family: ClassVar[str] = "base"
    has_encoder: ClassVar[bool] = False
    # whether the family also trains on 2-D points (data=ring|grid), not only on images
    takes_points: ClassVar[bool] = False
    # `genlab export`: the kind of network that draws the samples (generator, decoder, denoiser, flow);
    # None: the family has none genlab can export
    sampling_network: ClassVar[str | None] = None

    def __init__(self, optimizer: OptimizerFactory | None = None) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.run_config: dict[str, Any] | None = None  # the composed config, stored in checkpoints
        self.conditional = False
        self.num_classes: int | None = None
        # log_train's sums this epoch: {names logged together: [batch-size-weighted sums, images]}
        self._train_sums: dict[tuple[str, ...], list] = {}
        self._train_last: dict[str, torch.Tensor] = {}  # the latest value of each loss this epoch

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        loop = self.trainer.fit_loop.epoch_loop
        # `loop.done`: the run stops after this batch although the epoch is not over (the CPU budget,
        # max_steps, max_time: callbacks' batch-end hooks, which request the stop, run before this one)
        if loop.batch_progress.is_last_batch or loop.done:
            self.on_last_train_batch()

    def on_last_train_batch(self) -> None:
        """Runs after the last training batch of every epoch and after the run's last batch when it stops
        mid-epoch, before that epoch's validation, grids and checkpoint (Lightning's on_train_epoch_end comes
        after validation): work the evaluation must see, e.g. the prior mixture's fit or the EMA generator's
        standing statistics."""

    # -- training losses in the logs ---------------------------------------------------------------
    def log_train(self, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        """Log a training step's losses as `self.log_dict({"train/<k>": v}, on_step=True, on_epoch=True)`
        would: `train/<k>_step` on the steps the loggers write (every trainer.log_every_n_steps), and at the
        epoch's end `train/<k>_epoch`, the batch-size-weighted mean, also as `train/<k>` for callbacks. Same
        names and numbers for a fraction of the cost: Lightning's bookkeeping takes ~0.6 ms per value and
        step on CPU (3 % of a VAE step); here an epoch's sums are one tensor update per step, and Lightning
        is handed values only on the steps its loggers write. The set of names may change between steps
        (e.g. the GAN's loss_g only on generator steps): as with Lightning, a step row then carries the
        latest value of this epoch for a loss the step did not compute."""
        names = tuple(losses)
        detached = {k: v.detach() for k, v in losses.items()}
        self._train_last.update(detached)
        values = torch.stack([v.float().reshape(()) for v in detached.values()])
        entry = self._train_sums.get(names)
        if entry is None:
            self._train_sums[names] = [values * batch_size, batch_size]
        else:
            entry[0].add_(values, alpha=batch_size)
            entry[1] += batch_size
        trainer = self._trainer
        if trainer is None:  # a step run by hand: nothing to log to (self.log would only warn)
            return
        connector = getattr(trainer, "_logger_connector", None)
        if connector is None or connector.should_update_logs or trainer.fast_dev_run:
            step = {f"train/{k}_step": v for k, v in self._train_last.items()}
            self.log_dict(step, on_step=True, on_epoch=False, batch_size=batch_size)

    def train_epoch_means(self) -> dict[str, torch.Tensor]:
        """This epoch's batch-size-weighted mean of every loss given to `log_train` so far."""
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        for names, (total, images) in self._train_sums.items():
            for name, value in zip(names, total, strict=True):
                sums[name] = sums[name] + value if name in sums else value
                counts[name] = counts.get(name, 0) + images
        return {name: sums[name] / counts[name] for name in sums}

    def on_train_epoch_start(self) -> None:
        self._train_sums.clear()
        self._train_last.clear()

    def on_train_epoch_end(self) -> None:
        # before the monitoring callbacks (checkpoint, early stopping) and the epoch's log row
        means = self.train_epoch_means()  # the sums stay readable until the next epoch starts
        if means:
            self.log_dict({f"train/{k}_epoch": v for k, v in means.items()}, on_epoch=True, sync_dist=True)
            self.log_dict(
                {f"train/{k}": v for k, v in means.items()}, on_epoch=True, logger=False, sync_dist=True
            )

    # -- class conditioning (model.conditional=true; genlab/nets/conditioning.py) --------------------
    def setup_conditioning(self, conditional: bool, num_classes: int | None) -> None:
        """Check and store the conditioning settings; unlabelled data cannot be conditioned on."""
        if conditional and (num_classes is None or int(num_classes) < 2):
            raise ConfigError(
                f"model.conditional=true needs class labels, but the data has none (model.num_classes="
                f"{num_classes!r}, taken from data.num_classes): the ring/grid point mixtures and image "
                "folders without class sub-folders are unlabelled. Use a labelled dataset (data=digits, "
                "mnist, fashion_mnist, cifar10, or an image folder with one sub-folder per class) or "
                "model.conditional=false."
            )
        self.conditional = bool(conditional)
        self.num_classes = int(num_classes) if conditional else None

    def class_labels(self, n: int, labels: Any = None) -> torch.Tensor:
        """The labels of n generated samples of a conditional model, on its device: `labels` checked
        (one label is repeated n times), or, when None, the classes in turn 0, 1, …, K-1, 0, … so that
        every batch is class-balanced without touching the random stream."""
        if not self.conditional:
            raise ConfigError(
                f"labels were given, but this {self.family!r} model is not conditional (it was trained with "
                "model.conditional=false), so it cannot generate a chosen class. Train it with "
                "model.conditional=true to generate by class."
            )
        if labels is None:
            return torch.arange(n, device=self.device) % self.num_classes
        labels = torch.as_tensor(labels, dtype=torch.long).flatten().to(self.device)
        if len(labels) == 1:
            labels = labels.expand(n)
        if len(labels) != n:
            raise ConfigError(
                f"{len(labels)} labels were given for {n} samples; give one label or n of them."
            )
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(bad):
            raise ConfigError(
                f"label {int(bad[0])} is out of range: this model knows {self.num_classes} classes, so valid "
                f"labels are 0..{self.num_classes - 1}."
            )
        return labels

    def batch_labels(self, batch) -> torch.Tensor | None:
        """The labels of an (x, y) batch when the model is conditional (None otherwise)."""
        return batch[1] if self.conditional else None

    def data_labels(self, labels: torch.Tensor | None, what: str) -> torch.Tensor:
        """The labels of real images (for a conditional encoder or discriminator); an error when missing."""
        if labels is None:
            raise ConfigError(
                f"this {self.family!r} model is conditional: {what} needs the images' class labels "
                "(labels=...), which unlabelled callers cannot give."
            )
        return labels.long().to(self.device)

    def refuse_conditional(self, what: str) -> None:
        if self.conditional:
            raise ConfigError(
                f"{what} is not defined for a conditional model (model.conditional=true): its scores would "
                "need the class of the image being scored. Use a checkpoint trained with "
                "model.conditional=false."
            )

    def make_optimizer(
        self,
        params: Iterable[torch.nn.Parameter],
        factory: OptimizerFactory | None = None,
        name: str = "optimizer",
    ) -> torch.optim.Optimizer:
        """Build an optimizer from a Hydra partial, turning torch's ValueError into a readable one."""
        factory = factory or self.optimizer_factory or partial(torch.optim.Adam, lr=1e-3)
        try:
            return factory(params)
        except ValueError as exc:
            raise ConfigError(
                f"model.{name}: {exc}. Use a positive learning rate and betas in [0, 1)."
            ) from exc

    @staticmethod
    def with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> Any:
        """`optimizer` alone, or with a linear learning-rate warm-up over the first `warmup_steps` optimizer
        steps (as Ho et al. 2020 and Glow train), in the form Lightning's configure_optimizers returns."""
        if not warmup_steps:
            return optimizer
        ramp = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": ramp, "interval": "step"}}

    # -- `genlab export` (genlab/models/export.py) ----------------------------------------------------
    def sampling_parts(self) -> tuple[str, ...]:
        """The attributes (sub-modules, buffers) the sampling network is made of: what an exported folder
        holds of the state_dict (keys equal to one of them or starting with `<name>.`)."""
        return ()

    def sampling_graph(self) -> SamplingGraph:
        """The sampling network as a plain module for ONNX / TorchScript (families with one override it)."""
        raise ConfigError(f"the {self.family!r} family has no sampling network genlab can export as a graph.")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["genlab"] = {
            "version": __version__,
            "family": self.family,
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.run_config = (checkpoint.get("genlab") or {}).get("config")


class GaussianEncoderDecoder(GenerativeModel):
    """A family with a Gaussian encoder q(z|x) = N(mu, exp(logvar)) and a decoder whose sigmoid output is
    the image (VAE, VAE-GAN). Subclasses set `encoder` (x -> 2·latent_dim), `decoder` and `latent_dim`."""

    has_encoder: ClassVar[bool] = True
    encoder: torch.nn.Module
    decoder: torch.nn.Module
    latent_dim: int

    def encode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) (q(z|x, y) when conditional, Sohn et al. 2015; unconditional models ignore `labels`)."""
        if self.conditional:
            x = with_label_maps(x, self.data_labels(labels, "encoding"), self.num_classes)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decoder_input(self, z: torch.Tensor, labels: Any = None) -> torch.Tensor:
        """z, or [z, one_hot(y)] when conditional (`labels=None`: the classes in turn)."""
        if not self.conditional:
            return z
        return with_label_vector(z, self.class_labels(len(z), labels), self.num_classes)

    def decode(self, z: torch.Tensor, labels: Any = None) -> torch.Tensor:
        """Latents (and, when conditional, labels) -> images in [0, 1]."""
        return torch.sigmoid(self.decoder(self.decoder_input(z, labels)))

    # -- `genlab export`: the decoder that samples (its EMA copy when the family keeps one), the mixture --
    sampling_network: ClassVar[str | None] = "decoder"

    @property
    def sampling_decoder_name(self) -> str:
        return "decoder_ema" if getattr(self, "decoder_ema", None) is not None else "decoder"

    def sampling_parts(self) -> tuple[str, ...]:
        prior = ("gmm_weights", "gmm_means", "gmm_scale_tril") if self.sample_prior == "gmm" else ()
        return (self.sampling_decoder_name, *prior)

    def sampling_graph(self) -> SamplingGraph:
        from genlab.nets.sampling import LatentToData

        graph = LatentToData(getattr(self, self.sampling_decoder_name), self.num_classes, "sigmoid")
        inputs = {"z": self.prior_latents(2, torch.Generator().manual_seed(0)).cpu()}
        if self.conditional:
            inputs["labels"] = torch.arange(2) % self.num_classes
        prior = (
            "a Gaussian mixture fitted to the training codes (gmm_weights, gmm_means, gmm_scale_tril in "
            "model.safetensors; z = mean_k + scale_tril_k @ N(0, I), k ~ weights)"
            if self.gmm_fitted
            else "N(0, I)"
        )
        return SamplingGraph(
            graph.eval(),
            inputs,
            "images",
            f"the {self.sampling_decoder_name}: images in [0, 1] = {graph.describe()}, z (batch, "
            f"{self.latent_dim}) drawn from {prior}",
        )

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the posterior mean (with the images' own labels when conditional)."""
        labels = labels if self.conditional else None
        return self.decode(self.encode(x, labels)[0], labels)

    # -- the sampling prior: N(0, I), or a Gaussian mixture fitted ex post to the posterior means -------
    def setup_prior(self, sample_prior: str, gmm_components: int, gmm_fit_images: int) -> None:
        """`sample_prior=gmm`: ex-post density estimation (Ghosh et al. 2020, "From variational to
        deterministic autoencoders", sec. 4): a full-covariance Gaussian mixture is fitted to the posterior
        means of (up to `gmm_fit_images`) training images at the end of every training epoch, and samples
        draw z from it instead of N(0, I), so they avoid the prior's holes (regions no training image encodes
        to). The mixture lives in buffers (weights, means, Cholesky factors), so it is saved in checkpoints
        and loads with weights_only=True; until the first fit, samples come from N(0, I). `auto`: gmm for
        unconditional models, normal for conditional ones."""
        if sample_prior not in PRIORS:
            raise bad_choice("model.sample_prior", sample_prior, PRIORS)
        if not isinstance(gmm_components, int) or gmm_components < 1:
            raise ConfigError(f"model.gmm_components={gmm_components!r} must be an integer >= 1 (e.g. 10).")
        if not isinstance(gmm_fit_images, int) or gmm_fit_images < gmm_components:
            raise ConfigError(
                f"model.gmm_fit_images={gmm_fit_images!r} must be an integer >= model.gmm_components "
                f"({gmm_components}): the mixture is fitted to that many training images."
            )
        if sample_prior == "auto":  # a conditional model samples by class from N(0, I)
            sample_prior = "normal" if self.conditional else "gmm"
        if sample_prior == "gmm" and self.conditional:
            raise ConfigError(
                "model.sample_prior=gmm is for unconditional models: a conditional model samples by class "
                "from N(0, I). Use model.sample_prior=normal with model.conditional=true."
            )
        self.sample_prior = sample_prior
        self.gmm_fit_images = gmm_fit_images
        if sample_prior == "gmm":
            k, d = gmm_components, self.latent_dim
            self.register_buffer("gmm_weights", torch.zeros(k))  # all zero = not fitted yet
            self.register_buffer("gmm_means", torch.zeros(k, d))
            self.register_buffer("gmm_scale_tril", torch.eye(d).repeat(k, 1, 1))

    @property
    def gmm_fitted(self) -> bool:
        return self.sample_prior == "gmm" and bool(self.gmm_weights.sum() > 0)

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents from the sampling prior (on CPU with `generator`, then moved to the model's device)."""
        if not getattr(self, "sample_prior", "normal") == "gmm" or not self.gmm_fitted:
            return torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        component = torch.multinomial(self.gmm_weights.cpu(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, 1, generator=generator)
        z = self.gmm_means.cpu()[component] + (self.gmm_scale_tril.cpu()[component] @ eps).squeeze(-1)
        return z.to(self.device)

    @torch.no_grad()
    def fit_prior(self, images) -> None:
        """Fit the Gaussian mixture to the posterior means of `images` (an iterable of image batches)."""
        from sklearn.mixture import GaussianMixture

        was_training = self.training
        self.eval()
        try:
            mu = torch.cat([self.encode(x.to(self.device))[0].float().cpu() for x in images])
        finally:
            self.train(was_training)
        if not torch.isfinite(mu).all():  # a diverged model: keep the last mixture, the guard stops the run
            return
        # at most one component per image (a tiny training set); unused components keep weight 0
        k = min(len(self.gmm_weights), len(mu))
        used = int((self.gmm_weights > 0).sum())
        data = mu.double().numpy()
        gmm = None
        if used == k:  # start EM from the previous epoch's mixture: a few iterations instead of ~100
            tril = self.gmm_scale_tril[:k].double()
            weights = self.gmm_weights[:k].double()
            try:
                precision = torch.linalg.inv(tril @ tril.transpose(1, 2))
                init = {
                    "weights_init": (weights / weights.sum()).numpy(),
                    "means_init": self.gmm_means[:k].double().numpy(),
                    # symmetrised: the inverse of a badly conditioned covariance is not quite symmetric
                    "precisions_init": (0.5 * (precision + precision.transpose(1, 2))).numpy(),
                }
                gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-5, random_state=0, **init)
                gmm.fit(data)
            except (RuntimeError, ValueError):
                # last epoch's mixture is no valid start (a singular covariance, or a precision that is
                # not positive-definite after the float32 round trip): fit from scratch below
                gmm = None
        if gmm is None:
            gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-5, random_state=0).fit(data)
        self.gmm_weights.zero_()[:k].copy_(torch.as_tensor(gmm.weights_))
        self.gmm_means[:k].copy_(torch.as_tensor(gmm.means_))
        self.gmm_scale_tril[:k].copy_(torch.linalg.cholesky(torch.as_tensor(gmm.covariances_)))

    def training_images(self):
        """Batches of (up to gmm_fit_images) training images in a fixed order, for fitting the prior."""
        dataset = self.trainer.train_dataloader.dataset
        n = min(len(dataset), self.gmm_fit_images)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=256)
        return (batch[0] for batch in loader)

    def on_last_train_batch(self) -> None:
        if getattr(self, "sample_prior", "normal") == "gmm":
            self.fit_prior(self.training_images())

    def sample(self, n: int, generator: torch.Generator | None = None, labels: Any = None) -> torch.Tensor:
        """Images from the sampling prior (N(0, I), or the fitted mixture with sample_prior=gmm); pass a
        seeded CPU `generator` for the same images every call, and `labels` (one class or n of them) to
        choose the classes of a conditional model."""
        z = self.prior_latents(n, generator)
        if labels is not None and not self.conditional:
            self.class_labels(n, labels)  # the clear error
        return self.decode(z, labels)

    def reconstruction_error(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Squared error of the reconstruction, summed over pixels: one value per image."""
        return (self.reconstruct(x, labels) - x).pow(2).flatten(1).sum(1)
