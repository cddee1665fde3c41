"""`dgm bench accuracy --quick`: the summary, the targets, the ablation, --resume and --merge."""

import json

import pytest

from benchmarks import accuracy, report
from dgm import Learner, LearnerConfig

SUMMARY_FIELDS = {
    "protocol", "train_per_class", "method", "seeds", "final_a_mean", "final_a_sd", "min_old_class_acc",
    "min_fidelity", "generator_growth", "total_growth", "seconds_per_task",
}  # fmt: skip


def test_quick_accuracy_bench_summary_ablation_resume_and_merge(tmp_path, capsys):
    main, extra, merged = tmp_path / "acc.json", tmp_path / "ablation.json", tmp_path / "merged.json"
    accuracy.main(["--quick", "--out", str(main)])
    res = json.loads(main.read_text())
    assert res["machine"]["cpu_cores"] and res["settings"]["preset"] == "tiny"
    assert {(r["protocol"], r["train_per_class"], r["seed"], r["method"]) for r in res["runs"]} == {
        ("5x2", 40, 0, m) for m in ("dgmw", "dgma", "joint", "finetune")
    }
    dgmw = next(r for r in res["runs"] if r["method"] == "dgmw")
    assert dgmw["tasks"] == [["zero", "one"], ["two", "three"]]
    assert [len(row) for row in dgmw["accuracy_matrix"]] == [1, 2]
    assert dgmw["class_accuracy_matrix"][0][2:] == [None, None]  # classes not seen yet
    assert all(0 <= a <= 1 for a in dgmw["class_accuracy_matrix"][1])
    assert dgmw["min_old_class_acc"] == min(dgmw["class_accuracy_matrix"][1][:2])
    gen = dgmw["generator_parameters_per_version"]
    assert len(gen) == 2 and gen[0] <= gen[1] and dgmw["generator_growth"] == gen[1] / gen[0]
    assert dgmw["parameters_per_version"][0] > gen[0]  # the serving classifier counts in the total
    assert set(dgmw["fidelity"]) == {"zero", "one", "two", "three"} and dgmw["min_fidelity"] >= 0
    assert set(dgmw["learner_fidelity"]) == set(dgmw["fidelity"])
    assert dgmw["oracle"]["test_accuracy"] > 0.5  # an oracle that cannot read real digits judges nothing
    for run in res["runs"]:  # the gate's evidence after task 1, on task 0's real test images
        (evidence,) = run["gate_evidence"]
        assert len(evidence["known"]) == len(evidence["to_new"]) == 1
        assert run["accuracy_matrix"][1][0] <= evidence["known"][0] <= 1  # fewer classes to confuse
        assert run["accuracy_matrix"][1][0] <= 1 - evidence["to_new"][0] + 1e-9
    joint = next(r for r in res["runs"] if r["method"] == "joint")
    dgm_steps = [v["steps"] for v in dgmw["per_version"]]
    assert all(b >= s for b, s in zip(joint["batches_per_task"], dgm_steps, strict=True))

    rows = {r["method"]: r for r in res["summary"]}
    assert set(rows) == {"dgmw", "dgma", "joint", "finetune"}
    for row in rows.values():
        assert SUMMARY_FIELDS <= set(row) and row["seeds"] == [0] and row["train_per_class"] == 40
    assert rows["dgmw"]["final_a_mean"] == dgmw["A_final"] and rows["joint"]["min_fidelity"] is None
    assert not any(row["off_default"] for row in rows.values())  # every run at the preset's default
    targets = res["targets"]
    assert {
        "dgmw_vs_joint 5x2 40/class",
        "min_old_class_acc 5x2 40/class",
        "min_fidelity dgmw 5x2 40/class",
    } <= set(targets)
    assert {"masked_step_ratio dgmw", "masked_step_ratio dgma"} <= set(targets)
    assert all({"value", "target", "pass"} <= set(t) for t in targets.values())
    # "no old class below 0.5", "fidelity for every class": the worst seed, not the mean, decides
    assert targets["min_old_class_acc 5x2 40/class"]["value"] == rows["dgmw"]["min_old_class_acc_worst"]
    assert targets["min_fidelity dgmw 5x2 40/class"]["value"] == rows["dgmw"]["min_fidelity_worst"]
    assert main.with_suffix(".png").stat().st_size > 1000
    assert (tmp_path / "acc_dgmw_classes.png").stat().st_size > 1000

    # --resume: nothing left to run, the runs and the timing are kept as they were
    capsys.readouterr()
    accuracy.main(["--quick", "--resume", "--out", str(main)])
    assert "skip ('5x2', 40, 0, 'dgmw')" in capsys.readouterr().out
    again = json.loads(main.read_text())
    assert again["runs"] == res["runs"] and again["masked_step"] == res["masked_step"]

    # the ablation, one lever, in a file of its own (as a parallel process would), then merged
    accuracy.main(
        ["--quick", "--levers", "consolidate_real", "--checkpoints", str(tmp_path), "--out", str(extra)]
    )
    ablation = json.loads(extra.read_text())
    saved = Learner.load(tmp_path / "5x2_40_seed_0_dgmw-consolidate_real.safetensors")  # --checkpoints
    assert set(saved.classes) == {"zero", "one", "two", "three"} and saved.config.consolidate_real
    assert [r["method"] for r in ablation["runs"]] == ["dgmw-consolidate_real"]
    assert ablation["runs"][0]["config"]["consolidate_real"] is True and not ablation["masked_step"]
    accuracy.main(["--merge", str(main), str(extra), str(main), "--out", str(merged)])
    both = json.loads(merged.read_text())
    assert len(both["runs"]) == 5  # the second copy of acc.json adds nothing
    lever = next(r for r in both["summary"] if r["method"] == "dgmw-consolidate_real")
    assert SUMMARY_FIELDS <= set(lever) and lever["overrides"] == {"consolidate_real": True}
    assert both["targets"] == again["targets"]  # the lever's runs do not enter the targets

    table = report.accuracy_table(merged)
    assert "| 5x2 | 40 | dgmw | 1 |" in table and "dgmw-consolidate_real" not in table
    assert "dgmw_vs_joint 5x2 40/class" in table and "Not at today's default" not in table
    row = next(r for r in both["summary"] if r["method"] == "dgmw")
    row["off_default"] = {"0": {"carry_surplus": False}}  # as a run from before the key existed
    merged.write_text(json.dumps(both))
    marked = report.accuracy_table(merged)
    assert "| 5x2 | 40 | dgmw [1] | 1 |" in marked
    assert '[1] 5x2 40 dgmw: seed 0 {"carry_surplus": false}' in marked
    ablation_table = report.ablation_table(merged)
    assert "`consolidate_real`: real current-task images" in ablation_table
    lever_row = next(line for line in ablation_table.splitlines() if "`consolidate_real`" in line)
    assert "(s0 cpu/cpu)" in lever_row  # paired with the dgmw run of the same seed


