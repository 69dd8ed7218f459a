"""The documentation site: its generator (pages from the registry, diagrams from the models), the strict mkdocs
build with the README's command, a page for every canonical model, and a real browser reading the built site."""

from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn

import paperzoo
from paperzoo import diagram, docsite, showcase
from paperzoo.registry import MODEL_MODULES, ModelCard
from weights_helpers import caches, place_in_hub_cache  # noqa: F401 (caches: a fixture, used by name)

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("PAPERZOO_SCREENSHOTS", ROOT / "build" / "docs-screenshots"))


# --------------------------------------------------------------------------------------- the page generator


@pytest.fixture(scope="module")
def archs() -> list[docsite.Architecture]:
    return docsite.architectures()


def test_one_architecture_per_model_module_with_its_canonical_variant(archs):
    assert [a.module for a in archs] == list(MODEL_MODULES)
    canonical = {a.canonical.name for a in archs}
    assert canonical == set(paperzoo.list_models(canonical_only=True))
    assert len({a.slug for a in archs}) == len(archs), "two model modules would share a page"


def test_architecture_page_has_every_part_the_issue_asks_for(archs):
    for arch in archs:
        page = docsite.architecture_page(arch, diagrams=None)
        card = arch.canonical
        front_matter, page = page.split("\n---\n\n", 1)  # the search tag, then the page
        assert front_matter == f"---\ntags:\n  - {json.dumps(arch.short_title)}"
        assert page.startswith(f"# {arch.title}\n")
        assert f"[{docsite._inline(card.paper.title)}]({card.paper.url})" in page and card.paper.authors in page
        assert str(card.paper.year) in page
        for heading in ("## Key ideas", "## Variants", "## Run it", "## From the source", "## Deviations", "## API"):
            assert heading in page, f"{arch.slug}: no {heading!r}"
        deviations = page.split("## Deviations", 1)[1].split("\n## ", 1)[0]
        assert "Deviation" in deviations and "no Deviations paragraph" not in deviations, (
            f"{arch.module}: the module docstring has no Deviations paragraph to show")
        for line in card.innovations:
            assert docsite._inline(line) in page
        for variant in arch.cards:  # the variant table: one row per registered variant
            row = next(r for r in page.splitlines() if f"| `{variant.name}` |" in r)
            assert f"{variant.params:,}" in row and docsite.format_gmacs(variant.gmacs) in row
            assert docsite.parity_status(variant) in row
        assert f'paperzoo.create_model("{card.name}")' in page


def test_example_prints_on_the_page_what_it_prints_on_a_cpu(archs, capsys):
    """The "Run it" snippet is run when the site is built, on the meta device, and its printed output goes on the
    page; run here for real on the CPU, the same snippet prints the same lines (two quick models of two output
    kinds: a classifier's tensor, and a recurrent layer's (output, state) tuple)."""
    for arch in (a for a in archs if a.slug in ("squeezenet", "gru")):
        example = docsite.run_example(arch)
        assert f'paperzoo.create_model("{arch.canonical.name}")' in example.code
        exec(compile(example.code, f"{arch.slug} snippet", "exec"), {})
        assert capsys.readouterr().out.rstrip("\n") == example.printed, arch.slug
        assert f"{arch.canonical.params:,} parameters" in example.printed
    page = docsite.architecture_page(arch, diagrams=None, example=example)
    assert f"```text\n{example.printed}\n```" in page


def test_parity_status_follows_the_reference():
    def card(reference: str) -> ModelCard:
        return ModelCard(name="x", architecture="X", task="image-classification",
                         paper=paperzoo.Paper("t", "a", 2000, "u"), innovations=(), input=paperzoo.InputSpec(
                             "image", (3, 8, 8)), params=1, params_source="", reference=reference, gmacs=0.0)

    assert docsite.parity_status(card("torchvision.models.resnet50")) == "parity-tested"
    assert docsite.parity_status(card("timm:seresnet50")) == "parity-tested"
    assert docsite.parity_status(card("transformers:BertModel")) == "parity-tested"
    assert docsite.parity_status(card("torch.nn.LSTM")) == "parity-tested"
    assert docsite.parity_status(card("paper")) == "paper count"
    assert docsite.parity_status(card("ultralytics model summary")) == "published count"


def test_rst_docstring_becomes_markdown():
    text = ("Data flow::\n\n    image 3×224×224\n      conv 7×7\n\nSee :meth:`Net.forward` and ``x < y``; 2 < 3.\n\n"
            "* a point that\n  continues\n\n  * a nested point\n")
    md = docsite.rst_to_markdown(text)
    assert "Data flow:\n\n```text\nimage 3×224×224\n  conv 7×7\n```" in md
    assert "`Net.forward`" in md and ":meth:" not in md
    assert "``x < y``" in md and "2 &lt; 3" in md  # no raw "<" outside code: it would open an HTML tag
    assert "* a point that\n    continues" in md and "\n    * a nested point" in md


def test_equations_reach_the_page_as_tex_untouched():
    """A docstring's TeX passes the RST conversion as written (no "<" escaped inside it), a display equation in a
    bullet stays its own paragraph (it does not run into the next sentence), and arithmatex hands it to KaTeX in
    its container, escaped only as HTML."""
    import markdown

    text = ("* The box is\n\n  $$b_w = p_w e^{t_w}, \\quad p(y_i \\mid y_{<i})$$\n\n  The sigmoid keeps "
            "$\\sigma(t_x) < 1$; 2 < 3 and `a<b`.\n* $h_{t-1}$ and $x_\\ell = H_\\ell([x_0, \\dots, x_{\\ell-1}])$.\n\n"
            "  $$\n  p(y_i \\mid y_{<i}) = g(y_{i-1}, s_i, c_i) \\\\\n  a_{ij} = \\hat u_{j|i} \\cdot v_j\n  $$\n")
    md = docsite.rst_to_markdown(text)
    assert "* The box is\n\n    $$b_w = p_w e^{t_w}, \\quad p(y_i \\mid y_{<i})$$\n\n    The sigmoid keeps" in md
    assert "$\\sigma(t_x) < 1$" in md and "2 &lt; 3" in md and "`a<b`" in md
    assert "`a<b`.\n\n* $h_{t-1}$" in md  # a blank line ends the item that holds the display: the list goes on
    assert "* $h_{t-1}$ and $x_\\ell = H_\\ell([x_0, \\dots, x_{\\ell-1}])$." in md
    display = ("    $$\n    p(y_i \\mid y_{<i}) = g(y_{i-1}, s_i, c_i) \\\\\n"
               "    a_{ij} = \\hat u_{j|i} \\cdot v_j\n    $$")
    assert display in md
    assert docsite._inline("costs $5 and $6 < $7") == "costs $5 and $6 &lt; $7"  # dollars, not an equation
    html = markdown.markdown(md, extensions=["pymdownx.arithmatex", docsite.makeExtension()],
                             extension_configs={"pymdownx.arithmatex": {"generic": True}})
    assert '<div class="arithmatex">\\[b_w = p_w e^{t_w}, \\quad p(y_i \\mid y_{&lt;i})\\]</div>' in html
    assert '<span class="arithmatex">\\(\\sigma(t_x) &lt; 1\\)</span>' in html
    assert '<span class="arithmatex">\\(x_\\ell = H_\\ell([x_0, \\dots, x_{\\ell-1}])\\)</span>' in html
    assert ('<div class="arithmatex">\\[\np(y_i \\mid y_{&lt;i}) = g(y_{i-1}, s_i, c_i) \\\\\na_{ij} = \\hat u_{j|i} '
            '\\cdot v_j\n\\]</div>') in html
    assert html.count("<li>") == 2, "the display ended the list: the second bullet became the first one's text"
    assert not raw_tex(PageText.of(html).prose)
    plain = docsite.rst_to_markdown("* one\n  more\n* two\n  * nested\n  * nested too\n* three\n")
    assert plain == "* one\n    more\n* two\n    * nested\n    * nested too\n* three\n"  # tight lists stay tight


