"""timm's generic model tests, vendored unchanged from timm 1.0.31 (tests/test_models.py), for
tests/test_timm_interface.py, which runs them over paperzoo's classifiers.

Copyright 2019 Ross Wightman and the timm contributors; licensed under the Apache License, Version 2.0
(http://www.apache.org/licenses/LICENSE-2.0). Source: the timm-1.0.31 source distribution on PyPI.

What is timm's: the bodies of the functions below, copied verbatim (extracted by name with ``ast`` from the
source distribution's file), without their ``@pytest.mark.parametrize`` decorators, which list timm's own models.
What is ours: this docstring and the module-level names the functions read, set here as timm's test module sets
them except where marked "paperzoo:" (the adapter that swaps in paperzoo's registry).
"""
# ruff: noqa

import copy
import fnmatch
import inspect
import math
import os
from contextlib import nullcontext

import pytest
import torch
import timm
from timm.layers import Format, get_spatial_dim, get_channel_dim

# paperzoo: the adapter. timm's functions call these names; they reach paperzoo's registry.
from timm_adapter import create_model, list_models, get_pretrained_cfg_value, EARLY_POOL_MODELS

_HAS_DEVICE_CONTEXT = hasattr(torch.device, '__enter__')
torch_device = os.environ.get('TORCH_DEVICE', 'cpu')

EXCLUDE_FILTERS = ['*enormous*', '*_5b_*', '*_7b_*']

TARGET_FWD_SIZE = MAX_FWD_SIZE = 384
TARGET_BWD_SIZE = 128
MAX_BWD_SIZE = 320
MAX_FWD_OUT_SIZE = 448
TARGET_FFEAT_SIZE = 96
MAX_FFEAT_SIZE = 256



def _get_input_size(model=None, model_name='', target=None):
    if model is None:
        assert model_name, "One of model or model_name must be provided"
        input_size = get_pretrained_cfg_value(model_name, 'input_size')
        fixed_input_size = get_pretrained_cfg_value(model_name, 'fixed_input_size')
        min_input_size = get_pretrained_cfg_value(model_name, 'min_input_size')
    else:
        default_cfg = model.default_cfg
        input_size = default_cfg['input_size']
        fixed_input_size = default_cfg.get('fixed_input_size', None)
        min_input_size = default_cfg.get('min_input_size', None)
    assert input_size is not None

    if fixed_input_size:
        return input_size

    if min_input_size:
        if target and max(input_size) > target:
            input_size = min_input_size
    else:
        if target and max(input_size) > target:
            input_size = tuple([min(x, target) for x in input_size])
    return input_size


def test_model_forward(model_name, batch_size):
    """Run a single forward pass with each model"""
    model = create_model(model_name, pretrained=False)
    model.eval()

    input_size = _get_input_size(model=model, target=TARGET_FWD_SIZE)
    if max(input_size) > MAX_FWD_SIZE:
        pytest.skip("Fixed input size model > limit.")
    inputs = torch.randn((batch_size, *input_size))
    inputs = inputs.to(torch_device)
    model.to(torch_device)
    outputs = model(inputs)

    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), 'Output included NaNs'

    # Test that grad-checkpointing, if supported, doesn't cause model failures or change in output
    try:
        model.set_grad_checkpointing()
    except Exception:
        # throws if not supported, that's fine
        pass
    else:
        outputs2 = model(inputs)
        if isinstance(outputs, tuple):
            outputs2 = torch.cat(outputs2)
        assert torch.allclose(outputs, outputs2, rtol=1e-4, atol=1e-5), 'Output does not match'


def test_model_backward(model_name, batch_size):
    """Run a single forward pass with each model"""
    input_size = _get_input_size(model_name=model_name, target=TARGET_BWD_SIZE)
    if max(input_size) > MAX_BWD_SIZE:
        pytest.skip("Fixed input size model > limit.")

    model = create_model(model_name, pretrained=False, num_classes=42)
    encoder_only = model.num_classes == 0  # FIXME better approach?
    num_params = sum([x.numel() for x in model.parameters()])
    model.train()

    inputs = torch.randn((batch_size, *input_size))
    inputs = inputs.to(torch_device)
    model.to(torch_device)
    outputs = model(inputs)
    if isinstance(outputs, tuple):
        outputs = torch.cat(outputs)
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f'No gradient for {n}'
    num_grad = sum([x.grad.numel() for x in model.parameters() if x.grad is not None])

    if encoder_only:
        feat_axis = getattr(model, 'feature_dim', None)
        if feat_axis is None:
            feat_axis = get_channel_dim(getattr(model, 'output_fmt', 'NCHW'))
        output_features = getattr(model, 'out_features', None) or model.num_features
        assert outputs.shape[feat_axis] == output_features, f'encoder output dim != {output_features}'
    else:
        assert outputs.shape[-1] == 42
    assert num_params == num_grad, 'Some parameters are missing gradients'
    assert not torch.isnan(outputs).any(), 'Output included NaNs'