def test_levers_run_on_dgma_and_a_lever_for_dgma_only_is_skipped_on_dgmw(tmp_path, capsys):
    out = tmp_path / "dgma_lever.json"
    accuracy.main(["--quick", "--max-tasks", "2", "--levers", "own_code_rows", "--lever-variant", "dgma",
                   "--out", str(out)])  # fmt: skip
    (run,) = json.loads(out.read_text())["runs"]
    assert run["method"] == "dgma-own_code_rows" and run["lever"] == "own_code_rows"
    assert run["config"]["variant"] == "dgma" and run["config"]["own_code_rows"] is True
    assert run["config"]["claim_cap"] == LearnerConfig.preset("tiny", variant="dgma").claim_cap
    capsys.readouterr()
    skipped = tmp_path / "dgmw_lever.json"
    accuracy.main(["--quick", "--levers", "own_code_rows", "--out", str(skipped)])
    assert "skip lever(s) ['own_code_rows']: they change nothing for dgmw" in capsys.readouterr().out
    assert json.loads(skipped.read_text())["runs"] == []


def test_lever_paired_with_the_default_of_its_day():
    """A lever measured when the default was 500 steps pairs with the 500-step run, not today's 1000;
    config keys added to LearnerConfig after a run was made do not break the pairing."""

    def run(method, seed=0, **config):
        base = {"steps": 1000, "classifier": "consolidated", "fidelity_steps": 300}
        overrides = {"steps_500": {"steps": 500}, "critic_head": {"classifier": "critic_head"}}
        return {
            "method": method, "protocol": "5x2", "train_per_class": 800, "seed": seed, "A_final": 0.5,
            "config": {**base, **config}, "overrides": overrides.get(method.partition("-")[2], {}),
        }  # fmt: skip

    today, old = run("dgmw"), run("dgmw-steps_500", steps=500)
    lever = run("dgmw-critic_head", steps=500, classifier="critic_head")
    del lever["config"]["fidelity_steps"]  # an older run
    runs = [today, old, lever, run("dgmw", seed=1), run("dgma", variant="dgma")]
    assert report.lever_base(runs, lever) is old
    assert report.lever_base(runs, old) is today
    assert report.lever_base(runs, today) is None
    old["A_final"], lever["A_final"] = 0.70, 0.75
    assert report.paired_delta(runs, lever, ("5x2", 800)) == "+0.050 vs dgmw-steps_500 (s0 cpu/cpu)"