def test_site_renders_equations_with_its_own_katex():
    """mkdocs.yml turns arithmatex on and loads KaTeX from the site itself: every stylesheet and script it names is
    a file under docs/, none a URL (a reader may be offline), and the vendored copy has its fonts and licence."""
    import yaml

    class Loader(yaml.SafeLoader):  # mkdocs.yml may hold !!python/name tags; this test reads only plain keys
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)
    extensions = {next(iter(e)) if isinstance(e, dict) else e: e for e in config["markdown_extensions"]}
    assert extensions["pymdownx.arithmatex"] == {"pymdownx.arithmatex": {"generic": True}}
    assets = config["extra_css"] + config["extra_javascript"]
    for asset in assets:
        assert "//" not in asset and (ROOT / "docs" / asset).is_file(), asset
    assert {"vendor/katex/katex.min.css", "vendor/katex/katex.min.js", "vendor/katex/contrib/auto-render.min.js",
            "javascripts/katex-init.js"} <= set(assets)
    assert assets.index("vendor/katex/katex.min.js") < assets.index("javascripts/katex-init.js")
    katex = ROOT / "docs" / "vendor" / "katex"
    fonts = set(re.findall(r"url\((fonts/[^)]+\.woff2)\)", (katex / "katex.min.css").read_text()))
    assert fonts and all((katex / font).is_file() for font in fonts)
    assert "MIT" in (katex / "LICENSE").read_text()
    assert not re.search(r"https?://", (ROOT / "docs" / "javascripts" / "katex-init.js").read_text())


def test_api_reference_reads_rst_roles_as_code():
    import markdown

    html = markdown.markdown("The card (:class:`~paperzoo.registry.ModelCard`) and ``x``.",
                             extensions=[docsite.makeExtension()])
    assert "<code>paperzoo.registry.ModelCard</code>" in html and ":class:" not in html


def test_docstring_is_split_by_the_anatomy():
    doc = ("Net.\n\nPaper: \"T\", A, 2000.\n\nThe idea.\n\nDeviations from the paper:\n\n* one\n  more\n* two\n\n"
           "Initialisation as the reference.")
    sections = docsite.split_docstring(doc)
    assert sections.title == "Net."
    assert sections.paper.startswith("Paper:")
    assert sections.body == "The idea."
    assert sections.deviations == "Deviations from the paper:\n\n* one\n  more\n* two"
    assert sections.rest == "Initialisation as the reference."


def test_overviews_list_every_architecture(archs):
    pages = {"category": docsite.by_category_page(archs), "timeline": docsite.timeline_page(archs),
             "scale": docsite.scale_page(archs), "path": docsite.learning_path_page(archs),
             "nav": docsite.summary(archs, docsite.api_pages())}
    for arch in archs:
        for name, page in pages.items():
            assert f"models/{arch.slug}.md" in page, f"the {name} page leaves out {arch.slug}"
    path = pages["path"]
    assert path.index("## Beginner") < path.index("## Intermediate") < path.index("## Advanced")


def test_timeline_is_drawn_along_a_line_not_listed(archs):
    """Issue 24 ("the timeline is a list"): one marked section per year in order, the papers as cards inside it,
    the empty years between said; no bulleted list is left."""
    page = docsite.timeline_page(archs)
    assert not re.search(r"^\s*[-*] ", page, flags=re.M), "still a bulleted list"
    years = [int(y) for y in re.findall(r"^## (\d{4})$", page, flags=re.M)]
    assert years == sorted({a.year for a in archs})
    assert page.count('<section class="pz-year" markdown') == len(years)
    assert page.count('<div class="pz-event" markdown>') == len(archs)
    assert 'data-gap="8 years without a paper here"' in page  # 1997 (LSTM) to 2006 (the deep autoencoder)
    assert "Sepp Hochreiter and Jürgen Schmidhuber" in page


def test_learning_path_keeps_models_it_does_not_name(archs, monkeypatch):
    monkeypatch.setattr(docsite, "LEARNING_PATH", docsite.LEARNING_PATH[:1])
    page = docsite.learning_path_page(archs)
    assert "## Also in the zoo" in page
    for arch in archs:
        assert f"models/{arch.slug}.md" in page


def test_chart_is_an_svg_of_every_canonical_model(archs):
    svg = docsite.scale_chart(archs)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    for arch in archs:
        assert arch.short_title.split(" (")[0] in svg


def test_benchmarks_page_shows_only_what_was_measured(tmp_path):
    page = docsite.benchmarks_page(tmp_path)
    assert "Not yet measured" in page
    assert not re.search(r"\d+(\.\d+)? ?(ms|img/s|s\b)", page), "no measurement exists, so no number may appear"
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "cpu.csv").write_text("model,ours_ms,reference_ms\nresnet50,101.5,99.8\n")
    (results / "gpu.json").write_text(json.dumps([{"model": "vgg16", "ours_ms": 3.2}]))
    page = docsite.benchmarks_page(tmp_path)
    assert "Not yet measured" not in page
    assert "| model | ours_ms | reference_ms |" in page and "| resnet50 | 101.5 | 99.8 |" in page
    assert "| vgg16 | 3.2 |" in page


# ------------------------------------------------------------------------------------------------ the diagrams


