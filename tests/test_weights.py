"""Published weights through the real download code, with no network: files served from 127.0.0.1 by a server the
test starts and stops, or placed in a temporary torch.hub / Hugging Face cache, each holding a randomly initialised
reference model's weights saved as the reference publishes them. Where the reference library can read the same
cached file itself (torchvision's builders, timm's and transformers' ``pretrained``), the comparison is against the
reference model it builds: the whole path, not only our converter.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision

import paperzoo
from paperzoo.weights import _published, get_weights, published_weights
from paperzoo.weights.download import torch_hub_path
from weights_helpers import (
    caches,
    photo,
    place_in_hub_cache,
    place_in_torch_cache,
    randomize_batchnorm,
    small_published_wav2vec2_ctc,
)

__all__ = ["caches"]  # a fixture, used by name

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


class _Server:
    """Serves ``root`` on 127.0.0.1; ``truncate`` sends half of each file under its full Content-Length, then
    closes: a download interrupted mid-way."""

    def __init__(self, root: Path) -> None:
        self.root, self.truncate, self.requests = root, False, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests += 1
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if server.truncate else data)
                if server.truncate:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "served"
    root.mkdir()
    served = _Server(root)
    yield served
    served.stop()


def save_torchvision_file(model: torch.nn.Module, folder: Path, stem: str) -> Path:
    """``model``'s state_dict saved as torchvision publishes it: ``<stem>-<first 8 hex digits of its sha256>.pth``."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{stem}.tmp"
    torch.save(model.state_dict(), temporary)
    digest = hashlib.sha256(temporary.read_bytes()).hexdigest()[:8]
    return temporary.rename(folder / f"{stem}-{digest}.pth")


