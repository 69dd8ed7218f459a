"""Architecture diagrams drawn from the model itself, at the paper's level of detail, as SVG.

A diagram is read off one forward pass of the canonical example input on the meta device: tensors there have
shapes but no storage, so a 600M-parameter network costs no memory and no arithmetic. Forward hooks on the
modules drawn as boxes record which box's output feeds which box, and a ``TorchFunctionMode`` follows the
tensors through the functional code between the boxes (a ``torch.cat`` of four branches, a residual ``+``), so
skip connections and parallel branches appear as the edges they are.

What becomes a box is the paper's level, not every layer: the network's own children, with the plain
containers (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) opened. A block defined in paperzoo (an
Inception module, a dense block, a transformer encoder block) stays one box, and the docs draw it once more,
opened, below the network: :func:`architecture_diagrams` returns the network's diagram and one per block class.
Runs of the same block in one stage collapse to one box (``Bottleneck ×3``); a normalisation or activation
that follows a layer joins its box (``Conv 3×3 · BN · ReLU``).

No Graphviz: the layout is a small layered one (the longest path from the input gives a box's row, long edges
pass through gaps reserved in the rows between, branches spread around their source) and the SVG is written
here, so the docs need no system package and the boxes can link to their blocks' diagrams.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.fx.experimental._config  # noqa: F401 (meta_nonzero_assume_all_nonzero, below)
import torchvision  # noqa: F401 (registers torch.ops.torchvision.nms)
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from paperzoo.cli import describe_output
from paperzoo.measure import stops_at_data_dependence
from paperzoo.registry import create_model, model_card

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Layers that act on each value (or normalise it) without changing the shape: drawn inside the box before them.
_POINTWISE = (
    nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU,
    nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.PReLU, nn.Softmax, nn.LogSoftmax, nn.Dropout,
    nn.Dropout2d, nn.Identity,
)
_SHORT_NAMES = {"BatchNorm1d": "BN", "BatchNorm2d": "BN", "BatchNorm3d": "BN", "LayerNorm": "LN", "GroupNorm": "GN",
                "LocalResponseNorm": "LRN", "InstanceNorm2d": "IN", "InstanceNorm1d": "IN"}
_OP_NAMES = {"cat": "concat", "concat": "concat", "concatenate": "concat", "stack": "stack", "add": "+",
             "__add__": "+", "__iadd__": "+", "__radd__": "+", "add_": "+", "sub": "−", "__sub__": "−",
             "__rsub__": "−", "mul": "×", "__mul__": "×", "__imul__": "×", "__rmul__": "×", "mul_": "×",
             "matmul": "matmul", "__matmul__": "matmul", "bmm": "matmul", "einsum": "einsum",
             "div": "÷", "__truediv__": "÷", "__getitem__": "index", "__setitem__": "write at index",
             "roll": "cyclic shift (roll)", "baddbmm": "+ matmul", "addmm": "+ matmul", "linear": "linear",
             "sigmoid": "σ", "tanh": "tanh", "chunk": "split (chunk)", "permute": "permute", "pad": "pad"}
_POSITIONS = ("arange",)  # tensors made inside forward() from the input's size
# Bookkeeping of shapes, not a step of the computation: not drawn among an attention's or a cell's inner steps.
_SHAPE_OPS = {"view", "reshape", "transpose", "contiguous", "flatten", "unflatten", "squeeze", "unsqueeze", "expand",
              "expand_as", "clone", "__getitem__", "split", "unbind", "to", "type", "float", "detach", "repeat",
              "__get__", "size", "dim", "t", "narrow", "select"}
_MAX_STEP_NODES = 40
_MAX_OP_NODES = 40  # functional merges drawn as nodes; beyond this (a solver's loop) tensors just carry their sources
# A module called at up to this many places gets a box at each (U-Net's max-pool: 4); one called more often is in a
# loop (a decoder's step, a detection head per pyramid level) and is drawn once, with its call count.
_MAX_USES = 4


def _is_container(module: nn.Module) -> bool:
    return type(module) in _CONTAINERS


def _is_paperzoo(module: nn.Module) -> bool:
    return type(module).__module__.startswith("paperzoo.")


def _is_generic_group(module: nn.Module) -> bool:
    """A shared paperzoo layer made of plain torch layers only (``ConvNormAct``): drawn as one box whose label
    lists its layers, not as a block of its own."""
    children = list(module.children())
    if _is_attention(module):  # it opens into its steps instead (scores, softmax, weighted sum)
        return False
    return (type(module).__module__.startswith("paperzoo.layers") and 0 < len(children) <= 4
            and all(not list(c.children()) and not _is_paperzoo(c) for c in children))


def _is_attention(module: nn.Module) -> bool:
    """An attention module of paperzoo's (``MultiHeadAttention``, Swin's ``WindowAttention``): drawn opened into
    its functional steps, which its boxes alone would hide."""
    return _is_paperzoo(module) and type(module).__name__.endswith("Attention")


def expandable(module: nn.Module) -> bool:
    """Whether a box stands for one of paperzoo's own blocks, which the docs draw opened as well."""
    return _is_paperzoo(module) and any(True for _ in module.children()) and not _is_generic_group(module)


