"""Every ```python block of README.md runs as written, on tiny configurations.

Each block is executed in a fresh namespace with the working directory in a scratch folder.
A block may only be changed by the substitutions listed in SUBSTITUTIONS, each an exact
(README text, test text) pair that must occur in the block: they shrink the models (the README
shows the paper sizes) and point data paths at fixtures written here in the published formats.
A block without an entry runs verbatim; a new block fails until it runs or gets an entry.
"""
import os
import re

import numpy as np
import pytest

import train
from cifar_fixtures import write_batches
from photo_crops import photo_crops
from test_data_celebahq import write_glow

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")

# {section heading: [(README text, test text), ...]}
SUBSTITUTIONS = {
    "PixelCNN++": [
        ("nr_resnet=5, nr_filters=160, nr_logistic_mix=10", "nr_resnet=1, nr_filters=8, "
                                                            "nr_logistic_mix=2"),
        ("sample_fast(model, num_images=16", "sample_fast(model, num_images=2"),
        ("sample_naive(model, num_images=16", "sample_naive(model, num_images=2"),
    ],
    "Glow": [("depth=32, width=512", "depth=1, width=8")],
    "BigGAN": [('"save_biggan/ckpt-3"', '"save_biggan/ckpt-0"')],  # a 1-epoch run, below
    "Data": [('"/data/cifar"', '"cifar_fixture"'), ('"/data/celeba-tfr"', '"celeba_fixture"')],
}


def python_blocks():
    """[(the heading above it, code)] of every ```python block of the README."""
    heading, blocks, lines = None, [], open(README).read().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```python":
            end = lines.index("```", index + 1)
            blocks.append((heading, "\n".join(lines[index + 1:end])))
            index = end
        index += 1
    return blocks


def substituted(heading, code):
    for readme_text, test_text in SUBSTITUTIONS.get(heading, []):
        assert readme_text in code, f"README section {heading!r} no longer has {readme_text!r}"
        code = code.replace(readme_text, test_text)
    return code


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A working directory with the data the blocks name: real32 (built on first use), a CIFAR-10
    and a glow CelebA-HQ fixture, and a tiny BigGAN run in save_biggan/."""
    folder = tmp_path_factory.mktemp("readme")
    crops = photo_crops(60, 32, seed=4)
    labels = np.arange(60) % 10
    write_batches(str(folder / "cifar_fixture"), crops[:50], labels[:50], crops[50:], labels[50:])
    write_glow(str(folder / "celeba_fixture"), {"train": [2], "test": [1]}, 256, seed=0)
    if any(heading == "BigGAN" for heading, _ in python_blocks()):
        assert train.main(["--model", "biggan", "-i", str(folder / "datasets"), "-o",
                           str(folder / "save_biggan"), "-x", "1", "--G_ch", "4", "--D_ch", "4",
                           "--num_standing_accumulations", "1"]) == 0
    return folder


def test_the_readme_has_the_python_blocks_this_test_knows():
    headings = [heading for heading, _ in python_blocks()]
    assert {"PixelCNN++", "Glow", "Data"} <= set(headings)
    assert set(SUBSTITUTIONS) >= set(headings) - {None}, "give a new block its entry (or [])"


@pytest.mark.parametrize("heading, code", python_blocks(),
                         ids=[re.sub(r"\W+", "_", heading or "top") for heading, _ in
                              python_blocks()])
def test_readme_python_block_runs(heading, code, scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    exec(compile(substituted(heading, code), f"README.md ({heading})", "exec"), {})
