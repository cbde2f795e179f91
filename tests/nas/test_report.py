"""The run report's plots show the values they are given, where they belong."""

import numpy as np
import pytest

from torchrec_automtl.nas import report


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the report functions save, captured (and still written)."""
    figures = []
    save = report._save

    def capture(figure, path):
        figures.append(figure)
        save(figure, path)

    monkeypatch.setattr(report, "_save", capture)
    return figures


def test_gate_heatmap_puts_each_tasks_weight_in_its_experts_cell(saved_figures, tmp_path):
    weights = np.array([[0.7, 0.0, 0.3], [0.1, 0.6, 0.3]])
    report.plot_gate_heatmap(weights, ["click", "conversion"], ["e1", "e2", "e3"], tmp_path / "gates.png")
    axis = saved_figures[0].axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["e1", "e2", "e3"]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["click", "conversion"]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in axis.texts}
    assert cells == {(t, e): f"{weights[t, e]:.2f}" for t in range(2) for e in range(3)}
    np.testing.assert_array_equal(axis.images[0].get_array(), weights)
    assert (tmp_path / "gates.png").is_file()


def test_auc_curves_follow_search_then_fine_tuning(saved_figures, tmp_path):
    search = [{"valid": {"click": {"auc": 0.6}, "buy": {"mse": 2.0}}}, {"valid": {"click": {"auc": 0.65}, "buy": {"mse": 1.5}}}]
    finetune = [{"valid": {"click": {"auc": 0.7}, "buy": {"mse": 1.2}}}]
    report.plot_auc_curves(search, finetune, ["click", "buy"], tmp_path / "auc.png")
    lines = {line.get_label(): list(line.get_ydata()) for line in saved_figures[0].axes[0].lines}
    assert lines["click valid auc"] == [0.6, 0.65, 0.7] and lines["buy valid mse"] == [2.0, 1.5, 1.2]
    # a search without search.validate_epochs scored only its end
    report.plot_auc_curves([{"epoch": 0}] + search[1:], finetune, ["click", "buy"], tmp_path / "auc.png")
    lines = {line.get_label(): list(line.get_ydata()) for line in saved_figures[1].axes[0].lines}
    assert lines["click valid auc"] == [0.65, 0.7]
