"""The import graph inside minillm/ follows the layer order.

Each module belongs to one layer (a file, or a package: ``nn/``, ``functional/``,
...). At module level it may import only from strictly lower layers, or from its
own package. An import inside a function (a *late* import) may go upward: that
is how a model reaches its file format (``GPT.from_pretrained`` -> ``minillm.hf``)
or its decoding loop, and how ``Tensor``'s operators reach their Functions,
without an import cycle. ``minillm/__init__.py`` sits on top and imports them all.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minillm"

LAYERS = [  # lowest first; a module imports only from the layers before its own
    ("backend", "shapes", "progress", "safe_io"),                 # foundations: no minillm imports
    ("autograd",),                                                # Tensor, Function, backward
    ("functional", "gradcheck"),                                  # every op
    ("nn",),                                                      # modules, layers, blocks
    ("optim", "kvcache"),
    ("models",),                                                  # one family a file
    ("sampling",),
    ("generation",),
    ("tokenizers", "corpus", "batches", "data", "plotting",       # host-side text and figures
     "mlm"),                                                      # BERT's masking: host-side batches
    ("checkpoint", "distributed"),                               # files; one process or many
    ("train", "lora", "hf"),                                      # hf: formats know models
    ("finetune", "evaluate", "scaling", "ngram", "half_precision"),
    ("memory", "energy", "filters", "fairness"),                  # size, energy, fairness: read models
    ("cli",),                                                     # the demos' command-line layer
]
LAYER = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module):
    """'minillm.nn.attention' -> 'nn'; 'minillm' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_level_imports(tree):
    """(line, minillm unit) for each import at module level (not inside a def or class)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = ([f"minillm.{alias.name}" for alias in node.names] if node.module == "minillm"
                     else [node.module])
        else:
            continue
        found += [(node.lineno, unit_of(name)) for name in names if name.split(".")[0] == "minillm"]
    return found


def violations(unit, tree, where):
    """Upward or sideways imports of ``unit`` (a layer name), as messages."""
    bad = []
    for line, target in module_level_imports(tree):
        if target == unit:
            continue
        if target not in LAYER:
            bad.append(f"{where}:{line} imports minillm.{target}, which is in no layer")
        elif LAYER[target] >= LAYER[unit]:
            bad.append(f"{where}:{line} ({unit}, layer {LAYER[unit]}) imports minillm.{target} "
                       f"(layer {LAYER[target]}): not below it; import it inside the function that needs it")
    return bad


def package_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.as_posix() != "__init__.py":
            yield relative.parts[0].removesuffix(".py"), relative, path


def test_every_module_belongs_to_a_layer():
    units = {unit for unit, _, _ in package_modules()}
    assert len(units) >= 20, f"expected the whole package under {PACKAGE}"
    assert not units - set(LAYER), f"place these in LAYERS: {sorted(units - set(LAYER))}"


def test_imports_follow_the_layer_order():
    bad = []
    for unit, relative, path in package_modules():
        bad += violations(unit, ast.parse(path.read_text(encoding="utf-8")), f"minillm/{relative}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


@pytest.mark.parametrize("unit, source", [
    ("nn", "from minillm.train import Trainer"),              # up several layers
    ("models", "from minillm import hf"),                     # a model importing its format
    ("autograd", "import minillm.functional.arithmetic"),     # the engine importing its ops
    ("optim", "from minillm.kvcache import KVCache"),          # sideways: same layer
    ("sampling", "from minillm.newthing import x"),           # a module in no layer
])
def test_a_planted_upward_import_fails(unit, source):
    assert violations(unit, ast.parse(source), "planted")


def test_late_imports_and_downward_imports_pass():
    source = ("from minillm import backend\nfrom minillm.nn.module import Module\n"
              "def from_pretrained():\n    from minillm.hf import gpt2\n")
    assert not violations("models", ast.parse(source), "ok")


def test_import_minillm_reaches_every_public_submodule():
    """In a fresh interpreter: ``import minillm`` alone, then attributes (PyTorch's habit)."""
    code = ("import minillm\n"
            "minillm.optim.AdamW, minillm.evaluate.perplexity, minillm.tokenizers.BPETokenizer\n"
            "minillm.hf.load, minillm.hf.save, minillm.nn.MultiHeadAttention, minillm.models.GPT\n"
            "minillm.data.Cleaner, minillm.batches.get_batch, minillm.corpus.load_corpus\n"
            "minillm.checkpoint.save, minillm.train.Trainer, minillm.lora.apply_lora, minillm.sampling.Sampler\n"
            "minillm.generation.generate, minillm.kvcache.KVCache, minillm.scaling, minillm.finetune\n"
            "minillm.distributed, minillm.mlm.mask_tokens, minillm.models.Bert\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
