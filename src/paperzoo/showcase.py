"""Worked examples that show what a model does, run when the documentation site builds.

Each is a short script a reader can paste: a real photograph that ships with scikit-learn (``china.jpg``)
classified, its objects detected and drawn, its pixels segmented; a digit of scikit-learn's bundled set routed
through CapsNet's capsules and solved through ODE-Net's ODE; a grid of DCGAN samples; a sentence continued by
GPT. :func:`run` executes the
script as the page shows it, in a scratch folder, and returns what it printed and the pictures it saved, so a page
cannot show an example that fails or output that its code did not produce.

Nothing is downloaded while the site builds: the published weights are used when they are already in the
standard caches (torch.hub's ``checkpoints/``, the Hugging Face cache), else the script builds the model with
random weights, says so in its own line (``pretrained=False``), and the page's caption says it plainly. The
inputs are kept small (the detector and the segmenter at a shorter side of 320 and 192 pixels) so that all of them
cost seconds on a CPU.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Shown:
    """A worked example as it ran: the code, what it printed, the pictures it saved (``{file name: PNG bytes}``)
    and whether it used published weights."""

    code: str
    printed: str
    pictures: dict[str, bytes] = field(default_factory=dict)
    pretrained: bool = False


def cached_weights(name: str) -> bool:
    """Whether ``name``'s default published weights are in torch.hub's cache already (no download needed)."""
    from paperzoo.weights import published_weights
    from paperzoo.weights.download import torch_hub_path

    available = [w for w in published_weights(name) if w.default]
    if not available:
        return False
    if available[0].url:
        return torch_hub_path(available[0].url).exists()
    # a language model needs its tokenizer too: tokenizer.json, or GPT's vocab.json and merges.txt
    repo, weights_file = available[0].hub_repo, available[0].hub_file
    return _in_hub_cache(repo, (weights_file, "tokenizer.json")) or _in_hub_cache(
        repo, (weights_file, "vocab.json", "merges.txt"))


def _in_hub_cache(repo: str, files: tuple[str, ...]) -> bool:
    """Whether the Hugging Face cache holds every one of ``files`` of ``repo`` (no network is asked)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return all(isinstance(try_to_load_from_cache(repo, file), str) for file in files)


def _weights_line(name: str, pretrained: bool, extra: str = "") -> str:
    if pretrained:
        return f'model = paperzoo.create_model("{name}", pretrained=True{extra}).eval()'
    return (f'model = paperzoo.create_model("{name}", pretrained=False{extra}).eval()'
            "  # random weights: pretrained=True for real labels")


def _classification(name: str, pretrained: bool) -> str:
    return f'''import torch
from sklearn.datasets import load_sample_image
from torchvision.transforms.v2.functional import to_pil_image

import paperzoo
from paperzoo.weights import get_weights

photo = load_sample_image("china.jpg").copy()  # a photograph that ships with scikit-learn, (427, 640, 3) uint8
{_weights_line(name, pretrained)}
preprocess = paperzoo.transforms("{name}")  # the published weights' resize, crop and normalisation
names = get_weights("{name}").category_names  # ImageNet's 1,000 classes
x = preprocess(photo)  # (3, 224, 224), what the network sees
with torch.no_grad():
    probabilities = model(x.unsqueeze(0)).softmax(-1)[0]
to_pil_image(photo).save("{name}-china.png")
for p, k in zip(*probabilities.topk(5)):
    print(f"{{names[k]:<24}} {{p:6.2%}}")
'''


def _detection(name: str, pretrained: bool) -> str:
    masks = name.startswith("maskrcnn")
    draw_masks = ('\ndrawn = draw_segmentation_masks(image, detection["masks"][top, 0] > 0.5, alpha=0.5)'
                  if masks else "\ndrawn = image")
    return f'''import torch
from sklearn.datasets import load_sample_image
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

import paperzoo
from paperzoo.weights import get_weights

image = torch.from_numpy(load_sample_image("china.jpg").copy()).permute(2, 0, 1)  # uint8 (3, 427, 640)
# A shorter side of 320 pixels instead of the card's 800: a few seconds on a CPU.
{_weights_line(name, pretrained, ", min_size=320, max_size=480")}
names = get_weights("{name}").category_names  # COCO's classes
with torch.no_grad():
    detection = model([image / 255])[0]  # the detector normalises and resizes itself
top = detection["scores"].argsort(descending=True)[:5]
labels = [f"{{names[k]}} {{s:.2f}}" for k, s in zip(detection["labels"][top], detection["scores"][top])]{draw_masks}
drawn = draw_bounding_boxes(drawn, detection["boxes"][top], labels, width=3, colors="yellow")
to_pil_image(drawn).save("{name}-china.png")
for label, box in zip(labels, detection["boxes"][top].round().int().tolist()):
    print(f"{{label:<28}} at {{box}}")
'''


