"""The bad-input battery: every input a user can get wrong is answered with one line `genlab: error: ...`
that names the bad value, exit code 2, no traceback, and nothing half-written (no checkpoint, no
metrics.json from a run that never trained).

Most cases run in-process through `genlab.cli.main` (the console script's entry point; Hydra's global
state is checked to be clean after each), a handful through the real console script."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from genlab.cli import main as cli_main
from genlab.errors import GenlabError, print_error

from .conftest import run_genlab

# (id, argv, strings the message must contain: the bad value and the way out). `{tmp}` is the case's own
# folder, `{file}` a regular file in it, `{garbage}` a file that is not a checkpoint, `{corrupt}` a folder
# of image files that cannot be read, `{run}` the folder the command is told to write into.
TRAIN = ["train", "trainer=smoke", "logger=none", "hydra.run.dir={run}"]
CASES: list[tuple[str, list[str], list[str]]] = [
    # unknown and misspelt keys: the closest valid keys of the node (did-you-mean)
    ("train-misspelt-model-key", [*TRAIN, "model.latnet_dim=8"], ["model.latnet_dim=8", "model.latent_dim"]),
    ("train-misspelt-trainer-key", [*TRAIN, "trainer.max_epoch=3"], ["trainer.max_epoch=3", "max_epochs"]),
    ("train-misspelt-data-key", [*TRAIN, "data.batchsize=3"], ["data.batchsize=3", "data.batch_size"]),
    ("train-misspelt-top-key", [*TRAIN, "sed=1"], ["sed=1", "Did you mean seed"]),
    ("train-misspelt-optimizer-key", [*TRAIN, "model.optimizer.lrr=1"], ["lrr", "model.optimizer.lr"]),
    ("train-misspelt-trainer-arg", [*TRAIN, "trainer.precison=16"], ["precison", "trainer.precision"]),
    ("train-key-under-a-value", [*TRAIN, "model.latent_dim.x=1"], ["model.latent_dim.x", "single value"]),
    ("eval-misspelt-metrics-key", ["eval", "ckpt={garbage}", "metrics.nfake=3"], ["nfake", "metrics.n_fake"]),
    ("classifier-misspelt-key", ["train-classifier", "setps=3", "hydra.run.dir={run}"], ["setps", "steps"]),
    ("sample-misspelt-key", ["sample", "ckpt={garbage}", "nn=4", "hydra.run.dir={run}"], ["nn=4", "Did you"]),
    ("sweep-misspelt-key", ["train", "-m", "model.latnet_dim=8,16"], ["latnet_dim", "model.latent_dim"]),
    # malformed overrides
    ("train-ambiguous-list", [*TRAIN, "model.latent_dim=8,16"], ["model.latent_dim=8,16", "--multirun"]),
    ("train-unparsable", [*TRAIN, "model.latent_dim=[8"], ["[8"]),
    ("train-append-existing", [*TRAIN, "+model.latent_dim=3"], ["model.latent_dim", "++model.latent_dim"]),
    ("unknown-command", ["trian"], ["'trian'", "train"]),
    # config groups
    ("train-unknown-model", [*TRAIN, "model=transformer"], ["model='transformer'", "vae"]),
    ("train-unknown-data", [*TRAIN, "data=imagenet"], ["data='imagenet'", "digits"]),
    ("train-unknown-trainer", [*TRAIN, "trainer=fast"], ["trainer='fast'", "smoke"]),
    ("train-unknown-logger", [*TRAIN, "logger=nope"], ["logger='nope'", "csv"]),
    ("train-unknown-logger-in-list", [*TRAIN, "logger=[csv,foo]"], ["logger='foo'", "tensorboard"]),
    ("train-unknown-callbacks", [*TRAIN, "callbacks=nope"], ["callbacks='nope'", "default"]),
    ("train-unknown-debug", [*TRAIN, "debug=nope"], ["debug='nope'", "fast_dev_run", "overfit", "profiler"]),
    ("train-logger-entry-not-config", [*TRAIN, "+logger.foo=1"], ["logger.foo=1", "_target_"]),
    # trainer values
    ("train-max-epochs-float", [*TRAIN, "trainer.max_epochs=1.5"], ["trainer.max_epochs=1.5", "positive"]),
    ("train-max-epochs-zero", [*TRAIN, "trainer.max_epochs=0"], ["trainer.max_epochs=0", "positive"]),
    ("train-max-epochs-negative", [*TRAIN, "trainer.max_epochs=-1"], ["trainer.max_epochs=-1", "max_steps"]),
    ("train-max-epochs-word", [*TRAIN, "trainer.max_epochs=abc"], ["trainer.max_epochs='abc'"]),
    ("train-max-steps-zero", [*TRAIN, "trainer.max_steps=0"], ["trainer.max_steps=0"]),
    ("train-limit-batches-negative", [*TRAIN, "trainer.limit_train_batches=-2"], ["limit_train_batches=-2"]),
    ("train-limit-batches-fraction", [*TRAIN, "trainer.limit_val_batches=1.5"], ["limit_val_batches=1.5"]),
    ("train-accumulate-zero", [*TRAIN, "trainer.accumulate_grad_batches=0"], ["accumulate_grad_batches=0"]),
    ("train-fast-dev-run-word", [*TRAIN, "trainer.fast_dev_run=abc"], ["trainer.fast_dev_run='abc'"]),
    ("train-clip-negative", [*TRAIN, "trainer.gradient_clip_val=-1"], ["gradient_clip_val=-1"]),
    # trainer values only Lightning validates: its refusal named with the key, the value and its choices
    ("train-precision-number", [*TRAIN, "trainer.precision=13"], ["trainer.precision=13", "'bf16-mixed'"]),
    ("train-precision-word", [*TRAIN, "trainer.precision=half"], ["trainer.precision='half'", "'32-true'"]),
    (
        "train-accelerator-name",
        [*TRAIN, "trainer.accelerator=foo"],
        ["accelerator='foo'", "Available names", "cpu"],
    ),
    ("train-devices-zero", [*TRAIN, "trainer.devices=0"], ["trainer.devices=0", "not a valid"]),
    ("train-strategy-name", [*TRAIN, "trainer.strategy=nope"], ["trainer.strategy='nope'", "ddp_spawn"]),
    ("train-num-nodes-zero", [*TRAIN, "trainer.num_nodes=0"], ["trainer.num_nodes=0", "positive"]),
    ("train-clip-algorithm", [*TRAIN, "trainer.gradient_clip_algorithm=x"], ["algorithm='x'", "'norm'"]),
    ("train-max-time-word", [*TRAIN, "trainer.max_time=soon"], ["max_time='soon'", "DD:HH:MM:SS"]),
    (
        "train-val-interval",
        [*TRAIN, "trainer.val_check_interval=-1"],
        ["val_check_interval=-1", "[0.0, 1.0]"],
    ),
    (
        "train-gpu-preset",
        ["train", "trainer=gpu", "logger=none", "hydra.run.dir={run}"],
        ["'gpu'", "trainer=cpu"],
    ),
    ("train-gpu-accelerator", [*TRAIN, "trainer.accelerator=gpu"], ["accelerator='gpu'", "trainer=cpu"]),
    ("train-cuda-accelerator", [*TRAIN, "trainer.accelerator=cuda"], ["accelerator='cuda'"]),
    # seed, threads, tags
    ("train-seed-word", [*TRAIN, "seed=abc"], ["seed='abc'", "integer"]),
    ("train-seed-negative", [*TRAIN, "seed=-1"], ["seed=-1"]),
    ("train-threads-zero", [*TRAIN, "threads=0"], ["threads=0"]),
    ("train-tags-dict", [*TRAIN, "tags={{a:1}}"], ["tags=", "list"]),
    # model values
    ("train-latent-dim-negative", [*TRAIN, "model.latent_dim=-3"], ["model.latent_dim=-3", "positive"]),
    ("train-latent-dim-zero", [*TRAIN, "model.latent_dim=0"], ["model.latent_dim=0"]),
    ("train-latent-dim-float", [*TRAIN, "model.latent_dim=2.5"], ["model.latent_dim=2.5"]),
    ("train-width-zero", [*TRAIN, "model.width=0"], ["model.width=0"]),
    ("train-lr-negative", [*TRAIN, "model.optimizer.lr=-1"], ["model.optimizer.lr=-1", "positive"]),
    ("train-likelihood", [*TRAIN, "model.likelihood=poisson"], ["model.likelihood='poisson'", "bernoulli"]),
    ("train-gan-loss", [*TRAIN, "model=gan", "model.loss=foo"], ["'foo'", "hinge"]),
    ("train-vae-on-points", [*TRAIN, "model=vae", "data=ring"], ["model=vae", "data=ring", "model=gan"]),
    ("train-vaegan-on-points", [*TRAIN, "model=vaegan", "data=grid"], ["model=vaegan", "points"]),
    # data values
    ("train-batch-size-zero", [*TRAIN, "data.batch_size=0"], ["data.batch_size=0"]),
    ("train-batch-size-negative", [*TRAIN, "data.batch_size=-4"], ["data.batch_size=-4"]),
    ("train-image-size-odd", [*TRAIN, "data.image_size=30"], ["image_size=30", "16, 28, 32"]),
    ("train-image-size-word", [*TRAIN, "data.image_size=abc"], ["data.image_size='abc'"]),
    ("train-image-size-negative", [*TRAIN, "data.image_size=-8"], ["data.image_size=-8"]),
    ("train-channels", [*TRAIN, "data.channels=2"], ["data.channels=2", "1, 3"]),
    ("train-num-workers", [*TRAIN, "data.num_workers=-1"], ["data.num_workers=-1"]),
    ("train-val-fraction", [*TRAIN, "data.val_fraction=1.5"], ["data.val_fraction=1.5"]),
    ("train-image-folder-no-root", [*TRAIN, "data=image_folder"], ["data.root", "required"]),
    (
        "train-image-folder-missing",
        [*TRAIN, "data=image_folder", "data.root={tmp}/none"],
        ["none", "data.root"],
    ),
    ("train-image-folder-corrupt", [*TRAIN, "data=image_folder", "data.root={corrupt}"], ["broken.png"]),
    ("train-mnist-missing", [*TRAIN, "data=mnist", "data.root={tmp}/none", "data.download=false"], ["none"]),
    ("train-unknown-class", [*TRAIN, "data.anomaly_classes=[42]"], ["42", "0..9"]),
    ("train-metrics-n-fake", [*TRAIN, "metrics.n_fake=-5"], ["metrics.n_fake=-5"]),
    ("train-metrics-backbone", [*TRAIN, "metrics.backbone=vgg"], ["metrics.backbone='vgg'", "inception"]),
    ("train-metrics-every", [*TRAIN, "metrics.every_n_epochs=-1"], ["metrics.every_n_epochs=-1"]),
    # paths
    (
        "train-run-dir-under-file",
        ["train", "trainer=smoke", "hydra.run.dir={file}/run"],
        ["{file}", "a file"],
    ),
    ("train-run-dir-is-file", ["train", "trainer=smoke", "hydra.run.dir={file}"], ["{file}", "a file"]),
    ("train-log-dir-under-file", ["train", "trainer=smoke", "paths.log_dir={file}/out"], ["paths.log_dir"]),
    ("train-missing-ckpt-path", [*TRAIN, "ckpt_path={tmp}/no.ckpt"], ["no.ckpt", "does not exist"]),
    # eval
    ("eval-no-ckpt", ["eval", "hydra.run.dir={run}"], ["ckpt"]),
    (
        "eval-missing-ckpt",
        ["eval", "ckpt={tmp}/no.ckpt", "hydra.run.dir={run}"],
        ["no.ckpt", "does not exist"],
    ),
    ("eval-garbage-ckpt", ["eval", "ckpt={garbage}", "hydra.run.dir={run}"], ["garbage.ckpt"]),
    ("eval-n-fake-negative", ["eval", "ckpt={garbage}", "metrics.n_fake=-5"], ["metrics.n_fake=-5"]),
    ("eval-backbone", ["eval", "ckpt={garbage}", "metrics.backbone=vgg"], ["metrics.backbone='vgg'"]),
    ("eval-reference-split", ["eval", "ckpt={garbage}", "metrics.reference_split=all"], ["'all'", "test"]),
    ("eval-inception-feature", ["eval", "ckpt={garbage}", "metrics.inception_feature=100"], ["=100", "2048"]),
    # sample
    ("sample-no-ckpt", ["sample", "hydra.run.dir={run}"], ["ckpt is required"]),
    ("sample-garbage-ckpt", ["sample", "ckpt={garbage}", "hydra.run.dir={run}"], ["garbage.ckpt"]),
    ("sample-folder-as-ckpt", ["sample", "ckpt={tmp}", "hydra.run.dir={run}"], ["{tmp}"]),
    ("sample-n-zero", ["sample", "ckpt={garbage}", "n=0", "hydra.run.dir={run}"], ["n=0"]),
    ("sample-n-word", ["sample", "ckpt={garbage}", "n=abc", "hydra.run.dir={run}"], ["n='abc'"]),
    (
        "sample-batch-size",
        ["sample", "ckpt={garbage}", "batch_size=0", "hydra.run.dir={run}"],
        ["batch_size=0"],
    ),
    (
        "sample-device",
        ["sample", "ckpt={garbage}", "device=tpu", "hydra.run.dir={run}"],
        ["device='tpu'", "cpu"],
    ),
    ("sample-seed", ["sample", "ckpt={garbage}", "seed=x", "hydra.run.dir={run}"], ["seed='x'"]),
    # reconstruct, interpolate
    (
        "reconstruct-split",
        ["reconstruct", "ckpt={garbage}", "split=all", "hydra.run.dir={run}"],
        ["split='all'"],
    ),
    ("reconstruct-n", ["reconstruct", "ckpt={garbage}", "n=0", "hydra.run.dir={run}"], ["n=0"]),
    (
        "reconstruct-per-row",
        ["reconstruct", "ckpt={garbage}", "per_row=0", "hydra.run.dir={run}"],
        ["per_row=0"],
    ),
    ("interpolate-steps", ["interpolate", "ckpt={garbage}", "steps=1", "hydra.run.dir={run}"], ["steps=1"]),
    ("interpolate-pairs", ["interpolate", "ckpt={garbage}", "pairs=0", "hydra.run.dir={run}"], ["pairs=0"]),
    (
        "interpolate-path-kind",
        ["interpolate", "ckpt={garbage}", "paths_between=[lerp,curve]", "hydra.run.dir={run}"],
        ["'curve'", "slerp"],
    ),
    ("interpolate-gif", ["interpolate", "ckpt={garbage}", "gif_seconds=-1", "hydra.run.dir={run}"], ["=-1"]),
    ("interpolate-no-ckpt", ["interpolate", "hydra.run.dir={run}"], ["ckpt is required"]),
    # compare
    (
        "compare-missing-run",
        ["compare", "runs=[{tmp}/none]", "hydra.run.dir={run}"],
        ["none", "does not exist"],
    ),
    ("compare-no-runs", ["compare", "hydra.run.dir={run}"], ["no runs to compare"]),
    ("compare-not-a-run", ["compare", "runs=[{tmp}]", "hydra.run.dir={run}"], ["{tmp}", "metrics.json"]),
    (
        "compare-max-curves",
        ["compare", "runs=[{tmp}]", "max_curves=0", "hydra.run.dir={run}"],
        ["max_curves=0"],
    ),
    # anomaly
    ("anomaly-top-k", ["anomaly", "trainer=smoke", "top_k=0", "hydra.run.dir={run}"], ["top_k=0"]),
    ("anomaly-device", ["anomaly", "trainer=smoke", "device=tpu", "hydra.run.dir={run}"], ["device='tpu'"]),
    ("anomaly-max-epochs", ["anomaly", "trainer.max_epochs=0", "hydra.run.dir={run}"], ["max_epochs=0"]),
    (
        "anomaly-misspelt-key",
        ["anomaly", "data.anomaly_class=[9]", "hydra.run.dir={run}"],
        ["anomaly_classes"],
    ),
    ("anomaly-garbage-ckpt", ["anomaly", "ckpt={garbage}", "hydra.run.dir={run}"], ["garbage.ckpt"]),
    # train-classifier
    ("classifier-lr-negative", ["train-classifier", "lr=-1", "hydra.run.dir={run}"], ["lr=-1", "positive"]),
    ("classifier-steps-zero", ["train-classifier", "steps=0", "hydra.run.dir={run}"], ["steps=0"]),
    (
        "classifier-batch-size",
        ["train-classifier", "data.batch_size=0", "hydra.run.dir={run}"],
        ["batch_size=0"],
    ),
    # synth, augment
    ("synth-no-ckpt", ["synth", "hydra.run.dir={run}"], ["ckpt"]),
    ("synth-garbage-ckpt", ["synth", "ckpt={garbage}", "hydra.run.dir={run}"], ["garbage.ckpt"]),
    (
        "synth-n-per-class",
        ["synth", "ckpt={garbage}", "n_per_class=0", "hydra.run.dir={run}"],
        ["n_per_class=0"],
    ),
    (
        "synth-misspelt-key",
        ["synth", "ckpt={garbage}", "n_per_clas=3", "hydra.run.dir={run}"],
        ["n_per_class"],
    ),
    ("augment-lr", ["augment", "lr=-1", "hydra.run.dir={run}"], ["lr=-1", "positive"]),
    ("augment-seeds", ["augment", "seeds=0", "hydra.run.dir={run}"], ["seeds=0"]),
    ("augment-variant", ["augment", "variants=[real,bogus]", "hydra.run.dir={run}"], ["bogus", "real+synth"]),
    ("augment-misspelt-key", ["augment", "step=3", "hydra.run.dir={run}"], ["step=3", "steps"]),
    # export
    ("export-no-ckpt", ["export", "hydra.run.dir={run}"], ["ckpt is required"]),
    ("export-garbage-ckpt", ["export", "ckpt={garbage}", "hydra.run.dir={run}"], ["garbage.ckpt"]),
    (
        "export-unknown-format",
        ["export", "ckpt={garbage}", "format=tflite", "hydra.run.dir={run}"],
        ["format='tflite'", "safetensors, onnx, torchscript"],
    ),
    (
        "export-folder-no-run",
        ["export", "ckpt={tmp}", "hydra.run.dir={run}"],
        ["{tmp}", "checkpoints/last.ckpt"],
    ),
    ("export-misspelt-key", ["export", "ckpt={garbage}", "fromat=onnx", "hydra.run.dir={run}"], ["format"]),
    # study
    ("study-budget", ["study", "study.budget=steps", "study.dir={run}"], ["study.budget='steps'", "epochs"]),
    ("study-no-seeds", ["study", "study.seeds=[]", "study.dir={run}"], ["study.seeds=[]"]),
    ("study-repeated-seed", ["study", "study.seeds=[1,1]", "study.dir={run}"], ["[1, 1]", "repeats"]),
    (
        "study-epochs",
        ["study", "study.budget=epochs", "study.epochs=0", "study.dir={run}"],
        ["study.epochs=0", "positive"],
    ),
    ("study-family", ["study", "study.families=[vae,bert]", "study.dir={run}"], ["'bert'", "vaegan"]),
    ("study-points", ["study", "data=ring", "study.dir={run}"], ["2-D points", "study=quick"]),
    ("study-misspelt-key", ["study", "study.seed=[0]", "study.dir={run}"], ["study.seed", "study.seeds"]),
    ("study-unknown-preset", ["study", "study=imagenet", "study.dir={run}"], ["study='imagenet'", "mnist"]),
]

# cases whose error comes from the machine, not from the input, on a machine with a GPU
NEEDS_NO_GPU = {"train-gpu-preset", "train-gpu-accelerator", "train-cuda-accelerator"}


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """The folders and files a case's argv refers to, all in <tmp_path>/in; runs write elsewhere."""
    given = tmp_path / "in"
    given.mkdir()
    (given / "a_file").write_text("not a folder\n")
    (given / "garbage.ckpt").write_bytes(b"this is not a checkpoint\n")
    corrupt = given / "images"
    corrupt.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(corrupt / f"{i}.png")
    (corrupt / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # a PNG header, then nothing
    return {
        "tmp": str(given),
        "file": str(given / "a_file"),
        "garbage": str(given / "garbage.ckpt"),
        "corrupt": str(corrupt),
        "run": str(tmp_path / "run"),
    }


def fill(items: list[str], places: dict[str, str]) -> list[str]:
    return [item.format(**places) for item in items]


def assert_nothing_half_written(root: Path) -> None:
    """No checkpoint and no metrics.json below `root` (the case's folder), but for the inputs in root/in."""
    left = [
        p
        for p in root.rglob("*")
        if (p.suffix == ".ckpt" or p.name == "metrics.json") and (root / "in") not in p.parents
    ]
    assert not left, f"a run that never trained left {left}"


def assert_one_paragraph(code: object, err: str, out: str, expected: list[str]) -> None:
    assert code == 2, f"exit code {code!r}\nstderr:\n{err}"
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [line for line in err.splitlines() if line.startswith("genlab: error:")]
    assert len(lines) == 1, f"expected one error line:\n{err}"
    for text in expected:
        assert text in lines[0], f"{text!r} not in the message:\n{lines[0]}"


@pytest.fixture(autouse=True)
def clean_hydra_state():
    """Each in-process call must leave Hydra as it found it (the console script starts fresh each time)."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    yield
    assert not GlobalHydra.instance().is_initialized()
    assert os.environ.get("HYDRA_FULL_ERROR") == before


def error_before_launch(argv: list[str]) -> GenlabError | None:
    """The error a case gets before its command's task would start, found the cheap way: the CLI's own
    override checks, one in-process composition (Hydra's compose API) and the command's config checks,
    the same steps `genlab` takes (genlab.cli -> genlab.runtime.checks). None when all of them pass, and
    the case must run for real. A composition through hydra.main costs two composes and a run folder, so
    this halves the battery's time; the console-script cases below prove the wiring end to end."""
    from hydra import compose, initialize_config_dir

    from genlab.cli import commands, conf_dir, prepare_overrides
    from genlab.runtime.checks import check_command_config, explain_hydra_error

    command, overrides = argv[0], argv[1:]
    if command not in commands() or "-m" in overrides:
        return None
    config_name = command.replace("-", "_")
    try:
        overrides = prepare_overrides(command, overrides)
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            try:
                cfg = compose(config_name, overrides=overrides)
            except Exception as exc:
                err = explain_hydra_error(exc, overrides)
                if err is None:
                    raise
                return err
        check_command_config(config_name, cfg)
    except GenlabError as err:
        return err
    return None


@pytest.mark.parametrize(("argv", "expected"), [pytest.param(a, e, id=i) for i, a, e in CASES])
def test_bad_input(argv, expected, places, capsys, request, monkeypatch, tmp_path):
    if request.node.callspec.id in NEEDS_NO_GPU and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)  # default run folders (outputs/...) land in the case's own folder
    argv = fill(argv, places)
    err = error_before_launch(argv)
    if err is not None:
        print_error(err)
        code = err.exit_code
    else:  # the error comes from the command's work (data, checkpoint, folders): run it for real
        with pytest.raises(SystemExit) as stop:
            cli_main(argv)
        code = stop.value.code
    captured = capsys.readouterr()
    assert_one_paragraph(code, captured.err, captured.out, fill(expected, places))
    assert_nothing_half_written(tmp_path)


def test_the_battery_is_large_and_distinct():
    ids = [case[0] for case in CASES]
    argvs = [tuple(case[1]) for case in CASES]
    assert len(set(ids)) == len(ids) and len(set(argvs)) == len(argvs)
    assert len(CASES) >= 60
    commands = {argv[0] for argv in argvs}
    for command in (
        "train",
        "eval",
        "sample",
        "reconstruct",
        "interpolate",
        "compare",
        "anomaly",
        "synth",
        "export",
    ):
        assert command in commands
    assert "train-classifier" in commands and "augment" in commands


# --- inputs that need a trained run ---


def test_truncated_checkpoint_is_refused(vae_smoke_run, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    truncated = tmp_path / "in" / "truncated.ckpt"
    data = (vae_smoke_run / "checkpoints" / "last.ckpt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for command in ("sample", "eval", "reconstruct"):
        with pytest.raises(SystemExit) as stop:
            cli_main([command, f"ckpt={truncated}", f"hydra.run.dir={tmp_path / command}"])
        captured = capsys.readouterr()
        assert_one_paragraph(stop.value.code, captured.err, captured.out, ["truncated.ckpt"])
    assert_nothing_half_written(tmp_path)


@pytest.fixture
def nan_checkpoint(vae_smoke_run, tmp_path) -> Path:
    """A copy of a real checkpoint whose decoder weights hold a NaN (as a diverged run would leave them)."""
    checkpoint = torch.load(
        vae_smoke_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    names = [n for n, t in checkpoint["state_dict"].items() if t.is_floating_point() and "decoder" in n]
    checkpoint["state_dict"][names[0]].view(-1)[0] = float("nan")
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "nan.ckpt"
    torch.save(checkpoint, path)
    return path


NAN_COMMANDS = [
    ["sample", "ckpt={ckpt}"],
    ["reconstruct", "ckpt={ckpt}"],
    ["interpolate", "ckpt={ckpt}"],
    ["eval", "ckpt={ckpt}"],
    ["anomaly", "ckpt={ckpt}", "data.anomaly_classes=[9]"],
    ["synth", "ckpt={ckpt}"],
    ["augment", "k=[10]", "ckpt={ckpt}"],
    ["train", "trainer=smoke", "ckpt_path={ckpt}"],
]


@pytest.mark.parametrize("argv", NAN_COMMANDS, ids=[argv[0] for argv in NAN_COMMANDS])
def test_checkpoint_with_non_finite_weights_is_refused(argv, nan_checkpoint, tmp_path, capsys):
    """Every command that loads a checkpoint stops before using NaN weights: one line naming the file and
    the first non-finite tensor, exit 2, nothing written (was: an all-NaN grid and exit 0 from sample)."""
    with pytest.raises(SystemExit) as stop:
        cli_main([a.format(ckpt=nan_checkpoint) for a in argv] + [f"hydra.run.dir={tmp_path / 'run'}"])
    captured = capsys.readouterr()
    assert_one_paragraph(stop.value.code, captured.err, captured.out, [str(nan_checkpoint), "decoder", "NaN"])
    assert_nothing_half_written(tmp_path)
    assert not list((tmp_path / "run").rglob("*.png"))


def test_checkpoint_with_non_finite_weights_through_console_script(nan_checkpoint, tmp_path):
    proc = run_genlab("sample", f"ckpt={nan_checkpoint}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                      check=False)  # fmt: skip
    assert_one_paragraph(proc.returncode, proc.stderr, proc.stdout, ["nan.ckpt", "non-finite"])
    assert not list(tmp_path.rglob("*.png"))


def test_data_root_on_a_digits_run(vae_smoke_run, tmp_path, capsys):
    """digits are built in, so a data folder cannot apply: one clear line, not a TypeError."""
    ckpt = vae_smoke_run / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as stop:
        cli_main(
            ["reconstruct", f"ckpt={ckpt}", f"data.root={tmp_path / 'x'}", f"hydra.run.dir={tmp_path / 'r'}"]
        )
    captured = capsys.readouterr()
    assert_one_paragraph(stop.value.code, captured.err, captured.out, ["root"])


# --- a few through the real console script ---


CONSOLE_CASES = [
    ("misspelt-key", ["train", "model.latnet_dim=8"], ["model.latnet_dim=8", "model.latent_dim"]),
    ("max-epochs-float", ["train", "trainer=smoke", "trainer.max_epochs=1.5"], ["trainer.max_epochs=1.5"]),
    ("run-dir-under-file", ["train", "trainer=smoke", "hydra.run.dir={file}/run"], ["{file}"]),
    ("unknown-debug", ["train", "debug=nope"], ["debug='nope'", "fast_dev_run"]),
]


@pytest.mark.parametrize(("argv", "expected"), [pytest.param(a, e, id=i) for i, a, e in CONSOLE_CASES])
def test_bad_input_through_console_script(argv, expected, places, tmp_path):
    argv = fill(argv, places)
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        argv.append(f"hydra.run.dir={tmp_path / 'run'}")
    proc = run_genlab(*argv, cwd=tmp_path, check=False, COLUMNS="40")
    assert_one_paragraph(proc.returncode, proc.stderr, proc.stdout, fill(expected, places))
    assert_nothing_half_written(tmp_path)


def test_error_line_is_not_wrapped_for_long_paths(tmp_path, capsys):
    """A path longer than any terminal is printed whole, so it can be copied."""
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 8)
    deep.mkdir(parents=True)
    missing = deep / "missing.ckpt"
    with pytest.raises(SystemExit):
        cli_main(["sample", f"ckpt={missing}", f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert len(str(missing)) > 200 and str(missing) in err
    assert len(err.strip().splitlines()) == 1


def test_trainer_arguments_without_plus():
    """README: any pl.Trainer argument can be set as trainer.X (no `+`), also the ones no preset holds."""
    from genlab.runtime.checks import trainer_overrides

    rewritten = trainer_overrides(
        ["trainer.fast_dev_run=true", "trainer.accumulate_grad_batches=2", "trainer.max_epochs=3", "seed=1"]
    )
    assert rewritten == [
        "++trainer.fast_dev_run=true",
        "++trainer.accumulate_grad_batches=2",
        "trainer.max_epochs=3",
        "seed=1",
    ]
    assert trainer_overrides(["trainer.max_epoch=3"]) == ["trainer.max_epoch=3"]  # misspelt: Hydra says no


def test_trainer_arguments_reach_the_trainer(tmp_path, monkeypatch):
    """trainer.limit_train_batches / accumulate_grad_batches given plainly change the real run; tags land
    in metrics.json."""
    import json

    monkeypatch.chdir(tmp_path)
    cli_main(
        [
            "train",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.accumulate_grad_batches=2",
            "++trainer.limit_val_batches=1",
            "++trainer.limit_test_batches=1",
            "trainer.num_sanity_val_steps=0",
            "logger=none",
            "tags=[battery,plain-trainer-args]",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["global_step"] == 2  # 3 batches, an optimizer step every 2 (and at the epoch's end)
    assert metrics["tags"] == ["battery", "plain-trainer-args"]


@pytest.mark.parametrize("name", ["fast_dev_run", "overfit", "profiler"])
def test_debug_presets_compose(name, tmp_path):
    from hydra import compose, initialize_config_dir

    from genlab.cli import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"debug={name}"])
    expected = {"fast_dev_run": "fast_dev_run", "overfit": "overfit_batches", "profiler": "profiler"}[name]
    assert cfg.trainer[expected] and cfg.task_name == "debug"