def test_a_key_an_older_run_lacks_compares_as_its_default_and_inert_keys_do_not_count():
    def run(method, overrides=None, **config):
        return {
            "method": method, "protocol": "5x2", "train_per_class": 800, "seed": 0, "A_final": 0.5,
            "config": {"steps": 1000, **config}, "overrides": overrides or {},
        }  # fmt: skip

    # made before g_ema existed: it ran without the average, so it pairs with the default, not dgmw-g_ema
    older = run("dgmw-no_surplus_carry", {"carry_surplus": False}, carry_surplus=False)
    today = run("dgmw", carry_surplus=True, g_ema=0.0)
    averaged = run("dgmw-g_ema", {"g_ema": 0.995}, carry_surplus=True, g_ema=0.995)
    assert report.lever_base([older, averaged], older) is None
    assert report.lever_base([older, averaged, today], older) is today
    # DGMa: carry_surplus changes nothing, and own_code_rows is newer than the default run
    dgma = run("dgma", variant="dgma", carry_surplus=False)
    lever = run(
        "dgma-own_code_rows", {"own_code_rows": True}, variant="dgma", carry_surplus=True, own_code_rows=True
    )
    assert report.lever_base([today, dgma, lever], lever) is dgma


def test_lever_that_names_its_same_machine_pair_is_paired_with_it_only():
    def run(method, **config):
        return {
            "method": method, "protocol": "5x2", "train_per_class": 800, "seed": 0,
            "config": {"aux_g": False, **config}, "overrides": {"aux_g": True} if "aux" in method else {},
        }  # fmt: skip

    table, rerun, lever = run("dgmw"), run("dgmw-default_rerun_amd"), run("dgmw-aux_g", aux_g=True)
    table["A_final"], rerun["A_final"], lever["A_final"] = 0.827, 0.835, 0.833
    runs = [table, rerun, lever]
    assert report.lever_base(runs, lever) is table  # no pair named: the run with no lever first
    lever["paired_with"] = "dgmw-default_rerun_amd"
    assert report.lever_base(runs, lever) is rerun
    assert report.paired_delta(runs, lever, ("5x2", 800)) == "-0.002 vs dgmw-default_rerun_amd (s0 cpu/cpu)"
    lever["paired_with"] = "dgmw-missing"
    assert report.lever_base(runs, lever) is None