def serve_as(monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> None:
    """Point ``name``'s default weights at ``url`` (the test's server) instead of download.pytorch.org."""
    rows = [dict(row, url=url) if row["default"] else row for row in _published.PUBLISHED[name]]
    monkeypatch.setitem(_published.PUBLISHED, name, rows)


# --- torchvision: download, verify, cache, convert ---------------------------------------------------------------

def test_resnet18_downloads_verifies_caches_and_equals_torchvision(caches: Path, server: _Server,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reference = randomize_batchnorm(torchvision.models.resnet18()).eval()
    served = save_torchvision_file(reference, server.root, "resnet18")
    serve_as(monkeypatch, "resnet18", f"{server.url}/{served.name}")

    ours = paperzoo.create_model("resnet18", pretrained=True).eval()
    cached = caches / "torch" / "hub" / "checkpoints" / served.name
    assert cached.read_bytes() == served.read_bytes()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOLERANCE)

    server.stop()  # the second time, the cache alone
    again = paperzoo.create_model("resnet18", pretrained=True).eval()
    assert server.requests == 1
    with torch.no_grad():
        torch.testing.assert_close(again(x), reference(x), **TOLERANCE)


def test_a_file_whose_hash_does_not_match_is_refused_and_not_kept(caches: Path, server: _Server,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    good = save_torchvision_file(torchvision.models.resnet18(), server.root, "resnet18")
    bad = good.rename(server.root / "resnet18-00000000.pth")  # the name promises another file
    serve_as(monkeypatch, "resnet18", f"{server.url}/{bad.name}")
    with pytest.raises(ValueError, match="corrupt .* not kept"):
        paperzoo.create_model("resnet18", pretrained=True)
    assert list((caches / "torch" / "hub" / "checkpoints").iterdir()) == []


def test_an_interrupted_download_leaves_no_file(caches: Path, server: _Server,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    served = save_torchvision_file(torchvision.models.resnet18(), server.root, "resnet18")
    serve_as(monkeypatch, "resnet18", f"{server.url}/{served.name}")
    server.truncate = True
    with pytest.raises(ValueError):
        paperzoo.create_model("resnet18", pretrained=True)
    folder = caches / "torch" / "hub" / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_offline_without_the_file_says_where_to_place_it(caches: Path, server: _Server,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    served = save_torchvision_file(torchvision.models.resnet18(), server.root, "resnet18")
    serve_as(monkeypatch, "resnet18", f"{server.url}/{served.name}")
    server.stop()  # nothing listens: the network is "down"
    with pytest.raises(ValueError, match="place that file at") as error:
        paperzoo.create_model("resnet18", pretrained=True)
    assert str(caches / "torch" / "hub" / "checkpoints" / served.name) in str(error.value)
    assert "\n" not in str(error.value)


def test_a_pickle_that_hides_code_is_refused(caches: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("this would run",))

    import pickle

    path = torch_hub_path(get_weights("resnet18").url)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    with pytest.raises(ValueError, match="not a plain tensor file"):
        paperzoo.create_model("resnet18", pretrained=True)


# --- torchvision: the builders' own quirks, compared with torchvision reading the same cached file ----------------

@pytest.mark.parametrize("name, tag", [pytest.param("googlenet", "IMAGENET1K_V1", marks=pytest.mark.heavy),
                                       pytest.param("densenet121", "IMAGENET1K_V1", marks=pytest.mark.heavy)])
def test_torchvision_classifier_equals_torchvision_loading_the_same_file(caches: Path, name: str, tag: str) -> None:
    """GoogLeNet's file holds the auxiliary heads and its builder turns ``transform_input`` on; DenseNet's file has
    the pre-0.4 key names. torchvision's builder reads the file we placed, so both load exactly the same."""
    file_layout = randomize_batchnorm(torchvision.models.get_model(name, num_classes=1000, **(
        {"aux_logits": True, "init_weights": False} if name == "googlenet" else {})))
    state_dict = file_layout.state_dict()
    if name == "densenet121":  # as published in 2017: norm.1 for norm1, and no num_batches_tracked (torch < 0.4.1)
        state_dict = {k.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.") if "denselayer" in k else k: v
                      for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    path = torch_hub_path(get_weights(name, tag).url)
    path.parent.mkdir(parents=True)
    torch.save(state_dict, path)

    reference = torchvision.models.get_model(name, weights=tag).eval()
    ours = paperzoo.create_model(name, pretrained=tag).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOLERANCE)


@pytest.mark.heavy
def test_fcn_resnet50_equals_torchvision_with_the_same_file(caches: Path) -> None:
    """The published segmentation file holds the auxiliary head (dropped: the card builds none) and 21 VOC classes."""
    file_layout = randomize_batchnorm(torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True))
    place_in_torch_cache(file_layout, "fcn_resnet50", "COCO_WITH_VOC_LABELS_V1")
    reference = torchvision.models.segmentation.fcn_resnet50(weights="COCO_WITH_VOC_LABELS_V1").eval()
    ours = paperzoo.create_model("fcn_resnet50", pretrained=True).eval()
    assert ours.aux_head is None
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["out"], reference(x)["out"], **TOLERANCE)


@pytest.mark.heavy
def test_fasterrcnn_equals_torchvision_with_the_same_file(caches: Path) -> None:
    """torchvision's detectors load their file into frozen BatchNorm with epsilon 0 (``overwrite_eps``): so do we."""
    builder = torchvision.models.detection.fasterrcnn_resnet50_fpn
    file_layout = builder(weights=None, weights_backbone=None, num_classes=91,
                          norm_layer=torchvision.ops.misc.FrozenBatchNorm2d)
    with torch.no_grad():
        randomize_batchnorm(file_layout)
        file_layout.roi_heads.box_predictor.cls_score.bias[1] += 8.0  # some detections survive the threshold
    place_in_torch_cache(file_layout, "fasterrcnn_resnet50_fpn", "COCO_V1")
    small = dict(min_size=240, max_size=320)  # the detectors' own resize, down from 800: seconds, not a minute
    reference = builder(weights="COCO_V1", **small).eval()
    ours = paperzoo.create_model("fasterrcnn_resnet50_fpn", pretrained=True, **small).eval()
    assert {m.eps for m in ours.modules() if type(m).__name__ == "FrozenBatchNorm2d"} == {0.0}
    images = [torch.rand(3, 120, 160)]
    with torch.no_grad():
        expected, actual = reference(images)[0], ours(images)[0]
    assert len(expected["boxes"]) > 0
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-4, atol=1e-4)


# --- Hugging Face Hub: timm and transformers, from the cache with HF_HUB_OFFLINE ----------------------------------

@pytest.mark.heavy
def test_timm_weights_from_the_hub_cache_equal_timm_pretrained(caches: Path) -> None:
    import timm
    from safetensors.torch import save_file

    weights = get_weights("convnextv2_atto")
    assert weights.hub_repo == "timm/convnextv2_atto.fcmae_ft_in1k" and weights.hub_file == "model.safetensors"
    source = timm.create_model("convnextv2_atto")
    save_file(source.state_dict(), caches / "model.safetensors")
    place_in_hub_cache(caches, weights.hub_repo, {"model.safetensors": caches / "model.safetensors"})

    reference = timm.create_model("convnextv2_atto.fcmae_ft_in1k", pretrained=True).eval()  # reads the same file
    ours = paperzoo.create_model("convnextv2_atto", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOLERANCE)

    # timm's transfer-learning start: a new head, everything else loaded
    transfer = paperzoo.create_model("convnextv2_atto", pretrained=True, num_classes=5).eval()
    with torch.no_grad():
        torch.testing.assert_close(transfer.forward_features(x), reference.forward_features(x), **TOLERANCE)
        assert transfer(x).shape == (2, 5)


def test_a_hub_repository_with_only_the_other_format_still_loads(caches: Path) -> None:
    """The table names model.safetensors; a repository (or an offline cache) that holds only pytorch_model.bin is
    read from that, as transformers' and timm's loaders fall back; the .bin is read with weights_only=True."""
    import timm

    weights = get_weights("convnextv2_atto")
    assert weights.hub_file == "model.safetensors"
    reference = timm.create_model("convnextv2_atto").eval()
    torch.save(reference.state_dict(), caches / "pytorch_model.bin")
    place_in_hub_cache(caches, weights.hub_repo, {"pytorch_model.bin": caches / "pytorch_model.bin"})
    ours = paperzoo.create_model("convnextv2_atto", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOLERANCE)


def test_hub_weights_offline_and_not_cached_say_what_to_do(caches: Path) -> None:
    with pytest.raises(ValueError, match="hf download timm/convnextv2_atto.fcmae_ft_in1k model.safetensors"):
        paperzoo.create_model("convnextv2_atto", pretrained=True)


def test_without_huggingface_hub_the_error_names_the_extra(caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "paperzoo\[hub\]"'):
        paperzoo.create_model("convnextv2_atto", pretrained=True)


def test_gpt2_weights_from_the_hub_cache_equal_transformers(caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small GPT-2 saved with transformers' save_pretrained (its Hub layout), placed as openai-community/gpt2."""
    import transformers

    small = dict(vocab_size=300, max_positions=32, hidden_size=64, num_layers=2, num_heads=4)
    rows = [dict(row, model_kwargs=small) for row in _published.PUBLISHED["gpt2"]]
    monkeypatch.setitem(_published.PUBLISHED, "gpt2", rows)
    config = transformers.GPT2Config(vocab_size=300, n_positions=32, n_embd=64, n_layer=2, n_head=4)
    transformers.GPT2LMHeadModel(config).save_pretrained(caches / "saved")
    place_in_hub_cache(caches, "openai-community/gpt2", {p.name: p for p in (caches / "saved").iterdir()})

    reference = transformers.GPT2LMHeadModel.from_pretrained("openai-community/gpt2").eval()
    ours = paperzoo.create_model("gpt2", pretrained=True).eval()
    tokens = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), reference(tokens).logits, **TOLERANCE)


# --- choosing weights, and the errors ---------------------------------------------------------------------------

def test_unknown_tag_lists_the_available_ones() -> None:
    expected = r"no weights tagged 'V3'; available: IMAGENET1K_V2 \(default\), IMAGENET1K_V1$"
    with pytest.raises(ValueError, match=expected):
        paperzoo.create_model("resnet50", pretrained="V3")


def test_a_model_without_published_weights_says_why() -> None:
    with pytest.raises(ValueError, match="unet has no published weights: its reference is the paper"):
        paperzoo.create_model("unet", pretrained=True)
    with pytest.raises(ValueError, match="lstm has no published weights: it is a layer"):
        paperzoo.create_model("lstm", pretrained=True)
    # the fix it names is one that exists: `paperzoo train` trains the classifiers, not (yet) U-Net
    with pytest.raises(ValueError) as unet:
        paperzoo.create_model("unet", pretrained=True)
    assert "paperzoo train" not in str(unet.value) and "load your weights with load_weights" in str(unet.value)
    with pytest.raises(ValueError, match="train it with `paperzoo train` or load your own with load_weights"):
        paperzoo.create_model("cbam_resnet50", pretrained=True)


def test_pretrained_false_builds_random_weights_as_before() -> None:
    model = paperzoo.create_model("resnet18", pretrained=False)
    assert not hasattr(model, "pretrained_weights")


def test_in_chans_other_than_three_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="take 3-channel images; in_chans=1"):
        paperzoo.create_model("resnet18", pretrained=True, in_chans=1)


