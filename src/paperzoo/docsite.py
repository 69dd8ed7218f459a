"""The documentation site's pages, generated from the registry: cards, module docstrings and the models themselves.

Nothing here lists models by hand: every module in :data:`paperzoo.registry.MODEL_MODULES` becomes an architecture
page (all its variants in one table), grouped by its canonical variant's task, so a model registered tomorrow has
its page, its place in the overviews and its diagram the next time the site is built. The one curated piece is
the learning path's order (:data:`LEARNING_PATH`), and every canonical model it does not name still appears on it.

:func:`site_files` returns ``{path: text}`` for everything under ``docs/`` that is generated; ``docs/gen_pages.py``
hands them to mkdocs (``mkdocs build --strict`` runs it), and ``python -m paperzoo.docsite OUT`` writes them to a
folder, to read or to test without mkdocs.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import inspect
import io
import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from paperzoo.registry import MODEL_MODULES, TASKS, ModelCard, model_card

TASK_TITLES = {
    "image-classification": "Image classification",
    "keypoint-detection": "Keypoint detection",
    "semantic-segmentation": "Semantic segmentation",
    "object-detection": "Object detection",
    "instance-segmentation": "Instance segmentation",
    "sequence": "Sequence models",
    "translation": "Translation",
    "language-model": "Language models",
    "masked-language-model": "Masked language models",
    "speech": "Speech",
    "generative": "Generative models",
}

# The order in which to read the zoo, from the first ideas to the ones that build on many others. Names are
# registry names (the canonical variants); a name not registered yet is left out, and every registered
# canonical model missing here is listed after the stages, so the path never hides a model.
LEARNING_PATH: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("Beginner", "Layers, losses and learned features",
     "Fully-connected and small convolutional networks: what a layer computes, what a loss asks for, and how "
     "depth builds features out of pixels.",
     ("autoencoder", "alexnet", "vgg16", "lstm", "gru")),
    ("Beginner", "Generating data",
     "Two ways to learn a distribution: a game between two networks, and a lower bound on the likelihood.",
     ("gan", "vae", "dcgan")),
    ("Intermediate", "Making depth trainable",
     "Branches, shortcuts and concatenations: the ideas that took networks from 20 to 1000 layers.",
     ("googlenet", "resnet50", "inception_v3", "densenet121", "resnext50_32x4d", "pyramidnet_272_a200")),
    ("Intermediate", "Efficient networks",
     "Doing more with fewer parameters and multiply-accumulates: squeezing, grouping, depthwise separation and "
     "scaling rules.",
     ("squeezenet1_0", "mobilenet_v2", "shufflenet_v1_g3", "shufflenet_v2_x1_0", "xception", "efficientnet_b0",
      "mixnet_s", "ghostnet", "regnet_y_400mf", "efficientnet_v2_s")),
    ("Intermediate", "Attention inside convolutional networks",
     "Letting a network re-weight its own channels and positions.",
     ("seresnet50", "cbam_resnet50", "resnest50", "coordconv_resnet50")),
    ("Intermediate", "Sequences and translation",
     "Recurrence, encoder-decoder models and the attention that freed them from a fixed-size summary.",
     ("seq2seq", "attention_seq2seq")),
    ("Advanced", "Transformers",
     "Attention is all the model needs: the Transformer and its language, speech and vision descendants.",
     ("transformer_base", "bert_base", "gpt", "wav2vec2_base", "vit_b_16", "swin_t", "convnext_tiny",
      "convnextv2_tiny")),
    ("Advanced", "Dense prediction: segmentation, detection and pose",
     "A label for every pixel, a box for every object: backbones turned into feature pyramids and heads.",
     ("fcn8s_vgg16", "unet", "deeplabv3_resnet50", "pspnet_resnet50", "hrnet_w32", "fasterrcnn_resnet50_fpn",
      "retinanet_resnet50_fpn", "ssd300_vgg16", "yolov3", "maskrcnn_resnet50_fpn")),
    ("Advanced", "Searched and unusual architectures",
     "Networks found by search, capsules that route, and a network that is a differential equation.",
     ("nasnet_a_large", "capsnet", "odenet")),
)

IMPLEMENTATION_PREFIXES = ("torchvision", "timm:", "transformers:", "torch.nn", "torch:")


@dataclass(frozen=True)
class Architecture:
    """One model module: one paper, one page."""

    module: str  # paperzoo.models.classification.googlenet
    slug: str  # googlenet: the page is models/googlenet.md
    title: str  # the docstring's first line: "GoogLeNet (Inception v1)"
    short_title: str  # "GoogLeNet"
    doc: str
    cards: tuple[ModelCard, ...]  # every variant, in the module's registration order
    canonical: ModelCard

    @property
    def task(self) -> str:
        return self.canonical.task

    @property
    def year(self) -> int:
        return self.canonical.paper.year

    @property
    def source(self) -> str:
        return "src/" + self.module.replace(".", "/") + ".py"


def architectures() -> list[Architecture]:
    """Every registered model module, in :data:`MODEL_MODULES` order."""
    found = []
    for module_name, names in MODEL_MODULES.items():
        module = importlib.import_module(module_name)
        cards = tuple(model_card(n) for n in names)
        canonical = next((c for c in cards if c.canonical), cards[0])
        doc = inspect.getdoc(module) or canonical.architecture
        title = _title(doc)
        short = re.split(r"[:,]| - ", title)[0].strip()
        acronym = re.fullmatch(r"(.{20,}) \((\S+)\)", short)  # "Variational Autoencoder (VAE)" → "VAE"
        if acronym:
            short = acronym.group(2)
        found.append(Architecture(module=module_name, slug=module_name.rsplit(".", 1)[1], title=title,
                                  short_title=short, doc=doc, cards=cards, canonical=canonical))
    return found


def _title(doc: str) -> str:
    """The docstring's first paragraph, the architecture's name; where it opens with a citation instead
    (``Faster R-CNN: "Faster R-CNN: Towards ...", Ren, ...``) the name before the citation."""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    return first.split(': "')[0].strip().rstrip(".")


# ------------------------------------------------------------------------------------- docstrings into markdown

_ROLE = re.compile(r":(?:meth|func|class|attr|mod|data|obj|exc|const):`~?([^`]+)`")
# Code spans and equations pass through untouched: ``code``, `code`, $$display$$ and $inline$ TeX (the delimiters
# of pymdownx.arithmatex: an inline equation neither starts nor ends with a space, so "$5 and $6" is no equation).
_CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`|\$\$.+?\$\$|(?<![\\$])\$(?!\s)(?:\\.|[^\\$])+?(?<!\s)\$)")


def _inline(text: str) -> str:
    """RST inline markup into markdown: roles become code, ``<`` outside code and equations is escaped."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    parts = _CODE_SPAN.split(text)
    return "".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


