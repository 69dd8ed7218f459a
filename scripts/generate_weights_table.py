"""Write ``src/paperzoo/weights/_published.py`` and ``_categories.py``: the published weights of every registered
variant, read from the reference libraries installed here (torchvision's ``Weights`` enums, timm's pretrained
configs) and from the Hugging Face Hub repositories that transformers loads.

Run it after upgrading torchvision or timm, or after registering a model:

    PYTHONPATH=src python scripts/generate_weights_table.py

Every torchvision entry is checked before it is written: the torchvision builder is run on the meta device with
the weights (the file itself is not read: ``load_state_dict`` is intercepted to record the layout the file has),
and that layout, converted with ``paperzoo.interop``, must fit our model built with the entry's keyword arguments.
A tag that does not fit (a configuration our builder does not take) is left out and printed. What the builder does
besides loading is recorded too: the keyword arguments it forces (``transform_input``), the auxiliary heads it
deletes after loading (``drop_prefixes``), and the FrozenBatchNorm epsilon it overwrites.
"""

from __future__ import annotations

import contextlib
import inspect
import pprint
import sys
from pathlib import Path
from unittest import mock

import torch
import torchvision
from torch import nn

import paperzoo
from paperzoo.interop import check_state_dict, convert_state_dict
from paperzoo.interop.references import build_reference, parse_reference

OUT = Path(__file__).resolve().parents[1] / "src" / "paperzoo" / "weights"

# The Hub repositories transformers loads for our language and speech variants, and the file each holds. The BERT,
# GPT and GPT-2 repositories hold model.safetensors; the wav2vec 2.0 ones only pytorch_model.bin (read with
# torch.load(weights_only=True), which refuses a pickle that hides code). wav2vec2_large is the LV-60 model: the
# card's configuration (layer-norm feature encoder, pre-LN Transformer, convolution biases) is that checkpoint's.
TRANSFORMERS_REPOS = {
    "bert_base": ("google-bert/bert-base-uncased", "model.safetensors", "apache-2.0"),
    "bert_base_pretraining": ("google-bert/bert-base-uncased", "model.safetensors", "apache-2.0"),
    "bert_large": ("google-bert/bert-large-uncased", "model.safetensors", "apache-2.0"),
    "bert_large_pretraining": ("google-bert/bert-large-uncased", "model.safetensors", "apache-2.0"),
    "gpt": ("openai-community/openai-gpt", "model.safetensors", "mit"),
    "gpt2": ("openai-community/gpt2", "model.safetensors", "mit"),
    "gpt2_medium": ("openai-community/gpt2-medium", "model.safetensors", "mit"),
    "gpt2_large": ("openai-community/gpt2-large", "model.safetensors", "mit"),
    "gpt2_xl": ("openai-community/gpt2-xl", "model.safetensors", "mit"),
    "wav2vec2_base": ("facebook/wav2vec2-base", "pytorch_model.bin", "apache-2.0"),
    "wav2vec2_base_pretraining": ("facebook/wav2vec2-base", "pytorch_model.bin", "apache-2.0"),
    "wav2vec2_large": ("facebook/wav2vec2-large-lv60", "pytorch_model.bin", "apache-2.0"),
    "wav2vec2_large_pretraining": ("facebook/wav2vec2-large-lv60", "pytorch_model.bin", "apache-2.0"),
    # the heads: BERT's from the pre-trained checkpoint (the masked-LM head without the pooler and NSP head that
    # BertForMaskedLM lacks; the classifier freshly initialised on the encoder, as BertForSequenceClassification's
    # from_pretrained does); wav2vec 2.0's CTC models fine-tuned on LibriSpeech 960 h by the authors
    "bert_base_masked_lm": ("google-bert/bert-base-uncased", "model.safetensors", "apache-2.0"),
    "bert_base_sequence_classification": ("google-bert/bert-base-uncased", "model.safetensors", "apache-2.0"),
    "wav2vec2_base_ctc": ("facebook/wav2vec2-base-960h", "pytorch_model.bin", "apache-2.0"),
    "wav2vec2_large_ctc": ("facebook/wav2vec2-large-960h-lv60-self", "pytorch_model.bin", "apache-2.0"),
}
# What the file holds that the variant does not (dropped), and what the variant has that the file lacks (fresh).
TRANSFORMERS_LAYOUT = {
    "bert_base_masked_lm": {"drop_prefixes": ["bert.pooler.", "cls.seq_relationship."]},
    "bert_base_sequence_classification": {"drop_prefixes": ["cls."], "fresh_prefixes": ["classifier."]},
}

