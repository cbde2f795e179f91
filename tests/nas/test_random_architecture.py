import json
from collections import Counter

import pytest
import torch
from scipy.stats import binomtest, chisquare

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.nas.derived import DerivedMultiTaskArch
from torchrec_automtl.nas.random_architecture import main, sample_architecture, search_space_preset


def test_random_architectures_are_seeded_uniform_and_buildable(tiny_aliccp):
    schema = Schema.load(tiny_aliccp)
    space = search_space_preset("small")
    first, again, other = (sample_architecture(space, schema, seed) for seed in (3, 3, 4))
    assert first == again and first != other
    derived = DerivedMultiTaskArch(first)
    assert derived(torch.randn(4, len(schema.sparse), space.embedding_dim), torch.randn(4, len(schema.dense))).shape == (4, 2)

    # 100 samples: 2,400 blocks, 2,700 layer-1 and 2,700 gate feature choices, 2,400 connections.
    samples = [sample_architecture(space, schema, seed) for seed in range(100)]
    ops = Counter(op for a in samples for layer in a.layers for expert in layer for op in expert.operations)
    assert set(ops) == set(space.candidate_operations)
    assert chisquare(list(ops.values())).pvalue > 1e-3, ops  # uniform over the ops
    inputs = len(schema.sparse) + len(schema.dense)
    for consumers in ([e.features for a in samples for e in a.layers[0]], [g.features for a in samples for g in a.gates]):
        kept = sum(len(features) for features in consumers)
        assert binomtest(kept, inputs * len(consumers), 0.5).pvalue > 1e-3  # every feature a fair coin, for experts and gates
    # Connections: fair coins, plus one kept where a gate's coins dropped all n (probability 2^-n each).
    n = space.num_experts
    connections = [len(g.experts) for a in samples for g in a.gates]
    expected = n * 0.5 + 0.5 ** n
    assert abs(sum(connections) / len(connections) - expected) < 4 * (n * 0.25) ** 0.5 / len(connections) ** 0.5
    assert min(connections) >= 1


def test_cli_writes_and_refuses_to_overwrite(tiny_aliccp, tmp_path, capsys):
    out = tmp_path / "random.json"
    main(["--dataset", str(tiny_aliccp), "--out", str(out), "--search-space", "small", "--seed", "1"])
    assert json.loads(out.read_text())["schema_fingerprint"] == Schema.load(tiny_aliccp).fingerprint()
    with pytest.raises(SystemExit):
        main(["--dataset", str(tiny_aliccp), "--out", str(out), "--seed", "2"])
    assert "--overwrite" in capsys.readouterr().err