_BULLET = re.compile(r"\s*[*-] ")


def _item_has_blank_line(out: list[str], indent: int) -> bool:
    """Whether the list item before, the last bullet at ``indent`` in ``out``, holds a blank line."""
    blank = False
    for line in reversed(out):
        if not line.strip():
            blank = True
        elif _BULLET.match(line) and _indent(line) <= indent:
            return blank and _indent(line) == indent
    return False


def rst_to_markdown(text: str) -> str:
    """The subset of reStructuredText the model docstrings use, as markdown.

    Literal blocks (a paragraph ending in ``::`` and the indented lines after it) become fenced code blocks;
    bullet lists keep their markers with the indentation doubled (markdown nests lists at 4 spaces, RST at 2);
    ``:role:`name``` becomes ```name```. Equations (TeX between single or double dollar signs, and a display
    between two lines of two dollar signs each) keep their TeX as written, for pymdownx.arithmatex and KaTeX.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.endswith("::"):
            intro = line[:-2].rstrip()
            if intro.strip():
                out.append(" " * _indent(line) + _inline(intro.strip() + ("" if line.endswith(" ::") else ":")))
            base = _indent(line)
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
                block.append(lines[i].rstrip())
                i += 1
            while block and not block[-1]:
                block.pop()
            while block and not block[0]:
                block.pop(0)
            cut = min((_indent(b) for b in block if b.strip()), default=0)
            out += ["", "```text", *(b[cut:] for b in block), "```", ""]
            continue
        indent = _indent(line)
        if line.strip() == "$$":  # a display equation over several lines: its TeX passes as it is
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "$$"), i)
            out += [" " * (2 * indent) + b.strip() for b in lines[i:end + 1]]
            i = end + 1
            continue
        if _BULLET.match(line) and out and out[-1] and _item_has_blank_line(out, 2 * indent):
            # The item before holds a blank line (a display equation, a second paragraph): without a blank line
            # of its own this bullet would be read as that item's text, and the list would end there.
            out.append("")
        out.append(" " * (2 * indent) + _inline(line.strip()) if line.strip() else "")
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


@dataclass(frozen=True)
class DocSections:
    title: str
    paper: str  # the "Paper: ..." paragraph
    body: str  # the paper's ideas, the data-flow sketch, usage notes
    deviations: str  # the "Deviations ..." paragraph and its list
    rest: str  # what follows (initialisation, ...)


def _chunks(doc: str) -> list[str]:
    """Top-level paragraphs: a new one starts at an unindented line after a blank line; indented lines (literal
    blocks, list continuations) stay with the paragraph before them."""
    chunks: list[list[str]] = []
    blank = True
    for line in doc.splitlines():
        if blank and line.strip() and _indent(line) == 0:
            chunks.append([line])
        elif chunks:
            chunks[-1].append(line)
        blank = not line.strip()
    return ["\n".join(c).strip("\n") for c in chunks]


def split_docstring(doc: str) -> DocSections:
    """The module docstring's parts, by the anatomy every model file follows (STYLE.md, DESIGN.md)."""
    chunks = _chunks(doc)
    title = chunks[0].strip() if chunks else ""
    paper, body, deviations, rest = [], [], [], []
    state = "body"
    for chunk in chunks[1:]:
        first = chunk.lstrip()
        if state == "body" and not body and re.match(r"Papers?\b", first):
            paper.append(chunk)
        elif state == "body" and re.match(r"Deviations?\b", first):
            state = "deviations"
            deviations.append(chunk)
        elif state == "deviations" and re.match(r"[*-] ", first):
            deviations.append(chunk)
        else:
            if state == "deviations":
                state = "rest"
            (rest if state == "rest" else body).append(chunk)
    return DocSections(title, "\n\n".join(paper), "\n\n".join(body), "\n\n".join(deviations), "\n\n".join(rest))


# ----------------------------------------------------------------------------------------------- page fragments

def parity_status(card: ModelCard) -> str:
    """``parity-tested`` where an implementation is the reference, ``paper count`` where only the paper is."""
    if card.reference.startswith(IMPLEMENTATION_PREFIXES):
        return "parity-tested"
    if card.reference.startswith("paper"):
        return "paper count"
    return "published count"


def format_gmacs(gmacs: float) -> str:
    return "< 0.001" if gmacs < 0.001 else f"{gmacs:,.3f}"


def format_params(card: ModelCard) -> str:
    text = f"{card.params:,}"
    return text + f" ± {card.params_tolerance:,}" if card.params_tolerance else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _wrapping_code(text: str) -> str:
    """Code in a table cell that may break across lines (a reference with its arguments can be 300 characters
    long: on one line it pushed the table's last columns out of sight at 1400 px)."""
    return f'<span class="pz-ref">`{_cell(text)}`</span>'


def variant_table(arch: Architecture) -> str:
    rows = ["| variant | name | parameters | GMACs | input | reference | status |",
            "| --- | --- | ---: | ---: | --- | --- | --- |"]
    for card in arch.cards:
        star = " ★" if card.canonical else ""
        rows.append(f"| {_cell(card.architecture)}{star} | `{card.name}` | {format_params(card)} | "
                    f"{format_gmacs(card.gmacs)} | {_cell(card.input.describe())} | {_wrapping_code(card.reference)} | "
                    f"{parity_status(card)} |")
    return "\n".join(rows)


# Tasks whose forward pass ends in value-dependent steps (score thresholds, non-maximum suppression), which the
# meta device cannot run: it computes shapes, not the values that decide how many boxes survive.
VALUE_DEPENDENT_TASKS = ("object-detection", "instance-segmentation", "keypoint-detection")


@dataclass(frozen=True)
class Example:
    """The page's "Run it" snippet and what it printed when the site was built (``None``: not run, ``note``
    says why)."""

    code: str
    printed: str | None
    note: str = ""