# --- the table agrees with the installed references -------------------------------------------------------------

def test_torchvision_entries_match_torchvision_weights_enums() -> None:
    for name in _published.PUBLISHED:
        for weights in (w for w in published_weights(name) if w.source == "torchvision"):
            builder = paperzoo.model_card(name).reference.split("(")[0].rsplit(".", 1)[1]
            theirs = torchvision.models.get_model_weights(builder)[weights.tag]
            assert weights.url == theirs.url
            assert weights.default == (theirs is torchvision.models.get_model_weights(builder).DEFAULT)
            assert weights.metrics == theirs.meta["_metrics"]
            assert weights.category_names == theirs.meta["categories"]


def test_timm_entries_match_timm_pretrained_cfgs() -> None:
    from timm.models import get_pretrained_cfg

    from paperzoo.interop.references import parse_reference

    for name in _published.PUBLISHED:
        for weights in (w for w in published_weights(name) if w.source == "timm"):
            builder = parse_reference(paperzoo.model_card(name).reference)[1]
            cfg = get_pretrained_cfg(f"{builder}.{weights.tag}")
            assert (cfg.hf_hub_id, cfg.url if not cfg.hf_hub_id else "") == (weights.hub_repo or None, weights.url)
            assert weights.preprocessing.crop == cfg.input_size[-1]
            assert weights.preprocessing.interpolation == cfg.interpolation
            assert weights.preprocessing.mean == tuple(cfg.mean)


