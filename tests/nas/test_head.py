"""The searched head outside the project: built from a run directory alone, fed a KeyedTensor by name."""

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedTensor

from torchrec_automtl.common.ranking import auc
from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.derived import AutoMTLConfig
from torchrec_automtl.nas.discretization import apply_decisions, is_discretized, next_decisions
from torchrec_automtl.nas.head import SearchedHead
from torchrec_automtl.nas.search_and_finetune import run_search
from torchrec_automtl.pipelines.checkpoint import load_checkpoint
from tests.distributed.spawn import run_on_ranks
from tests.nas.helpers import DENSE, SCHEMA, SPARSE, small_supernet
from tests.nas.test_search import TINY, TINY_V1, _config


def _search(rank: int, config, run_dir: str) -> dict:
    return {"valid": run_search(config, run_dir).result.valid}


def _keyed(pooled: dict[str, torch.Tensor], names: list[str]) -> KeyedTensor:
    return KeyedTensor.from_tensor_list(names, [pooled[name] for name in names])


@pytest.mark.slow
@pytest.mark.parametrize("tiny", [TINY, TINY_V1], ids=["desan", "v1"])
def test_the_head_of_a_run_reproduces_the_fine_tuned_model(tiny_aliccp, tmp_path, tiny):
    run = tmp_path / "run"
    valid = run_on_ranks(_search, 1, tmp_path / "out", _config([f"dataset.path={tiny_aliccp}"] + tiny), str(run))[0]["valid"]
    head = SearchedHead.from_run(run).eval()

    # The reference: the whole fine-tuned train module, restored unsharded from the same checkpoint.
    schema = Schema.load(tiny_aliccp)
    config = AutoMTLConfig(name="automtl", embedding_dim=head.architecture.embedding_dim, architecture=str(run / "architecture.json"))
    plain = MultiTaskTrain(build_multitask_model(config, schema), schema.tasks)
    load_checkpoint(plain, run / "finetune" / "checkpoint")
    plain.eval()

    scores, labels = [], []
    with torch.no_grad():
        for batch in BatchReader(ParquetSplit.open(tiny_aliccp, "valid", schema), batch_size=128).epoch():
            pooled = plain.model.sparse_arch(batch.sparse_features).to_dict()
            expected = plain.model(batch)
            # Only the fields the head reads, in an order of our own: the head picks them by name.
            logits = head(_keyed(pooled, head.required_features[::-1]), batch.dense_features)
            torch.testing.assert_close(logits, expected, rtol=0, atol=0)
            scores.append(torch.sigmoid(logits[batch.mask]))
            labels.append(batch.labels[batch.mask])
    scores, labels = torch.cat(scores), torch.cat(labels)
    for t, task in enumerate(head.tasks):  # the run's own validation metrics of the model it kept
        assert auc(scores[:, t].numpy(), labels[:, t].numpy()) == pytest.approx(valid[task]["auc"], abs=1e-6)

    with pytest.raises(KeyError, match=head.required_features[0]):
        head(_keyed(pooled, head.required_features[1:]), batch.dense_features)


def test_fields_the_network_never_reads_need_not_be_given():
    torch.manual_seed(0)
    net = small_supernet()
    while not is_discretized(net):
        apply_decisions(net, next_decisions(net, 50))
    payload = Architecture.from_supernet(net, SCHEMA).to_dict()
    for spec in [expert for layer in payload["layers"] for expert in layer] + payload["gates"]:
        spec["features"] = [f for f in spec["features"] if f != "item"]  # nobody reads "item"
    head = SearchedHead(Architecture.from_dict(payload)).eval()
    assert head.required_features == ["user", "tags"] and head.dense_features == DENSE
    g = torch.Generator().manual_seed(1)
    pooled = {name: torch.randn(5, 4, generator=g) for name in SPARSE}
    dense = torch.randn(5, len(DENSE), generator=g)
    with torch.no_grad():
        without = head(_keyed(pooled, ["tags", "user"]), dense)
        torch.testing.assert_close(head(_keyed(pooled, SPARSE), dense), without, rtol=0, atol=0)