def example_code(arch: Architecture, output=None) -> str:
    """The snippet: build the canonical variant, run its example input, print its size and its output's
    structure (``output``, the model's output when known, picks how to print it)."""
    import torch

    card = arch.canonical
    call = "model(*x)" if card.input.kind == "token-pairs" else "model(x)"
    comment = "  # a (source, target) pair: spread over the arguments" if card.input.kind == "token-pairs" else ""
    if card.task in VALUE_DEPENDENT_TASKS:
        show = 'print([{k: tuple(v.shape) for k, v in d.items()} for d in y])  # one dict per image'
    elif isinstance(output, dict):
        show = 'print("output:", {k: tuple(v.shape) for k, v in y.items()})'
    elif isinstance(output, (tuple, list)):
        show = 'print("output:", tuple(y[0].shape))  # y[1]: the final state, as torch.nn returns it'
    else:
        show = 'print("output:", tuple(y.shape))'
    assert output is None or isinstance(output, (torch.Tensor, dict, tuple, list)), type(output)
    return f'''import torch
import paperzoo

model = paperzoo.create_model("{card.name}").eval()
card = paperzoo.model_card("{card.name}")
x = card.example_input(batch_size=2)  # {card.input.describe()}
with torch.no_grad():
    y = {call}{comment}
print(card.architecture, f"{{paperzoo.count_parameters(model):,}} parameters")
{show}
'''


def run_example(arch: Architecture) -> Example:
    """Run the page's snippet as it stands, on the meta device (every shape computed, no arithmetic, nothing
    allocated: seconds for the whole zoo, where the CPU would take minutes), and keep what it prints. A snippet
    that fails fails the build. Detectors are not run (:data:`VALUE_DEPENDENT_TASKS`)."""
    import contextlib

    import torch

    if arch.canonical.task in VALUE_DEPENDENT_TASKS:
        return Example(example_code(arch), None, "Not run when this site was built: a detector's post-processing "
                       "(score thresholds, non-maximum suppression) depends on values, which the meta device does "
                       "not compute, and on a CPU the example takes about ten seconds.")
    # Run once (a meta forward pass is slow Python: seconds for a ResNet-50): the snippet up to its two print
    # lines, then those lines, chosen by what the model returned, in the same namespace. Together they are the code.
    *body, _, _ = example_code(arch).rstrip("\n").splitlines()
    namespace: dict = {}
    printed = io.StringIO()
    with torch.device("meta"), contextlib.redirect_stdout(printed):
        exec(compile("\n".join(body), f"{arch.slug} example", "exec"), namespace)
        code = example_code(arch, namespace["y"])
        assert code.startswith("\n".join(body) + "\n")
        exec(compile("\n".join(code.rstrip("\n").splitlines()[-2:]), f"{arch.slug} example", "exec"), namespace)
    return Example(code, printed.getvalue().rstrip("\n"))


def example_section(arch: Architecture, example: Example | None) -> str:
    card = arch.canonical
    example = example or Example(example_code(arch), None)
    parts = ["## Run it", "", "```python", example.code.rstrip("\n"), "```", ""]
    if example.printed is not None:
        parts += ["It printed, when this site was built (the snippet as it stands, run on the meta device: the "
                  "same shapes and counts as on a CPU, without the arithmetic):", "", "```text", example.printed,
                  "```", ""]
    elif example.note:
        parts += [f"*{example.note}*", ""]
    parts += [f"From a shell: `paperzoo info {card.name} --measure` prints the card with the measured parameters "
              f"and GMACs, `paperzoo run {card.name}` builds it and times one forward pass on a CPU or GPU.", ""]
    return "\n".join(parts)


def _metrics(weights) -> str:
    return "; ".join(f"{dataset}: " + ", ".join(f"{metric} {value:g}" for metric, value in values.items())
                     for dataset, values in weights.metrics.items()) or "none published"


def _preprocessing(preprocessing) -> str:
    """Short, for a table cell: ``resize 232, crop 224 (bilinear), ImageNet mean/std``."""
    from paperzoo.weights import IMAGENET_MEAN, IMAGENET_STD

    if preprocessing is None:
        return "—"
    parts = [f"resize {preprocessing.resize}"] if preprocessing.resize else []
    parts += [f"crop {preprocessing.crop}"] if preprocessing.crop else []
    text = ", ".join(parts) + (f" ({preprocessing.interpolation})" if parts else "")
    if (preprocessing.mean, preprocessing.std) == (IMAGENET_MEAN, IMAGENET_STD):
        normalise = "ImageNet mean/std"
    elif preprocessing.mean:
        normalise = f"mean {list(preprocessing.mean)}, std {list(preprocessing.std)}"
    else:
        normalise = "[0, 1]"
    return ", ".join(p for p in (text, normalise) if p)


def training_section(arch: Architecture) -> str:
    """The paper's training recipe from the cards (what ``paperzoo train`` follows) and the published weights of
    every variant (``paperzoo.weights``): tag, published metric, preprocessing, size, licence, how they were
    trained, and the line that loads them; or why there are none."""
    from paperzoo.cli import describe_recipe
    from paperzoo.weights import no_weights_reason, published_weights

    card = arch.canonical
    parts = ["## Training and weights", "", "### The paper's recipe", ""]
    recipes: dict[str, list[str]] = {}
    for variant in arch.cards:
        if variant.recipe is not None:
            recipes.setdefault(describe_recipe(variant.recipe), []).append(variant.name)
    if recipes:
        for text, names in recipes.items():
            settings, _, source = text.partition("\n")
            who = "" if len(recipes) == 1 else " (" + ", ".join(f"`{n}`" for n in names) + ")"
            source = source.removeprefix("(").removesuffix(")")
            parts += [f"- {_inline(settings)}{who}. *Source: {_inline(source)}.*"]
        trains = ("`paperzoo train " + card.name + "` follows it on a short run (the schedule's steps at the same "
                  "fractions of the run)." if card.task == "image-classification" else
                  "`paperzoo train` trains the image classifiers only, so far.")
        parts += ["", trains, ""]
    else:
        parts += ["No variant's card carries a training recipe from its paper"
                  + (" (`paperzoo train` uses AdamW with cosine decay)." if card.task == "image-classification"
                     else "."), ""]
    rows = ["| variant | weights | published metric | preprocessing | size | licence | training |",
            "| --- | --- | --- | --- | ---: | --- | --- |"]
    for variant in arch.cards:
        for weights in published_weights(variant.name):
            preprocessing = _preprocessing(weights.preprocessing) if weights.preprocessing or not weights.categories \
                else "[0, 1] (the model resizes and normalises)"
            size = f"{weights.file_size_mb:,.1f} MB" if weights.file_size_mb else "—"
            recipe = f"[how]({weights.recipe})" if weights.recipe.startswith("http") else _cell(weights.recipe)
            rows.append(f"| `{variant.name}` | `{weights.tag}`{' (default)' if weights.default else ''} | "
                        f"{_cell(_metrics(weights))} | {_cell(preprocessing)} | {size} | {_cell(weights.licence)} | "
                        f"{recipe} |")
    parts += ["### Published weights", ""]
    if len(rows) > 2:
        loaded = next(c for c in (card, *arch.cards) if published_weights(c.name))
        default = published_weights(loaded.name)[0]
        lines = [f'model = paperzoo.create_model("{loaded.name}", pretrained=True).eval()  # {default.tag}']
        if default.preprocessing is not None or default.categories:
            lines.append("preprocess = paperzoo.transforms(model)  # the preprocessing the metric was measured with")
        parts += ["The references' own files, converted on load and kept in their caches (torch.hub's, the "
                  "Hugging Face Hub's); the metrics are the ones they publish.", "", "\n".join(rows), "",
                  "```python", "import paperzoo", "", *lines, "```", ""]
    else:
        parts += [f"None published: {_inline(no_weights_reason(card.name) or '')}.", ""]
    return "\n".join(parts)