def _pair(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "×".join(map(str, value)) if len(set(value)) > 1 else f"{value[0]}×{value[0]}"
    return f"{value}×{value}"


def _stride(value: Any) -> str:
    values = set(value) if isinstance(value, (tuple, list)) else {value}
    return "" if values == {1} or values == {None} else "/" + "×".join(map(str, sorted(values)))


def leaf_label(module: nn.Module) -> str:
    """A short name for a torch layer, with the hyper-parameters a paper's table would give."""
    name = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = module.kernel_size if len(module.kernel_size) > 1 else module.kernel_size[0]
        kernel_text = "×".join(map(str, kernel)) if isinstance(kernel, tuple) else str(kernel)
        label = ("ConvT " if module.transposed else "Conv ") + kernel_text + _stride(module.stride)
        if module.groups > 1:
            label += " dw" if module.groups == module.in_channels == module.out_channels else f" g{module.groups}"
        if any(d > 1 for d in module.dilation):
            label += f" d{max(module.dilation)}"
        return label
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        kind = "MaxPool" if "Max" in name else "AvgPool"
        stride = module.stride if module.stride is not None else module.kernel_size
        return f"{kind} {_pair(module.kernel_size)}{_stride(stride)}"
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = module.output_size
        kind = "Max" if "Max" in name else "Avg"
        if size in (1, (1, 1), [1, 1]):
            return f"Global{kind}Pool"
        return f"Adaptive{kind}Pool →{_pair(size)}"
    if isinstance(module, nn.Embedding):
        return f"Embedding {module.num_embeddings}×{module.embedding_dim}"
    if isinstance(module, nn.RNNBase):
        label = f"{module.mode if module.mode in ('LSTM', 'GRU') else 'RNN'} {module.input_size}→{module.hidden_size}"
        if module.num_layers > 1:
            label += f" ×{module.num_layers}"
        return label + (" bi" if module.bidirectional else "")
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return f"Dropout {module.p:g}"
    if isinstance(module, nn.Upsample):
        return f"Upsample {module.mode}"
    return _SHORT_NAMES.get(name, name)


def _count(params: int) -> str:
    if params >= 1e6:
        return f"{params / 1e6:.1f}M"
    if params >= 1e3:
        return f"{params / 1e3:.1f}k"
    return str(params)


@dataclass
class Node:
    """One box: a module (or a run of equal blocks), a functional merge, the input or the output."""

    id: int
    kind: str  # "input", "output", "module", "op"
    title: str
    path: str = ""  # the dotted module name below the traced root ("" for the root's inputs and outputs)
    parent: str = ""  # the dotted name of the container it sits in (runs of blocks only merge within one)
    module: nn.Module | None = field(default=None, repr=False)
    params: int = 0
    shape: str = ""  # what it outputs, without the batch dimension
    calls: int = 0
    repeat: int = 1
    order: int = 0  # position in execution order (first call)
    block: bool = False  # one of paperzoo's blocks, drawn opened elsewhere
    members: list[str] = field(default_factory=list)
    use: tuple[int, int] = (1, 1)  # this box is the k-th of n places in the data flow where one module is called


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[tuple[int, int]]
    traced: bool = True
    note: str = ""
    output: str = ""  # the shapes the traced call returned, batch included ("(2, 1000)")

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def display_modules(root: nn.Module, opened: frozenset[int] = frozenset()) -> list[tuple[str, str, nn.Module]]:
    """The modules drawn as boxes below ``root``: its children, with plain containers (and the modules whose id
    is in ``opened``) opened, as ``(dotted name, containing container's name, module)`` in registration order."""
    found: list[tuple[str, str, nn.Module]] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if _is_container(child) or id(child) in opened:
                visit(child, path)
            else:
                found.append((path, prefix, child))

    visit(root, "")
    return found


def _tensors(value: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(value)
    return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]


def describe_shape(value: Any, batch_size: int) -> str:
    """``64×56×56`` for a tensor of shape (batch, 64, 56, 56); several tensors separated by commas."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {describe_shape(v, batch_size)}" for k, v in value.items())
    tensors = _tensors(value)

    def one(t: torch.Tensor) -> str:
        dims = list(t.shape)
        if dims and dims[0] == batch_size:
            dims = dims[1:]
        return "×".join(map(str, dims)) if dims else "scalar"

    text = ", ".join(one(t) for t in tensors[:2])
    return text + (", …" if len(tensors) > 2 else "")


class _Trace:
    """The bookkeeping of one traced forward call: which box produced each tensor, and the edges found."""

    def __init__(self, batch_size: int, every_op: bool = False) -> None:
        self.batch_size = batch_size
        self.every_op = every_op  # each functional step a node (an attention's or a recurrent cell's inner steps)
        self.attention = False  # the traced module's own forward calls scaled_dot_product_attention
        self.gate_names: tuple[str, ...] = ()  # a recurrent cell's gates, in the order its weights stack them
        self.kept_every_box = False  # a value-dependent step (NMS) was taken to keep every box
        self.keep_boxes = True  # whether to take them so (see _keep_every_box)
        self.input_tensors: list[tuple[int, torch.Tensor]] = []
        self.nodes: list[Node] = []
        self.edges: dict[tuple[int, int], None] = {}
        self.sources: dict[int, tuple[torch.Tensor, frozenset[int]]] = {}
        self.depth = 0
        self.clock = 0
        self.first_inputs: dict[int, tuple[tuple, dict]] = {}
        self.op_nodes: dict[tuple[str, frozenset[int]], int] = {}
        self.uses: dict[int, list[Node]] = {}  # id(module) → its boxes, one per place in the data flow

    def recurs(self, value: Any, node: Node) -> bool:
        """Whether ``value`` comes from one of ``node``'s module's own earlier calls through functional code
        alone (an LSTM cell's state, an ODE solver's next point): a recurrence, drawn as one box with its call
        count. A value that passed through another box (U-Net's max-pool, called again after the next level's
        convolutions) is a new place in the data flow, drawn as a box of its own."""
        own = {n.id for n in self.uses[id(node.module)]}
        frontier = {s for _, sources in self.sources_of(value) for s in sources}
        seen: set[int] = set()
        while frontier:
            current = frontier.pop()
            if current in own:
                return True
            seen.add(current)
            if self.nodes[current].kind == "op":  # look through functional merges, never through another box
                frontier |= {a for a, b in self.edges if b == current and a not in seen}
        return False

    def add_node(self, **kwargs: Any) -> Node:
        self.clock += 1
        node = Node(id=len(self.nodes), order=self.clock, **kwargs)
        self.nodes.append(node)
        return node

    def sources_of(self, value: Any) -> list[tuple[torch.Tensor, frozenset[int]]]:
        found = []
        for t in _tensors(value):
            entry = self.sources.get(id(t))
            if entry is not None and entry[0] is t:
                found.append((t, entry[1]))
        return found

    def mark(self, value: Any, sources: frozenset[int]) -> None:
        for t in _tensors(value):
            self.sources[id(t)] = (t, sources)

    def connect(self, value: Any, node: Node) -> None:
        for _, sources in self.sources_of(value):
            for source in sources:
                if source != node.id:
                    self.edges.setdefault((source, node.id), None)

    def on_op(self, func: Callable, args: tuple, kwargs: dict, out: Any) -> None:
        name = getattr(func, "__name__", str(func))
        if name == "scaled_dot_product_attention":
            self.attention = True
        if self.every_op:
            self.on_step(func, name, args, kwargs, out)
            return
        if name == "__setitem__" or (name.endswith("_") and not name.startswith("__")):
            out = args[0]  # written in place (``keep[indices] = True``): the tensor now carries what was written
        if not _tensors(out):
            return
        found = self.sources_of((args, kwargs))
        sources = frozenset().union(*(s for _, s in found)) if found else frozenset()
        if not sources and name in _POSITIONS:
            # Positions 0..T-1 (a position embedding's input) come from the token input's length, not from a box.
            sources = frozenset(i for i, t in self.input_tensors
                                if not t.is_floating_point() and out.numel() in tuple(t.shape)[1:])
        if not sources:
            return
        looping = any(self.nodes[s].calls > 1 for s in sources)
        if len(sources) > 1 and not looping and len(self.op_nodes) < _MAX_OP_NODES:
            key = (name, sources)
            if key not in self.op_nodes:
                node = self.add_node(kind="op", title=_OP_NAMES.get(name, name))
                node.calls = 1
                self.op_nodes[key] = node.id
                for source in sources:
                    self.edges.setdefault((source, node.id), None)
            node = self.nodes[self.op_nodes[key]]
            node.shape = describe_shape(out, self.batch_size)
            self.mark(out, frozenset({node.id}))
        else:
            self.mark(out, sources)

    def sources_union(self, value: Any) -> frozenset[int]:
        found = self.sources_of(value)
        return frozenset().union(*(s for _, s in found)) if found else frozenset()

    def step_node(self, title: str, sources: frozenset[int], shape: str) -> Node:
        node = self.add_node(kind="op", title=title, shape=shape, calls=1, path=_computing_function())
        for source in sorted(sources):
            self.edges.setdefault((source, node.id), None)
        return node

    def on_step(self, func: Callable, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        """Every functional step a node of its own (shape bookkeeping excepted), and scaled dot-product
        attention drawn as the steps it computes: scores QKᵀ/√d, the mask or bias added, softmax, the weighted
        sum of the values."""
        if name in ("__setitem__",) or (name.endswith("_") and not name.startswith("__")):
            out = args[0]
        if not _tensors(out):
            return
        sources = self.sources_union((args, kwargs))
        if not sources:  # a constant made inside (Swin's mask of the shifted pieces): it enters where it is used
            return
        unchanged = name == "pad" and out.shape == args[0].shape  # padding by nothing (a map of whole windows)
        if name in _SHAPE_OPS or unchanged or sum(n.kind == "op" for n in self.nodes) >= _MAX_STEP_NODES:
            self.mark(out, sources)
            return
        if name == "scaled_dot_product_attention":
            query, key, value = (list(args) + [kwargs.get(k) for k in ("query", "key", "value")])[:3]
            mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
            scores_shape = describe_shape(query.new_empty(*query.shape[:-1], key.shape[-2]), self.batch_size)
            last = self.step_node("scores QKᵀ/√d", self.sources_union(query) | self.sources_union(key),
                                  scores_shape)
            if mask is not None or kwargs.get("is_causal"):
                title = ("+ causal mask" if mask is None else "mask" if mask.dtype == torch.bool
                         else "+ bias / mask")
                last = self.step_node(title, frozenset({last.id}) | self.sources_union(mask), scores_shape)
            last = self.step_node("softmax", frozenset({last.id}), scores_shape)
            node = self.step_node("weighted sum of V", frozenset({last.id}) | self.sources_union(value),
                                  describe_shape(out, self.batch_size))
        elif name == "chunk" and self.gate_names and len(out) == len(self.gate_names):
            # A recurrent cell's gates (named as torch.nn's layout orders them) or an attention's Q, K, V: a node each.
            for gate, piece in zip(self.gate_names, out, strict=True):
                self.mark(piece, frozenset({self.step_node(gate, sources, describe_shape(piece, self.batch_size)).id}))
            return
        else:
            node = self.step_node(_OP_NAMES.get(name, name), sources, describe_shape(out, self.batch_size))
        self.mark(out, frozenset({node.id}))


_PACKAGE = str(Path(__file__).resolve().parent)


def _computing_function() -> str:
    """The paperzoo function whose line computes the current step (``window_partition()``,
    ``relative_position_bias()``), its box's second line; "" when it is a ``forward`` itself."""
    frame = sys._getframe(2)
    while frame is not None:
        file = frame.f_code.co_filename
        if file.startswith(_PACKAGE) and not file.endswith("diagram.py"):
            name = frame.f_code.co_name
            return "" if name == "forward" else f"{name}()"
        frame = frame.f_back
    return ""


KEPT_EVERY_BOX = ("traced on the meta device, which has shapes but no values: every score threshold and NMS is "
                  "taken to keep every box, so the box counts shown are the caps (proposals kept, detections per "
                  "image), not what a given image yields")


def _keep_every_box(func: Callable, args: tuple) -> Any:
    """What a detector's value-dependent step returns on the meta device, which holds shapes but no values:
    every box kept. NMS keeps all its boxes (``arange``), a per-class NMS sees one class (``unique``), a box read
    into Python lies at 0 (``tolist``); with PyTorch's ``meta_nonzero_assume_all_nonzero`` (a score threshold,
    ``remove_small_boxes``) this lets the trace run through a two-stage detector's second stage, so that the
    drawing shows the proposals and the features both feeding RoI pooling. ``None``: not such a step."""
    first = args[0] if args else None
    if not isinstance(first, torch.Tensor) or not first.is_meta:
        return None
    if func in (torch.ops.torchvision.nms, torch.ops.torchvision.nms.default):
        return torch.arange(first.shape[0], device=first.device)
    if func is torch.unique:
        return first.reshape(-1)[:1]
    if func is torch.Tensor.tolist:
        return torch.zeros(first.shape, dtype=first.dtype).tolist()
    return None


class _FollowFunctions(TorchFunctionMode):
    def __init__(self, trace: _Trace) -> None:
        super().__init__()
        self.trace = trace

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        stand_in = _keep_every_box(func, args) if self.trace.keep_boxes else None
        out = func(*args, **kwargs) if stand_in is None else stand_in
        self.trace.kept_every_box |= stand_in is not None
        if self.trace.depth == 0:
            self.trace.on_op(func, args, kwargs, out)
        return out


def _module_node(trace: _Trace, path: str, parent: str, module: nn.Module) -> Node:
    if _is_generic_group(module):
        title = " · ".join(leaf_label(c) for c in module.children())
    elif list(module.children()) or _is_paperzoo(module):
        title = type(module).__name__
    else:
        title = leaf_label(module)
    node = trace.add_node(kind="module", title=title, path=path, parent=parent, module=module,
                          params=sum(p.numel() for p in module.parameters()), block=expandable(module))
    node.order = 10**9  # until it is called
    return node


def trace_graph(root: nn.Module, args: tuple, kwargs: dict | None = None, *, batch_size: int,
                every_op: bool = False, names: tuple[list[str], list[str]] | None = None) -> Graph:
    """Run ``root(*args, **kwargs)`` (meta tensors) and return its boxes and edges.

    Every tensor input becomes an input node, every tensor of the result an output node.
    ``first_inputs`` of the returned graph's block nodes hold what they were first called with, so that a
    block can be traced on its own (see :func:`architecture_diagrams`). A box that the forward pass skips while
    it runs the box's parts (``self.backbone.forward_features(x)`` calls the backbone's stages, not the
    backbone) is opened, and the pass run again; so is a pass in which a module called more than
    :data:`_MAX_USES` times was drawn at each place, with that module drawn once.

    ``every_op`` draws each functional step between the boxes (an attention's scores, softmax and weighted sum; a
    recurrent cell's gates), with the module's own parameters as inputs; ``names`` are the inputs' and the
    outputs' titles (``h_{t-1}``, ``h_t``).
    """
    opened: frozenset[int] = frozenset()
    looping: frozenset[int] = frozenset()
    keep_boxes = True
    for _ in range(6):
        try:
            graph, ran = _trace_once(root, args, kwargs or {}, batch_size, opened, looping, every_op, names,
                                     keep_boxes)
        except Exception:
            # Past a value-dependent step taken to keep every box, code that reads values back (a box's corners
            # times a CPU tensor) can fail on the meta device: then the drawing stops at that step, as before.
            if not keep_boxes:
                raise
            keep_boxes = False
            continue
        bypassed = {id(n.module) for n in graph.nodes if n.kind == "module" and n.calls == 0 and n.module is not None
                    and any(id(m) in ran for m in n.module.modules())}
        calls: dict[int, list[Node]] = {}
        for n in graph.nodes:
            if n.kind == "module" and n.module is not None:
                calls.setdefault(id(n.module), []).append(n)
        loops = {key for key, nodes in calls.items() if len(nodes) > 1 and sum(n.calls for n in nodes) > _MAX_USES}
        if not bypassed and loops <= looping:
            break
        opened |= bypassed
        looping |= loops
    return graph


def _trace_once(root: nn.Module, args: tuple, kwargs: dict, batch_size: int,
                opened: frozenset[int], looping: frozenset[int] = frozenset(), every_op: bool = False,
                names: tuple[list[str], list[str]] | None = None, keep_boxes: bool = True) -> tuple[Graph, set[int]]:
    trace = _Trace(batch_size, every_op)
    trace.keep_boxes = keep_boxes
    # The pieces a chunk splits into, named: a recurrent cell's gates; an attention's packed projection's Q, K, V.
    trace.gate_names = getattr(root, "gate_names", ()) or (
        ("query Q", "key K", "value V") if every_op and _is_attention(root) else ())
    inputs = _tensors((args, kwargs))
    input_names = names[0] if names else [f"input {i}" if len(inputs) > 1 else "input" for i in range(len(inputs))]
    for title, t in zip(input_names, inputs, strict=True):
        node = trace.add_node(kind="input", title=title, shape=describe_shape(t, batch_size), calls=1)
        trace.mark(t, frozenset({node.id}))
        trace.input_tensors.append((node.id, t))
    boxes = display_modules(root, opened)
    if every_op:
        # The module's own parameters (a relative position bias table, a recurrent weight) enter its steps as
        # inputs do; those of its boxes stay inside them.
        inside = {id(p) for _, _, m in boxes for p in m.parameters()}
        for name, parameter in root.named_parameters():
            if id(parameter) not in inside:
                node = trace.add_node(kind="input", title=name, shape="×".join(map(str, parameter.shape)), calls=1)
                trace.mark(parameter, frozenset({node.id}))
    handles = []
    # A network with no submodules (a recurrent layer holding its weights itself) is one box.
    for path, parent, module in boxes or ([] if every_op else [("", "", root)]):
        trace.uses[id(module)] = [_module_node(trace, path, parent, module)]

        def before(module: nn.Module, m_args: tuple, m_kwargs: dict) -> None:
            trace.depth += 1
            if trace.depth > 1:
                return
            uses = trace.uses[id(module)]
            node = uses[-1]
            if (node.calls and id(module) not in looping and len(uses) < _MAX_USES
                    and not trace.recurs((m_args, m_kwargs), node)):
                # The same module at a new place in the data flow: a box of its own, so that every edge of the
                # flow is drawn (one box for all of U-Net's max-pools lost the path between them).
                node = trace.add_node(kind="module", title=node.title, path=node.path, parent=node.parent,
                                      module=module, params=node.params, block=node.block)
                uses.append(node)
            node.calls += 1
            if node.calls == 1:
                trace.clock += 1
                node.order = trace.clock
                if len(uses) == 1:
                    # A copy of the containers: a block may be handed a list that grows after the call (DenseNet).
                    trace.first_inputs[node.id] = tree_map(lambda leaf: leaf, (m_args, m_kwargs))
            trace.connect((m_args, m_kwargs), node)

        def after(module: nn.Module, m_args: tuple, m_kwargs: dict, output: Any) -> None:
            trace.depth -= 1
            if trace.depth > 0:
                return
            node = trace.uses[id(module)][-1]
            if node.calls == 1:
                node.shape = describe_shape(output, batch_size)
            trace.mark(output, frozenset({node.id}))

        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
    ran: set[int] = set()
    handles.append(nn.modules.module.register_module_forward_pre_hook(lambda module, _: ran.add(id(module))))
    note = ""
    try:
        with (_FollowFunctions(trace), torch.no_grad(),
              torch.fx.experimental._config.patch(meta_nonzero_assume_all_nonzero=True)):
            result = root(*args, **kwargs)
    except (NotImplementedError, RuntimeError) as error:
        # A detector's forward pass reaches a step whose output size depends on the values (a score threshold,
        # NMS), which a meta tensor cannot take: draw the network up to there.
        if not stops_at_data_dependence(error) or not ran:
            raise
        result = None
        note = ("traced on the meta device up to the first data-dependent step (score thresholds, NMS); "
                "the parts after it are drawn unconnected")
    finally:
        for handle in handles:
            handle.remove()
    outputs = [] if result is None else result.items() if isinstance(result, dict) else [("output", result)]
    if names and isinstance(result, (tuple, list)):
        outputs = list(zip(names[1], result, strict=True))
    for key, value in outputs:
        title = key if names else "output" if key == "output" else f"output[{key!r}]"
        tensors = _tensors(value)
        if not tensors:
            continue
        node = trace.add_node(kind="output", title=title, shape=describe_shape(value, batch_size), calls=1)
        trace.connect(value, node)
    # An input the call never reads (a block handed every pyramid level, of which it uses two) is not drawn.
    read = {a for a, _ in trace.edges}
    trace.nodes = [n for n in trace.nodes if n.kind != "input" or n.id in read or not trace.edges]
    if trace.kept_every_box and not note:
        note = KEPT_EVERY_BOX
    for uses in trace.uses.values():
        for k, node in enumerate(uses, 1):
            node.use = (k, len(uses))
    # Edges run forward in execution order; one that runs back is a recurrence (a cell called per time step, an
    # ODE function called by the solver), which the box's call count shows instead.
    order = {n.id: n.order for n in trace.nodes}
    edges = [(a, b) for a, b in trace.edges if order[a] < order[b]]
    graph = Graph(nodes=trace.nodes, edges=edges, output="" if result is None else describe_output(result),
                  note=note)
    graph.first_inputs = trace.first_inputs  # type: ignore[attr-defined]
    graph.attention = trace.attention  # type: ignore[attr-defined]
    return graph, ran


def structure_graph(root: nn.Module, note: str) -> Graph:
    """The boxes in registration order, chained, for a module whose forward pass could not be traced."""
    trace = _Trace(batch_size=0)
    nodes = [_module_node(trace, path, parent, module)
             for path, parent, module in display_modules(root) or [("", "", root)]]
    for i, node in enumerate(nodes):
        node.order, node.calls = i + 1, 1
    graph = Graph(nodes=trace.nodes, edges=[(a.id, b.id) for a, b in pairwise(nodes)], traced=False,
                  note=note)
    graph.first_inputs = {}  # type: ignore[attr-defined]
    return graph


def _in_out(graph: Graph) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    incoming: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    outgoing: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    for a, b in graph.edges:
        outgoing[a].append(b)
        incoming[b].append(a)
    return incoming, outgoing


def _merge_into(graph: Graph, keep: Node, gone: Node) -> None:
    """Remove ``gone``, which follows ``keep`` as its only successor, moving its outgoing edges to ``keep``."""
    graph.edges = [(keep.id if a == gone.id else a, b) for a, b in graph.edges if (a, b) != (keep.id, gone.id)]
    graph.nodes = [n for n in graph.nodes if n.id != gone.id]
    keep.shape = gone.shape or keep.shape
    keep.params += gone.params


def simplify(graph: Graph) -> Graph:
    """Fold normalisations and activations into the box before them, then collapse runs of equal boxes."""
    def chain_pairs() -> Iterator[tuple[Node, Node]]:
        incoming, outgoing = _in_out(graph)
        ordered = sorted(graph.nodes, key=lambda n: n.order)
        for node in ordered:
            if len(outgoing[node.id]) == 1:
                successor = graph.node(outgoing[node.id][0])
                if incoming[successor.id] == [node.id]:
                    yield node, successor

    changed = True
    while changed:
        changed = False
        for node, successor in chain_pairs():
            if (node.kind == "module" and successor.kind == "module" and not node.block and node.repeat == 1
                    and node.calls <= 1 and successor.calls <= 1 and node.parent == successor.parent
                    and isinstance(successor.module, _POINTWISE) and not isinstance(node.module, _POINTWISE)):
                node.title += " · " + successor.title
                node.members.append(successor.path)
                _merge_into(graph, node, successor)
                changed = True
                break
    changed = True
    while changed:
        changed = False
        for node, successor in chain_pairs():
            same = (node.kind == successor.kind == "module" and node.parent == successor.parent
                    and node.title.split(" ×")[0] == successor.title and node.calls <= 1 and successor.calls <= 1)
            if same:
                if node.repeat == 1:
                    node.members.insert(0, node.path)
                node.path = node.parent or f"{node.members[0]} … {successor.path}"
                node.repeat += successor.repeat
                node.title = f"{successor.title} ×{node.repeat}"
                node.members.append(successor.path)
                _merge_into(graph, node, successor)
                changed = True
                break
    return graph


# ----------------------------------------------------------------------------------------------- layout and SVG

_TITLE_PX, _SMALL_PX = 7.6, 6.4  # average glyph widths of the 13 px and 11 px fonts
_BOX_H, _ROW_GAP, _COL_GAP, _PAD = 54, 30, 18, 16


@dataclass
class _Place:
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = float(_BOX_H)


def _lines(node: Node) -> tuple[str, str, str]:
    if node.kind in ("input", "output"):
        return node.title, "", node.shape
    sub = node.path
    if node.kind == "module":
        if node.params:
            sub += f" · {_count(node.params)} params"
        if node.use[1] > 1:
            sub += f" · use {node.use[0]} of {node.use[1]}"
        if node.calls > 1:
            sub += f" · called {node.calls}×"
        if node.calls == 0:
            sub += " · not called by forward()"
    return node.title + (" ⊕" if node.block else ""), sub.strip(" ·"), ("→ " + node.shape) if node.shape else ""


def _layout(graph: Graph) -> tuple[dict[int, _Place], list[tuple[tuple[int, int], list[tuple[float, float]]]],
                                   float, float]:
    incoming, outgoing = _in_out(graph)
    called = sorted((n for n in graph.nodes if n.calls > 0 or n.kind != "module"), key=lambda n: n.order)
    uncalled = [n for n in graph.nodes if n.calls == 0 and n.kind == "module"]
    layer: dict[int, int] = {}
    for node in called:
        preds = [layer[p] for p in incoming[node.id] if p in layer]
        layer[node.id] = max(preds) + 1 if preds else 0
    last = max(layer.values(), default=-1)
    for node in uncalled:
        layer[node.id] = last + 1
    # Edges that skip rows pass through a thin placeholder in every row between (Sugiyama's dummy nodes).
    rows: list[list[Any]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for node in sorted(graph.nodes, key=lambda n: n.order):
        rows[layer[node.id]].append(node.id)
    routes: dict[tuple[int, int], list[Any]] = {}
    for a, b in graph.edges:
        route: list[Any] = [a]
        for r in range(layer[a] + 1, layer[b]):
            dummy = ("dummy", a, b, r)
            rows[r].append(dummy)
            route.append(dummy)
        routes[(a, b)] = route + [b]
    preds_of: dict[Any, list[Any]] = {}
    for route in routes.values():
        for u, v in pairwise(route):
            preds_of.setdefault(v, []).append(u)

    places: dict[Any, _Place] = {}
    for row in rows:
        for item in row:
            if isinstance(item, tuple):
                places[item] = _Place(w=8, h=_BOX_H)
            else:
                title, sub, shape = _lines(graph.node(item))
                width = max(len(title) * _TITLE_PX, len(sub) * _SMALL_PX, len(shape) * _SMALL_PX) + 2 * 12
                places[item] = _Place(w=max(96.0, width))
    # Order each row by the mean position of its predecessors, then place it: each box where its inputs are,
    # pushed apart where they would overlap, the row shifted to stay centred on what feeds it.
    position: dict[Any, float] = {}
    for row in rows:
        for i, item in enumerate(row):
            position[item] = i
    for r, row in enumerate(rows):
        if r:
            row.sort(key=lambda item: (sum(position[p] for p in preds_of.get(item, [])) /
                                       max(1, len(preds_of.get(item, []))) if preds_of.get(item) else position[item]))
        for i, item in enumerate(row):
            position[item] = i
    centre = 0.0
    for row in rows:
        desired = []
        for item in row:
            preds = preds_of.get(item, [])
            desired.append(sum(places[p].x for p in preds) / len(preds) if preds else centre)
        xs: list[float] = []
        for i, item in enumerate(row):
            x = desired[i]
            if i:
                x = max(x, xs[-1] + (places[row[i - 1]].w + places[item].w) / 2 + _COL_GAP)
            xs.append(x)
        if row:
            shift = sum(d - x for d, x in zip(desired, xs, strict=True)) / len(row)
            for item, x in zip(row, xs, strict=True):
                places[item].x = x + shift
    top = _PAD
    for row in rows:
        for item in row:
            places[item].y = top
        top += _BOX_H + _ROW_GAP
    left = min((p.x - p.w / 2 for p in places.values()), default=0.0)
    right = max((p.x + p.w / 2 for p in places.values()), default=0.0)
    for p in places.values():
        p.x += _PAD - left
    width = right - left + 2 * _PAD
    height = top - _ROW_GAP + _PAD
    lines = []
    for edge, route in routes.items():
        points = []
        for k, item in enumerate(route):
            p = places[item]
            if k:
                points.append((p.x, p.y))
            if k < len(route) - 1:
                points.append((p.x, p.y + p.h))
        lines.append((edge, points))
    return {k: v for k, v in places.items() if not isinstance(k, tuple)}, lines, width, height


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def block_anchor(cls: type) -> str:
    """The HTML id of a block class's opened diagram."""
    return "block-" + _slug(cls.__name__)


_STYLE = """
.pz-box{fill:var(--pz-box,#f5f7fb);stroke:var(--pz-line,#6b7a99);stroke-width:1}
.pz-block .pz-box{fill:var(--pz-block,#e3ecff);stroke:var(--pz-accent,#3f51b5);stroke-width:1.6}
.pz-io .pz-box{fill:var(--pz-io,#fff4dc);stroke:#c69026}
.pz-op .pz-box{fill:var(--pz-op,#eef7ee);stroke:#4c8c4a}
.pz-idle .pz-box{stroke-dasharray:4 3;opacity:.7}
.pz-t{font:600 13px system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;fill:var(--pz-fg,#1d2433)}
.pz-s{font:11px ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;fill:var(--pz-muted,#5a6478)}
.pz-e{fill:none;stroke:var(--pz-line,#6b7a99);stroke-width:1.2}
a .pz-box:hover{stroke-width:2.4}
"""


def render_svg(graph: Graph, *, title: str) -> str:
    """The graph as a standalone SVG; a block's box links to ``#block-<class name>``."""
    places, lines, width, height = _layout(graph)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="pz-diagram" role="img" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">',
           f"<title>{html.escape(title)}</title>",
           '<defs><marker id="pz-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7a99"/></marker></defs>',
           f"<style>{_STYLE.strip()}</style>"]
    for (a, b), points in lines:
        d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
        for (x0, y0), (x1, y1) in pairwise(points):
            if x0 == x1 or y1 - y0 < 1:
                d += f" L{x1:.1f},{y1:.1f}"
            else:
                mid = (y0 + y1) / 2
                d += f" C{x0:.1f},{mid:.1f} {x1:.1f},{mid:.1f} {x1:.1f},{y1:.1f}"
        out.append(f'<path class="pz-e" d="{d}" data-from="{a}" data-to="{b}" marker-end="url(#pz-arrow)"/>')
    for node in sorted(graph.nodes, key=lambda n: n.order):
        p = places[node.id]
        head, sub, shape = _lines(node)
        kind = {"input": "pz-io", "output": "pz-io", "op": "pz-op"}.get(node.kind, "")
        if node.block:
            kind = "pz-block"
        if node.kind == "module" and node.calls == 0:
            kind += " pz-idle"
        tip = [node.path or node.title]
        if node.members:
            tip.append("contains: " + ", ".join(node.members))
        if node.block and node.module is not None:
            tip.append(f"{type(node.module).__name__}: click to open the block")
        # The drawn graph rides along in data- attributes, so that a test can check every diagram of the built site.
        group = [f'<g class="pz-node {kind}" data-path="{html.escape(node.path)}" data-id="{node.id}" '
                 f'data-kind="{node.kind}" data-calls="{node.calls}">',
                 f"<title>{html.escape(chr(10).join(tip))}</title>",
                 f'<rect class="pz-box" x="{p.x - p.w / 2:.1f}" y="{p.y:.1f}" width="{p.w:.1f}" height="{p.h:.1f}" '
                 'rx="6"/>']
        texts = [(head, "pz-t"), (sub, "pz-s"), (shape, "pz-s")]
        texts = [(t, c) for t, c in texts if t]
        baseline = p.y + p.h / 2 - (len(texts) - 1) * 8 + 4
        for i, (text, cls) in enumerate(texts):
            group.append(f'<text class="{cls}" x="{p.x:.1f}" y="{baseline + i * 16:.1f}" text-anchor="middle">'
                         f"{html.escape(text)}</text>")
        group.append("</g>")
        if node.block and node.module is not None:
            group = [f'<a href="#{block_anchor(type(node.module))}" class="pz-link">', *group, "</a>"]
        out.extend(group)
    out.append("</svg>")
    return "\n".join(out)


@dataclass
class Diagram:
    """One drawn module: the network itself, or one of its blocks opened."""

    anchor: str  # HTML id ("network" or "block-<class>")
    title: str  # "GoogLeNet" or "InceptionModule"
    path: str  # where the drawn instance sits in the network ("" for the network)
    svg: str
    traced: bool
    note: str
    boxes: int  # boxes drawn
    output: str  # what the traced call returned ("(2, 1000)"), "" if it was not traced
    graph: Graph | None = field(default=None, repr=False)  # what was drawn


def _trace_or_describe(module: nn.Module, args: tuple | None, kwargs: dict | None, batch_size: int) -> Graph:
    if args is None:
        return structure_graph(module, "not called by the network's forward pass: its parts in registration order")
    try:
        graph = trace_graph(module, args, kwargs, batch_size=batch_size)
        if (graph.attention and _is_paperzoo(module)) or _is_attention(module):  # type: ignore[attr-defined]
            # An attention module opens into its steps: Q, K, V, the scores, their mask, softmax, the weighted sum.
            graph = trace_graph(module, args, kwargs, batch_size=batch_size, every_op=True)
        return graph
    except Exception as err:  # a model the meta device cannot run still gets its structure drawn
        return structure_graph(module, f"structure only: the meta-device forward pass failed ({type(err).__name__}: "
                                       f"{str(err).splitlines()[0] if str(err) else ''})")


def architecture_diagrams(name: str, *, max_blocks: int = 12) -> list[Diagram]:
    """The network ``name`` drawn at the paper's level, followed by each of its blocks (first instance) opened.

    Built and run on the meta device: no weights are allocated and nothing is computed.
    """
    card = model_card(name)
    batch_size = 2
    try:
        with torch.device("meta"):
            model = create_model(name).eval()
            example = card.example_input(batch_size)
    except Exception as err:  # the page still builds, and says why it has no diagram
        return [Diagram(anchor="network", title=card.architecture, path="", svg="", traced=False, boxes=0, output="",
                        note=f"no diagram: the model could not be built on the meta device ({type(err).__name__}: "
                             f"{err})")]
    args = example if isinstance(example, tuple) else (example,)  # a tuple is spread, as run_example does
    return _diagrams(model, args, batch_size, card.architecture, max_blocks)


class _OneStep(nn.Module):
    """A recurrent layer's ``cell`` as a module: one time step of its first layer, ``(W_i·x_t + b, state) →
    state``, traced to draw the gates."""

    # torch.nn's layout of the stacked gates: LSTM (and the peephole LSTM) W_i|W_f|W_g|W_o, GRU (and RNNsearch's
    # gated hidden unit) W_r|W_z|W_n.
    _GATES = {4: ("input gate i", "forget gate f", "cell input g", "output gate o"),
              3: ("reset gate r", "update gate z", "candidate n")}

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = [layer]  # in a list: the layer's parameters are read, not registered as a submodule
        weights = layer.layer_weights(0)
        self.kinds = list(weights)
        self.gate_names = self._GATES.get(weights["weight_hh"].shape[1] // weights["weight_hh"].shape[2], ())
        for name, parameter in layer.named_parameters():
            if name.endswith("_l0"):
                self.register_parameter(name.removesuffix("_l0"), parameter)

    def forward(self, input_gates: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        layer = self.layer[0]
        weights = {kind: getattr(self, kind).unsqueeze(0) for kind in self.kinds}  # one direction: (1, ...)
        return tuple(layer.cell(input_gates, tuple(state), weights))


def _is_recurrent(module: nn.Module | None) -> bool:
    return module is not None and _is_paperzoo(module) and callable(getattr(module, "cell", None)) and callable(
        getattr(module, "layer_weights", None))


def _step_diagram(layer: nn.Module, batch_size: int) -> Diagram:
    """One time step of a recurrent layer, opened into its gates."""
    step = _OneStep(layer)
    weights = layer.layer_weights(0)
    with torch.device("meta"):
        gates = torch.empty(1, batch_size, weights["weight_hh"].shape[1])
        state = [torch.empty(1, batch_size, size) for size in layer.state_sizes]
    names = (["W_i·x_t + b (every gate)", *["h_{t-1}", "c_{t-1}"][:len(state)]], ["h_t", "c_t"][:len(state)])
    graph = simplify(trace_graph(step, (gates, *state), batch_size=batch_size, every_op=True, names=names))
    label = f"{type(layer).__name__}: one time step"
    return Diagram(anchor=block_anchor(type(layer)), title=label, path="cell", svg=render_svg(graph, title=label),
                   traced=True, note="", boxes=len(graph.nodes), output="", graph=graph)


def _diagrams(model: nn.Module, args: tuple, batch_size: int, title: str, max_blocks: int) -> list[Diagram]:
    diagrams: list[Diagram] = []
    queue: list[tuple[str, str, nn.Module, tuple | None, dict | None]] = [("network", "", model, args, {})]
    seen: set[type] = {type(model)}
    steps: list[Diagram] = []
    stepped: set[type] = set()
    while queue:
        anchor, path, module, m_args, m_kwargs = queue.pop(0)
        graph = _trace_or_describe(module, m_args, m_kwargs, batch_size)
        first_inputs = graph.first_inputs  # type: ignore[attr-defined]
        # One instance of each block class is drawn opened: the first, unless a module marks the instances that
        # show more of it with ``drawn_opened = True`` (Swin's shifted windows, every second block): those first.
        for node in sorted(graph.nodes, key=lambda n: n.module is None or not any(
                getattr(m, "drawn_opened", False) for m in n.module.modules())):
            if _is_recurrent(node.module):  # an LSTM or GRU opens into its gates
                node.block = True
                if type(node.module) not in stepped:
                    stepped.add(type(node.module))
                    steps.append(_step_diagram(node.module, batch_size))
                continue
            if node.block and node.module is not None and type(node.module) not in seen:
                if len(seen) > max_blocks:
                    node.block = False
                    continue
                seen.add(type(node.module))
                inputs = first_inputs.get(node.id)
                queue.append((block_anchor(type(node.module)), ".".join(filter(None, [path, node.path])),
                              node.module, *(inputs if inputs else (None, None))))
        graph = simplify(graph)
        label = title if anchor == "network" else type(module).__name__
        diagrams.append(Diagram(anchor=anchor, title=label, path=path, svg=render_svg(graph, title=label),
                                traced=graph.traced, note=graph.note, boxes=len(graph.nodes),
                                output=graph.output, graph=graph))
    return diagrams + steps
