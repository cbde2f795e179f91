import json

import pytest
import torch

from torchrec_automtl.datasets.schema import Schema, SparseFeature
from torchrec_automtl.nas.architecture import Architecture, ArchitectureError
from torchrec_automtl.nas.derived import DerivedMultiTaskArch, derive_from_supernet
from torchrec_automtl.nas.discretization import apply_decisions, is_discretized, next_decisions
from tests.nas.helpers import SCHEMA, TASKS, small_supernet


def _discretized(seed: int, **overrides):
    torch.manual_seed(seed)
    net = small_supernet(**overrides)
    with torch.no_grad():
        for parameter in net.architecture_parameters():
            parameter.normal_(0, 2)
    while not is_discretized(net):
        apply_decisions(net, next_decisions(net, 5))
    net.train()(torch.randn(64, 3, 4) * 3 + 1, torch.randn(64, 2))  # BatchNorm running statistics away from their init
    return net.eval()


@pytest.mark.parametrize("seed, overrides", [(0, {}), (1, {"gate_normalization": "all"}), (2, {"conv1d": True}), (3, {"num_layers": 3}),
                                             (4, {"mlp_batchnorm": False})])
def test_derived_model_reproduces_the_discretized_supernet(seed, overrides):
    net = _discretized(seed, **overrides)
    derived = derive_from_supernet(net, SCHEMA).eval()
    g = torch.Generator().manual_seed(seed)
    embeddings, dense = torch.randn(16, 3, 4, generator=g), torch.randn(16, 2, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(derived(embeddings, dense), net(embeddings, dense), rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in derived.parameters()) < sum(p.numel() for p in net.weight_parameters())


def test_unused_experts_are_pruned():
    net = _discretized(0)
    with torch.no_grad():  # the tasks read only layer-2 expert 1, which reads only layer-1 expert 3
        net.connection_kept.fill_(False)
        net.connection_kept[-2:, 0] = True
        net.connection_kept[0, 2] = True
    derived = derive_from_supernet(net, SCHEMA)
    assert [sorted(int(k) for k in layer) for layer in derived.experts] == [[2], [0]]
    embeddings, dense = torch.randn(4, 3, 4), torch.randn(4, 2)
    with torch.no_grad():
        torch.testing.assert_close(derived.eval()(embeddings, dense), net(embeddings, dense), rtol=1e-5, atol=1e-6)


def test_architecture_json_round_trips(tmp_path):
    architecture = Architecture.from_supernet(_discretized(4), SCHEMA)
    path = architecture.save(tmp_path / "architecture.json")
    payload = json.loads(path.read_text())
    assert payload["version"] == 2 and payload["tasks"] == TASKS and payload["task_types"] == ["binary", "regression"]
    assert all(op in {"skip", "linear", "mlp-4", "mlp-16"} for layer in payload["layers"] for e in layer for op in e["operations"])
    assert payload["gates"][-1]["name"] == "task.buy.gate"
    assert Architecture.load(path) == architecture
    rebuilt = DerivedMultiTaskArch(Architecture.load(path))
    assert rebuilt(torch.randn(2, 3, 4), torch.randn(2, 2)).shape == (2, 2)


def test_features_feeding_a_task_follow_kept_connections():
    net = _discretized(6)
    with torch.no_grad():
        net.connection_kept.fill_(False)
        net.connection_kept[-1, 1] = True  # buy <- layer2.expert2
        net.connection_kept[-2, 0] = True  # click <- layer2.expert1
        net.connection_kept[1, 2] = True  # layer2.expert2 <- layer1.expert3
        net.connection_kept[0, 0] = True  # layer2.expert1 <- layer1.expert1
        net.feature_kept.fill_(False)
        net.feature_kept[0, 0] = True  # layer1.expert1 reads user
        net.feature_kept[2, 1] = True  # layer1.expert3 reads item
        net.feature_kept[4, 3] = True  # layer2.expert2.gate reads price
        net.feature_kept[3:, 4] = True  # every gate reads age
    architecture = Architecture.from_supernet(net, SCHEMA)
    assert architecture.features_feeding("click") == {"user", "age"}
    assert architecture.features_feeding("buy") == {"item", "price", "age"}


def test_undiscretized_supernet_has_no_architecture():
    with pytest.raises(ArchitectureError, match="undecided"):
        Architecture.from_supernet(small_supernet(), SCHEMA)


def test_mismatched_schema_is_refused_with_the_difference_named():
    architecture = Architecture.from_supernet(_discretized(5), SCHEMA)
    architecture.check_schema(SCHEMA)
    other = Schema(sparse=SCHEMA.sparse[:2], dense=SCHEMA.dense, tasks=SCHEMA.tasks)
    with pytest.raises(ArchitectureError, match=r"missing \['tags'\]"):
        architecture.check_schema(other)
    resized = Schema(sparse=(SparseFeature("user", 11),) + SCHEMA.sparse[1:], dense=SCHEMA.dense, tasks=SCHEMA.tasks)
    with pytest.raises(ArchitectureError, match="cardinalities"):
        architecture.check_schema(resized)


def test_malformed_architecture_file_is_named(tmp_path):
    path = tmp_path / "architecture.json"
    path.write_text(json.dumps({"version": 2, "tasks": []}))
    with pytest.raises(ArchitectureError, match="architecture.json: malformed"):
        Architecture.load(path)
    path.write_text(json.dumps({"version": 1, "tasks": []}))
    with pytest.raises(ArchitectureError, match="version 1 files lack task_types"):
        Architecture.load(path)
