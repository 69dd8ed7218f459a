"""Blocks shared by three or more architectures: the generic ones every reader already knows.

A paper's own mechanism (the residual bottleneck, the inception module, dynamic routing) never lives here:
it stays in its model file, in full view.
"""

from paperzoo.layers.conv import ConvNormAct
from paperzoo.layers.features import FeatureInfo
from paperzoo.layers.squeeze_excite import SqueezeExcite
from paperzoo.layers.stochastic_depth import StochasticDepth
from paperzoo.layers.validation import check_image_batch, check_latent_batch

__all__ = ["ConvNormAct", "FeatureInfo", "SqueezeExcite", "StochasticDepth", "check_image_batch", "check_latent_batch"]
