"""The README is tested: its model table is the registry's, its quick start runs, and CI runs its test
command and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import paperzoo
from paperzoo.cli import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_paper_count_claim_names_the_exceptions_with_the_cards_counts():
    """The paper-only models reproduce the paper's count except the Transformer and ODE-Net: the README says so
    with the counts the cards carry (checked by the contract tests against the built models)."""
    intro = README.split("## Set-up")[0]
    for name, paper in [("transformer_base", "65M"), ("transformer_big", "213M"), ("odenet", "0.22M"),
                        ("odenet_resnet", "0.60M")]:
        card = paperzoo.model_card(name)
        ours = f"{card.params / 1e6:.1f}M" if card.params > 1e6 else f"{card.params / 1e6:.2f}M"
        assert ours != paper and ours in intro and paper in intro, (name, ours, paper)


def test_model_table_is_the_registry():
    table = re.search(r"<!-- model-table:start -->\n(.*?)\n<!-- model-table:end -->", README, flags=re.S)
    assert table, "README.md lost its model-table markers"
    assert table.group(1) == markdown_table(paperzoo.list_models()), (
        "README.md's model table is stale: replace it with the output of `paperzoo list --format markdown`")


def test_model_table_says_which_weights_pretrained_loads():
    """The pretrained column against the references' own metadata: torchvision's DEFAULT weights and how many it
    publishes for ResNet-50 and ViT-B/16, transformers' GPT-2 checkpoint, and none for a paper-only model."""
    import torchvision

    table = re.search(r"<!-- model-table:start -->\n(.*?)\n<!-- model-table:end -->", README, flags=re.S).group(1)
    header, _, *rows = table.splitlines()
    column = [c.strip() for c in header.strip("|").split("|")].index("pretrained")
    pretrained = {row.split("|")[1].strip().strip("`"): row.strip("|").split("|")[column].strip() for row in rows}
    for name, enum in (("resnet50", torchvision.models.ResNet50_Weights),
                       ("vit_b_16", torchvision.models.ViT_B_16_Weights)):
        assert pretrained[name] == f"`{enum.DEFAULT.name}` (+{len(enum) - 1})", name
    assert pretrained["gpt2"] == "`gpt2`" and pretrained["unet"] == "—" and pretrained["lstm"] == "—"


def test_two_setup_commands():
    commands = [block.strip() for block in fenced_blocks("bash")[:2]]
    assert commands == ["pip install -e . && paperzoo tour",
                        'pip install -e ".[test]" && scripts/install-browser && pytest -n 2']


def test_ci_runs_the_readme_test_command_and_nothing_else():
    test_command = fenced_blocks("bash")[1].strip()
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in script if line.strip() and not line.startswith("#")]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', test_command]


def test_quick_start_runs(capsys):
    (quick_start,) = [block for block in fenced_blocks("python") if "create_model" in block]
    exec(compile(quick_start, "README.md quick start", "exec"), {})
    out = capsys.readouterr().out
    assert "25,557,032 parameters; published: 25,557,032" in out
    assert "(2, 3, 224, 224) -> (2, 1000)" in out