def _segmentation(name: str, pretrained: bool) -> str:
    return f'''import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_image
from torchvision.transforms.v2.functional import normalize, resize, to_pil_image
from torchvision.utils import draw_segmentation_masks

import paperzoo
from paperzoo.weights import IMAGENET_MEAN, IMAGENET_STD, get_weights

image = torch.from_numpy(load_sample_image("china.jpg").copy()).permute(2, 0, 1)  # uint8 (3, 427, 640)
{_weights_line(name, pretrained)}
names = get_weights("{name}").category_names  # PASCAL VOC's 21 classes
# A shorter side of 192 pixels instead of the weights' 520: under a second on a CPU.
x = normalize(resize(image, 192).float() / 255, IMAGENET_MEAN, IMAGENET_STD)
with torch.no_grad():
    logits = model(x.unsqueeze(0))["out"]  # (1, 21, 192, 287)
classes = F.interpolate(logits, size=image.shape[1:], mode="bilinear").argmax(1)[0]  # (427, 640)
present = classes.unique()
drawn = draw_segmentation_masks(image, classes == present[:, None, None], alpha=0.55)
to_pil_image(drawn).save("{name}-china.png")
shares = torch.stack([(classes == k).float().mean() for k in present])
for share, k in sorted(zip(shares.tolist(), present.tolist()), reverse=True)[:5]:
    print(f"{{names[k]:<12}} {{share:6.1%}} of the pixels")
'''


_DIGIT = '''digits = load_digits()  # scikit-learn's bundled handwritten digits, 8×8 in 0..16
digit = torch.tensor(digits.images[3], dtype=torch.float32)[None, None] / 16  # a "3"
x = F.interpolate(digit, size=(28, 28), mode="bilinear")  # MNIST's size'''


def _capsnet(name: str, pretrained: bool) -> str:
    return f'''import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import paperzoo

{_DIGIT}
model = paperzoo.create_model("{name}").eval()
routed = {{}}  # the last iteration's coupling coefficients c_ij, (1, 1152, 10)
model.digit_caps.routing.register_forward_hook(lambda module, args, out: routed.update(c=out[1]))
with torch.no_grad():
    lengths = model(x)[0]  # ||v_j||: the digit capsules' lengths, the class scores
coupling = routed["c"][0].view(32, 6, 6, 10).mean(0)  # each primary position's share sent to each digit
fig, axes = plt.subplots(1, 11, figsize=(13, 1.8))
axes[0].imshow(x[0, 0], cmap="gray")
axes[0].set_title("input")
for j, ax in enumerate(axes[1:]):
    ax.imshow(coupling[..., j], vmin=coupling.min(), vmax=coupling.max(), cmap="viridis")
    ax.set_title(f"{{j}}: {{lengths[j]:.2f}}")
for ax in axes:
    ax.axis("off")
fig.savefig("capsnet-routing.png", dpi=80, bbox_inches="tight")
print("capsule lengths:", [round(v, 3) for v in lengths.tolist()])
print("coupling c_ij of each primary capsule sums to 1 over the digits:",
      bool(torch.allclose(routed["c"].sum(-1), torch.ones(1))))
'''


def _odenet(name: str, pretrained: bool) -> str:
    return f'''import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import paperzoo

{_DIGIT}
for tolerance in (1e-1, 1e-3):
    torch.manual_seed(0)  # the same random weights at both tolerances
    model = paperzoo.create_model("{name}", rtol=tolerance, atol=tolerance).eval()
    with torch.no_grad():
        model(x)
    print(f"tolerance {{tolerance:g}}: the solver evaluated f {{model.ode_block.nfe}} times")
'''


