"""bench/methods_cross.py in its smoke mode: real breast-ultrasound and polyp images, tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED, load_bench

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow(seconds=15)


def _bench():
    return load_bench("methods_cross")


def _data(task: str, dataset: str) -> Path:
    """The shared datasets folder, failing (not skipping) when ``task``'s ``dataset`` is missing from it."""
    data = SHARED.parent
    if not (data / task / dataset / "images").is_dir():
        pytest.fail(f"shared {task} data missing under {data}; set SIKD_SHARED_DATASETS")
    return data


def test_smoke_mode_runs_both_tasks_and_prints_every_table(tmp_path, capsys):
    data = _data("breast-us", "busi")
    bench = _bench()
    assert bench.SETTINGS["seeds"] == [0, 1, 2] and len(bench.METHODS) == 7
    pub = tmp_path / "published"
    assert bench.main(["--data", str(data), "--out", str(tmp_path), "--smoke", "--device", "cpu",
                       "--publish", str(pub)]) == 0
    text = (tmp_path / "tables.md").read_text()
    # the published reports alone rebuild the same tables (tasks run in different sessions combine this way)
    assert sorted(p.name for p in pub.iterdir()) == ["breast-us", "polyp"]
    assert "SMOKE" in capsys.readouterr().out
    assert bench.main(["--tables-from", str(pub)]) == 0
    assert capsys.readouterr().out.strip() == text.strip()
    for label in ("| Baseline |", "| SIKD |", "| U-Net w/ SDM |", "| GIN |", "| GIN + SIKD |", "| MaxStyle |",
                  "| MaxStyle + SIKD |", "| Reference (nnU-Net-like) |"):
        assert label in text
    assert "busi (intra) Dice" in text and "bus-bra (cross) Dice" in text and "cvc-clinicdb (cross) Dice" in text
    # what each task was trained with is stated from its report (tasks may be published in different sessions)
    assert "- polyp: unet {\"widths\": [4, 8, 16]} at 32×32; 1 epochs × 2 steps of batch 4 (2 steps)" in text
    assert "different budgets" not in text
    assert "GIN + SIKD − GIN" in text and "Baseline strength" in text and "| polyp | kvasir-seg (intra) |" in text
    assert "Reference (nnU-Net-like) − Baseline" not in text  # the reference measures the baseline, is not compared
    assert "| breast-us | bus-bra (cross) |" in text
    # the health of every model is stated, one line per experiment (7 methods and the reference x 1 seed)
    assert "Training health of every model" in text
    assert "- breast-us methods:" in text and "of 8 models healthy" in text
    # one shared teacher per task and seed; resuming retrains nothing and keeps the settings
    assert len(list((tmp_path / "polyp" / "methods").glob("seed_0/teacher/done.json"))) == 1
    assert bench.main(["--data", str(data), "--out", str(tmp_path), "--smoke", "--device", "cpu"]) == 0
    assert "[1/" not in capsys.readouterr().out
    # another folder with --reuse of the first: every stage (7 methods, teacher, reference) is linked, none trained
    second = tmp_path.parent / f"{tmp_path.name}-second"
    assert bench.main(["--data", str(data), "--out", str(second), "--smoke", "--device", "cpu", "--tasks", "polyp",
                       "--reuse", str(tmp_path / "polyp")]) == 0
    out = capsys.readouterr().out
    assert out.count(f"reused from {tmp_path / 'polyp' / 'methods'}") == 9 and "trained in" not in out
    assert len(list((second / "polyp" / "methods").glob("seed_0/teacher/done.json"))) == 1


