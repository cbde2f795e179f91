import json
from collections import Counter

import pytest
import torch

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

    samples = [sample_architecture(space, schema, seed) for seed in range(20)]
    ops = Counter(op for a in samples for layer in a.layers for expert in layer for op in expert.operations)
    expected = sum(ops.values()) / len(space.candidate_operations)
    assert set(ops) == set(space.candidate_operations)
    assert all(abs(count - expected) < 0.3 * expected for count in ops.values()), ops
    inputs = len(schema.sparse) + len(schema.dense)
    kept = [len(e.features) / inputs for a in samples for e in a.layers[0]]
    assert 0.4 < sum(kept) / len(kept) < 0.6


def test_cli_writes_and_refuses_to_overwrite(tiny_aliccp, tmp_path, capsys):
    out = tmp_path / "random.json"
    main(["--dataset", str(tiny_aliccp), "--out", str(out), "--search-space", "small", "--seed", "1"])
    assert json.loads(out.read_text())["schema_fingerprint"] == Schema.load(tiny_aliccp).fingerprint()
    with pytest.raises(SystemExit):
        main(["--dataset", str(tiny_aliccp), "--out", str(out), "--seed", "2"])
    assert "--overwrite" in capsys.readouterr().err
