"""The suite's warning filters (pyproject.toml): the project's own warnings fail a test, only named
third-party notices are hidden, and other third-party warnings still reach the summary."""

import warnings

import pytest


def _warn_from(module: str, message: str, category: type[Warning]) -> None:
    """Issue a warning whose origin (as the filters see it) is code of ``module``."""
    exec(f"warnings.warn({message!r}, {category.__name__})", {"__name__": module, "warnings": warnings, category.__name__: category})


@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, FutureWarning, RuntimeWarning])
def test_a_warning_from_the_projects_code_fails_the_test(category):
    with pytest.raises(category, match="planted"):
        _warn_from("torchrec_automtl.nas.search", "planted", category)


def test_named_third_party_notices_are_hidden_and_others_are_shown():
    with warnings.catch_warnings(record=True) as seen:
        _warn_from("torch.distributed.checkpoint.planner_helpers",
                   "Please use DTensor instead and we are deprecating ShardedTensor.", FutureWarning)
        _warn_from("fbgemm_gpu.split_table_batched_embeddings_ops_training", "old API", DeprecationWarning)
        assert seen == []
        _warn_from("torch.nn.functional", "Using a target size that is different to the input size", UserWarning)
    assert [str(w.message) for w in seen] == ["Using a target size that is different to the input size"]