def test_runs_at_an_earlier_default_are_named_in_the_summary_and_the_table():
    """A DGMw run from before `carry_surplus` existed lacks the key, so it ran the dataclass default
    (off); today's `small` turns it on. The summary says which seed differs and how; the table marks
    the row. DGMa's runs ignore the key: DGMa never has a surplus to carry."""
    settings = {"preset": "small", "set": {}}

    def run(variant, seed, **changes):
        cfg = LearnerConfig.preset("small", image_shape=(1, 32, 32), variant=variant).to_dict()
        cfg.update(changes)
        return {"method": variant, "seed": seed, "config": cfg, "overrides": {}}

    today = run("dgmw", 0)
    older = run("dgmw", 1)
    del older["config"]["carry_surplus"]
    dgma = run("dgma", 0)
    del dgma["config"]["carry_surplus"]
    assert accuracy.off_default(today, settings) == {}
    assert accuracy.off_default(older, settings) == {"carry_surplus": False}
    assert accuracy.off_default(dgma, settings) == {}
    assert accuracy.off_default(run("dgmw", 2, steps=500), settings) == {"steps": 500}
    lever = {**run("dgmw", 0, steps=500), "method": "dgmw-steps_500", "overrides": {"steps": 500}}
    assert accuracy.off_default(lever, settings) == {}  # a lever differs by its overrides alone
    assert accuracy.off_default({"method": "joint", "seed": 0, "config": {}}, settings) == {}


def test_levers_and_overrides_parse():
    args = accuracy.parse(["--ablation", "--lever", "no_sparsity", "lam=0", "--set", "epochs=3"])
    assert args.methods == [] and set(args.lever_defs) == {*accuracy.LEVERS, "no_sparsity"}
    assert args.lever_defs["no_sparsity"]["overrides"] == {"lam": 0} and args.set == {"epochs": 3}
    args = accuracy.parse(["--levers", "no_projection", "--methods", "dgmw", "--sizes", "800", "2000"])
    assert list(args.lever_defs) == ["no_projection"] and args.methods == ["dgmw"]
    assert args.sizes == [800, 2000] and args.seeds == [0, 1, 2] and args.protocols == ["5x2", "10x1"]
    assert accuracy.parse([]).methods == list(accuracy.METHODS)


def test_seconds_target_comes_from_the_timing_of_todays_default(tmp_path):
    """The accuracy runs share their cores, so the 4-minute target reads benchmarks.train_time's task,
    but only one that ran today's default: a timing of another config must not pass for it."""
    settings = {"preset": "small", "set": {}}
    today = LearnerConfig.preset("small", image_shape=(1, 28, 28)).to_dict()
    timing = {
        "machine": {"cpu": "Some CPU", "cpu_cores": 2, "date": "2026-12-05T23:29:28+00:00"},
        "threads": 2,
        "tasks": [
            {"variant": "dgmw", "seconds": 999.0, "config": {**today, "ngf": today["ngf"] + 1}},
            {"variant": "dgmw", "seconds": 150.0, "config": today},
        ],
    }
    path = tmp_path / "train_time.json"
    path.write_text(json.dumps(timing))
    found = accuracy.default_task_timing(settings, path)
    date = timing["machine"]["date"]
    assert found == {"seconds": 150.0, "cpu": "Some CPU, 2 cores", "threads": 2, "date": date}
    row = dict.fromkeys(
        ["min_old_class_acc", "min_fidelity", "min_fidelity_worst", "min_fidelity_relative",
         "oracle_test_accuracy", "learner_min_fidelity_worst", "generator_growth"]
    )  # fmt: skip
    row.update(protocol="5x2", train_per_class=800, method="dgmw", seconds_per_task=400.0, tasks=5,
               final_a_mean=0.8, min_old_class_acc_worst=0.6)  # fmt: skip
    with_timing = accuracy.evaluate_targets([row], [], found)
    assert with_timing["seconds_1600_image_task dgmw"]["value"] == 150.0
    assert with_timing["seconds_1600_image_task dgmw"]["pass"]
    assert "seconds_1600_image_task dgmw 5x2 800/class" not in with_timing
    without = accuracy.evaluate_targets([row], [], None)  # no timing of today's default: the runs' own
    assert not without["seconds_1600_image_task dgmw 5x2 800/class"]["pass"]
    # a timing from before an option existed matches: the option reads at its default, which trains as before
    older = {k: v for k, v in today.items() if k not in ("truncation", "lam_aux")}
    timing["tasks"][1]["config"] = older
    path.write_text(json.dumps(timing))
    assert accuracy.default_task_timing(settings, path) == found
    assert accuracy.default_task_timing(settings, path, image_shape=(3, 28, 28)) is None  # colour runs
    timing["tasks"][1]["config"] = {**older, "lam_aux": 2.0}  # ... but not one that set it otherwise
    path.write_text(json.dumps(timing))
    assert accuracy.default_task_timing(settings, path) is None
    timing["tasks"][1]["config"] = {**today, "removed_option": 1}  # an option today's config refuses
    path.write_text(json.dumps(timing))
    assert accuracy.default_task_timing(settings, path) is None
    timing["tasks"].pop()
    path.write_text(json.dumps(timing))
    assert accuracy.default_task_timing(settings, path) is None
    assert accuracy.default_task_timing({**settings, "quick": True}, path) is None