def _dcgan(name: str, pretrained: bool) -> str:
    return f'''import torch
from torchvision.utils import save_image

import paperzoo

torch.manual_seed(0)
model = paperzoo.create_model("{name}").eval()  # random weights: train it (paperzoo train {name}) for faces
with torch.no_grad():
    images = model.sample(16)  # G(z), z ~ U(-1, 1): (16, 3, 64, 64) in [-1, 1]
save_image(images, "{name}-samples.png", nrow=8, normalize=True)  # stretched to the grid's own range
print(tuple(images.shape), f"in [{{images.min():.2f}}, {{images.max():.2f}}]")
'''


def _language_model(name: str, pretrained: bool) -> str:
    if pretrained:
        from paperzoo.weights import get_weights

        tokenizer = f'\ntokenizer = paperzoo.tokenizer("{get_weights(name).hub_repo}")  # from the Hub\'s cache'
        model = f'model = paperzoo.create_model("{name}", pretrained=True).eval()'
    else:
        tokenizer = ("from paperzoo.training.text_data import DEFAULT_TEXT, train_byte_level_bpe\n\n"
                     "text = DEFAULT_TEXT.read_text()  # Genesis (World English Bible), shipped with paperzoo\n"
                     "tokenizer = train_byte_level_bpe(text, 2048)  # byte-level BPE (GPT-2's), learned on that text")
        model = ("# random weights: pretrained=True (or a model trained with paperzoo train) writes real sentences\n"
                 f'model = paperzoo.create_model("{name}", pretrained=False,\n'
                 '                               vocab_size=tokenizer.get_vocab_size()).eval()')
    return f'''import torch

import paperzoo
{tokenizer}
{model}
prompt = torch.tensor([tokenizer.encode("In the beginning God created").ids])
with torch.no_grad():
    tokens = model.generate(prompt, max_new_tokens=12)  # greedy, one token a step through the key/value cache
print(tokenizer.decode(tokens[0].tolist()))
'''


# The model whose page shows each worked example, and the script that makes it.
SCRIPTS = {
    "resnet50": _classification,
    "fasterrcnn_resnet50_fpn": _detection,
    "deeplabv3_resnet50": _segmentation,
    "capsnet": _capsnet,
    "odenet": _odenet,
    "dcgan": _dcgan,
    "gpt": _language_model,
}


def run(name: str) -> Shown:
    """Run ``name``'s worked example in a scratch folder with one CPU thread, as the page shows it."""
    import torch

    from paperzoo.measure import torch_threads

    pretrained = cached_weights(name)
    code = SCRIPTS[name](name, pretrained)
    printed = io.StringIO()
    with (tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch), contextlib.redirect_stdout(printed),
          torch_threads(None)):  # the script sets its one thread; the site's build keeps its own afterwards
        torch.manual_seed(0)
        exec(compile(code, f"{name} worked example", "exec"), {"__name__": "__main__"})
        pictures = {p.name: p.read_bytes() for p in sorted(Path(scratch).glob("*.png"))}
    return Shown(code, printed.getvalue().rstrip("\n"), pictures, pretrained)


_MECHANISM = ("capsnet", "odenet", "dcgan")  # no published weights: the example shows how the model works


def section(name: str, shown: Shown) -> str:
    """The page's "On real data" part: the script, what it printed, its pictures, and what the weights were."""
    real = "real sentences" if SCRIPTS[name] is _language_model else "real labels"
    weights = ("with the published weights, found in the standard cache" if shown.pretrained else
               "with random weights (nothing is downloaded while the site builds): run with pretrained=True for "
               + real)
    if name in _MECHANISM:
        weights = "with random weights: what it shows is the mechanism, which works the same on trained ones"
    parts = ["### On real data", "", f"Run when this site was built, {weights}.", "", "```python",
             shown.code.rstrip("\n"), "```", "", "It printed:", "", "```text", shown.printed, "```", ""]
    caption = ("Published weights." if shown.pretrained else
               "Random weights: run with pretrained=True for real labels." if name not in _MECHANISM else
               "Random weights: the mechanism, not a trained model's answer.")
    for picture in shown.pictures:
        parts += [f"![What the example above saved ({caption})]({picture})", "", f"*{caption}*", ""]
    return "\n".join(parts)