def _paper_block(card: ModelCard) -> str:
    paper = card.paper
    return (f'!!! abstract "The paper"\n    **[{_inline(paper.title)}]({paper.url})**  \n    {paper.authors}, '
            f"{paper.year}")


def config_fields_section(arch: Architecture) -> str:
    """The configuration fields that ``from_pretrained`` and ``create_model`` accept for the variants with a
    transformers reference (what ``paperzoo info NAME`` lists): the reference's name beside ours, the values that
    are checked, and the ones a new model must have; "" for an architecture without such variants."""
    from paperzoo.interop.huggingface import accepted_config_fields

    groups: dict[str, list[str]] = {}
    for variant in arch.cards:
        if fields := accepted_config_fields(variant.name):
            groups.setdefault(fields, []).append(variant.name)
    if not groups:
        return ""
    parts = ["## Configuration fields", "",
             "`paperzoo.from_pretrained(folder)` reads these fields of a transformers `config.json`, and "
             "`create_model(name, **fields)` takes them beside our own argument names; a value outside the checked "
             "ones is refused with the field, its value and what is supported.", ""]
    for fields, names in groups.items():
        read, _, rest = fields.partition("\n")
        config_class, _, mapped = read.partition(": ")
        checked, _, fresh = rest.removeprefix("checked: ").partition("; for a new model (create_model): ")
        items = re.split(r", (?![^(]*\))", mapped)  # commas inside a parenthesised explanation stay
        rows = ["| transformers field | our argument |", "| --- | --- |"]
        rows += [f"| `{theirs}` | `{ours}` |" for theirs, _, ours in (i.partition(" → ") for i in items if " → " in i)]
        derived = [i for i in items if " → " not in i]
        parts += [f"### `{config_class}`: " + ", ".join(f"`{n}`" for n in names), "", "\n".join(rows), ""]
        if derived:
            parts += [f"- Derived: `{d}`" for d in derived]
        def as_code(values: str) -> str:  # "a ∈ [x, y], b ∈ [z]": each field with its values as one code span
            return ", ".join(f"`{v}`" for v in re.split(r", (?![^\[]*\])", values) if v)

        parts += [f"- Checked: {as_code(checked)}", f"- For a new model (`create_model`): {as_code(fresh)}", ""]
    return "\n".join(parts)


def architecture_page(arch: Architecture, diagrams: list | None, repo_url: str | None = None,
                      example: Example | None = None, shown=None, worked: dict | None = None) -> str:
    """The page of one architecture: paper, key ideas, diagram, variants, how to run it, the source's account
    of the paper and its deviations, its code beside the explanation, and the API of its network class.

    ``shown``: its worked example as it ran (:mod:`paperzoo.showcase`); ``worked``: ``{task: architecture}`` of the
    pages that show one, linked from the other pages of the task."""
    sections = split_docstring(arch.doc)
    card = arch.canonical
    # The architecture's name as the page's search tag, which Material's search weighs above titles and text: a
    # search for "resnet" finds the ResNet page first, not the pages that mention ResNet in their long titles.
    parts = ["---", "tags:", f"  - {json.dumps(arch.short_title)}", "---", "", f"# {arch.title}", "",
             f"*{TASK_TITLES.get(arch.task, arch.task)}, {arch.year}. Source: `{arch.source}` "
             f"(`python -m {arch.module}` runs its example).*", "", _paper_block(card), ""]
    if sections.paper.startswith("Papers"):
        parts += [rst_to_markdown(sections.paper), ""]
    parts += ["## Key ideas", "", *(f"- {_inline(line)}" for line in card.innovations), ""]
    if diagrams is not None:
        network, *blocks = diagrams
        parts += ["## Architecture", "",
                  f"`{card.name}` at its example input, drawn from the model itself (one forward pass on the meta "
                  "device: shapes, no arithmetic). Boxes are the paper's blocks; a highlighted box (⊕) opens "
                  "below. Hover a box for its module path.", ""]
        parts += [_figure(network), ""]
        if blocks:
            parts += ["### Blocks", "", "Each block drawn opened, as one instance runs it: the first, or the one "
                      "that shows the most (Swin's shifted-window block); attention and recurrent cells open into "
                      "their steps (click a highlighted box above to open it here).", ""]
            for block in blocks:
                where = f" — as used at <code>{block.path}</code>" if block.path else ""
                parts += [f'<details class="pz-block" id="{block.anchor}">',
                          f"<summary><code>{block.title}</code>{where}</summary>",
                          _figure(block), "</details>", ""]
    parts += ["## Variants", "",
              "★ marks the canonical variant (the one the contract tests run at full size). *parity-tested*: "
              "the outputs equal the reference implementation's after converting its weights; *paper count*: "
              "the parameter count reproduces the paper's figure to its stated precision. GMACs are "
              "multiply-accumulates of one forward pass at the input shown.", "", variant_table(arch), ""]
    notes = [c for c in arch.cards if c.notes]
    if notes:
        parts += [f"- `{c.name}`: {_inline(c.notes)}" for c in notes] + [""]
    if fields := config_fields_section(arch):
        parts += [fields, ""]
    parts += [example_section(arch, example), ""]
    if shown is not None:
        from paperzoo.showcase import section

        parts += [section(card.name, shown), ""]
    elif worked and arch.task in worked:
        other = worked[arch.task]
        parts += [f"A worked example of this task on real data, with its output and pictures, is on "
                  f"[{other.short_title}'s page]({other.slug}.md#on-real-data).", ""]
    parts += [training_section(arch), ""]
    parts += ["## From the source", "", rst_to_markdown(sections.body) if sections.body else "", ""]
    parts += ["## Deviations", "",
              rst_to_markdown(sections.deviations) if sections.deviations
              else "*The module docstring has no Deviations paragraph.*", ""]
    if sections.rest:
        parts += ["## Further notes", "", rst_to_markdown(sections.rest), ""]
    parts += [code_section(arch, repo_url), ""]
    network_class = _network_class(arch)
    parts += ["## API", "", f"::: {network_class}", "    options:", "      heading_level: 3", ""]
    return "\n".join(parts)


