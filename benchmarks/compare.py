"""Speed of paperzoo's models side by side with their reference implementations (torchvision, timm, transformers,
torch.nn), the same weights in both: a thin script over ``paperzoo.benchmark``, the same as ``paperzoo bench``.

    PYTHONPATH=src python benchmarks/compare.py --all --canonical --train --memory --threads 1 \\
        --max-image-size 320 --json benchmarks/results/raw/cpu.json --markdown benchmarks/results/cpu.md
    PYTHONPATH=src python benchmarks/compare.py resnet50 'vit_*' --device cuda --batch 32 --train

Every option: ``paperzoo bench --help``. Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import sys

from paperzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
