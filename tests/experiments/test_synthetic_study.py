"""The Table 5 study's table: our mean +- std per model and correlation beside the paper's figure."""

from torchrec_automtl.experiments.synthetic_study import CORRELATIONS, MODELS, study_table


def test_study_table_puts_each_models_mean_beside_the_papers_figure():
    results = {p: [{"model": m, "avg_mse": 0.1 * (k + 1) + 0.01 * seed + p} for k, m in enumerate(MODELS) for seed in (0, 2)]
               for p in CORRELATIONS}
    table = study_table(results, "options line")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| model")}
    assert rows["mmoe"][:2] == ["0.2100 +- 0.0100", "0.5043"]  # P = 0: seeds 0.20 and 0.22; paper 0.5043
    assert rows["automtl"][4:] == ["1.3100 +- 0.0100", "0.0116"]  # P = 0.9
    assert rows["automtl_v1"][1::2] == ["-", "-", "-"]  # paper 001 has no v1 row
    assert "options line" in table