def _network_class(arch: Architecture) -> str:
    """The dotted name of the class the canonical builder returns (built on the meta device: no weights)."""
    import torch

    from paperzoo.registry import create_model

    with torch.device("meta"):
        cls = type(create_model(arch.canonical.name))
    return f"{cls.__module__}.{cls.__qualname__}"


def _figure(diagram) -> str:
    note = f'<p class="pz-note">{diagram.note}</p>' if diagram.note else ""
    return f'<div class="pz-figure" data-diagram="{diagram.anchor}">\n{diagram.svg}\n</div>{note}'


# ------------------------------------------------------------------------------- the code beside the explanation

# Where a docstring's reference part starts (Google style): the prose before it explains, the rest the API lists.
_DOC_REFERENCE = re.compile(r"^\s*(Args|Arguments|Returns|Raises|Attributes|Yields|Shapes?|Examples?):\s*$", re.M)


@dataclass(frozen=True)
class CodeChunk:
    """A stretch of a model file: one top-level class or function (with its decorators and the comments above
    it), or the statements between them (imports, constants, the example)."""

    title: str  # "class InceptionModule", "def googlenet", "imports and constants", "constants", "the example"
    anchor: str  # the heading's id on the page: "code-class-inceptionmodule"
    first: int  # line numbers in the file, 1-based, inclusive
    last: int
    code: str
    explanation: str  # the docstring's prose, before its Args/Returns sections ("" if it has none)


def code_chunks(source: str) -> list[CodeChunk]:
    """The file after its module docstring (which the page shows above, section by section), cut at every
    top-level class and function, so that each can be read under its own explanation. The chunks cover the file
    to its last line, in order: put together they are the file."""
    import ast

    tree = ast.parse(source)
    lines = source.splitlines()
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        start = body.pop(0).end_lineno + 1
    else:
        start = 1
    groups: list[list[ast.stmt]] = []
    for node in body:
        definition = isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        if definition or not groups or _is_definition(groups[-1][0]):
            groups.append([node])
        else:
            groups[-1].append(node)
    chunks: list[CodeChunk] = []
    for index, group in enumerate(groups):
        node = group[0]
        last = len(lines) if index == len(groups) - 1 else _first_line(groups[index + 1][0]) - 1
        while last > start and not lines[last - 1].strip() and index < len(groups) - 1:
            last -= 1  # the blank lines before the next definition belong to nobody
        while start < last and not lines[start - 1].strip():
            start += 1
        code = "\n".join(lines[start - 1:last]).rstrip()
        if _is_definition(node):
            kind = "class" if isinstance(node, ast.ClassDef) else "def"
            title, anchor = f"{kind} {node.name}", f"code-{kind}-{node.name.lower().strip('_')}"
            doc = ast.get_docstring(node) or ""
            explanation = _DOC_REFERENCE.split(doc, maxsplit=1)[0].strip()
        else:
            example = any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in group)
            constants = all(isinstance(n, (ast.Assign, ast.AnnAssign)) for n in group)
            title = "the example" if example and len(group) == 1 else "imports and constants" if index == 0 \
                else "constants" if constants else "module-level code"
            anchor, explanation = "code-" + title.replace(" ", "-"), ""
        if code:
            taken = sum(c.anchor == anchor or c.anchor.startswith(anchor + "-") for c in chunks)
            chunks.append(CodeChunk(title, anchor + (f"-{taken + 1}" if taken else ""), start, last, code,
                                    explanation))
        start = last + 1
    return chunks


def _is_definition(node) -> bool:
    import ast

    return isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))


def _first_line(node) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])


def source_link(arch: Architecture, first: int, last: int, repo_url: str | None) -> str:
    """Where a stretch of the model file can be read: the repository's page of the file at those lines when the
    site names its repository (mkdocs.yml's ``repo_url``), else the file's copy published beside the page."""
    if repo_url:
        return f"{repo_url.rstrip('/')}/blob/main/{arch.source}#L{first}-L{last}"
    return f"{arch.slug}.py"


