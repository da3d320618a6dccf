"""genlab export: the sampling network as safetensors + config.json + model card, ONNX and TorchScript graphs
that give the PyTorch model's output (max abs difference <= 1e-4, ONNX run by onnxruntime), `genlab.api.load`
of an exported folder, and exported folders that were tampered with refused with one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from genlab import api
from genlab.errors import CheckpointError, ConfigError
from genlab.models import load_model
from genlab.models.base import GenerativeModel, SamplingGraph
from genlab.models.export import export_model, load_exported
from tests.conftest import built_once, genlab_main, read_metrics

TOLERANCE = 1e-4


def export_cli(ckpt: Path, fmt: str, out: Path) -> Path:
    genlab_main("export", f"ckpt={ckpt}", f"format={fmt}", f"hydra.run.dir={out}")
    return out


@pytest.fixture(scope="session")
def exported_vae(vae_smoke_run, tmp_path_factory) -> Path:
    """The session's smoke VAE exported as ONNX through the CLI (given the run folder); do not change it."""
    return built_once(
        tmp_path_factory, "exported_vae", lambda root: export_cli(vae_smoke_run, "onnx", root / "x")
    )


def test_export_writes_weights_config_card_and_an_onnx_graph_matching_pytorch(exported_vae, vae_smoke_run):
    ort = pytest.importorskip("onnxruntime")
    from safetensors.torch import load_file

    out = exported_vae / "x"
    for name in ("model.safetensors", "model.onnx", "config.json", "README.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*partial"))
    config = json.loads((out / "config.json").read_text())
    model = load_model(vae_smoke_run / "checkpoints" / "last.ckpt")
    assert (
        config["family"] == "vae"
        and config["network"] == "decoder"
        and config["latent_dim"] == model.latent_dim
    )
    assert [i["name"] for i in config["graph"]["inputs"]] == ["z"] and config["graph"]["output"] == "images"
    assert (
        "sigmoid" in config["graph"]["computes"] and config["graph"]["max_abs_diff_vs_pytorch"] <= TOLERANCE
    )

    # the weights are the checkpoint's decoder and fitted prior, nothing else
    weights = load_file(str(out / "model.safetensors"))
    state = model.state_dict()
    assert weights and all(k.startswith(("decoder.", "gmm_")) for k in weights)
    assert all(torch.equal(weights[k], state[k]) for k in weights)
    assert any(k.startswith("encoder.") for k in state) and not any(k.startswith("encoder.") for k in weights)

    # the ONNX graph against the PyTorch model, on another batch size than the exported one
    z = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.decode(z)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"z": z.numpy()})[0])
    assert got.shape == (5, 1, 16, 16) and (got - expected).abs().max() <= TOLERANCE

    card = (out / "README.md").read_text()
    recon = read_metrics(vae_smoke_run)["metrics"]["test/recon_mse"]
    assert card.startswith("# genlab export: vae decoder") and "| data | digits (16×16 px" in card
    assert "| FID (lower is better) | not measured |" in card  # no `genlab eval` in the run folder
    assert (
        f"| reconstruction MSE per pixel (lower is better) | {recon:.4g} | training run's test split" in card
    )
    assert "1 epoch(s)" in card and "## Intended use and limits" in card and "model.onnx" in card


def test_the_card_reports_a_genlab_eval_in_the_run_folder_with_its_protocol(vae_smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(vae_smoke_run, run)
    evaluation = {
        "metrics": {"fid": 42.5},
        "protocol": {"backbone": "classifier", "n_real": 300, "n_fake": 200},
    }
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps(evaluation))
    export_cli(run / "checkpoints" / "last.ckpt", "safetensors", tmp_path / "x")
    card = (tmp_path / "x" / "README.md").read_text()
    assert "| FID (lower is better) | 42.5 | `genlab eval` (eval/metrics.json): backbone=classifier" in card
    assert (
        "n_real=300, n_fake=200" in card and "| bits per dimension (lower is better) | not measured |" in card
    )
    assert not (tmp_path / "x" / "model.onnx").exists()


def test_torchscript_export_and_api_load_of_the_exported_folder(vae_smoke_run, tmp_path):
    ckpt = vae_smoke_run / "checkpoints" / "last.ckpt"
    out = export_cli(ckpt, "torchscript", tmp_path / "x")
    model = load_model(ckpt)
    z = torch.randn(7, model.latent_dim, generator=torch.Generator().manual_seed(2))
    graph = torch.jit.load(str(out / "model.torchscript.pt"))
    with torch.no_grad():
        assert (graph(z) - model.decode(z)).abs().max() <= TOLERANCE

    exported = api.load(out)
    assert exported.family == "vae" and not exported.has_encoder
    # the same samples as the checkpoint's: the exported prior mixture and decoder are the trained ones
    assert torch.allclose(api.sample(exported, 8, seed=3), api.sample(ckpt, 8, seed=3), atol=1e-6)
    with pytest.raises(ConfigError, match="holds only its sampling network; its encoder is not in it"):
        exported.reconstruct(torch.rand(2, 1, 16, 16))


# --- every family: the graph gives the model's output, the folder loads back to the same samples ---


