import json

from benchmarks import accuracy


def test_quick_accuracy_bench_writes_matrix_and_baselines(tmp_path):
    out = tmp_path / "acc.json"
    accuracy.main(["--quick", "--protocols", "5x2", "--variants", "dgmw", "--out", str(out)])
    res = json.loads(out.read_text())
    entry = res["protocols"]["5x2"]
    dgmw = entry["methods"]["dgmw"]
    assert [len(row) for row in dgmw["accuracy_matrix"]] == [1, 2, 3, 4, 5]
    assert set(entry["methods"]) == {"dgmw", "joint", "finetune"}
    assert len(dgmw["A_t"]) == 5 and 0 <= dgmw["average_forgetting"] <= 1
    assert dgmw["parameters_per_version"] == sorted(dgmw["parameters_per_version"])
    assert res["masked_step"][0]["ratio"] > 0 and res["machine"]["cpu_cores"]
    assert out.with_suffix(".png").stat().st_size > 1000
