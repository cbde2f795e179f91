"""examples/train_with_searched_head.py: a searched head inside another TorchRec training script."""

import importlib.util
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torchrec.fx

from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.derived import DerivedMultiTaskArch
from torchrec_automtl.nas.discretization import apply_decisions, is_discretized, next_decisions
from torchrec_automtl.nas.head import DENSE_ARCH_PREFIX, FINETUNED_CHECKPOINT, SearchedHead
from tests.nas.helpers import SCHEMA, small_supernet

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "train_with_searched_head.py"


def _example_module():
    spec = importlib.util.spec_from_file_location("train_with_searched_head", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory) -> Path:
    """A run directory laid out as a search leaves it: architecture.json and the fine-tuned dense weights."""
    run = tmp_path_factory.mktemp("searched")
    torch.manual_seed(0)
    net = small_supernet()
    while not is_discretized(net):
        apply_decisions(net, next_decisions(net, 50))
    architecture = Architecture.from_supernet(net, SCHEMA).save(run / "architecture.json")
    network = DerivedMultiTaskArch(Architecture.load(architecture))
    with warnings.catch_warnings():  # DCP notes that it saves in a single process: meant here
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({DENSE_ARCH_PREFIX + k: v for k, v in network.state_dict().items()}, checkpoint_id=str(run / FINETUNED_CHECKPOINT))
    return run


@pytest.mark.slow
def test_the_example_trains_a_searched_head_under_dmp_with_torchrecs_pipeline(searched_run):
    command = [sys.executable, str(EXAMPLE), str(searched_run), "--steps", "60", "--batch-size", "64", "--num-embeddings", "20"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    first, last = map(float, re.search(r"mean loss ([\d.]+) over the first tenth, ([\d.]+) over the last", result.stdout).groups())
    assert last < 0.8 * first  # the planted labels are learned through your tables and the head


def test_the_examples_whole_model_traces_and_the_traced_model_computes_the_same(searched_run):
    example = _example_module()
    head = SearchedHead.from_run(searched_run)
    assert head.task_types == ["binary", "regression"] == json.loads((searched_run / "architecture.json").read_text())["task_types"]
    model = example.RecommenderWithSearchedHead(example.embedding_tables(head, 20, torch.device("cpu")), head).eval()
    traced = torchrec.fx.symbolic_trace(model)
    assert any("require_features" in str(node.target) for node in traced.graph.nodes)  # the check stays, as one call
    for batch in example.planted_batches(head, batch_size=16, num_embeddings=20, steps=3, seed=0):
        with torch.no_grad():
            assert torch.equal(traced(batch.sparse_features, batch.dense_features), model(batch.sparse_features, batch.dense_features))