def _assert_model_api_contract(model, model_name, cfg_device):
    """Check parts of the model API the optimizer factory and model creation rely on, for every model."""
    from timm.models._manipulate import group_parameters

    # unknown constructor args must raise, not be silently ignored
    with torch.device(cfg_device) if _HAS_DEVICE_CONTEXT else nullcontext():
        with pytest.raises(TypeError):
            create_model(model_name, pretrained=False, device=cfg_device, not_a_model_arg=1)

    # reset_classifier keeps the current pooling by default
    if hasattr(model, 'reset_classifier'):
        param = inspect.signature(model.reset_classifier).parameters.get('global_pool')
        if param is not None:
            assert param.default is None, f'reset_classifier global_pool default is {param.default!r}, not None'

    # group_matcher() / no_weight_decay() must match the model's params
    param_names = [n for n, _ in model.named_parameters()]
    if hasattr(model, 'group_matcher'):
        groups = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
        assert len(set(groups.values())) > 1, 'group_matcher() puts all params in a single group'
    if hasattr(model, 'no_weight_decay'):
        for pattern in model.no_weight_decay():
            if any(fnmatch.fnmatch(n, pattern) for n in param_names):
                continue
            # an optional param (e.g. a class or register token) can be listed when this config doesn't use it
            obj = model
            for attr in pattern.split('.'):
                obj = getattr(obj, attr, None)
                if obj is None:
                    break
            assert obj is None, f'no_weight_decay() entry {pattern!r} matches no parameter'


def _assert_reset_classifier_preserves_parent_device_dtype(model):
    reset_classifier = getattr(model, 'reset_classifier', None)
    get_classifier = getattr(model, 'get_classifier', None)
    if not callable(reset_classifier) or not callable(get_classifier):
        return

    model.to(device='meta', dtype=torch.float64)
    expected = next(model.parameters())
    expected_training = model.training

    reset_classifier(0)
    reset_classifier(2)

    classifier = get_classifier()
    classifiers = classifier if isinstance(classifier, (tuple, list)) else (classifier,)
    parameters = [parameter for head in classifiers for parameter in head.parameters()]
    assert parameters
    assert all(parameter.device == expected.device for parameter in parameters)
    assert all(parameter.dtype == expected.dtype for parameter in parameters)
    assert all(module.training == expected_training for module in model.modules())