class _Branches(nn.Module):
    """Two branches concatenated, then a residual sum: the shape of an Inception module and a ResNet block."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(4, 2, 1)
        self.right = nn.Sequential(nn.Conv2d(4, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.left(x), self.right(x)], dim=1) + x


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2)
        self.blocks = nn.Sequential(_Branches(), _Branches(), _Branches())
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def _titles(graph: diagram.Graph) -> dict[str, diagram.Node]:
    return {n.title: n for n in graph.nodes}


def test_trace_finds_branches_and_merges():
    with torch.device("meta"):
        block = _Branches()
        graph = diagram.trace_graph(block, (torch.randn(2, 4, 8, 8),), batch_size=2)
    names = {n.id: (n.path or n.title) for n in graph.nodes}
    edges = {(names[a], names[b]) for a, b in graph.edges}
    assert {("input", "left"), ("input", "right.0"), ("left", "concat"), ("right.2", "concat"),
            ("concat", "+"), ("input", "+"), ("+", "output")} <= edges
    graph = diagram.simplify(graph)
    titles = _titles(graph)
    assert "Conv 3×3 · BN · ReLU" in titles  # a conv's normalisation and activation join its box
    assert titles["Conv 3×3 · BN · ReLU"].shape == "2×8×8"
    assert titles["output"].shape == "4×8×8"


def test_runs_of_a_block_collapse_and_blocks_are_expandable():
    with torch.device("meta"):
        net = _Net()
        graph = diagram.simplify(diagram.trace_graph(net, (torch.randn(2, 3, 17, 17),), batch_size=2))
    titles = _titles(graph)
    run = titles["_Branches ×3"]
    assert run.repeat == 3 and run.path == "blocks" and not run.block  # a test class, not a paperzoo block
    assert [t for t in titles if t not in ("input", "output")] == ["Conv 3×3/2", "_Branches ×3", "Linear 4→5"]
    svg = diagram.render_svg(graph, title="net")
    ET.fromstring(svg)  # well-formed
    assert svg.count('class="pz-node') == len(graph.nodes)


def test_recurrent_calls_are_counted_not_drawn_backwards():
    class Unrolled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(5):
                x = torch.tanh(self.cell(x))
            return x

    with torch.device("meta"):
        graph = diagram.trace_graph(Unrolled(), (torch.randn(2, 4),), batch_size=2)
    cell = next(n for n in graph.nodes if n.path == "cell")
    assert cell.calls == 5
    order = {n.id: n.order for n in graph.nodes}
    assert all(order[a] < order[b] for a, b in graph.edges)


def test_a_module_run_through_its_parts_is_opened():
    class Bypass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential()
            self.backbone.add_module("first", nn.Linear(3, 3))
            self.backbone.add_module("second", nn.Linear(3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone.second(self.backbone.first(x))  # never calls self.backbone itself

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Bypass()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner.backbone.second(self.inner.backbone.first(x))

    with torch.device("meta"):
        graph = diagram.trace_graph(Holder(), (torch.randn(2, 3),), batch_size=2)
    paths = [n.path for n in graph.nodes if n.kind == "module"]
    assert paths == ["inner.backbone.first", "inner.backbone.second"]
    assert all(n.calls == 1 for n in graph.nodes)


def test_a_forward_pass_that_fails_still_gets_its_structure():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("not on the meta device")

    graph = diagram._trace_or_describe(Broken(), (torch.randn(2, 2),), {}, batch_size=2)
    assert not graph.traced and "not on the meta device" in graph.note
    assert [n.path for n in graph.nodes] == ["a", "b"] and len(graph.edges) == 1


def test_googlenet_draws_inception_modules_as_boxes_that_open():
    network, *blocks = diagram.architecture_diagrams("googlenet")
    assert network.traced and network.output == "(2, 1000)"
    assert 8 <= network.boxes <= 30, "the network is drawn at the paper's level, not layer by layer"
    assert 'href="#block-inceptionmodule"' in network.svg and "InceptionModule ×5" in network.svg
    inception = next(b for b in blocks if b.anchor == "block-inceptionmodule")
    assert inception.path == "inception3a"
    assert inception.svg.count(">concat</text>") == 1  # four branches concatenated
    ET.fromstring(inception.svg)


def _off_the_flow(graph: diagram.Graph) -> list[str]:
    """The boxes not on a path from an input to an output."""
    incoming, outgoing = diagram._in_out(graph)

    def reach(starts: list[int], step: dict[int, list[int]]) -> set[int]:
        seen, todo = set(starts), list(starts)
        while todo:
            for other in step[todo.pop()]:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    forward = reach([n.id for n in graph.nodes if n.kind == "input"], outgoing)
    backward = reach([n.id for n in graph.nodes if n.kind == "output"], incoming)
    return [f"{n.title} ({n.path})" for n in graph.nodes if n.id not in forward & backward]


def _calls(name: str, path: str) -> int:
    """How many times the forward pass of ``name``'s example calls its module at ``path`` (meta device)."""
    with torch.device("meta"):
        model = paperzoo.create_model(name).eval()
        x = paperzoo.model_card(name).example_input(2)
        calls = []
        model.get_submodule(path).register_forward_hook(lambda *_: calls.append(1))
        with torch.no_grad():
            model(*x) if isinstance(x, tuple) else model(x)
    return len(calls)


def test_unet_draws_its_one_max_pool_at_each_of_its_four_places():
    """Issue 24, item 2: U-Net's single ``pool`` module, called between every two levels, was one box whose
    edges back were dropped, so the contracting path became four parallel branches and the bottom led nowhere.
    Each call is now a box in the chain level → pool → next level, and every box lies on the input→output flow."""
    network = diagram.architecture_diagrams("unet")[0].graph
    pools = sorted((n for n in network.nodes if n.path == "pool"), key=lambda n: n.order)
    assert len(pools) == _calls("unet", "pool") == 4
    assert [n.use for n in pools] == [(k, 4) for k in range(1, 5)]
    edges = {(network.node(a).path, network.node(b).path) for a, b in network.edges}
    for level in range(3):
        assert (f"contracting.{level}", "pool") in edges and ("pool", f"contracting.{level + 1}") in edges
    assert ("pool", "bottom") in edges
    for a, b in network.edges:
        if network.node(a).path == "pool":  # each pool feeds the next level down only, not every level
            assert network.node(b).path in ("contracting.1", "contracting.2", "contracting.3", "bottom")
    assert not _off_the_flow(network), _off_the_flow(network)
    assert "use 2 of 4" in diagram.render_svg(network, title="U-Net")


def test_bert_layer_draws_both_residual_sub_layers():
    """Issue 24, item 2: BERT's encoder layer applies its one dropout after attention and after the
    feed-forward network; drawn as one box, the feed-forward output led nowhere and the second residual addition
    was missing. Both sub-layers now end in their own addition and LayerNorm, on the path to the output."""
    layer = next(d for d in diagram.architecture_diagrams("bert_base") if d.anchor == "block-encoderlayer").graph
    assert _calls("bert_base", "layers.0.dropout") == 2
    additions = sorted((n for n in layer.nodes if n.title == "+"), key=lambda n: n.order)
    assert len(additions) == 2
    incoming, outgoing = diagram._in_out(layer)
    titles = {n.id: n.path or n.title for n in layer.nodes}
    assert [titles[b] for b in outgoing[additions[0].id]] == ["attention_norm"]
    assert [titles[b] for b in outgoing[additions[1].id]] == ["feed_forward_norm"]
    feed_forward = next(n for n in layer.nodes if n.path == "feed_forward")
    assert [titles[b] for b in outgoing[feed_forward.id]] == ["dropout"]  # the dropout's second use
    assert [titles[b] for b in outgoing[outgoing[feed_forward.id][0]]] == ["+"]
    assert "attention_norm" in [titles[a] for a in incoming[additions[1].id]]  # the residual around the FFN
    assert not _off_the_flow(layer), _off_the_flow(layer)


# --------------------------------------------------------------------------------- the built site (heavy)