def tiny(family: str) -> GenerativeModel:
    from genlab.models.diffusion import Diffusion
    from genlab.models.flow import Flow
    from genlab.models.gan import GAN
    from genlab.models.vaegan import VAEGAN

    torch.manual_seed(0)
    built = {
        "gan-conditional-ema": lambda: GAN(latent_dim=8, width=16, ema=True, conditional=True, num_classes=3),
        "gan-points": lambda: GAN(image_size=None, channels=None, latent_dim=4, hidden=32, depth=2),
        "vaegan-ema": lambda: VAEGAN(latent_dim=8, width=16, disc_width=16, ema=True),
        "diffusion-conditional": lambda: Diffusion(
            block_out_channels=[16, 32],
            timesteps=100,
            sample_steps=3,
            anomaly_t=50,
            vlb_timesteps=10,
            conditional=True,
            num_classes=3,
            prediction="v",
        ),  # fmt: skip
        "flow-conditional": lambda: Flow(conditional=True, num_classes=3),
    }[family]()
    for parameter in built.parameters():  # away from the initialisation (zero-initialised last layers)
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return built.eval()


def reference(model: GenerativeModel, graph: SamplingGraph, inputs: dict) -> torch.Tensor:
    """The PyTorch model's own output for the graph's inputs, through its public methods."""
    with torch.no_grad():
        if model.family == "diffusion":
            return model.net_output(inputs["x_t"], inputs["t"], ema=True, labels=inputs.get("labels"))
        return model.decode(inputs["z"], inputs.get("labels"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "family", ["gan-conditional-ema", "gan-points", "vaegan-ema", "diffusion-conditional", "flow-conditional"]
)
def test_every_family_exports_an_onnx_graph_that_matches_and_loads_back(family, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny(family)
    config = export_model(model, tmp_path / "x", "onnx", {})
    graph = model.sampling_graph()
    batch = {name: torch.cat([x, x, x[:1]]) for name, x in graph.inputs.items()}  # 5: not the traced 2
    session = ort.InferenceSession(str(tmp_path / "x" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {k: v.numpy() for k, v in batch.items()})[0])
    assert (got - reference(model, graph, batch)).abs().max() <= TOLERANCE
    assert [i["name"] for i in config["graph"]["inputs"]] == list(graph.inputs)

    loaded = load_exported(tmp_path / "x")
    assert type(loaded) is type(model)
    kwargs = {"labels": [0, 1, 2, 0]} if model.conditional else {}
    with torch.no_grad():
        mine = model.sample(4, generator=torch.Generator().manual_seed(5), **kwargs)
        theirs = loaded.sample(4, generator=torch.Generator().manual_seed(5), **kwargs)
    assert torch.allclose(mine, theirs, atol=1e-6)


# --- what cannot be exported, and exported folders that were tampered with ---


class NoSampler(GenerativeModel):
    family = "nosampler"


def test_a_family_without_a_sampling_network_or_a_graph_that_fails_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="format=onnx: the 'nosampler' family declares no sampling network"):
        export_model(NoSampler(), tmp_path / "a", "onnx", {})
    assert not (tmp_path / "a").exists()

    class Inverse(torch.nn.Module):  # ONNX has no matrix inverse
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.linalg.inv(z.reshape(-1, 2, 2)).reshape(len(z), 4)

    model = tiny("vaegan-ema")
    model.sampling_graph = lambda: SamplingGraph(Inverse(), {"z": torch.randn(2, 4) + 3}, "out", "z⁻¹")
    with pytest.raises(ConfigError, match="could not be exported as onnx") as err:
        export_model(model, tmp_path / "b", "onnx", {})
    assert "format=safetensors" in str(err.value)
    assert list((tmp_path / "b").iterdir()) == []  # nothing half-written


def tamper(folder: Path, how: str) -> None:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if how == "family-names-a-function":
        config["family"] = "os.system"
    elif how == "hyper-parameters-changed":
        config["hyper_parameters"]["latent_dim"] = 17
    elif how == "network-changed":
        config["network"] = "generator"
    elif how == "not-an-export":
        del config["genlab_export"]
    elif how == "missing-weights":
        (folder / "model.safetensors").unlink()
    elif how == "truncated-weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "extra-tensor":
        from safetensors.torch import load_file, save_file

        weights = load_file(str(folder / "model.safetensors"))
        save_file({**weights, "evil": torch.zeros(1)}, str(folder / "model.safetensors"))
    elif how == "not-json":
        config_path.write_text("{ not json")
        return
    config_path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "how, named",
    [
        (
            "family-names-a-function",
            "names the model family 'os.system', which is not one of genlab's families",
        ),
        ("hyper-parameters-changed", "do not fit the vae architecture"),
        (
            "network-changed",
            "says the network is 'generator', but a vae model's sampling network is 'decoder'",
        ),
        ("not-an-export", "is not a genlab export config"),
        ("missing-weights", "has no model.safetensors"),
        ("truncated-weights", "could not be read as safetensors"),
        ("extra-tensor", "unexpected: evil"),
        ("not-json", "could not be read as JSON"),
    ],
)
def test_a_tampered_exported_folder_is_refused(exported_vae, tmp_path, how, named):
    folder = tmp_path / "x"
    shutil.copytree(exported_vae / "x", folder)
    tamper(folder, how)
    with pytest.raises(CheckpointError) as err:
        api.load(folder)
    assert named in str(err.value) and str(folder) in str(err.value)
