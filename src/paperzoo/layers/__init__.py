"""Blocks shared by three or more architectures: the generic ones every reader already knows.

A paper's own mechanism (the residual bottleneck, the inception module, dynamic routing) never lives here:
it stays in its model file, in full view. The one exception is a mechanism that three or more architectures
build on, such as MobileNetV2's inverted residual (MobileNetV2, EfficientNet, EfficientNetV2): it lives here
once, and its module says whose idea it is.
"""

from paperzoo.layers.attention import KeyValueCache, MultiHeadAttention
from paperzoo.layers.class_layers import ClassLayersMixin
from paperzoo.layers.conv import ConvNormAct
from paperzoo.layers.decoding import Hypothesis, beam_search, filter_logits, generate
from paperzoo.layers.features import FeatureInfo, stage_outputs
from paperzoo.layers.inverted_residual import InvertedResidual
from paperzoo.layers.recurrent import RecurrentLayers
from paperzoo.layers.segmentation import FCNHead, check_segmentation_target, pixelwise_cross_entropy
from paperzoo.layers.squeeze_excite import SqueezeExcite
from paperzoo.layers.stochastic_depth import StochasticDepth
from paperzoo.layers.validation import (
    check_attention_mask,
    check_detection_targets,
    check_feature_sequence,
    check_finite,
    check_image_batch,
    check_image_list,
    check_input_values,
    check_latent_batch,
    check_sequence_lengths,
    check_token_batch,
    check_token_pair,
    check_waveform_batch,
    skip_on_fx_proxies,
    values_are_known,
)

__all__ = ["ClassLayersMixin", "ConvNormAct", "FCNHead", "FeatureInfo", "Hypothesis", "InvertedResidual",
           "KeyValueCache",
           "MultiHeadAttention", "RecurrentLayers", "SqueezeExcite", "StochasticDepth", "beam_search", "filter_logits",
           "generate",
           "check_attention_mask", "check_detection_targets", "check_feature_sequence", "check_finite",
           "check_image_batch",
           "check_image_list", "check_input_values", "check_latent_batch",
           "check_segmentation_target", "check_sequence_lengths", "check_token_batch", "check_token_pair",
           "check_waveform_batch", "pixelwise_cross_entropy", "skip_on_fx_proxies", "stage_outputs", "values_are_known"]
