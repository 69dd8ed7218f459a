"""AlexNet.

Paper: "ImageNet Classification with Deep Convolutional Neural Networks", Alex Krizhevsky, Ilya Sutskever,
Geoffrey E. Hinton, NeurIPS 2012. https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html
The variant built here (torchvision's) is from "One weird trick for parallelizing convolutional neural
networks", Alex Krizhevsky, 2014. https://arxiv.org/abs/1404.5997

AlexNet won ILSVRC-2012 by a wide margin and started the deep learning era in vision. Its ideas:

* Rectified linear units, f(x) = max(0, x), instead of saturating tanh units: a four-layer net reached
  25% training error on CIFAR-10 six times faster (§3.1, Figure 1).
* A big network (60M parameters, five convolutional and three fully-connected layers) trained on GPUs.
* Overlapping max pooling: windows of z = 3 with stride s = 2, so neighbouring windows overlap (§3.4).
* Dropout (p = 0.5) in the first two fully-connected layers against over-fitting (§4.2).
* Data augmentation: random 224×224 crops with flips, and PCA colour jitter (§4.1).

Data flow (channels × size at a 224×224 input)::

    image 3×224×224
      conv1 11×11/4 → ReLU → pool1 3×3/2      64×27×27
      conv2  5×5    → ReLU → pool2 3×3/2     192×13×13
      conv3  3×3    → ReLU                   384×13×13
      conv4  3×3    → ReLU                   256×13×13
      conv5  3×3    → ReLU → pool5 3×3/2     256×6×6
      adaptive average pool to 6×6, flatten  9216
      dropout → fc6 → ReLU → dropout → fc7 → ReLU   4096
      fc8                                    1000 logits

Deviations from the 2012 paper, all torchvision's, kept so that its weights load and its outputs match:

* The single-column "one weird trick" network: 64, 192, 384, 256, 256 convolution channels instead of the
  paper's 96, 256, 384, 384, 256, and no grouped convolutions (the paper split conv2, conv4 and conv5 in
  two groups only because each half lived on its own GPU).
* No local response normalisation after conv1 and conv2 (§3.3): later work found it adds little.
* Dropout acts on the inputs of fc6 and fc7 rather than on their outputs (the paper drops out the
  outputs of the first two fully-connected layers, i.e. the inputs of fc7 and fc8).
* An adaptive average pool to 6×6 before fc6, so inputs other than 224×224 work (the smallest is 63×63).

Initialisation follows the paper (§5): weights from N(0, 0.01²), biases 1 in conv2, conv4, conv5 and the
hidden fully-connected layers (to give the ReLUs positive inputs early on), 0 elsewhere.

TorchScript: torchvision's AlexNet compiles with ``torch.jit.script``; this one does not (its input check and the
shared classifier plumbing are Python that TorchScript cannot compile, and TorchScript is deprecated upstream).
``torch.export``, ``torch.compile(fullgraph=True)`` and ``torch.fx`` capture it instead (tests/test_export.py,
tests/test_graph_capture.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from paperzoo.layers import ConvNormAct, FeatureInfo
from paperzoo.layers.classifier import ImageClassifier
from paperzoo.registry import InputSpec, ModelCard, Paper, TrainingRecipe, register

__all__ = ["AlexNet"]


class AlexNet(ImageClassifier):
    """AlexNet (torchvision's single-column variant).

    Args:
        num_classes: size of the output layer fc8; 0 leaves it out and returns fc7's features.
        in_chans: channels of the input image.
        dropout: dropout probability before fc6 and fc7 (the paper's 0.5).
    """

    min_input_size = 63  # the smallest H, W for which pool5 still sees a 3×3 window
    model_name = "alexnet"
    first_conv = "features.conv1.conv"
    classifier_name = "fc8"
    final_modules = ("features.pool5",)
    # fc6 and fc7 work on the 6×6 map, not on globally pooled features: global_pool does not apply
    head_modules = ("avgpool", "classifier")

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

        # No normalisation layers: ConvNormAct is conv → ReLU here. Overlapping pooling (§3.4): windows of
        # z = 3 with stride s = 2 overlap, which lowered top-1 error by 0.4% against z = s = 2.
        self.features = nn.Sequential(OrderedDict(
            conv1=ConvNormAct(in_chans, 64, kernel_size=11, stride=4, padding=2, norm_layer=None),  # 224 → 55
            pool1=nn.MaxPool2d(kernel_size=3, stride=2),  # 55 → 27
            conv2=ConvNormAct(64, 192, kernel_size=5, norm_layer=None),
            pool2=nn.MaxPool2d(kernel_size=3, stride=2),  # 27 → 13
            conv3=ConvNormAct(192, 384, kernel_size=3, norm_layer=None),
            conv4=ConvNormAct(384, 256, kernel_size=3, norm_layer=None),
            conv5=ConvNormAct(256, 256, kernel_size=3, norm_layer=None),
            pool5=nn.MaxPool2d(kernel_size=3, stride=2),  # 13 → 6
        ))
        # the feature levels: the last convolution at each stride (pool5 follows in forward_features)
        self.feature_info = FeatureInfo([(64, 4, "features.conv1"), (192, 8, "features.conv2"),
                                         (256, 16, "features.conv5")])
        self.level_modules = (("features.conv1",), ("features.pool1", "features.conv2"),
                              ("features.pool2", "features.conv3", "features.conv4", "features.conv5"))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.num_features = 256  # pool5's channels
        self.head_hidden_size = 4096  # fc7's, what fc8 reads
        self.classifier = nn.Sequential(OrderedDict(
            drop6=nn.Dropout(p=dropout),
            fc6=nn.Linear(256 * 6 * 6, 4096),
            relu6=nn.ReLU(inplace=True),
            drop7=nn.Dropout(p=dropout),
            fc7=nn.Linear(4096, 4096),
            relu7=nn.ReLU(inplace=True),
        ))
        self.fc8 = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        ones = {self.features.conv2.conv, self.features.conv4.conv, self.features.conv5.conv,
                self.classifier.fc6, self.classifier.fc7}
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                nn.init.constant_(module.bias, 1.0 if module in ones else 0.0)

    def init_classifier(self, fc: nn.Module) -> None:
        nn.init.normal_(fc.weight, mean=0.0, std=0.01)
        nn.init.zeros_(fc.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return x  # conv1 is the first feature level

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """pool5 map → logits ``(N, num_classes)``, or fc7's features ``(N, 4096)`` if ``pre_logits``."""
        x = self.classifier(torch.flatten(self.avgpool(x), 1))  # (N, 256, 6, 6) → (N, 9216) → (N, 4096)
        x = self.head_drop(x)
        return x if pre_logits else self.fc8(x)

@register(ModelCard(
    name="alexnet",
    architecture="AlexNet",
    task="image-classification",
    paper=Paper(
        title="ImageNet Classification with Deep Convolutional Neural Networks",
        authors="Alex Krizhevsky, Ilya Sutskever, Geoffrey E. Hinton",
        year=2012,
        url="https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html",
    ),
    innovations=(
        "ReLU non-linearities: several times faster training than saturating tanh units",
        "a deep CNN (5 conv + 3 fully-connected layers, 60M parameters) trained on GPUs",
        "overlapping max pooling (3x3 windows, stride 2)",
        "dropout in the fully-connected layers against over-fitting",
        "data augmentation: random crops, flips and PCA colour jitter",
    ),
    input=InputSpec(kind="image", shape=(3, 224, 224), min_size=AlexNet.min_input_size),
    params=61_100_840,
    params_source="torchvision.models.alexnet, counted (paper: 60M)",
    reference="torchvision.models.alexnet",
    gmacs=0.714,
    canonical=True,
    # §5: SGD, batch 128, momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 when the validation error
    # stopped improving (three times in 90 epochs).
    recipe=TrainingRecipe(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="step",
                          milestones=(0.5, 0.75), batch_size=128, source="Krizhevsky et al. 2012, §5"),
    notes="torchvision's single-column 'one weird trick' variant: no LRN, no grouped convolutions.",
))
def alexnet(**kwargs: Any) -> AlexNet:
    """AlexNet as in torchvision (the 2014 single-column variant of the 2012 network)."""
    return AlexNet(**kwargs)


if __name__ == "__main__":
    from paperzoo.cli import main

    main(["run", "alexnet"])