def _assert_frozen_survives_reset_and_resize(model_name, cfg_device, reset_pool=True):
    """reset_classifier(0, ...) and set_input_size() rebuild modules from existing weights, must keep them frozen."""
    model = create_model(model_name, pretrained=False, device=cfg_device, dtype=torch.float32)
    model.requires_grad_(False)
    reset_classifier = getattr(model, 'reset_classifier', None)
    if callable(reset_classifier):
        reset_classifier(0)
        if reset_pool and not isinstance(model, EARLY_POOL_MODELS):
            reset_classifier(0, '')
    set_input_size = getattr(model, 'set_input_size', None)
    if callable(set_input_size):
        set_input_size(img_size=tuple(2 * s for s in model.default_cfg['input_size'][-2:]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not trainable, f'frozen parameters became trainable: {trainable[:5]}'


def _assert_factory_device(model_name, cfg_device):
    """create_model(device=...) without a device context must place every param and buffer on that device."""
    model = create_model(model_name, pretrained=False, device=cfg_device, dtype=torch.float32)
    expected = torch.device(cfg_device)
    misplaced = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device != expected]
    assert not misplaced, f'tensors not created on {expected}: {misplaced[:5]}'


def _assert_dtype_change_after_forward(model, input_tensor, dtype=torch.bfloat16):
    """Converting dtype after a forward must not leave stale caches or upcast activations."""
    model.to(dtype)
    output = model(input_tensor.to(dtype))
    if isinstance(output, (tuple, list)):
        output = output[0]
    assert output.dtype == dtype, f'output dtype {output.dtype} != {dtype} after .to({dtype})'
    model.to(torch.float32)


def test_model_default_cfgs(model_name, batch_size, cfg_device):
    """Check config metadata and feature/head shapes without allocating weights on modern torch."""
    with torch.device(cfg_device) if _HAS_DEVICE_CONTEXT else nullcontext():
        model = create_model(model_name, pretrained=False, device=cfg_device, dtype=torch.float32).eval()
    _assert_model_api_contract(model, model_name, cfg_device)
    assert getattr(model, 'num_classes') >= 0
    assert getattr(model, 'num_features') > 0
    assert getattr(model, 'head_hidden_size') > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg
    assert model.in_chans == cfg['input_size'][0]

    pool_size = cfg['pool_size']
    input_size = model.default_cfg['input_size']
    output_fmt = getattr(model, 'output_fmt', 'NCHW')
    spatial_axis = get_spatial_dim(output_fmt)
    assert len(spatial_axis) == 2  # TODO add 1D sequence support
    feat_axis = get_channel_dim(output_fmt)

    if all([x <= MAX_FWD_OUT_SIZE for x in input_size]) and \
            not any([fnmatch.fnmatch(model_name, x) for x in EXCLUDE_FILTERS]):
        # output sizes only checked if default res <= 448 * 448 to keep resource down
        input_size = tuple([min(x, MAX_FWD_OUT_SIZE) for x in input_size])
        input_tensor = torch.randn((batch_size, *input_size), device=cfg_device)

        # test forward_features (always unpooled) & forward_head w/ pre_logits
        outputs = model.forward_features(input_tensor)
        outputs_pre = model.forward_head(outputs, pre_logits=True)
        assert outputs.shape[spatial_axis[0]] == pool_size[0], f'unpooled feature shape {outputs.shape} != config'
        assert outputs.shape[spatial_axis[1]] == pool_size[1], f'unpooled feature shape {outputs.shape} != config'
        assert outputs.shape[feat_axis] == model.num_features, f'unpooled feature dim {outputs.shape[feat_axis]} != model.num_features {model.num_features}'
        assert outputs_pre.shape[1] == model.head_hidden_size, f'pre_logits feature dim {outputs_pre.shape[1]} != model.head_hidden_size {model.head_hidden_size}'
        if _HAS_DEVICE_CONTEXT:
            _assert_dtype_change_after_forward(model, input_tensor)

        # test forward after deleting the classifier, output should be poooled, size(-1) == model.num_features
        model.reset_classifier(0)
        assert model.num_classes == 0, f'Expected num_classes to be 0 after reset_classifier(0), but got {model.num_classes}'
        outputs = model.forward(input_tensor)
        assert len(outputs.shape) == 2
        assert outputs.shape[1] == model.head_hidden_size, f'feature dim w/ removed classifier {outputs.shape[1]} != model.head_hidden_size {model.head_hidden_size}'
        assert outputs.shape == outputs_pre.shape, f'output shape of pre_logits {outputs_pre.shape} does not match reset_head(0) {outputs.shape}'

        # test model forward after removing pooling and classifier
        if not isinstance(model, EARLY_POOL_MODELS):
            model.reset_classifier(0, '')  # reset classifier and disable global pooling
            outputs = model.forward(input_tensor)
            assert len(outputs.shape) == 4
            assert outputs.shape[spatial_axis[0]] == pool_size[0] and outputs.shape[spatial_axis[1]] == pool_size[1]

        # test classifier deletion via __init__, output should match reset_classifier(0)
        model = create_model(
            model_name, pretrained=False, num_classes=0, device=cfg_device, dtype=torch.float32,
        ).eval()
        outputs = model.forward(input_tensor)
        assert outputs.shape == outputs_pre.shape, f'output shape w/ num_classes=0 {outputs.shape} != pre_logits {outputs_pre.shape}'
        assert outputs.shape[1] == model.head_hidden_size, f'feature dim w/ num_classes=0 {outputs.shape[1]} != model.head_hidden_size {model.head_hidden_size}'

        # test classifier + global pool deletion via __init__
        if 'pruned' not in model_name and not isinstance(model, EARLY_POOL_MODELS):
            # Explicit factory kwargs must also work without the device context.
            model = create_model(
                model_name, pretrained=False, num_classes=0, global_pool='', device=cfg_device, dtype=torch.float32,
            ).eval()
            outputs = model.forward(input_tensor)
            assert len(outputs.shape) == 4
            assert outputs.shape[spatial_axis[0]] == pool_size[0] and outputs.shape[spatial_axis[1]] == pool_size[1]

    # check classifier name matches default_cfg
    if cfg.get('num_classes', None):
        classifier = cfg['classifier']
        if not isinstance(classifier, (tuple, list)):
            classifier = classifier,
        for c in classifier:
            assert c + ".weight" in state_dict.keys(), f'{c} not in model params'

    # check first conv(s) names match default_cfg
    first_conv = cfg['first_conv']
    if isinstance(first_conv, str):
        first_conv = (first_conv,)
    assert isinstance(first_conv, (tuple, list))
    for fc in first_conv:
        assert fc + ".weight" in state_dict.keys(), f'{fc} not in model params'

    _assert_reset_classifier_preserves_parent_device_dtype(model)
    if _HAS_DEVICE_CONTEXT:
        # extra model creations are only cheap on the meta device
        _assert_factory_device(model_name, cfg_device)
        _assert_frozen_survives_reset_and_resize(model_name, cfg_device)


def test_model_default_cfgs_non_std(model_name, batch_size, cfg_device):
    """Check non-standard model config metadata and feature/head shapes."""
    with torch.device(cfg_device) if _HAS_DEVICE_CONTEXT else nullcontext():
        model = create_model(model_name, pretrained=False, device=cfg_device, dtype=torch.float32).eval()
    _assert_model_api_contract(model, model_name, cfg_device)
    assert getattr(model, 'num_classes') >= 0
    assert getattr(model, 'num_features') > 0
    assert getattr(model, 'head_hidden_size') > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg
    assert model.in_chans == cfg['input_size'][0]

    input_size = _get_input_size(model=model)
    if max(input_size) > 320:  # FIXME const
        _assert_reset_classifier_preserves_parent_device_dtype(model)
        pytest.skip("Fixed input size model > limit.")

    input_tensor = torch.randn((batch_size, *input_size), device=cfg_device)
    feat_dim = getattr(model, 'feature_dim', None)

    outputs = model.forward_features(input_tensor)
    outputs_pre = model.forward_head(outputs, pre_logits=True)
    if isinstance(outputs, (tuple, list)):
        # cannot currently verify multi-tensor output.
        pass
    else:
        if feat_dim is None:
            feat_dim = -1 if outputs.ndim == 3 else 1
        assert outputs.shape[feat_dim] == model.num_features
        assert outputs_pre.shape[1] == model.head_hidden_size
    if _HAS_DEVICE_CONTEXT:
        _assert_dtype_change_after_forward(model, input_tensor)

    # test forward after deleting the classifier, output should be poooled, size(-1) == model.num_features
    model.reset_classifier(0)
    assert model.num_classes == 0, f'Expected num_classes to be 0 after reset_classifier(0), but got {model.num_classes}'
    outputs = model.forward(input_tensor)
    if isinstance(outputs,  (tuple, list)):
        outputs = outputs[0]
    if feat_dim is None:
        feat_dim = -1 if outputs.ndim == 3 else 1
    assert outputs.shape[feat_dim] == model.head_hidden_size, 'pooled num_features != config'
    assert outputs.shape == outputs_pre.shape

    # Explicit factory kwargs must also work without the device context.
    model = create_model(
        model_name, pretrained=False, num_classes=0, device=cfg_device, dtype=torch.float32,
    ).eval()
    outputs = model.forward(input_tensor)
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    if feat_dim is None:
        feat_dim = -1 if outputs.ndim == 3 else 1
    assert outputs.shape[feat_dim] == model.num_features
    assert outputs.shape[feat_dim] == model.head_hidden_size

    # check classifier name matches default_cfg
    if cfg.get('num_classes', None):
        classifier = cfg['classifier']
        if not isinstance(classifier, (tuple, list)):
            classifier = classifier,
        for c in classifier:
            assert c + ".weight" in state_dict.keys(), f'{c} not in model params'

    # check first conv(s) names match default_cfg
    first_conv = cfg['first_conv']
    if isinstance(first_conv, str):
        first_conv = (first_conv,)
    assert isinstance(first_conv, (tuple, list))
    for fc in first_conv:
        assert fc + ".weight" in state_dict.keys(), f'{fc} not in model params'

    _assert_reset_classifier_preserves_parent_device_dtype(model)
    if _HAS_DEVICE_CONTEXT:
        # extra model creations are only cheap on the meta device
        _assert_factory_device(model_name, cfg_device)
        # non-std models don't all support global_pool=''
        _assert_frozen_survives_reset_and_resize(model_name, cfg_device, reset_pool=False)


def test_model_forward_features(model_name, batch_size):
    """Run a single forward pass with each model in feature extraction mode"""
    model = create_model(model_name, pretrained=False, features_only=True)
    model.eval()
    expected_channels = model.feature_info.channels()
    expected_reduction = model.feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 default feat levels

    input_size = _get_input_size(model=model, target=TARGET_FFEAT_SIZE)
    if max(input_size) > MAX_FFEAT_SIZE:
        pytest.skip("Fixed input size model > limit.")
    output_fmt = getattr(model, 'output_fmt', 'NCHW')
    feat_axis = get_channel_dim(output_fmt)
    spatial_axis = get_spatial_dim(output_fmt)
    import math

    outputs = model(torch.randn((batch_size, *input_size)))
    assert len(expected_channels) == len(outputs)
    spatial_size = input_size[-2:]
    # unpadded convs shrink small inputs well below input / reduction
    valid_padding = any(fnmatch.fnmatch(model_name, f) for f in ('inception_v3*', 'inception_v4*', 'inception_resnet_v2*'))
    for e, r, o in zip(expected_channels, expected_reduction, outputs):
        assert e == o.shape[feat_axis]
        assert o.shape[spatial_axis[0]] <= math.ceil(spatial_size[0] / r) + 1
        assert o.shape[spatial_axis[1]] <= math.ceil(spatial_size[1] / r) + 1
        if not valid_padding:
            # catch feature_info reductions that are off by 2x or more
            assert o.shape[spatial_axis[0]] > spatial_size[0] / (2 * r), f'feature reduction {r} too small'
            assert o.shape[spatial_axis[1]] > spatial_size[1] / (2 * r), f'feature reduction {r} too small'
        assert o.shape[0] == batch_size
        assert not torch.isnan(o).any()


def test_model_forward_intermediates(model_name, batch_size):
    """Run a single forward pass with each model in feature extraction mode"""
    model = create_model(model_name, pretrained=False)
    model.eval()
    feature_info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    expected_channels = feature_info.channels()
    expected_reduction = feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 feature levels

    input_size = _get_input_size(model=model, target=TARGET_FFEAT_SIZE)
    if max(input_size) > MAX_FFEAT_SIZE:
        pytest.skip("Fixed input size model > limit.")
    output_fmt = 'NCHW'  # NOTE output_fmt determined by forward_intermediates() arg, not model attribute
    feat_axis = get_channel_dim(output_fmt)
    spatial_axis = get_spatial_dim(output_fmt)
    import math

    inpt = torch.randn((batch_size, *input_size))
    output, intermediates = model.forward_intermediates(
        inpt,
        output_fmt=output_fmt,
    )
    assert len(expected_channels) == len(intermediates)
    spatial_size = input_size[-2:]
    for e, r, o in zip(expected_channels, expected_reduction, intermediates):
        assert e == o.shape[feat_axis]
        assert o.shape[spatial_axis[0]] <= math.ceil(spatial_size[0] / r) + 1
        assert o.shape[spatial_axis[1]] <= math.ceil(spatial_size[1] / r) + 1
        assert o.shape[0] == batch_size
        assert not torch.isnan(o).any()

    output2 = model.forward_features(inpt)
    torch.testing.assert_close(output, output2, rtol=1e-5, atol=1e-8)

    # Test that grad-checkpointing, if supported
    try:
        model.set_grad_checkpointing()
    except Exception:
        # throws if not supported, that's fine
        pass
    else:
        output3, _ = model.forward_intermediates(
            inpt,
            output_fmt=output_fmt,
        )
        torch.testing.assert_close(output, output3, rtol=1e-4, atol=1e-5)