CATEGORY_SETS = {"imagenet-1k": "_IMAGENET_CATEGORIES", "coco": "_COCO_CATEGORIES", "voc": "_VOC_CATEGORIES"}


def category_set(categories: list[str]) -> str:
    from torchvision.models import _meta

    for key, attribute in CATEGORY_SETS.items():
        if list(getattr(_meta, attribute)) == list(categories):
            return key
    raise ValueError(f"categories of {len(categories)} names match no known set")


def on_meta_if_possible() -> contextlib.AbstractContextManager:
    """The meta device, except for RegNet, whose builder computes its widths with tensor arithmetic that the meta
    device cannot do: its models are built on the CPU."""
    return contextlib.nullcontext() if _building_regnet else torch.device("meta")


_building_regnet = False


def record_builder(builder_name: str, tag: str, kwargs: dict) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """Run torchvision's builder with the weights on the meta device; return the layout of the file it loads
    (the state_dict of the model at ``load_state_dict`` time) and the model it returns."""
    recorded: dict[str, torch.Tensor] = {}
    original = nn.Module.load_state_dict

    def record(self: nn.Module, state_dict: dict, *args: object, **kw: object) -> object:
        recorded.update(self.state_dict())
        return None

    with on_meta_if_possible(), mock.patch.object(torchvision.models._api.WeightsEnum, "get_state_dict",
                                                 lambda self, *a, **k: {}), \
            mock.patch.object(nn.Module, "load_state_dict", record):
        model = torchvision.models.get_model(builder_name, weights=tag, **kwargs)
    assert nn.Module.load_state_dict is original
    return recorded, model


def torchvision_entries(name: str, card: paperzoo.ModelCard) -> list[dict]:
    global _building_regnet
    builder_name, kwargs = parse_reference(card.reference)[1:]
    _building_regnet = builder_name.startswith("regnet")
    # With weights, torchvision's builders force the auxiliary heads on (and delete them again where the caller
    # asked for none): the card's aux_loss=False / aux_logits=False is what our model is built with, not the file.
    kwargs = {k: v for k, v in kwargs.items()
              if k not in ("weights", "weights_backbone", "init_weights", "aux_loss", "aux_logits")}
    with on_meta_if_possible():
        card_reference = build_reference(card.reference).state_dict()
    try:
        enum = torchvision.models.get_model_weights(builder_name)
    except (ValueError, KeyError):
        return []
    source = inspect.getsource(torchvision.models.get_model_builder(builder_name))
    entries = []
    for weights in enum:
        if "quantized" in weights.url or weights.meta.get("categories") is None:
            continue  # quantized models are other architectures; VGG16's IMAGENET1K_FEATURES has no classifier
        layout, reference = record_builder(builder_name, weights.name, kwargs)
        # The file's auxiliary heads that the card's configuration does not have (prefixes of whole modules: a
        # detector's FrozenBatchNorm lacks num_batches_tracked, which is no reason to drop anything).
        drop = sorted({k.split(".")[0] + "." for k in layout if k.split(".")[0] not in
                       {key.split(".")[0] for key in card_reference}})
        kept = {k for k in layout if not k.startswith(tuple(drop))}
        model_kwargs: dict = {"num_classes": len(weights.meta["categories"])}
        if getattr(reference, "transform_input", False):
            model_kwargs["transform_input"] = True
        if builder_name.startswith("vit_") and weights.meta["min_size"][0] != card.input.shape[-1]:
            model_kwargs["img_size"] = weights.meta["min_size"][0]
        if any(type(m).__name__ == "FrozenBatchNorm2d" for m in reference.modules()):
            # torchvision freezes a detector's BatchNorms and trains the last 3 stages when it loads weights
            model_kwargs.update(frozen_batchnorm=True, trainable_backbone_layers=3)
        eps = {m.eps for m in reference.modules() if type(m).__name__ == "FrozenBatchNorm2d"}
        frozen_eps = 0.0 if eps == {0.0} and "overwrite_eps" in source else None
        try:
            with torch.device("meta"):
                ours = paperzoo.create_model(name, **model_kwargs)
            converted = convert_state_dict(ours, {k: v for k, v in layout.items() if k in kept}, "torchvision")
            check_state_dict(ours, converted)
        except Exception as err:  # noqa: BLE001 - a tag our builder cannot take is reported and left out
            print(f"  left out {name} {weights.name}: {type(err).__name__}: {str(err)[:200]}", file=sys.stderr)
            continue
        preset = weights.transforms()
        preprocessing = {"mean": list(getattr(preset, "mean", ())), "std": list(getattr(preset, "std", ()))}
        if hasattr(preset, "resize_size"):
            preprocessing["resize"] = preset.resize_size[0] if preset.resize_size else None
            preprocessing["crop"] = preset.crop_size[0] if hasattr(preset, "crop_size") else None
            preprocessing["interpolation"] = preset.interpolation.value
        metrics = weights.meta.get("_metrics", {})
        entries.append({
            "tag": weights.name, "default": weights is enum.DEFAULT, "source": "torchvision", "url": weights.url,
            "categories": category_set(weights.meta["categories"]), "metrics": metrics,
            "file_size_mb": weights.meta.get("_file_size"), "recipe": weights.meta.get("recipe", ""),
            "preprocessing": preprocessing if preprocessing["mean"] or "resize" in preprocessing else None,
            "model_kwargs": model_kwargs, "drop_prefixes": drop, "frozen_norm_eps": frozen_eps,
            "licence": "BSD-3-Clause (torchvision)",
        })
    return entries