def test_fidelity_reference_gives_one_class_tasks_a_learner_fidelity(tmp_path):
    out = tmp_path / "ref.json"
    common = ["--quick", "--protocols", "10x1", "--methods", "dgmw", "--max-tasks", "3", "--no-step-timing"]
    # --quick turns the judge off; its tasks hold too few images for the default fidelity_min_images
    common += ["--set", "fidelity_epochs=1", "fidelity_steps=100", "fidelity_min_images=10"]
    accuracy.main([*common, "--fidelity-reference", "10", "--out", str(out)])
    run = json.loads(out.read_text())["runs"][0]
    first, *later = [c for task in run["tasks"] for c in task]
    assert run["fidelity_reference"] == 10
    assert run["learner_fidelity"][first] is None  # nothing learned before it to judge it against
    assert all(0.0 <= run["learner_fidelity"][c] <= 1.0 for c in later)
    accuracy.main([*common, "--out", str(tmp_path / "plain.json")])
    plain = json.loads((tmp_path / "plain.json").read_text())["runs"][0]
    assert set(plain["learner_fidelity"].values()) == {None} and "fidelity_reference" not in plain
    assert plain["A_t"] == run["A_t"]  # the judge changes what is measured, not what is learned


def test_a_one_class_protocol_reads_its_service_fidelity_target_from_the_measured_runs():
    """10x1 rows have no service fidelity unless the runs passed --fidelity-reference; the lever runs
    that did (today's default, measured) give the target its value, and say which seeds."""

    def row(method: str, learner_worst: float | None, seeds: list[int]) -> dict:
        return {
            "protocol": "10x1", "train_per_class": 800, "method": method, "seeds": seeds, "tasks": 10,
            "final_a_mean": 0.83, "min_fidelity_worst": 0.55, "min_fidelity": 0.6,
            "min_fidelity_relative": 0.96, "oracle_test_accuracy": 0.88, "generator_growth": 1.7,
            "learner_min_fidelity_worst": learner_worst, "seconds_per_task": 200.0,
        }  # fmt: skip

    plain = [row("dgmw", None, [0, 1, 2])]
    assert "learner_fidelity dgmw 10x1 800/class" not in accuracy.evaluate_targets(plain, [])
    measured = plain + [row("dgmw-one_class_relative", 0.9987, [0, 1, 2])]
    target = accuracy.evaluate_targets(measured, [])["learner_fidelity dgmw 10x1 800/class"]
    assert target["value"] == 0.9987 and target["pass"] and "seeds [0, 1, 2]" in target["detail"]
    low = plain + [row("dgmw-one_class_relative", 0.7, [2])]
    assert not accuracy.evaluate_targets(low, [])["learner_fidelity dgmw 10x1 800/class"]["pass"]