def code_section(arch: Architecture, repo_url: str | None = None) -> str:
    """The model file, definition by definition: each class's and function's own explanation (its docstring's
    prose, equations included) above the lines that implement it, numbered as in the file, with a link to the
    file at those lines. Open by default; a block folds away with a click, which keeps long pages navigable."""
    source = Path(importlib.util.find_spec(arch.module).origin).read_text()
    total = len(source.splitlines())
    parts = ["## The code", "",
             f"The whole of [`{arch.source}`]({source_link(arch, 1, total, repo_url)}) ({total} lines) after its "
             "docstring (shown above), one class or function at a time: its explanation, then the lines that "
             "compute it, numbered as in the file.", ""]
    for chunk in code_chunks(source):
        folded = chunk.title == "imports and constants"
        parts += [f"### `{chunk.title}` {{#{chunk.anchor}}}", ""]
        if chunk.explanation:
            parts += [rst_to_markdown(chunk.explanation), ""]
        where = f"lines {chunk.first}–{chunk.last}" if chunk.last > chunk.first else f"line {chunk.first}"
        parts += [f'{"???" if folded else "???+"} pz-code "{where} of {arch.slug}.py"',
                  "", f'    ```python linenums="{chunk.first}"',
                  *(f"    {line}" if line.strip() else "" for line in chunk.code.splitlines()),
                  "    ```", "", f"    [{where} in the file]({source_link(arch, chunk.first, chunk.last, repo_url)})",
                  ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------- overviews

def _link(arch: Architecture, prefix: str = "../") -> str:
    return f"[{arch.short_title}]({prefix}models/{arch.slug}.md)"


def by_category_page(archs: list[Architecture]) -> str:
    parts = ["# Models by category", "",
             f"{len(archs)} architectures, {sum(len(a.cards) for a in archs)} registered variants, by task. "
             "Parameters and GMACs are those of the canonical variant.", ""]
    for task in TASKS:
        group = sorted((a for a in archs if a.task == task), key=lambda a: (a.year, a.title))
        if not group:
            continue
        parts += [f"## {TASK_TITLES.get(task, task)}", "",
                  "| architecture | year | canonical | variants | parameters | GMACs | status |",
                  "| --- | ---: | --- | ---: | ---: | ---: | --- |"]
        for a in group:
            c = a.canonical
            parts.append(f"| {_link(a)} | {a.year} | `{c.name}` | {len(a.cards)} | {format_params(c)} | "
                         f"{format_gmacs(c.gmacs)} | {parity_status(c)} |")
        parts.append("")
    return "\n".join(parts)


def timeline_page(archs: list[Architecture]) -> str:
    """The architectures along a drawn time axis (a line down the page, a marker per year, each paper a card
    beside it; the gaps between years show), not a bulleted list."""
    parts = ["# Timeline", "", "The architectures by the year of their paper, from the LSTM (1997) to today: each "
             "year a marker on the line, each paper a card with its task and its first author.", "",
             '<div class="pz-timeline" markdown>', ""]
    years = sorted({a.year for a in archs})
    for previous, year in zip([None, *years], years, strict=False):
        empty = year - previous - 1 if previous else 0
        gap = f' data-gap="{empty} year{"s" if empty > 1 else ""} without a paper here"' if empty else ""
        parts += [f'<section class="pz-year" markdown{gap}>', "", f"## {year}", ""]
        for a in sorted((a for a in archs if a.year == year), key=lambda a: a.title):
            paper = a.canonical.paper
            authors = [name.strip() for name in paper.authors.split(",")]
            first = " and ".join(authors) if len(authors) <= 2 else f"{authors[0]} et al."
            parts += ['<div class="pz-event" markdown>', "",
                      f"**{_link(a)}** <span class=\"pz-task\">{TASK_TITLES.get(a.task, a.task)}</span>  ",
                      f"*{_inline(paper.title)}*, {first}", "", "</div>", ""]
        parts += ["</section>", ""]
    parts += ["</div>", ""]
    return "\n".join(parts)


# The years before deep learning's return (LSTM 1997, the deep autoencoder 2006) take a tenth of the width each
# year takes from 2011, where forty papers crowd into twelve years.
_CHART_SQUEEZE_BEFORE, _CHART_SQUEEZE = 2011, 0.1


def _year_to_axis(years):
    import numpy as np

    years = np.asarray(years, dtype=float)
    return np.where(years < _CHART_SQUEEZE_BEFORE,
                    _CHART_SQUEEZE_BEFORE - (_CHART_SQUEEZE_BEFORE - years) * _CHART_SQUEEZE, years)


def _axis_to_year(values):
    import numpy as np

    values = np.asarray(values, dtype=float)
    return np.where(values < _CHART_SQUEEZE_BEFORE,
                    _CHART_SQUEEZE_BEFORE - (_CHART_SQUEEZE_BEFORE - values) / _CHART_SQUEEZE, values)


def scale_chart(archs: list[Architecture]) -> str:
    """Parameters and GMACs of every variant against the year of its paper, as SVG text (matplotlib); each
    canonical variant named by a label that overlaps no other label and no dot (each label is an SVG group
    ``pz-label-<slug>``, so that the browser test can measure them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller files, searchable labels
    tasks = [t for t in TASKS if any(a.task == t for a in archs)]
    colours = dict(zip(tasks, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(2, 1, figsize=(12, 15))
    years = [a.year for a in archs]
    for ax, what, label in ((axes[0], "params", "parameters (millions)"), (axes[1], "gmacs", "GMACs")):
        ax.set_xscale("function", functions=(_year_to_axis, _axis_to_year))
        dots = []
        for a in archs:
            colour = colours[a.task]
            for card in a.cards:
                value = card.params / 1e6 if what == "params" else card.gmacs
                if value <= 0:
                    continue
                size = 46 if card.canonical else 12
                ax.scatter(card.paper.year, value, s=size, color=colour, alpha=0.9 if card.canonical else 0.45,
                           edgecolors="white", linewidths=0.5, zorder=3 if card.canonical else 2)
                dots.append((card.paper.year, value, 3.5 if card.canonical else 2.0))
        ax.set_yscale("log")
        ax.set_xlim(min(years) - 1, max(years) + 2)
        ax.set_xticks(sorted({*range(2012, max(years) + 2, 2), *(y for y in years if y < _CHART_SQUEEZE_BEFORE)}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("year of the paper (the years before 2011 drawn narrower)")
        ax.set_ylabel(label + " (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title("Parameters against year (large dots: the canonical variants, named)" if what == "params"
                     else "Multiply-accumulates of one example at the card's input", fontsize=11)
    for task in tasks:
        axes[0].scatter([], [], color=colours[task], label=TASK_TITLES.get(task, task))
    axes[0].legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.9)
    fig.tight_layout()
    for ax, what in ((axes[0], "params"), (axes[1], "gmacs")):
        points = [(a.year, v, a.short_title.split(" (")[0], a.slug) for a in archs
                  if (v := a.canonical.params / 1e6 if what == "params" else a.canonical.gmacs) > 0]
        dots = [(c.paper.year, v) for a in archs for c in a.cards
                if (v := c.params / 1e6 if what == "params" else c.gmacs) > 0]
        _name_points(fig, ax, points, dots, what)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def _name_points(fig, ax, points: list[tuple[int, float, str, str]], dots: list[tuple[int, float]],
                 prefix: str) -> None:
    """Label each point where its text overlaps no label placed before it, no dot and no legend: the nearest
    free place on rings of growing radius around the point (right and left first), in display pixels measured
    by matplotlib's renderer; a label away from its point gets a thin leader line."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() else []
    taken = [(b.x0, b.y0, b.x1, b.y1) for b in taken]
    for x, y in ax.transData.transform([(year, value) for year, value in dots]):
        taken.append((x - 4, y - 4, x + 4, y + 4))
    rings = [(r * math.cos(math.radians(a)), r * math.sin(math.radians(a)))
             for r in (7, 14, 22, 32, 44, 58, 74, 92, 112, 134)
             for a in (0, 180, 20, -20, 160, -160, 40, -40, 140, -140, 60, -60, 120, -120, 90, -90)]
    pad = 2.0
    dpi_scale = fig.dpi / 72
    for year, value, text, slug in sorted(points, key=lambda p: (p[0], -p[1])):
        px, py = ax.transData.transform((year, value))
        probe = ax.text(0, 0, text, fontsize=8)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        for dx, dy in rings:
            left = dx >= 0 or abs(dx) < 1e-6
            x0 = px + dx if left else px + dx - w
            box = (x0 - pad, py + dy - h / 2 - pad, x0 + w + pad, py + dy + h / 2 + pad)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3]
                                  for t in taken):
                break
        taken.append(box)
        near = math.hypot(dx, dy) <= 8
        annotation = ax.annotate(
            text, (year, value), xytext=(dx / dpi_scale, dy / dpi_scale), textcoords="offset points", fontsize=8,
            color="#333333", va="center", ha="left" if left else "right",
            arrowprops=None if near else {"arrowstyle": "-", "color": "#999999", "lw": 0.5, "shrinkA": 0,
                                          "shrinkB": 3})
        annotation.set_gid(f"pz-label-{prefix}-{slug}")