def timm_entries(name: str, card: paperzoo.ModelCard) -> list[dict]:
    import timm
    from timm.models import get_pretrained_cfg

    model_name = parse_reference(card.reference)[1]
    entries = []
    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(model_name) if t.split(".", 1)[0] == model_name]
    default = timm.models.get_pretrained_cfg(model_name)  # the architecture's first (default) tag
    for tag in tags:
        cfg = get_pretrained_cfg(f"{model_name}.{tag}").to_dict()
        if cfg.get("num_classes", 1000) != 1000 or not (cfg.get("hf_hub_id") or cfg.get("url")):
            continue  # self-supervised (fcmae: no classifier) or 21k-class tags: not ImageNet-1k classifiers
        crop = cfg["input_size"][-1]
        # Most timm weights live on the Hub; a few legacy ones (legacy_senet154, legacy_xception) only at a GitHub
        # release URL, which timm reads with torch.hub as torchvision's.
        location = ({"hub_repo": cfg["hf_hub_id"], "hub_file": cfg.get("hf_hub_filename") or "model.safetensors"}
                    if cfg.get("hf_hub_id") else {"url": cfg["url"]})
        entries.append({
            "tag": tag, "default": default is not None and tag == default.tag, "source": "timm", **location,
            "categories": "imagenet-1k", "metrics": {}, "file_size_mb": None, "recipe": cfg.get("origin_url", ""),
            "preprocessing": {"mean": list(cfg["mean"]), "std": list(cfg["std"]),
                              "resize": int(crop / cfg["crop_pct"]), "crop": crop,
                              "interpolation": cfg["interpolation"]},
            "model_kwargs": {"num_classes": 1000}, "drop_prefixes": [], "frozen_norm_eps": None,
            "licence": cfg.get("license", ""),
        })
    if entries and not any(e["default"] for e in entries):
        entries[0]["default"] = True
    return entries


def transformers_entries(name: str) -> list[dict]:
    if name not in TRANSFORMERS_REPOS:
        return []
    repo, filename, licence = TRANSFORMERS_REPOS[name]
    return [{"tag": repo.split("/")[1], "default": True, "source": "transformers", "hub_repo": repo,
             "hub_file": filename, "categories": None, "metrics": {}, "file_size_mb": None,
             "recipe": f"https://huggingface.co/{repo}", "preprocessing": None, "model_kwargs": {},
             "drop_prefixes": [], "frozen_norm_eps": None, "licence": licence, **TRANSFORMERS_LAYOUT.get(name, {})}]


def main() -> None:
    table: dict[str, list[dict]] = {}
    for name in paperzoo.list_models():
        card = paperzoo.model_card(name)
        library = parse_reference(card.reference)[0]
        entries = {"torchvision": torchvision_entries, "timm": timm_entries}.get(library, lambda n, c: [])(name, card)
        entries = entries or transformers_entries(name)
        if entries:
            table[name] = entries
        print(f"{name}: {', '.join(e['tag'] for e in entries) or '-'}", file=sys.stderr)
    header = (f'"""Generated by scripts/generate_weights_table.py from torchvision {torchvision.__version__} and\n'
              f'timm {__import__("timm").__version__}: do not edit by hand."""\n\n')
    (OUT / "_published.py").write_text(header + "PUBLISHED = " + pprint.pformat(table, width=120, sort_dicts=False)
                                       + "\n")
    from torchvision.models import _meta

    categories = {key: list(getattr(_meta, attribute)) for key, attribute in CATEGORY_SETS.items()}
    (OUT / "_categories.py").write_text(header + "CATEGORIES = " + pprint.pformat(categories, width=110,
                                                                                   compact=True) + "\n")


if __name__ == "__main__":
    main()