def test_seeds_and_budget_can_be_chosen_and_combine_by_reuse(tmp_path, capsys):
    """--seeds and --epochs reach the experiment and its recorded settings; a seed trained in its own folder is
    linked, not retrained, by a run over more seeds that reuses that folder."""
    data = _data("polyp", "kvasir-seg")
    bench = _bench()
    one = tmp_path / "seed1"
    assert bench.main(["--data", str(data), "--out", str(one), "--smoke", "--device", "cpu", "--tasks", "polyp",
                       "--seeds", "1", "--epochs", "2"]) == 0
    recorded = json.loads((one / "settings.json").read_text())
    assert recorded["seeds"] == [1] and recorded["epochs"] == 2 and recorded["teacher_epochs"] == 2
    methods = one / "polyp" / "methods"
    assert not (methods / "seed_0").exists()
    done = json.loads((methods / "seed_1" / "baseline" / "done.json").read_text())
    assert len(done["history"]) == 2
    capsys.readouterr()
    both = tmp_path / "both"
    assert bench.main(["--data", str(data), "--out", str(both), "--smoke", "--device", "cpu", "--tasks", "polyp",
                       "--seeds", "0", "1", "--epochs", "2", "--reuse", str(one / "polyp")]) == 0
    out = capsys.readouterr().out
    assert out.count(f"reused from {methods}") == 9  # seed 1's nine stages linked; seed 0's trained
    assert out.count("trained in") == 9
    assert bench.main(["--data", str(data), "--out", str(both), "--smoke", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


def test_tables_say_when_the_tasks_were_trained_at_different_budgets():
    """Tasks published in different sessions combine into one table; when their budgets differ, the tables say
    so before anything else, with each task's steps read from its own report."""
    bench = _bench()
    published = ROOT / "docs" / "benchmarks" / "methods_cross"
    reports, trends = bench.load_published(published)
    assert set(reports) == {"breast-us", "polyp"}

    def at(task: str, epochs: int) -> dict:
        rep = json.loads(json.dumps(reports[task]))
        rep["spec"]["epochs"] = epochs
        return rep

    text = bench.tables({"breast-us": at("breast-us", 20), "polyp": at("polyp", 50)}, trends)
    head = text.split("| Method |")[0]
    assert "trained at different budgets (breast-us 400 steps, polyp 1 000 steps)" in head
    assert "- polyp: unet" in head and "50 epochs × 20 steps of batch 8 (1 000 steps), teachers 60 epochs" in head
    assert "different budgets" not in bench.tables({"breast-us": at("breast-us", 50), "polyp": at("polyp", 50)},
                                                   trends)


def test_jobs_train_the_seeds_in_separate_processes_then_combine_them_without_retraining(tmp_path, capsys):
    """--jobs N trains each seed in its own process of the script (in <out>/seeds/seed_<S>/, with its log), then
    links every finished stage into one report over all seeds; a seed whose process fails is a clear error
    naming its log."""
    data = _data("polyp", "kvasir-seg")
    bench = _bench()
    out = tmp_path / "all"
    assert bench.main(["--data", str(data), "--out", str(out), "--smoke", "--device", "cpu", "--tasks", "polyp",
                       "--seeds", "0", "1", "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    for seed in (0, 1):
        log = (out / "seeds" / f"seed_{seed}.log").read_text()
        assert log.count("trained in") == 9 and f"polyp/teacher/{seed}" in log
        assert json.loads((out / "seeds" / f"seed_{seed}" / "settings.json").read_text())["seeds"] == [seed]
    assert printed.count("reused from") == 18 and "trained in" not in printed
    report = json.loads((out / "polyp" / "methods" / "report.json").read_text())
    assert sorted({r["seed"] for r in report["rows"]}) == [0, 1]
    # a bad spec is said before any process starts
    bad = tmp_path / "bad"
    assert bench.main(["--data", str(data), "--out", str(bad), "--smoke", "--device", "no-such-device",
                       "--tasks", "polyp", "--seeds", "0", "1", "--jobs", "2"]) == 2
    assert "device must be auto, cpu" in capsys.readouterr().err and not (bad / "seeds").exists()
    # a seed whose process fails (its --out is a file here) is named with its log; the other seed still trains
    blocked = tmp_path / "blocked"
    (blocked / "seeds").mkdir(parents=True)
    (blocked / "seeds" / "seed_1").write_text("not a folder")
    assert bench.main(["--data", str(data), "--out", str(blocked), "--smoke", "--device", "cpu", "--tasks", "polyp",
                       "--seeds", "0", "1", "--jobs", "2", "--reuse", str(out / "seeds" / "seed_0" / "polyp")]) == 2
    err = capsys.readouterr().err
    assert f"the process of seed(s) [1] failed; see {blocked / 'seeds' / 'seed_1.log'}" in err
    assert "FileExistsError" in (blocked / "seeds" / "seed_1.log").read_text()
    assert (blocked / "seeds" / "seed_0" / "polyp" / "methods" / "report.json").is_file()
    assert bench.main(["--data", str(data), "--out", str(tmp_path / "j0"), "--smoke", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_a_few_methods_with_nnunet_augmentation_train_those_and_the_reference_only(tmp_path, capsys):
    """--methods and --augmentation (passed on to the --jobs processes): the control "does SIKD add to a baseline
    augmented as nnU-Net's" trains baseline, teacher, student and reference per seed, and its tables list those
    methods only and say which augmentation they trained with."""
    data = _data("polyp", "kvasir-seg")
    bench = _bench()
    out = tmp_path / "nnaug"
    assert bench.main(["--data", str(data), "--out", str(out), "--smoke", "--device", "cpu", "--tasks", "polyp",
                       "--seeds", "0", "1", "--jobs", "2", "--methods", "sikd", "baseline",
                       "--augmentation", "nnunet"]) == 0
    printed = capsys.readouterr().out
    for seed in (0, 1):  # the children trained the same four stages the parent then links
        log = (out / "seeds" / f"seed_{seed}.log").read_text()
        assert log.count("trained in") == 4 and f"polyp/teacher/{seed}" in log and "polyp/gin" not in log
    assert printed.count("reused from") == 8 and "trained in" not in printed
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["methods"] == ["baseline", "sikd"] and recorded["augmentation"] == "nnunet"
    report = json.loads((out / "polyp" / "methods" / "report.json").read_text())
    assert report["spec"]["augmentation"] == "nnunet" and report["methods"] == ["baseline", "sikd", "reference"]
    text = (out / "tables.md").read_text()
    assert "| Baseline |" in text and "| SIKD |" in text and "| Reference (nnU-Net-like) |" in text
    assert "| GIN |" not in text and "| MaxStyle |" not in text
    assert "augmentation nnunet; seeds 0, 1" in text
    # the default run records neither key (its settings stay those of runs made before the flags)
    assert "methods" not in bench.SETTINGS and "augmentation" not in bench.SETTINGS


def test_the_published_augmentation_control_differs_from_the_main_run_in_augmentation_and_methods_only():
    """docs/benchmarks/methods_cross_nnaug (the README's control) was trained as the main published run but for
    `augmentation: nnunet` and its methods (baseline, sikd and the reference): read from each task's report."""
    bench = _bench()
    main, _ = bench.load_published(ROOT / "docs" / "benchmarks" / "methods_cross")
    control, trends = bench.load_published(ROOT / "docs" / "benchmarks" / "methods_cross_nnaug")
    assert set(control) == set(main) == {"breast-us", "polyp"} and set(trends) == set(control)
    for task, rep in control.items():
        # a subset of the cross dataset lives under each run's --out (the same seeded images): compare by name
        a, b = ({**r["spec"], "eval_datasets": [Path(d).name for d in r["spec"]["eval_datasets"]]}
                for r in (main[task], rep))
        differ = {k for k in set(a) | set(b) if a.get(k, "standard" if k == "augmentation" else None) != b.get(k)}
        cases = [{(r["dataset"], r["n_cases"]) for r in x["rows"]} for x in (main[task], rep)]
        assert cases[0] == cases[1], task  # scored on the same number of cases per dataset
        assert differ == {"augmentation", "methods"}, (task, differ)
        assert b["augmentation"] == "nnunet" and rep["methods"] == ["baseline", "sikd", "reference"]
        assert {(r["method"], r["seed"]) for r in rep["rows"]} == {(m, s) for m in rep["methods"] for s in (0, 1, 2)}
    text = bench.tables(control, trends)
    assert text.count("augmentation nnunet; seeds 0, 1, 2") == 2 and "| GIN |" not in text