def test_every_variant_whose_reference_publishes_weights_has_them() -> None:
    import timm

    from paperzoo.interop.references import parse_reference
    from paperzoo.weights import no_weights_reason

    for name in paperzoo.list_models():
        library, builder, _ = parse_reference(paperzoo.model_card(name).reference)
        reason = no_weights_reason(name)
        assert (reason is None) == bool(published_weights(name)), name
        if library == "timm":
            publishes = any(tag.split(".")[0] == builder for tag in timm.list_pretrained(builder))
        elif library == "torchvision":
            publishes = builder in torchvision.models.list_models() and any(
                w.meta.get("categories") for w in torchvision.models.get_model_weights(builder))
        else:
            publishes = library == "transformers"
        assert publishes == (reason is None), f"{name}: {reason} (rerun scripts/generate_weights_table.py)"


# --- preprocessing ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, tag", [("resnet50", "IMAGENET1K_V2"), ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1"),
                                       ("inception_v3", None), ("fcn_resnet50", None)])
def test_transforms_equal_torchvision_weights_transforms(name: str, tag: str | None) -> None:
    builder = paperzoo.model_card(name).reference.split("(")[0].rsplit(".", 1)[1]
    enum = torchvision.models.get_model_weights(builder)
    theirs = (enum[tag] if tag else enum.DEFAULT).transforms()
    image = photo()
    ours = paperzoo.transforms(name, tag)
    torch.testing.assert_close(ours(image.float() / 255), theirs(image.float() / 255))
    # On uint8 images transforms.v2's antialiased resize rounds a few pixels to another grey level than v1's.
    differ = (ours(image) - theirs(image)).abs() > 1e-5
    assert differ.float().mean() < 0.2
    assert (ours(image) - theirs(image)).abs().mean() < 1e-2