def _readme_docs_command() -> str:
    readme = (ROOT / "README.md").read_text()
    (command,) = [b.strip() for b in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) if "mkdocs build" in b]
    return command


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> dict:
    """The site built once per test session with the README's command (shared by pytest-xdist's workers through
    a lock file in their common temporary folder): ``{"dir", "returncode", "log"}``."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    install, build = _readme_docs_command().split(" && ")
    assert install == 'pip install -e ".[docs]"', "the README's docs command installs the [docs] extra first"
    assert build.startswith("mkdocs build --strict")
    site, record = shared / "docs-site", shared / "docs-site.json"
    with open(shared / "docs-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            env = dict(os.environ, DISABLE_MKDOCS_2_WARNING="true", NO_MKDOCS_2_WARNING="1", OMP_NUM_THREADS="1")
            # `python -m mkdocs` is the README's `mkdocs`, from this interpreter's environment.
            args = [sys.executable, "-m", *shlex.split(build), "--site-dir", str(site)]
            done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
            record.write_text(json.dumps({"dir": str(site), "returncode": done.returncode,
                                          "log": done.stdout + done.stderr}))
    result = json.loads(record.read_text())
    assert result["returncode"] == 0, f"mkdocs build --strict failed:\n{result['log'][-5000:]}"
    return result


@pytest.mark.heavy
def test_site_builds_in_strict_mode_without_warnings(built_site):
    # ~30 s on 2 cores: generating the pages (importing and tracing every canonical model on the meta device)
    # and rendering them; shared with the browser test.
    log = built_site["log"]
    problems = [line for line in log.splitlines() if re.match(r"(WARNING|ERROR)\s+-", line)]
    assert not problems, "\n".join(problems)
    assert "Documentation built" in log


@pytest.mark.heavy
def test_every_canonical_model_has_a_page_with_its_diagram_and_variants(built_site):
    site = Path(built_site["dir"])
    for arch in docsite.architectures():
        page = site / "models" / arch.slug / "index.html"
        assert page.exists(), f"no page for {arch.module}"
        html = page.read_text()
        text = PageText.of(html)
        # What the reader sees, not how a highlighter marks it up: Pygments 2.21 stopped escaping the quotes
        # that 2.20 wrote as &quot;, and this test failed on a fresh machine although the page was right.
        call = f'paperzoo.create_model("{arch.canonical.name}")'
        assert any(call in block for block in text.code_blocks), f"{arch.slug}: no snippet calling {call}"
        assert html.count('class="pz-diagram"') >= 1, f"{arch.slug}: no diagram"
        assert "meta-device forward pass failed" not in html, f"{arch.slug}: its diagram could not be traced"
        (table,) = [t for t in text.tables if t and "GMACs" in t[0] and "name" in t[0]]
        variants = {row[table[0].index("name")] for row in table[1:]}
        for card in arch.cards:
            assert card.name in variants, f"{arch.slug}: {card.name} missing from the variant table"
    for page in ("overview/by-category", "overview/timeline", "overview/scale", "overview/learning-path",
                 "overview/benchmarks", "api"):
        assert (site / page / "index.html").exists(), page
    assert (site / "overview" / "scale.svg").stat().st_size > 10_000


def _drawn_graphs(html: str) -> dict[str, tuple[list[dict], list[tuple[str, str]], str]]:
    """Every diagram on a built page, read back from its SVG: ``{anchor: (nodes, edges, note)}``, each node the
    attributes of its ``<g class="pz-node">`` (``data-id``, ``data-kind``, ``data-calls``, ``data-path``)."""
    found = {}
    for anchor, svg, note in re.findall(r'<div class="pz-figure" data-diagram="([^"]+)">\s*(<svg.*?</svg>)\s*</div>'
                                        r'\s*(?:<p class="pz-note">(.*?)</p>)?', html, flags=re.S):
        tree = ET.fromstring(svg)
        nodes = [dict(g.attrib) for g in tree.iter("{http://www.w3.org/2000/svg}g")
                 if "pz-node" in g.get("class", "")]
        edges = [(p.get("data-from"), p.get("data-to")) for p in tree.iter("{http://www.w3.org/2000/svg}path")
                 if p.get("class") == "pz-e"]
        found[anchor] = (nodes, edges, note)
    return found


def _off_the_drawn_flow(nodes: list[dict], edges: list[tuple[str, str]]) -> list[str]:
    """The drawn boxes that no path from an input to an output passes (a box drawn "not called by forward()"
    excepted: it is idle in this forward pass, and says so)."""
    step: dict[str, dict[str, list[str]]] = {"out": {}, "in": {}}
    for a, b in edges:
        step["out"].setdefault(a, []).append(b)
        step["in"].setdefault(b, []).append(a)

    def reach(kind: str, direction: str) -> set[str]:
        seen = {n["data-id"] for n in nodes if n["data-kind"] == kind}
        todo = list(seen)
        while todo:
            for other in step[direction].get(todo.pop(), []):
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    on_flow = reach("input", "out") & reach("output", "in")
    return [n["data-path"] or n["data-id"] for n in nodes
            if n["data-id"] not in on_flow and not (n["data-kind"] == "module" and n["data-calls"] == "0")]


@pytest.mark.heavy
def test_every_drawn_graph_of_the_site_runs_from_input_to_output(built_site):
    """Issue 24, item 2, over every canonical model's page: each diagram read back from the built SVG is traced
    (not a structure-only fallback, unless the module is idle in the network's forward pass), has an input and an
    output, and every box lies on a path from an input to an output. Mask R-CNN's and Faster R-CNN's second stage
    (the RoI heads after NMS) was drawn detached, with no edge in or out: this caught it."""
    import html as html_module

    site = Path(built_site["dir"])
    idle_blocks: set[str] = set()
    problems = []
    graphs_html = {arch.slug: (site / "models" / arch.slug / "index.html").read_text()
                   for arch in docsite.architectures()}
    graphs = {slug: _drawn_graphs(html) for slug, html in graphs_html.items()}
    for slug, drawn in graphs.items():
        assert "network" in drawn, slug
        for anchor, (nodes, edges, note) in drawn.items():
            ids = {n["data-id"] for n in nodes}
            assert all(a in ids and b in ids for a, b in edges), f"{slug} {anchor}: an edge to no box"
            if "not called by the network" in note:
                idle_blocks.add(f"{slug} {anchor}")
                continue
            kinds = {n["data-kind"] for n in nodes}
            if not {"input", "output"} <= kinds or _off_the_drawn_flow(nodes, edges) or (
                    note and note != html_module.escape(diagram.KEPT_EVERY_BOX, quote=False)):
                problems.append(f"{slug} {anchor}: {_off_the_drawn_flow(nodes, edges)} {note}")
    assert not problems, "\n".join(problems)
    # The structure-only diagrams are the halves a forward pass does not run (a GAN's discriminator, CapsNet's
    # reconstruction decoder, used by the loss): their box in the network is drawn idle.
    assert idle_blocks == {"gan block-discriminator", "gan block-maxout", "dcgan block-discriminator",
                           "capsnet block-reconstructiondecoder"}, idle_blocks
    for slug, path in (("gan", "discriminator"), ("dcgan", "discriminator"), ("capsnet", "decoder")):
        (box,) = [n for n in graphs[slug]["network"][0] if n["data-path"] == path]
        assert box["data-calls"] == "0"
    for slug in ("faster_rcnn", "mask_rcnn"):
        nodes, edges, _ = graphs[slug]["network"]
        path = {n["data-id"]: n["data-path"] for n in nodes}
        drawn = {(path[a], path[b]) for a, b in edges}
        # The proposals and the features both feed the second stage, which leads to the output.
        assert {("rpn", "roi_heads"), ("backbone", "roi_heads"), ("backbone", "rpn")} <= drawn, (slug, drawn)
        assert graphs[slug]["network"][2] == html_module.escape(diagram.KEPT_EVERY_BOX, quote=False)
        assert any(a == "roi_heads" for a, _ in drawn)
    # Attention and recurrent cells open into their inner steps (issue 24, item 2): the LSTM's and the GRU's box
    # links to one time step drawn gate by gate; every multi-head attention into its Q/K/V, scores, softmax and
    # weighted sum; Swin's window attention into its cyclic shift, window partition, relative position bias and mask.
    def titles(slug: str, anchor: str) -> list[str]:
        html = (site / "models" / slug / "index.html").read_text()
        svg = html.split(f'data-diagram="{anchor}">', 1)[1].split("</svg>", 1)[0]
        return [html_module.unescape(t) for t in re.findall(r'<text class="pz-[ts]"[^>]*>([^<]*)</text>', svg)]

    for slug, gates in (("lstm", ["input gate i", "forget gate f", "cell input g", "output gate o"]),
                        ("gru", ["reset gate r", "update gate z", "candidate n"])):
        assert 'href="#block-' + slug + '"' in graphs_html[slug], f"{slug}: its box does not open"
        drawn = titles(slug, f"block-{slug}")
        assert all(drawn.count(gate) >= 1 for gate in gates), drawn
        assert {"σ", "tanh", "×", "h_{t-1}", "h_t"} <= set(drawn), drawn
    assert "c_t" in titles("lstm", "block-lstm") and drawn.count("reset gate r") == 2  # GRU: W_i·x and W_h·h parts
    for slug in ("bert", "gpt", "transformer", "vision_transformer", "swin_transformer", "wav2vec2"):
        drawn = titles(slug, "block-multiheadattention")
        assert {"query Q", "key K", "value V", "scores QKᵀ/√d", "softmax", "weighted sum of V"} <= set(drawn), (
            slug, drawn)
    swin = titles("swin_transformer", "block-windowattention")
    assert {"cyclic shift (roll)", "window_partition()", "window_reverse()", "relative_position_bias()",
            "relative_position_bias_table"} <= set(swin), swin
    assert "+ bias / mask" in titles("swin_transformer", "block-multiheadattention")
    assert "+ causal mask" in titles("gpt", "block-multiheadattention") or "mask" in titles(
        "gpt", "block-multiheadattention")
    # The call counts drawn are the forward pass's, counted here with hooks (models whose modules are called more
    # than once: a recurrent decoder, an ODE solver's function, U-Net's pool, an FPN head per level).
    for name, slug in (("attention_seq2seq", "attention_seq2seq"), ("odenet", "odenet"), ("unet", "unet"),
                       ("gru", "gru")):
        nodes = graphs[slug]["network"][0]
        model = paperzoo.create_model(name, device="meta")
        paths = {n["data-path"] for n in nodes if n["data-kind"] == "module"}
        for module_path in sorted(p for p in paths if p and "…" not in p):
            drawn_calls = sum(int(n["data-calls"]) for n in nodes if n["data-path"] == module_path)
            if isinstance(model.get_submodule(module_path), (nn.Sequential, nn.ModuleList)):
                continue  # a run of blocks folded into one box under its container's name
            assert drawn_calls == _calls(name, module_path), (slug, module_path, drawn_calls)


@pytest.mark.heavy
def test_worked_examples_show_their_output_and_pictures_and_say_which_weights(built_site):
    """Issue 24, item 4: the pages of a classifier, a detector, a segmenter, CapsNet, ODE-Net and DCGAN show a
    script run when the site was built on real data (scikit-learn's photograph and digits), what it printed and
    the pictures it saved; with random weights (nothing is downloaded) the code says pretrained=False and the
    caption says so; every other page of those tasks links to its task's example."""
    from PIL import Image

    site = Path(built_site["dir"])
    pages = {a.canonical.name: a for a in docsite.architectures()}
    pictures = {"resnet50": "resnet50-china.png", "fasterrcnn_resnet50_fpn": "fasterrcnn_resnet50_fpn-china.png",
                "deeplabv3_resnet50": "deeplabv3_resnet50-china.png", "capsnet": "capsnet-routing.png",
                "dcgan": "dcgan-samples.png", "odenet": None, "gpt": None}
    assert set(pictures) == set(showcase.SCRIPTS)
    for name, picture in pictures.items():
        html = (site / "models" / pages[name].slug / "index.html").read_text()
        assert 'id="on-real-data"' in html, name
        text = PageText.of(html.split('id="on-real-data"', 1)[1].split("<h2", 1)[0])  # the section only
        code, printed = text.code_blocks
        assert f'create_model("{name}"' in code
        assert printed.strip(), f"{name}: the example printed nothing"
        if not showcase.cached_weights(name) and name not in ("capsnet", "odenet", "dcgan"):  # no weights published
            assert "pretrained=False" in code and "random weights" in text.prose, name
        if picture:
            assert f'src="../{picture}"' in html, name
            with Image.open(site / "models" / picture) as image:
                assert image.format == "PNG" and len(image.convert("RGB").getcolors(1 << 20) or range(999)) > 100
        if name == "resnet50":  # the top 5 classes of the photograph, with their probabilities
            lines = printed.strip().splitlines()
            assert len(lines) == 5 and all(line.endswith("%") for line in lines), lines
        if name == "gpt":  # the prompt, continued
            assert printed.startswith("In the beginning God created") and len(printed) > 30, printed
        if name == "odenet":
            assert re.search(r"tolerance 0\.1: the solver evaluated f \d+ times", printed), printed
    assert "resnet.md" not in html and 'href="../resnet/#on-real-data"' in (
        site / "models" / "vgg" / "index.html").read_text()


def test_worked_examples_use_published_weights_only_from_the_cache(tmp_path, monkeypatch):
    """Nothing is downloaded while the site builds: ``pretrained=True`` only when torch.hub's cache holds the file
    (TORCH_HOME pointed at a scratch folder, empty and then holding a file of the URL's name)."""
    from paperzoo.weights import get_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not showcase.cached_weights("resnet50")
    assert "pretrained=False" in showcase.SCRIPTS["resnet50"]("resnet50", False)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / get_weights("resnet50").url.rsplit("/", 1)[1]).write_bytes(b"")
    assert showcase.cached_weights("resnet50")
    assert not showcase.cached_weights("capsnet")  # no published weights
    code = showcase.SCRIPTS["resnet50"]("resnet50", True)
    assert "pretrained=True" in code and "random weights" not in code


def test_the_language_example_uses_published_weights_only_from_the_hub_cache(caches):  # noqa: F811
    """GPT's example reads its weights and tokenizer from the Hugging Face cache when both are there (offline:
    nothing is downloaded), else it continues the prompt with random weights and a tokenizer learned on the shipped
    text, and says so."""
    from paperzoo.weights import get_weights

    assert not showcase.cached_weights("gpt")
    assert "pretrained=False" in showcase.SCRIPTS["gpt"]("gpt", False)
    weights = get_weights("gpt")
    (caches / "empty").write_bytes(b"")
    place_in_hub_cache(caches, weights.hub_repo, {weights.hub_file: caches / "empty"})
    assert not showcase.cached_weights("gpt")  # the weights without the tokenizer are not enough
    shutil.rmtree(caches / "hf")
    place_in_hub_cache(caches, weights.hub_repo, {weights.hub_file: caches / "empty", "vocab.json": caches / "empty",
                                                   "merges.txt": caches / "empty"})
    assert showcase.cached_weights("gpt")
    code = showcase.SCRIPTS["gpt"]("gpt", True)
    assert f'paperzoo.tokenizer("{weights.hub_repo}")' in code and "pretrained=True" in code
    assert "random weights" not in code


@pytest.mark.heavy
def test_every_model_page_shows_its_whole_file_numbered_as_in_the_file(built_site):
    """The code beside the explanation (issue 24, item 3): every model page holds its model file, definition by
    definition in folding blocks, each line under the number it has in the file, so that together the blocks are
    the file after its module docstring; each class's docstring prose stands above its code; and the page links to
    the file, published beside it unchanged."""
    import ast
    import importlib.util

    site = Path(built_site["dir"])
    for arch in docsite.architectures():
        html = (site / "models" / arch.slug / "index.html").read_text()
        source = Path(importlib.util.find_spec(arch.module).origin).read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        after_docstring = tree.body[0].end_lineno  # every model file opens with its docstring (DESIGN.md)
        shown: dict[int, str] = {}
        for block in re.findall(r'<details class="pz-code".*?</details>', html, flags=re.S):
            numbers, code = PageText.of(block).code_blocks
            numbered = [int(n) for n in numbers.split()]
            assert numbered == list(range(numbered[0], numbered[0] + len(numbered))), arch.slug
            for number, line in zip(numbered, code.splitlines(), strict=True):
                shown[number] = line
        assert shown, f"{arch.slug}: no code on the page"
        wrong = [n for n, line in shown.items() if line.rstrip() != lines[n - 1].rstrip()]
        assert not wrong, f"{arch.slug}: lines {wrong[:5]} differ from the file's"
        missing = [n for n, line in enumerate(lines, 1) if n > after_docstring and line.strip() and n not in shown]
        assert not missing, f"{arch.slug}: lines {missing[:5]} of {arch.source} are not on the page"
        assert 'href="../' + arch.slug + '.py"' in html, f"{arch.slug}: no link to its file"
        assert (site / "models" / f"{arch.slug}.py").read_text() == source
        text = PageText.of(html).prose
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and ast.get_docstring(node):
                first = " ".join(ast.get_docstring(node).split("\n\n")[0].split())
                if "$" not in first and "`" not in first and ":" not in first.split(" ")[0]:
                    assert first in " ".join(text.split()), f"{arch.slug}: {node.name}'s explanation is not shown"


def test_code_links_point_into_the_repository_when_the_site_names_one(archs):
    googlenet = next(a for a in archs if a.slug == "googlenet")
    page = docsite.architecture_page(googlenet, diagrams=None, repo_url="https://github.com/owner/paperzoo/")
    source = (ROOT / googlenet.source).read_text()
    inception = next(c for c in docsite.code_chunks(source) if c.title == "class InceptionModule")
    assert source.splitlines()[inception.first - 1].startswith("class InceptionModule(")
    assert (f"(https://github.com/owner/paperzoo/blob/main/src/paperzoo/models/classification/googlenet.py"
            f"#L{inception.first}-L{inception.last})") in page
    assert "](googlenet.py)" not in page  # with a repository, no link to the copy beside the page


@pytest.mark.heavy
def test_model_pages_show_the_recipe_and_the_published_weights_with_their_metric(built_site):
    """Item 5: the card's training recipe and every published set of weights, with the metric its publisher
    measured (read here from torchvision's own weight enums), on the page; a paper-only model says it has none."""
    import torchvision

    site = Path(built_site["dir"])

    def page(slug: str) -> PageText:
        return PageText.of((site / "models" / slug / "index.html").read_text())

    resnet = page("resnet")
    (table,) = [t for t in resnet.tables if t and "published metric" in t[0]]
    header, rows = table[0], table[1:]
    enums = {"resnet18": torchvision.models.ResNet18_Weights, "resnet50": torchvision.models.ResNet50_Weights,
             "resnet152": torchvision.models.ResNet152_Weights}
    for name, enum in enums.items():
        for weights in enum:
            (row,) = [r for r in rows if r[0] == name and r[1].split()[0] == weights.name]
            top1 = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
            assert f"acc@1 {top1:g}" in row[header.index("published metric")], (name, weights.name, row)
            assert ("(default)" in row[1]) == (weights == enum.DEFAULT)
            assert f"crop {weights.transforms().crop_size[0]}" in row[header.index("preprocessing")]
    assert any('paperzoo.create_model("resnet50", pretrained=True)' in block for block in resnet.code_blocks)
    prose = " ".join(resnet.prose.split())
    recipe = paperzoo.model_card("resnet50").recipe
    assert f"sgd (momentum {recipe.momentum:g}), lr {recipe.lr:g} at batch {recipe.batch_size}" in prose
    unet = " ".join(page("unet").prose.split())
    assert "None published: its reference is the paper" in unet
    for arch in docsite.architectures():
        assert "Training and weights" in (site / "models" / arch.slug / "index.html").read_text(), arch.slug


@pytest.mark.heavy
def test_transformers_referenced_pages_list_the_accepted_configuration_fields(built_site):
    """What `paperzoo info NAME` lists (accepted_config_fields) is on the page: every transformers field beside our
    argument, each field one that transformers' own configuration class has; pages without such variants have
    no such section. Reads the session's built site, never a second build."""
    import transformers

    from paperzoo.interop.huggingface import accepted_config_fields

    site = Path(built_site["dir"])
    for slug, name, config in [("bert", "bert_base", transformers.BertConfig()),
                               ("wav2vec2", "wav2vec2_base", transformers.Wav2Vec2Config())]:
        html = (site / "models" / slug / "index.html").read_text()
        page = PageText.of(html)
        rows = {tuple(row) for table in page.tables if table and table[0] == ["transformers field", "our argument"]
                for row in table[1:]}
        read = accepted_config_fields(name).split("\n")[0].split(": ", 1)[1]
        pairs = [tuple(item.split(" → ")) for item in read.split(", ") if " → " in item]
        assert len(pairs) >= 10 and set(pairs) <= rows, (slug, set(pairs) - rows)
        assert {theirs for theirs, _ in pairs} <= set(config.to_dict()), "a field transformers does not have"
        assert "Checked: <code>hidden_act ∈ ['gelu']</code>" in html  # the checked values, as code
    resnet = (site / "models" / "resnet" / "index.html").read_text()
    assert "Configuration fields" not in resnet and "transformers field" not in resnet


@pytest.mark.heavy
def test_titles_parameters_navigation_and_sitemap_are_sound(built_site):
    """Item 6's smaller defects: a page title is the architecture's name, not a citation cut at its first line;
    every documented parameter is one real parameter (no "a, b" rows, no prose for a name), and none that has a
    default in the class's signature is listed as required; the navigation file is not a page; and no empty
    sitemap is published (one needs site_url)."""
    import importlib
    import inspect

    site = Path(built_site["dir"])
    for arch in docsite.architectures():
        html = (site / "models" / arch.slug / "index.html").read_text()
        heading = re.search(r"<h1[^>]*>(.*?)</h1>", html, flags=re.S).group(1)
        title = " ".join(PageText.of(heading).prose.split())
        assert not title.endswith(",") and '"' not in title, f"{arch.slug}: title {title!r}"
        module_name, _, class_name = docsite._network_class(arch).rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        defaults = {name for name, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}
        methods = {name for _, member in inspect.getmembers(cls, inspect.isfunction) if member.__name__ != "__init__"
                   for name in inspect.signature(member).parameters}
        for table in PageText.of(html).tables:
            if table and table[0][:2] == ["Name", "Type"]:
                for row in table[1:]:
                    name = row[0]
                    assert re.fullmatch(r"\*{0,2}[A-Za-z_]\w*", name), f"{arch.slug}: parameter row {name!r}"
                    assert not (row[-1] == "required" and name in defaults and name not in methods), (
                        f"{arch.slug}: {name} has a default but is listed as required")
    # API signatures are formatted, one parameter a line (mkdocstrings with Ruff), not one unbroken line.
    from paperzoo.models.classification.googlenet import GoogLeNet

    html = (site / "models" / "googlenet" / "index.html").read_text()
    signature = next(b for b in PageText.of(html).code_blocks if b.lstrip().startswith("GoogLeNet("))
    lines = [line.strip() for line in signature.splitlines()]
    for name in inspect.signature(GoogLeNet).parameters:
        assert any(line.startswith(f"{name}:") for line in lines), f"{name} is not on a line of its own:\n{signature}"
    assert "Faster R-CNN" == docsite.architectures()[[a.slug for a in docsite.architectures()].index(
        "faster_rcnn")].title
    assert not (site / "SUMMARY").exists(), "the navigation file is published as a page"
    sitemap = site / "sitemap.xml"
    if sitemap.exists():
        assert sitemap.read_text().count("<loc>") >= len(docsite.architectures()), "an empty sitemap"


@pytest.mark.heavy
def test_no_raw_tex_left_in_any_page(built_site):
    """Every equation of the docstrings reaches KaTeX: no page's prose (its text outside code and outside the
    containers arithmatex makes for KaTeX) shows TeX such as ``e^{t_h}``, ``s_{i-1}`` or ``\\frac``, and the model
    pages that have equations hand them over in those containers."""
    site = Path(built_site["dir"])
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 50
    left = {str(page.relative_to(site)): found for page in pages
            if (found := raw_tex(PageText.of(page.read_text()).prose))}
    assert not left, "raw TeX on the site:\n" + "\n".join(f"{page}: {found}" for page, found in left.items())
    with_equations = [page.parent.name for page in sorted(site.glob("models/*/index.html"))
                      if 'class="arithmatex"' in page.read_text()]
    assert {"capsnet", "swin_transformer", "yolov3", "gpt", "lstm"} <= set(with_equations), with_equations


class PageText(HTMLParser):
    """The text a reader sees on a built page, with entities decoded and tags dropped: the code blocks (each
    ``<pre>``'s text), the tables (rows of cell texts, the header row first) and the prose (all the text outside
    code, scripts, drawings and the equations that arithmatex wraps for KaTeX). Tests read the page through it so
    that they check what it says, not how one version of Markdown or Pygments happened to escape or wrap it."""

    NOT_PROSE = ("pre", "code", "script", "style", "svg", "textarea")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.code_blocks: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.prose = ""
        self._pre_depth = 0
        self._cell: list[str] | None = None
        self._hidden: dict[str, int] = {}  # open NOT_PROSE elements, by tag
        self._equation: str | None = None  # the tag of the open arithmatex container (it holds only text)

    @classmethod
    def of(cls, page: str) -> PageText:
        parser = cls()
        parser.feed(page)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.NOT_PROSE:
            self._hidden[tag] = self._hidden.get(tag, 0) + 1
        if self._equation is None and "arithmatex" in (dict(attrs).get("class") or "").split():
            self._equation = tag
        if tag == "pre":
            self._pre_depth += 1
            if self._pre_depth == 1:
                self.code_blocks.append("")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("p", "li", "div", "br", "tr", "h1", "h2", "h3", "h4", "dt", "dd"):
            self.prose += "\n"

    def handle_endtag(self, tag: str) -> None:
        if self._hidden.get(tag):
            self._hidden[tag] -= 1
        if tag == self._equation:
            self._equation = None
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
        elif tag in ("td", "th") and self._cell is not None:
            if self.tables and self.tables[-1]:
                self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._pre_depth:
            self.code_blocks[-1] += data
        if self._cell is not None:
            self._cell.append(data)
        if self._equation is None and not any(self._hidden.values()):
            self.prose += data


# TeX that KaTeX should have rendered: a brace after ^ or _, a TeX command, or the $ delimiters themselves.
_RAW_TEX = re.compile(r"[\^_]\{|\\(?:frac|sqrt|sum|prod|mathbb|mathrm|text|hat|tilde|bar|odot|cdot|sigma|alpha|"
                      r"lambda|theta|ell|left|right|begin|end|quad|lfloor|dots|log|exp|tanh|in)\b|\$\$|\$[^\s$]+\$")


def raw_tex(text: str) -> list[str]:
    """Each piece of raw TeX in ``text``, with a little of its context."""
    return [text[max(0, m.start() - 40):m.end() + 30].replace("\n", " ") for m in _RAW_TEX.finditer(text)]


def test_page_text_reads_what_the_reader_sees_however_it_is_escaped():
    """The same snippet and table as two highlighter versions write them (the quote escaped or not, the tokens
    split differently) read as the same text; a page without them reads as without them."""
    escaped = ('<div class="highlight"><pre><span></span><code><span class="n">m</span> <span class="o">=</span> '
               '<span class="n">paperzoo</span><span class="o">.</span><span class="n">create_model</span>'
               '<span class="p">(</span><span class="s2">&quot;alexnet&quot;</span><span class="p">)</span>'
               '</code></pre></div>')
    plain = '<pre><code>m = paperzoo.create_model(<span class="s2">"alexnet"</span>)</code></pre>'
    table = ('<table><thead><tr><th>variant</th><th>GMACs</th></tr></thead><tbody>'
             '<tr><td><code>alexnet</code></td><td>0.71</td></tr></tbody></table>')
    for page in (escaped + table, plain + table):
        text = PageText.of(page)
        assert text.code_blocks == ['m = paperzoo.create_model("alexnet")']
        assert text.tables == [[["variant", "GMACs"], ["alexnet", "0.71"]]]
    empty = PageText.of("<p>create_model(&quot;alexnet&quot;)</p><p>alexnet</p>")
    assert empty.code_blocks == [] and empty.tables == []
    equation = PageText.of('<p>Box <span class="arithmatex">\\(b_w = p_w e^{t_w}\\)</span>, then <code>x_{t}</code>'
                           '<svg><text>h_{t-1}</text></svg>.</p><p>Raw: s_{i-1}</p>')
    assert " ".join(equation.prose.split()) == "Box , then . Raw: s_{i-1}"
    assert [found.strip() for found in raw_tex(equation.prose)] == ["Box , then . Raw: s_{i-1}"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


def _browser_paths() -> tuple[str, str]:
    chromium = os.environ.get("PAPERZOO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("PAPERZOO_CHROMEDRIVER") or shutil.which("chromedriver")
    assert chromium and driver, "Chromium and chromedriver are needed: run scripts/install-browser (README set-up)"
    return chromium, driver


def _full_page_screenshot(driver, path: Path) -> None:
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 7000), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


def _assert_real_picture(path: Path, min_width: int = 800) -> None:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height >= 600, (path, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 100, f"{path} is nearly blank"


@pytest.mark.heavy
def test_browser_reads_the_site(built_site):
    """Headless Chromium on the built site, served on localhost: from the home page through the navigation to
    the models by category, an architecture page (its diagram and variant table render, a block opens on a click),
    the chart and a page of equations; a screenshot of each step is left in build/docs-screenshots/ for a person to
    look at."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    site = Path(built_site["dir"])
    # The architecture to visit: GoogLeNet (the issue's example of a block that opens), else any page with one.
    pages = sorted(site.glob("models/*/index.html"))
    chosen = next((p for p in pages if p.parent.name == "googlenet"),
                  next(p for p in pages if 'class="pz-link"' in p.read_text()))
    slug = chosen.parent.name
    canonical = next(a.canonical.name for a in docsite.architectures() if a.slug == slug)

    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    chromium, chromedriver = _browser_paths()
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--hide-scrollbars", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(url)
        wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, "nav.md-nav")))
        assert "paperzoo" in browser.title
        _full_page_screenshot(browser, SCREENSHOTS / "1-home.png")

        browser.find_element(By.CSS_SELECTOR, "a[href$='overview/by-category/']").click()
        wait.until(expected.title_contains("Models by category"))
        rows = browser.find_elements(By.CSS_SELECTOR, "article table tbody tr")
        assert len(rows) == len(docsite.architectures())
        _full_page_screenshot(browser, SCREENSHOTS / "2-models-by-category.png")

        browser.find_element(By.CSS_SELECTOR, f"article table a[href$='models/{slug}/']").click()
        figure = wait.until(expected.visibility_of_element_located((By.CSS_SELECTOR, "div.pz-figure svg.pz-diagram")))
        assert figure.size["width"] > 150 and figure.size["height"] > 300, figure.size
        boxes = figure.find_elements(By.CSS_SELECTOR, "g.pz-node rect")
        assert len(boxes) >= 5 and all(box.size["width"] > 40 and box.size["height"] > 20 for box in boxes)
        labels = [t.text for t in figure.find_elements(By.CSS_SELECTOR, "text.pz-t")]
        assert labels[0] == "input" and labels[-1] == "output", labels
        table = next(t for t in browser.find_elements(By.CSS_SELECTOR, "article table")
                     if "GMACs" in t.text and "status" in t.text)
        assert table.is_displayed() and table.size["height"] > 40
        cells = [c.text for c in table.find_elements(By.CSS_SELECTOR, "tbody tr:first-child td")]
        assert len(cells) == 7 and any(canonical in c for c in table.text.splitlines()), cells
        _full_page_screenshot(browser, SCREENSHOTS / "3-architecture.png")

        link = figure.find_element(By.CSS_SELECTOR, "a.pz-link")
        block_id = link.get_dom_attribute("href").removeprefix("#")  # an SVG link: the attribute, not a URL
        block = browser.find_element(By.ID, block_id)
        assert block.get_attribute("open") is None, "a block starts closed"
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
        link.click()  # a click on the box, as a reader would
        wait.until(lambda _: block.get_attribute("open") is not None)
        opened = block.find_element(By.CSS_SELECTOR, "svg.pz-diagram")
        assert opened.is_displayed() and opened.size["height"] > 100
        browser.execute_script("arguments[0].scrollIntoView()", block)
        browser.save_screenshot(str(SCREENSHOTS / "4-block-opened.png"))

        nav_link = browser.find_element(By.CSS_SELECTOR, "nav a[href$='overview/scale/']")
        browser.execute_script("window.scrollTo(0, 0); arguments[0].scrollIntoView({block: 'center'})", nav_link)
        nav_link.click()
        chart = wait.until(expected.visibility_of_element_located((By.CSS_SELECTOR, "article img[src$='scale.svg']")))
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", chart))
        assert chart.size["width"] > 300
        _full_page_screenshot(browser, SCREENSHOTS / "5-parameters-and-compute.png")
        # The chart's labels as the browser draws them (its fonts, not matplotlib's estimate): no two overlap.
        # The chart is an <img>, whose inside a page cannot measure: its SVG is fetched and set in the page.
        labels = browser.execute_async_script("""const done = arguments[arguments.length - 1];
            fetch(arguments[0].src).then(r => r.text()).then(text => {
              const holder = document.createElement('div');
              holder.innerHTML = text;
              document.body.prepend(holder);
              done(Array.from(holder.querySelectorAll('g[id^="pz-label-"] text')).map(t => {
                const r = t.getBoundingClientRect();
                return [t.closest('g[id^="pz-label-"]').id, r.left, r.top, r.right, r.bottom]; }));
            });""", chart)
        assert len(labels) == 2 * len(docsite.architectures()), len(labels)
        overlaps = [(a[0], b[0]) for i, a in enumerate(labels) for b in labels[i + 1:]
                    if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]
        assert not overlaps, overlaps

        # The equations, typeset by the site's own KaTeX: CapsNet's squash and routing. Every equation container
        # holds KaTeX's rendering and none its error box, and nothing came from outside the site (offline reader).
        browser.get(url + "models/capsnet/")
        wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, "article .arithmatex .katex")))
        containers = browser.find_elements(By.CSS_SELECTOR, "article .arithmatex")
        assert len(containers) >= 5, len(containers)
        unrendered = [c.text for c in containers if not c.find_elements(By.CSS_SELECTOR, ".katex")]
        assert not unrendered, f"equations left as TeX: {unrendered[:3]}"
        assert not browser.find_elements(By.CSS_SELECTOR, ".katex-error")
        fetched = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
        assert fetched and all(name.startswith(url) for name in fetched), [n for n in fetched if not n.startswith(url)]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", containers[0])
        browser.save_screenshot(str(SCREENSHOTS / "6-equations.png"))

        # The timeline is drawn: a line down the page (the container's left border), a marker per year on it.
        browser.get(url + "overview/timeline/")
        line = wait.until(expected.visibility_of_element_located((By.CSS_SELECTOR, "article .pz-timeline")))
        assert line.value_of_css_property("border-left-width") == "3px"
        markers = browser.execute_script("""return Array.from(document.querySelectorAll('.pz-year > h2')).map(h =>
            getComputedStyle(h, '::before').width)""")
        assert len(markers) == len({a.year for a in docsite.architectures()}) and set(markers) == {"15px"}, markers
        assert len(browser.find_elements(By.CSS_SELECTOR, ".pz-event")) == len(docsite.architectures())
        browser.save_screenshot(str(SCREENSHOTS / "9-timeline.png"))

        # Search ranks the page whose title is the query first (it ranked CBAM and ODE-Net, whose long titles mention
        # ResNet, above ResNet's own page).
        for query, slug_wanted in (("resnet", "resnet"), ("densenet", "densenet")):
            browser.get(url)
            browser.find_element(By.CSS_SELECTOR, "label.md-search__icon, .md-search__input").click()
            box = wait.until(expected.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
            box.send_keys(query)
            # Results update at every keystroke: wait for those of the whole word (their links highlight it).
            first = wait.until(lambda b, q=query: next(
                (link for link in b.find_elements(By.CSS_SELECTOR, ".md-search-result__item > .md-search-result__link")
                 [:1] if f"h={q}" in (link.get_attribute("href") or "")), None))
            assert f"/models/{slug_wanted}/" in first.get_attribute("href"), (query, first.get_attribute("href"))

        # Nothing cut off at 1400 px: every table fits its column (the widest ones: wav2vec 2.0's references,
        # BERT's, the nine-column benchmark tables), and at a phone's 390 px no page is wider than the screen
        # (tables, code, diagrams and equations scroll inside their own boxes).
        browser.set_window_size(1400, 1000)
        too_wide = """return Array.from(document.querySelectorAll('article table')).filter(t =>
            t.scrollWidth > (t.closest('.md-typeset__scrollwrap') || t.parentElement).clientWidth + 1)
            .map(t => t.rows[0].innerText.slice(0, 60))"""
        for page in ("models/wav2vec2/", "models/bert/", "models/faster_rcnn/", "overview/benchmarks/"):
            browser.get(url + page)
            wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, "article table")))
            assert not browser.execute_script(too_wide), (page, browser.execute_script(too_wide))
        # The worked example's picture (the detections drawn on the photograph) loads, at the photograph's size.
        browser.get(url + "models/faster_rcnn/")
        picture = browser.find_element(By.CSS_SELECTOR, "article img[src$='fasterrcnn_resnet50_fpn-china.png']")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", picture)
        assert wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                     picture)) == 640
        browser.save_screenshot(str(SCREENSHOTS / "8-worked-example.png"))
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        for page in ("models/wav2vec2/", "models/googlenet/", "overview/benchmarks/", "models/faster_rcnn/",
                     "overview/timeline/", "models/swin_transformer/"):
            browser.get(url + page)
            wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, "article .arithmatex .katex, "
                                                                               "article table, article .pz-timeline")))
            widths = browser.execute_script("return [document.documentElement.scrollWidth, "
                                            "document.documentElement.clientWidth]")
            assert widths[0] <= widths[1], (page, widths)
        browser.save_screenshot(str(SCREENSHOTS / "7-phone.png"))
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()
        server.shutdown()
    for shot in sorted(SCREENSHOTS.glob("*.png")):
        _assert_real_picture(shot, min_width=390 if "phone" in shot.name else 800)
    assert len(list(SCREENSHOTS.glob("*.png"))) == 9