def scale_page(archs: list[Architecture]) -> str:
    parts = ["# Parameters and compute", "",
             "Every registered variant's parameter count and multiply-accumulates (GMACs, one forward pass of one "
             "example at the card's input, measured with `torch.utils.flop_counter`) against the year of its "
             "paper. Generated from the model cards with matplotlib.", "",
             "![Parameters and GMACs against year](scale.svg)", "",
             "| architecture | year | canonical | parameters | GMACs | input |",
             "| --- | ---: | --- | ---: | ---: | --- |"]
    for a in sorted(archs, key=lambda a: (a.year, a.title)):
        c = a.canonical
        parts.append(f"| {_link(a)} | {a.year} | `{c.name}` | {format_params(c)} | {format_gmacs(c.gmacs)} | "
                     f"{_cell(c.input.describe())} |")
    return "\n".join(parts) + "\n"


def learning_path_page(archs: list[Architecture]) -> str:
    by_name = {card.name: a for a in archs for card in a.cards}
    canonical = {a.canonical.name: a for a in archs}
    placed: set[str] = set()
    parts = ["# Learning path", "",
             "A reading order through the zoo, from beginner to advanced: each stage uses ideas from the ones "
             "before. Read a model's page, then its source file top to bottom; run its example "
             "(`python -m paperzoo.models...`) and change something.", ""]
    step = 0
    for level, title, why, names in LEARNING_PATH:
        present = [by_name[n] for n in names if n in by_name and by_name[n].slug not in placed]
        if not present:
            continue
        parts += [f"## {level}: {title}", "", why, ""]
        for a in present:
            step += 1
            placed.add(a.slug)
            parts.append(f"{step}. **{_link(a)}** ({a.year}): {_inline(a.canonical.innovations[0])}")
        parts.append("")
    rest = [a for name, a in sorted(canonical.items(), key=lambda kv: (kv[1].year, kv[0])) if a.slug not in placed]
    if rest:
        parts += ["## Also in the zoo", "", "Registered since the path above was written; read them where their "
                  "year and task fit.", ""]
        for a in rest:
            parts.append(f"- **{_link(a)}** ({a.year}, {TASK_TITLES.get(a.task, a.task).lower()}): "
                         f"{_inline(a.canonical.innovations[0])}")
        parts.append("")
    return "\n".join(parts)


def _table_from_rows(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(str(row.get(c, ""))) for c in columns) + " |")
    return "\n".join(lines)


def benchmarks_page(root: Path) -> str:
    """The measured results under ``benchmarks/results`` (CSV, JSON or markdown files), or a page that says
    that nothing has been measured yet. Nothing is estimated or filled in."""
    results = root / "benchmarks" / "results"
    files = sorted(p for p in results.glob("*") if p.suffix in (".csv", ".json", ".md")) if results.is_dir() else []
    # Its nine-column tables need the width of the page's table of contents, which lists only the tables anyway.
    parts = ["---", "hide:", "  - toc", "---", "", "# Benchmarks", "",
             "Side-by-side speed of paperzoo's models and their reference implementations, the same weights in "
             "both, as measured by `paperzoo bench` (or `benchmarks/compare.py`) and stored in `benchmarks/results/`: "
             "medians of interleaved repeats and the ratio ours / reference (> 1: ours is slower). The numbers "
             "belong to the machine named above each table.", ""]
    if not files:
        parts += ['!!! note "Not yet measured"',
                  "    No results are stored in `benchmarks/results/` yet, so there is nothing to show: this page "
                  "lists the measurements once they exist. No number on this site is estimated.", ""]
        return "\n".join(parts)
    for path in files:
        parts += [f"## {path.stem.replace('_', ' ')}", "", f"From `benchmarks/results/{path.name}`.", ""]
        if path.suffix == ".md":
            parts.append(path.read_text())
        elif path.suffix == ".csv":
            with path.open(newline="") as handle:
                parts.append(_table_from_rows(list(csv.DictReader(handle))))
        else:
            data = json.loads(path.read_text())
            rows = data.get("results", data.get("rows")) if isinstance(data, dict) else data
            if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
                parts.append(_table_from_rows(rows))
            else:
                parts += ["```json", json.dumps(data, indent=2), "```"]
        parts.append("")
    return "\n".join(parts)


def index_page(archs: list[Architecture]) -> str:
    variants = sum(len(a.cards) for a in archs)
    tasks = [TASK_TITLES.get(t, t).lower() for t in TASKS if any(a.task == t for a in archs)]
    return f"""# paperzoo

Landmark neural networks in PyTorch, each written so that a student can learn the paper from its file alone, and
each proven equal to its reference implementation or, where none exists, to its paper's configuration and
parameter count. This site is generated from the code: today it holds **{len(archs)} architectures** and
**{variants} registered variants** ({", ".join(tasks)}).

## How to read it

- [Models by category](overview/by-category.md) and the [timeline](overview/timeline.md) list every architecture;
  [parameters and compute](overview/scale.md) plots their size against their year.
- The [learning path](overview/learning-path.md) is an order to read them in, from beginner to advanced.
- An architecture's page gives the paper, its key ideas, a diagram drawn from the model itself (open a block by
  clicking it), the variants with their parameter counts, GMACs and parity status, the paper's training recipe
  and the published weights with their metrics, a snippet that runs it (and what it printed when this site was
  built), the source file's account of the paper, every deviation from it, and the file itself, class by class
  under each one's explanation.
- The [API reference](api/index.md) is generated from the docstrings.

## Quick start

```python
import torch
import paperzoo

model = paperzoo.create_model("resnet50").eval()
x = paperzoo.model_card("resnet50").example_input(batch_size=2)
with torch.no_grad():
    logits = model(x)  # (2, 1000)
```

## Building this site

```bash
pip install -e ".[docs]" && mkdocs build --strict
```

writes the site to `site/` (`mkdocs serve` serves it while you edit). Every page under *Architectures* and
*Overview* is generated by `paperzoo.docsite` from the registry when the site is built.
"""