def test_transforms_equal_timms_create_transform() -> None:
    import timm.data
    from PIL import Image

    config = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(
        "convnextv2_atto.fcmae_ft_in1k").to_dict())
    theirs = timm.data.create_transform(**config)
    image = Image.fromarray(photo().permute(1, 2, 0).numpy())
    torch.testing.assert_close(paperzoo.transforms("convnextv2_atto")(image), theirs(image), atol=2e-2, rtol=0)


def test_transforms_of_a_pretrained_model_are_its_own_weights(caches: Path) -> None:
    model = paperzoo.create_model("resnet50")
    assert paperzoo.transforms(model).transforms[1].size == [232]  # no weights loaded: the default's (V2)
    assert paperzoo.transforms(model, "IMAGENET1K_V1").transforms[1].size == [256]


def test_info_shows_the_weights_or_why_there_are_none(capsys: pytest.CaptureFixture[str]) -> None:
    from paperzoo.cli import main

    assert main(["info", "resnet50"]) == 0
    shown = capsys.readouterr().out
    for fact in ("IMAGENET1K_V2 (default)", "acc@1 80.858", "97.8 MB", "resnet50-11ad3fa6.pth", "resize 232"):
        assert fact in shown
    assert main(["info", "unet"]) == 0
    assert "none published: its reference is the paper" in capsys.readouterr().out


# --- fine-tuning --------------------------------------------------------------------------------------------------

@pytest.mark.heavy
def test_train_pretrained_starts_from_the_weights_with_a_new_head(caches: Path, tmp_path: Path) -> None:
    """``paperzoo train resnet18 --pretrained --data folder PATH``: the images normalised with the weights' mean and
    std; every layer but the classifier starts from the file (a learning rate of 1e-12 leaves them where they
    started), the classifier is new, for the folder's two classes."""
    from PIL import Image
    from safetensors.torch import load_file

    from paperzoo.training.loop import TrainConfig, plan, train

    place_in_torch_cache(randomize_batchnorm(torchvision.models.resnet18()), "resnet18", "IMAGENET1K_V1")
    for index, name in enumerate(("china", "flower")):  # 8 tiles of each photo: a two-class ImageFolder
        (tmp_path / "data" / name).mkdir(parents=True)
        picture = photo() if name == "china" else photo().flip(-1).roll(200, 1)
        for tile in range(8):
            pixels = picture[:, 40 * tile: 40 * tile + 64, 60 * index: 60 * index + 64]
            Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(tmp_path / "data" / name / f"{tile}.png")
    config = TrainConfig(model="resnet18", data="folder", data_path=str(tmp_path / "data"), epochs=1, image_size=32,
                         batch_size=4, pretrained=True, out=str(tmp_path / "run"))
    planned = plan(config)
    recipe = paperzoo.model_card("resnet18").recipe  # a tenth of the recipe's rate, scaled to the batch of 4
    assert planned.lr == pytest.approx(0.1 * recipe.lr * 4 / recipe.batch_size)
    assert min(planned.task.train_set[i][0].min() for i in range(4)) < 0  # normalised, no longer in [0, 1]

    train(TrainConfig(**{**config.__dict__, "lr": 1e-12}))
    trained = load_file(tmp_path / "run" / "model.safetensors")
    start = paperzoo.create_model("resnet18", pretrained=True).state_dict()
    assert trained["fc.weight"].shape == (2, 512)
    for key, value in start.items():
        if "running" not in key and "num_batches" not in key and not key.startswith("fc."):
            torch.testing.assert_close(trained[key], value, rtol=0, atol=1e-6, msg=key)