def test_two_tasks_of_five_classes_on_request(tmp_path):
    out = tmp_path / "two_by_five.json"
    accuracy.main(
        ["--quick", "--protocols", "2x5", "--methods", "dgmw", "--no-step-timing", "--out", str(out)]
    )
    (run,) = json.loads(out.read_text())["runs"]
    assert run["protocol"] == "2x5" and [len(t) for t in run["tasks"]] == [5, 5]
    assert len(run["accuracy_matrix"]) == 2 and len(run["class_accuracy_matrix"][-1]) == 10
    assert accuracy.parse([]).protocols == ["5x2", "10x1"]  # not by default


def test_quick_colour_run_trains_a_three_channel_learner(tmp_path):
    out = tmp_path / "colour.json"
    accuracy.main(["--quick", "--colour", "--methods", "dgmw", "--max-tasks", "1", "--no-step-timing",
                   "--out", str(out)])  # fmt: skip
    (run,) = json.loads(out.read_text())["runs"]
    assert run["config"]["image_shape"][0] == 3
    assert "tinted per image to RGB" in json.loads(out.read_text())["settings"]["data"]


def test_shuffled_class_order_is_one_per_seed_shared_by_every_method_and_never_mixed(tmp_path):
    """--shuffle-classes: a user's classes arrive in no particular order, so the tasks group classes in
    a random order per seed; DGM and its baselines of one seed see the same tasks. Runs of another
    order must not merge into one table."""
    out, plain = tmp_path / "shuffled.json", tmp_path / "plain.json"
    common = ["--quick", "--protocols", "5x2", "--max-tasks", "1", "--no-step-timing"]
    accuracy.main([*common, "--shuffle-classes", "--seeds", "0", "1", "--methods", "dgmw", "joint",
                   "--out", str(out)])  # fmt: skip
    runs = json.loads(out.read_text())["runs"]
    tasks = {(r["seed"], r["method"]): r["tasks"] for r in runs}
    assert tasks[0, "dgmw"] == tasks[0, "joint"] and tasks[1, "dgmw"] == tasks[1, "joint"]
    assert tasks[0, "dgmw"] != tasks[1, "dgmw"]
    accuracy.main([*common, "--seeds", "0", "--methods", "joint", "--out", str(plain)])
    (ordered,) = json.loads(plain.read_text())["runs"]
    assert ordered["tasks"] == [["zero", "one"]] and ordered["tasks"] not in (
        tasks[0, "joint"],
        tasks[1, "joint"],
    )
    with pytest.raises(SystemExit, match="settings differ"):
        accuracy.main(["--merge", str(out), str(plain), "--out", str(tmp_path / "mixed.json")])


def test_a_run_that_trained_todays_step_budget_is_at_the_default_whatever_floor_gave_it():
    """A run made before `steps_per_class` lacks it (0); where today's per-class floor gives each of
    its tasks the same steps (two classes: 2 x 500 = the 1000-step floor), it is today's default, and
    where it would not (five classes of 700 images: 2530 steps against the 1045 it trained), it is
    named as off by the floor it ran without."""
    settings = {"preset": "small", "set": {"steps_per_class": 500}}

    def run(classes, images, trained, **overrides):
        cfg = LearnerConfig.preset("small", image_shape=(1, 28, 28)).to_dict()
        del cfg["steps_per_class"]
        cfg.update(overrides)
        versions = [{"classes": list(range(classes)), "images": images, "steps": trained}]
        return {"method": "dgmw", "seed": 0, "config": cfg, "overrides": overrides, "per_version": versions}

    assert accuracy.off_default(run(2, 1600, 1000), settings) == {}
    assert accuracy.off_default(run(5, 3500, 1045), settings) == {"steps_per_class": 0}
    assert accuracy.off_default(run(5, 3500, 2530, steps=2500), settings) == {}  # a lever: its overrides