API_PAGES = {
    "api/index.md": ("The public API", "Everything `import paperzoo` offers.",
                     ["paperzoo.registry.create_model", "paperzoo.registry.list_models", "paperzoo.registry.model_card",
                      "paperzoo.weights.transforms", "paperzoo.interop.loading.load_weights",
                      "paperzoo.interop.huggingface.from_pretrained", "paperzoo.interop.huggingface.tokenizer",
                      "paperzoo.interop.export.export_weights", "paperzoo.interop.export.save_pretrained",
                      "paperzoo.measure.count_parameters"]),
    "api/registry.md": ("Registry and model cards", "", ["paperzoo.registry"]),
    "api/measure.md": ("Measuring", "", ["paperzoo.measure"]),
    "api/weights.md": ("Published weights", "", ["paperzoo.weights"]),
    "api/interop.md": ("Weight conversion", "", ["paperzoo.interop", "paperzoo.interop.loading",
                                                 "paperzoo.interop.huggingface", "paperzoo.interop.export"]),
    "api/cli.md": ("Command line", "", ["paperzoo.cli"]),
    "api/diagram.md": ("Architecture diagrams", "", ["paperzoo.diagram"]),
    "api/docsite.md": ("This site's generator", "", ["paperzoo.docsite"]),
}


def api_pages() -> dict[str, str]:
    """mkdocstrings pages: the public API, the shared layers and the training package, module by module."""
    import pkgutil

    import paperzoo.layers
    import paperzoo.training

    pages = dict(API_PAGES)
    for package, path, title in ((paperzoo.layers, "api/layers.md", "Shared layers"),
                                 (paperzoo.training, "api/training.md", "Training")):
        modules = [package.__name__] + [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
        pages[path] = (title, "", modules)
    out = {}
    for path, (title, intro, objects) in pages.items():
        body = [f"# {title}", ""] + ([intro, ""] if intro else [])
        for obj in objects:
            body += [f"::: {obj}", ""]
        out[path] = "\n".join(body)
    return out


def summary(archs: list[Architecture], api: Iterable[str]) -> str:
    """The navigation, for mkdocs-literate-nav."""
    lines = ["* [Home](index.md)", "* Overview",
             "    * [Models by category](overview/by-category.md)", "    * [Timeline](overview/timeline.md)",
             "    * [Parameters and compute](overview/scale.md)", "    * [Learning path](overview/learning-path.md)",
             "    * [Benchmarks](overview/benchmarks.md)", "* Architectures"]
    for task in TASKS:
        group = sorted((a for a in archs if a.task == task), key=lambda a: a.short_title.lower())
        if group:
            lines.append(f"    * {TASK_TITLES.get(task, task)}")
            lines += [f"        * [{a.short_title}](models/{a.slug}.md)" for a in group]
    lines.append("* API reference")
    for path in api:
        lines.append(f"    * [{API_PAGES.get(path, (_api_title(path),))[0]}]({path})")
    return "\n".join(lines) + "\n"


def _api_title(path: str) -> str:
    return {"api/layers.md": "Shared layers", "api/training.md": "Training"}.get(path, path)


def site_files(root: Path | str = ".", *, diagrams: bool = True, repo_url: str | None = None,
               examples: bool = True) -> dict[str, str | bytes]:
    """Every generated page (and the chart, and a copy of each model file beside its page),
    ``{path under docs/: text}``.

    ``diagrams=False`` leaves the architecture diagrams out (a quick build for checking pages and links);
    ``repo_url`` (mkdocs.yml's) makes the code sections link to the repository's files at their lines;
    ``examples=False`` leaves out the worked examples on real data (:mod:`paperzoo.showcase`, seconds on a CPU)
    and their pictures (PNG bytes).
    """
    from paperzoo import showcase
    from paperzoo.diagram import architecture_diagrams

    archs = architectures()
    files = {"index.md": index_page(archs),
             "overview/by-category.md": by_category_page(archs),
             "overview/timeline.md": timeline_page(archs),
             "overview/scale.md": scale_page(archs),
             "overview/scale.svg": scale_chart(archs),
             "overview/learning-path.md": learning_path_page(archs),
             "overview/benchmarks.md": benchmarks_page(Path(root))}
    worked = {a.task: a for a in archs if a.canonical.name in showcase.SCRIPTS and a.task != "image-classification"
              or a.canonical.name == "resnet50"}
    for arch in archs:
        drawn = architecture_diagrams(arch.canonical.name) if diagrams else None
        shown = showcase.run(arch.canonical.name) if examples and arch.canonical.name in showcase.SCRIPTS else None
        for picture, data in shown.pictures.items() if shown else ():
            files[f"models/{picture}"] = data
        files[f"models/{arch.slug}.md"] = architecture_page(arch, drawn, repo_url, run_example(arch), shown,
                                                            worked if examples else None)
        files[f"models/{arch.slug}.py"] = Path(importlib.util.find_spec(arch.module).origin).read_text()
    api = api_pages()
    files.update(api)
    files["SUMMARY.md"] = summary(archs, api)
    return files


def makeExtension(**kwargs):  # noqa: N802 (the name Python-Markdown looks for)
    """A Python-Markdown extension (``markdown_extensions: [paperzoo.docsite]`` in mkdocs.yml) that reads the
    reStructuredText roles of the docstrings (``:class:`ModelCard```) as code, for the API reference."""
    from markdown import Extension
    from markdown.preprocessors import Preprocessor

    class Roles(Preprocessor):
        def run(self, lines: list[str]) -> list[str]:
            return [_ROLE.sub(lambda m: f"`{m.group(1)}`", line) for line in lines]

    class RolesExtension(Extension):
        def extendMarkdown(self, md) -> None:  # noqa: N802 (Python-Markdown's API)
            md.preprocessors.register(Roles(md), "paperzoo-rst-roles", 25)

    return RolesExtension(**kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperzoo.docsite",
                                     description="Write the documentation site's generated pages to a folder.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (for benchmarks/results)")
    parser.add_argument("--no-diagrams", action="store_true")
    parser.add_argument("--no-examples", action="store_true", help="leave out the worked examples on real data")
    args = parser.parse_args(argv)
    for path, text in site_files(args.root, diagrams=not args.no_diagrams, examples=not args.no_examples).items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