def test_bert_from_a_pretraining_checkpoint_with_legacy_layernorm_names(caches: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """google-bert/bert-base-uncased holds a BertForPreTraining state_dict (``bert.`` prefix, MLM and NSP heads) with
    the TensorFlow port's LayerNorm ``gamma``/``beta``: ``bert_base`` takes its encoder, as BertModel.from_pretrained
    does from the same cached files."""
    import transformers
    from safetensors.torch import save_file

    small = dict(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=40)
    monkeypatch.setitem(_published.PUBLISHED, "bert_base",
                        [dict(row, model_kwargs=small) for row in _published.PUBLISHED["bert_base"]])
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=40)
    source = randomize_batchnorm(transformers.BertForPreTraining(config))
    with torch.no_grad():
        for name, parameter in source.named_parameters():
            if "LayerNorm" in name:  # not the 1 and 0 they start at, so that a lost one shows
                parameter.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in source.state_dict().items()
              if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}  # tied: not stored
    save_file({k: v.contiguous() for k, v in legacy.items()}, caches / "model.safetensors")
    config.save_pretrained(caches)
    place_in_hub_cache(caches, "google-bert/bert-base-uncased",
                       {"model.safetensors": caches / "model.safetensors", "config.json": caches / "config.json"})

    reference = transformers.BertModel.from_pretrained("google-bert/bert-base-uncased").eval()
    ours = paperzoo.create_model("bert_base", pretrained=True).eval()
    ids, segments = torch.randint(0, 100, (2, 12)), torch.zeros(2, 12, dtype=torch.long)
    with torch.no_grad():
        expected = reference(input_ids=ids, token_type_ids=segments).last_hidden_state
        actual = ours(ids, torch.ones_like(ids), segments)["last_hidden_state"]
    torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_bert_heads_from_the_pretraining_checkpoint(caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bert-base-uncased (a BertForPreTraining file) starts both heads as transformers' from_pretrained does:
    BertForMaskedLM takes the masked-LM head and leaves the pooler and NSP head; BertForSequenceClassification
    takes the encoder and pooler and keeps its classifier freshly initialised."""
    import transformers
    from safetensors.torch import save_file

    small = dict(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=40)
    for name in ("bert_base_masked_lm", "bert_base_sequence_classification"):
        monkeypatch.setitem(_published.PUBLISHED, name, [dict(row, model_kwargs=small)
                                                         for row in _published.PUBLISHED[name]])
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=40)
    source = randomize_batchnorm(transformers.BertForPreTraining(config))
    state = {k: v for k, v in source.state_dict().items()
             if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}  # tied: not stored
    save_file({k: v.contiguous() for k, v in state.items()}, caches / "model.safetensors")
    config.save_pretrained(caches)
    place_in_hub_cache(caches, "google-bert/bert-base-uncased",
                       {"model.safetensors": caches / "model.safetensors", "config.json": caches / "config.json"})
    ids = torch.randint(0, 100, (2, 12))

    reference = transformers.BertForMaskedLM.from_pretrained("google-bert/bert-base-uncased").eval()
    ours = paperzoo.create_model("bert_base_masked_lm", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)["logits"], reference(ids).logits, **TOLERANCE)

    reference = transformers.BertForSequenceClassification.from_pretrained("google-bert/bert-base-uncased",
                                                                           num_labels=3).eval()
    torch.manual_seed(0)
    fresh = paperzoo.create_model("bert_base_sequence_classification", num_classes=3, **small).state_dict()
    torch.manual_seed(0)
    ours = paperzoo.create_model("bert_base_sequence_classification", pretrained=True, num_classes=3).eval()
    assert torch.equal(ours.classifier.weight, fresh["classifier.weight"])  # the head keeps its initialisation
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)["pooler_output"], reference.bert(ids).pooler_output, **TOLERANCE)


def test_wav2vec2_ctc_from_the_fine_tuned_checkpoint(caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """facebook/wav2vec2-base-960h, the authors' BASE fine-tuned with CTC on LibriSpeech (a Wav2Vec2ForCTC
    ``pytorch_model.bin``), loads whole into ``wav2vec2_base_ctc``: the logits transformers gives."""
    import transformers

    config = small_published_wav2vec2_ctc(monkeypatch)
    torch.save(randomize_batchnorm(transformers.Wav2Vec2ForCTC(config)).state_dict(), caches / "pytorch_model.bin")
    config.save_pretrained(caches)
    place_in_hub_cache(caches, "facebook/wav2vec2-base-960h",
                       {"pytorch_model.bin": caches / "pytorch_model.bin", "config.json": caches / "config.json"})
    reference = transformers.Wav2Vec2ForCTC.from_pretrained("facebook/wav2vec2-base-960h").eval()
    ours = paperzoo.create_model("wav2vec2_base_ctc", pretrained=True).eval()
    waveform = torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(ours(waveform)["logits"], reference(waveform).logits, **TOLERANCE)


def test_wav2vec2_base_from_the_pretraining_checkpoint_facebook_publishes(caches: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """facebook/wav2vec2-base publishes a Wav2Vec2ForPreTraining ``pytorch_model.bin`` (``wav2vec2.`` prefix, the
    quantizer and projections): ``wav2vec2_base`` takes its encoder, as Wav2Vec2Model.from_pretrained does."""
    import transformers

    small = dict(hidden_size=32, num_layers=2, num_heads=4, ffn_dim=64, feature_channels=32, position_kernel_size=16,
                 position_groups=4)
    monkeypatch.setitem(_published.PUBLISHED, "wav2vec2_base",
                        [dict(row, model_kwargs=small) for row in _published.PUBLISHED["wav2vec2_base"]])
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, num_codevectors_per_group=8,
                                         codevector_dim=16, proj_codevector_dim=12)
    source = randomize_batchnorm(transformers.Wav2Vec2ForPreTraining(config))
    torch.save(source.state_dict(), caches / "pytorch_model.bin")
    config.save_pretrained(caches)
    place_in_hub_cache(caches, "facebook/wav2vec2-base",
                       {"pytorch_model.bin": caches / "pytorch_model.bin", "config.json": caches / "config.json"})

    reference = transformers.Wav2Vec2Model.from_pretrained("facebook/wav2vec2-base").eval()
    ours = paperzoo.create_model("wav2vec2_base", pretrained=True).eval()
    waveform = torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(ours(waveform)["last_hidden_state"], reference(waveform).last_hidden_state,
                                   **TOLERANCE)


def test_features_only_backbone_loads_the_weights_of_its_layers(caches: Path) -> None:
    place_in_torch_cache(randomize_batchnorm(torchvision.models.resnet18()), "resnet18", "IMAGENET1K_V1")
    full = paperzoo.create_model("resnet18", pretrained=True).state_dict()
    backbone = paperzoo.create_model("resnet18", pretrained=True, features_only=True).state_dict()
    assert len(backbone) > 0.9 * (len(full) - 2)  # everything but the classifier
    for key, value in backbone.items():
        torch.testing.assert_close(value, full[key], rtol=0, atol=0, msg=key)
