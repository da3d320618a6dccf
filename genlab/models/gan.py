"""Generative adversarial network (Goodfellow et al. 2014) with the usual stabilisers: non-saturating, hinge
or WGAN-GP loss, R1 penalty, spectral normalisation, n_critic, TTUR and an EMA of the generator.

Networks come from the data: DCGAN-style conv nets (Radford et al. 2016) for images (`image_size`,
`channels`), MLPs for points (`image_size: null`, `data_dim`, e.g. the 2-D ring and grid mixtures).

`val/loss` (what "best" checkpoints minimise) is a distance between generated and validation data, because the
adversarial losses say little about sample quality:
- images (and points without a known mixture): the squared maximum mean discrepancy (Gretton et al. 2012)
  between each validation batch and as many generated samples, Gaussian kernels at 0.5, 1 and 2 times the
  median pairwise distance (biased estimate, >= 0), also logged as `val/mmd`;
- Gaussian mixtures (`mixture`: ring, grid, set from `data.layout`): 1 - high_quality_frac · modes_covered /
  n_modes, logged with the mode-coverage measures by the callback that knows the mixture's modes
  (genlab/callbacks/mode_coverage.py): 0 only when every sample is within 3σ of a mode and every mode is
  covered. The model itself never reads the data module.

`conditional=True` (images only) makes it a class-conditional GAN: the generator takes [z, one_hot(y)]
(Mirza & Osindero 2014) and the discriminator is a projection discriminator (Miyato & Koyama 2018), which
adds embed(y)ᵀφ(x) to its logit. Chosen over the auxiliary classifier (AC-GAN, Odena et al. 2017) because
it leaves every adversarial loss here (ns, hinge, wgan_gp, R1) unchanged, with no second loss to weigh, and
because AC-GAN's classification loss rewards easily classified samples, which is known to cut intra-class
diversity (Miyato & Koyama 2018, sec. 5; Shu 2017) — the diversity `genlab augment` needs from its samples.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from genlab.errors import ConfigError, bad_choice
from genlab.losses import GAN_LOSSES, gradient_penalty, r1_penalty
from genlab.models.base import GenerativeModel, OptimizerFactory, SamplingGraph, update_ema
from genlab.nets import ConvDecoder, ConvEncoder, mlp_discriminator, mlp_generator
from genlab.nets.conditioning import LabelProjection, with_label_vector
from genlab.nets.conv import NORMS, dcgan_init

OUTPUTS = ("tanh", "sigmoid")
D_NORMS = ("auto", *NORMS)


def mmd2(x: torch.Tensor, y: torch.Tensor, scales: tuple[float, ...] = (0.5, 1.0, 2.0)) -> torch.Tensor:
    """Biased squared MMD between samples x (n, ...) and y (m, ...), Gaussian kernels at `scales` times the
    median pairwise distance of the pooled samples (Gretton et al. 2012, eq. 5)."""
    pooled = torch.cat([x.flatten(1), y.flatten(1)]).float()
    d2 = torch.cdist(pooled, pooled).pow(2)
    median = d2[d2 > 0].median() if bool((d2 > 0).any()) else d2.new_tensor(1.0)
    kernel = sum(torch.exp(-d2 / (2 * s**2 * median)) for s in scales)
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class GAN(GenerativeModel):
    family = "gan"
    has_encoder = False
    takes_points = True  # MLP generator and discriminator when image_size is null

    def __init__(
        self,
        image_size: int | None = 16,
        channels: int | None = 1,
        data_dim: int = 2,
        latent_dim: int = 64,
        width: int = 64,
        hidden: int = 128,
        depth: int = 3,
        loss: str = "ns",
        gp_weight: float = 10.0,
        r1_gamma: float = 0.0,
        n_critic: int = 1,
        spectral_norm: bool = False,
        d_norm: str = "auto",
        g_norm: str = "batch",
        upsample: str = "transpose",
        output: str = "tanh",
        ema: bool = False,
        ema_decay: float = 0.999,
        grad_clip: float | None = None,
        n_fixed: int = 64,
        n_eval_points: int = 2500,  # for callbacks.mode_coverage (conf/callbacks/default.yaml reads it)
        mixture: str | None = None,  # data.layout of a Gaussian mixture: val/loss comes from its modes
        conditional: bool = False,
        num_classes: int | None = None,
        optimizer: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            optimizer
        )  # `optimizer` is the generator's (model.optimizer.lr is the same key in every family)
        if loss not in GAN_LOSSES:
            raise bad_choice("model.loss", loss, GAN_LOSSES)
        if output not in OUTPUTS:
            raise bad_choice("model.output", output, OUTPUTS)
        if d_norm not in D_NORMS:
            raise bad_choice("model.d_norm", d_norm, D_NORMS)
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ConfigError(
                f"model.n_critic={n_critic!r} must be an integer >= 1 "
                "(discriminator steps per generator step)."
            )
        if gp_weight < 0 or r1_gamma < 0:
            raise ConfigError(f"model.gp_weight={gp_weight!r} and model.r1_gamma={r1_gamma!r} must be >= 0.")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay={ema_decay!r} must lie in [0, 1), e.g. 0.999.")
        if grad_clip is not None and grad_clip <= 0:
            raise ConfigError(f"model.grad_clip={grad_clip!r} must be positive, or null for no clipping.")
        self.save_hyperparameters(ignore=["optimizer", "optimizer_d"])
        self.setup_conditioning(conditional, num_classes)
        if self.conditional and image_size is None:
            raise ConfigError(
                "model.conditional=true is for images; the MLP GAN for points is unconditional."
            )
        self.automatic_optimization = False  # Lightning 2.x: one optimizer per network, stepped by hand
        self.optimizer_d_factory = optimizer_d
        self.latent_dim = latent_dim
        self.g_steps = 0  # generator updates so far (the EMA warm-up clock); saved with checkpoints
        self.is_image = image_size is not None
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[loss]

        if self.is_image:
            if channels is None:
                raise ConfigError(
                    "model.channels is null but model.image_size is set; give both (from data)."
                )
            norm = self._discriminator_norm(d_norm, loss, spectral_norm)
            n_cond = self.num_classes or 0  # one-hot label units next to z (0 when unconditional)
            self.generator = ConvDecoder(
                latent_dim + n_cond, image_size, channels, width, norm=g_norm, upsample=upsample
            )
            self.discriminator = ConvEncoder(
                image_size, channels, 1, width, norm=norm, spectral_norm=spectral_norm
            )
            dcgan_init(self.generator)
            dcgan_init(self.discriminator)
            if self.conditional:
                self.projection = LabelProjection(
                    self.discriminator.head.in_features, self.num_classes, spectral_norm
                )
        else:
            if d_norm not in ("auto", "none"):
                raise ConfigError(
                    f"model.d_norm={d_norm!r}: the MLP discriminator for points has no norm layers."
                )
            self.generator = mlp_generator(latent_dim, data_dim, hidden, depth)
            self.discriminator = mlp_discriminator(data_dim, hidden, depth, spectral_norm=spectral_norm)
        # Karras et al. 2018 / Yazıcı et al. 2019: sample from an exponential moving average of G's weights.
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if ema else None
        # the same noise for every logged grid, so grids are comparable across epochs; saved in checkpoints
        self.register_buffer(
            "fixed_noise", torch.randn(n_fixed, latent_dim, generator=torch.Generator().manual_seed(0))
        )

    @staticmethod
    def _discriminator_norm(d_norm: str, loss: str, spectral_norm: bool) -> str:
        if loss == "wgan_gp" and d_norm == "batch":
            # Gulrajani et al. 2017, sec. 4: batch norm couples samples, invalidating the per-sample penalty.
            raise ConfigError(
                "model.d_norm=batch cannot be used with model.loss=wgan_gp: the gradient penalty is per "
                "sample. "
                "Valid choices for WGAN-GP: layer, instance, none (or auto)."
            )
        if d_norm != "auto":
            return d_norm
        if loss == "wgan_gp":
            return "layer"
        return "none" if spectral_norm else "batch"

    # -- what a user does with a trained model ---------------------------------------------------
    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when EMA is on, else the trained one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    # -- `genlab export`: the generator that samples (the EMA one when on) ----------------------------
    sampling_network: ClassVar[str | None] = "generator"

    def sampling_parts(self) -> tuple[str, ...]:
        return ("generator_ema",) if self.generator_ema is not None else ("generator",)

    def sampling_graph(self) -> SamplingGraph:
        from genlab.nets.sampling import LatentToData

        output = self.hparams.output if self.is_image else "identity"
        graph = LatentToData(self.sampling_generator, self.num_classes, output)
        inputs = {"z": torch.randn(2, self.latent_dim, generator=torch.Generator().manual_seed(0))}
        if self.conditional:
            inputs["labels"] = torch.arange(2) % self.num_classes
        what = "images in [0, 1]" if self.is_image else "points"
        return SamplingGraph(
            graph.eval(),
            inputs,
            "images" if self.is_image else "points",
            f"the {self.sampling_parts()[0]}: {what} = {graph.describe()}, "
            f"z (batch, {self.latent_dim}) ~ N(0, I)",
        )

    def to_data(self, out: torch.Tensor) -> torch.Tensor:
        """Generator output -> data space: images in [0, 1], points unchanged."""
        if not self.is_image:
            return out
        return (torch.tanh(out) + 1) / 2 if self.hparams.output == "tanh" else torch.sigmoid(out)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data -> the discriminator's input space: [-1, 1] for a tanh generator."""
        return x * 2 - 1 if self.is_image and self.hparams.output == "tanh" else x

    def generator_input(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """z, or [z, one_hot(y)] when conditional (`labels=None`: the classes in turn)."""
        if not self.conditional:
            return z
        return with_label_vector(z, self.class_labels(len(z), labels), self.num_classes)

    def critic(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D(x), or the projection discriminator's D(x, y) when conditional."""
        if not self.conditional:
            return self.discriminator(x)
        return self.projection(self.discriminator.features(x), self.data_labels(labels, "the discriminator"))

    def generate(self, z: torch.Tensor, net: nn.Module | None = None, labels=None) -> torch.Tensor:
        """Generator output in the discriminator's input space (tanh/sigmoid applied)."""
        return self.to_model(self.to_data((net or self.generator)(self.generator_input(z, labels))))

    def decode(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """Latents (and labels, when conditional) -> images in [0, 1] (or points), from the EMA generator
        when on."""
        return self.to_data(self.sampling_generator(self.generator_input(z.to(self.device), labels)))

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, fixed: bool = False, labels=None
    ) -> torch.Tensor:
        """n images in [0, 1] (or (n, d) points) from fresh noise; a seeded CPU `generator` repeats them;
        `fixed=True` uses the model's fixed-noise buffer (comparable across epochs and checkpoints);
        `labels` (one class or n) choose the classes of a conditional model (None: the classes in turn)."""
        if fixed:
            z = self.fixed_noise[:n]
            if n > len(z):  # extend deterministically beyond the buffer
                extra = torch.randn(n - len(z), self.latent_dim, generator=torch.Generator().manual_seed(1))
                z = torch.cat([z, extra.to(z.device)])
        else:
            z = self.noise(n, generator)
        if labels is not None and not self.conditional:
            self.class_labels(n, labels)  # the clear error
        return self.decode(z, labels)

    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """`disc_score`: the negative discriminator logit / critic value, higher = less like the training
        data (Schlegl et al. 2017 use the discriminator the same way in AnoGAN's feature score)."""
        self.refuse_conditional("anomaly scoring")
        return {"disc_score": -self.discriminator(self.to_model(x.to(self.device))).flatten()}

    # -- training ----------------------------------------------------------------------------------
    def configure_callbacks(self) -> list:
        # The earliest hook with the trainer at hand: Lightning rejects gradient_clip_val for manual
        # optimization right after it, with a traceback instead of genlab's one-paragraph error.
        if self.trainer.gradient_clip_val:
            raise ConfigError(
                f"trainer.gradient_clip_val={self.trainer.gradient_clip_val} does not apply to the GAN (it "
                "steps its optimizers by hand); use model.grad_clip instead, e.g. model.grad_clip=1.0 "
                "trainer.gradient_clip_val=null."
            )
        return []

    def _step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
            )
        optimizer.step()

    def discriminator_losses(
        self, real: torch.Tensor, labels: torch.Tensor | None = None, fake: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Discriminator loss on a real batch and as many fakes (`fake`, detached here, or fresh ones), with
        its penalties; a conditional model draws its fakes with the real batch's `labels`."""
        if fake is None:
            with torch.no_grad():
                fake = self.generate(self.noise(len(real)), labels=labels)
        fake = fake.detach()
        use_r1 = self.hparams.r1_gamma > 0
        real = real.detach().requires_grad_(use_r1)
        d_real, d_fake = self.critic(real, labels), self.critic(fake, labels)
        losses = {"loss_d_adv": self.d_loss_fn(d_real, d_fake)}
        total = losses["loss_d_adv"]
        if self.hparams.loss == "wgan_gp":
            critic = partial(self.critic, labels=labels) if self.conditional else self.discriminator
            losses["loss_gp"] = gradient_penalty(critic, real, fake)
            total = total + self.hparams.gp_weight * losses["loss_gp"]  # Gulrajani et al. 2017, eq. 3: λ
        if use_r1:
            losses["loss_r1"] = r1_penalty(d_real, real)
            total = (
                total + 0.5 * self.hparams.r1_gamma * losses["loss_r1"]
            )  # Mescheder et al. 2018, eq. 9: γ/2
        losses["loss_d"] = total
        losses["d_real"], losses["d_fake"] = d_real.detach().mean(), d_fake.detach().mean()
        return losses

    def generator_loss(self, fake: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """G's loss on fakes that still carry the generator's graph, through the just-updated D."""
        if self.conditional:
            labels = self.class_labels(len(fake), labels)
        return self.g_loss_fn(self.critic(fake, labels))

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA of G's weights; the decay warms up as min(decay, (1+t)/(10+t)) so short runs are not stuck
        near the initial weights (as in TensorFlow's ExponentialMovingAverage with num_updates)."""
        if self.generator_ema is not None:
            # batch-norm statistics follow the trained generator until the epoch ends (standing_statistics)
            update_ema(self.generator_ema, self.generator, self.g_steps, self.hparams.ema_decay)

    @torch.no_grad()
    def standing_statistics(self, batches: int = 20, batch_size: int = 64) -> None:
        """Batch-norm statistics measured on the EMA generator itself ("standing statistics", Brock et al.
        2019, BigGAN sec. 3.1 and appendix): the trained generator's running statistics belong to other
        weights. Averaged over `batches` batches of fixed noise; the random stream is not touched."""
        norms = [m for m in self.generator_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        noise = torch.Generator().manual_seed(0)
        self.generator_ema.train()
        try:
            for _ in range(batches):
                z = torch.randn(batch_size, self.latent_dim, generator=noise).to(self.device)
                self.generator_ema(self.generator_input(z))
        finally:
            self.generator_ema.eval()
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum

    def on_last_train_batch(self) -> None:
        if self.generator_ema is not None:
            self.standing_statistics()

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        real = self.to_model(batch[0])
        labels = self.batch_labels(batch)
        opt_g, opt_d = self.optimizers()
        g_step = (batch_idx + 1) % self.hparams.n_critic == 0  # n_critic D steps per G step (Arjovsky et al.)
        # One generator pass per batch: the G step reuses the D step's fakes (same z), as the DCGAN
        # reference loop does, instead of drawing a second batch; G's graph is kept only when a G step
        # follows. Each loss is the same unbiased estimate as with fresh noise (z ~ N(0, I) either way).
        with torch.set_grad_enabled(g_step):
            fake = self.generate(self.noise(len(real)), labels=labels)
        d_losses = self.discriminator_losses(real, labels, fake)
        self._step(opt_d, d_losses["loss_d"])
        out = {k: v.detach() for k, v in d_losses.items()}
        if g_step:
            loss_g = self.generator_loss(fake, labels)
            self._step(opt_g, loss_g)
            self.g_steps += 1
            self.update_ema()
            out["loss_g"] = loss_g.detach()
        self.log_train(out, len(real))
        return out

    # -- evaluation --------------------------------------------------------------------------------
    def _eval_step(self, batch, batch_idx: int, stage: str) -> None:
        x = batch[0]
        fake = self.sample(
            len(x), generator=torch.Generator().manual_seed(batch_idx), labels=self.batch_labels(batch)
        )  # same noise each epoch
        mmd = mmd2(x, fake)
        self.log(f"{stage}/mmd", mmd, on_epoch=True, batch_size=len(x), sync_dist=True)
        if not self.hparams.mixture:  # a mixture's val/loss comes from its modes (callbacks/mode_coverage.py)
            self.log(f"{stage}/loss", mmd, on_epoch=True, batch_size=len(x), sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def configure_optimizers(self):
        opt_g = self.make_optimizer(self.generator.parameters(), name="optimizer")
        d_params = list(self.discriminator.parameters())
        if self.conditional:
            d_params += list(self.projection.parameters())
        opt_d = self.make_optimizer(d_params, self.optimizer_d_factory, "optimizer_d")
        return [opt_g, opt_d]

    def on_save_checkpoint(self, checkpoint) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["genlab"]["g_steps"] = self.g_steps

    def on_load_checkpoint(self, checkpoint) -> None:
        super().on_load_checkpoint(checkpoint)
        self.g_steps = int((checkpoint.get("genlab") or {}).get("g_steps", 0))
