"""The wandb-shaped surface of the Python API that the differential scripts do not reach:
behaviour before init, reinit and resume, disabled mode, settings, config sources,
writable run fields, arguments accepted but not honoured."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import textwrap

import pytest
from helpers import PY, history, no_database, only_record, records, run_wbg

import wbg


def run_script(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_module_level_calls_before_init_raise_as_wandb_does(db_path):
    assert wbg.run is None
    with pytest.raises(wbg.Error, match=r"You must call wbg.init\(\) before wbg.log\(\)"):
        wbg.log({"x": 1})
    with pytest.raises(wbg.Error, match=r"before wbg.config.lr"):
        wbg.config.lr = 0.1
    with pytest.raises(wbg.Error, match=r"before wbg.summary\['acc'\]"):
        wbg.summary["acc"]
    with pytest.raises(wbg.Error, match=r"before wbg.define_metric\(\)"):
        wbg.define_metric("acc", summary="max")
    wbg.finish()  # no run: nothing to do, as wandb
    assert not db_path.exists()


def test_module_level_names_follow_the_current_run(db_path):
    run = wbg.init(project="p", config={"lr": 0.1})
    assert wbg.run is run and wbg.config is run.config and wbg.summary is run.summary
    wbg.config.batch = 8
    wbg.log({"loss": 0.5})
    wbg.summary.best = 0.9
    wbg.finish()
    assert wbg.run is None
    with pytest.raises(wbg.Error):
        wbg.config.lr  # noqa: B018 - the access itself raises
    record = only_record(db_path)
    assert record["config"] == {"lr": 0.1, "batch": 8}
    assert record["summary"] == {"loss": 0.5, "best": 0.9}


def test_reinit_default_returns_the_open_run(db_path, capfd):
    first = wbg.init(project="p", group="g")
    assert wbg.init(project="p", group="other") is first
    assert wbg.init(project="p", reinit="return_previous") is first
    assert wbg.init(project="p", reinit=False) is first
    assert "so returning the previous run" in capfd.readouterr().err
    first.finish()
    assert len(records(db_path)) == 1


def test_reinit_finish_previous_and_create_new(db_path):
    first = wbg.init(project="p", group="g")
    second = wbg.init(project="p", group="g", reinit=True)
    assert second is not first and wbg.run is second
    assert [r["state"] for r in records(db_path)] == ["finished", "running"]
    third = wbg.init(project="p", group="g", reinit="create_new")
    assert wbg.run is second, "create_new leaves wbg.run alone, as wandb"
    third.log({"x": 1.0})
    with pytest.raises(wbg.Error, match="Cannot resume a run while another run is active"):
        wbg.init(project="p", id="zz", resume="must")
    fourth = wbg.init(project="p", reinit="finish_previous")
    assert [r["state"] for r in records(db_path)][:3] == ["finished", "finished", "finished"]
    fourth.finish()
    with pytest.raises(wbg.UsageError, match="reinit must be one of"):
        wbg.init(project="p", reinit="sometimes")


def test_resume_continues_the_same_run_with_its_group(db_path):
    with wbg.init(project="p", group="g", job_type="train", id="run-0001") as run:
        run.log({"loss": 1.0})
        run.log({"loss": 0.5})
    with wbg.init(project="p", group="ignored", id="run-0001", resume="allow") as again:
        assert again.resumed and again.step == 2
        again.log({"loss": 0.25})
    record = only_record(db_path)
    assert (record["id"], record["group"], record["state"]) == ("run-0001", "g", "finished")
    assert history(db_path, "run-0001") == [(0, "loss", 1.0), (1, "loss", 0.5), (2, "loss", 0.25)]


def test_resume_must_never_and_the_environment(db_path, monkeypatch):
    with pytest.raises(wbg.UsageError, match="resume='must' but there is no run with id 'nope'"):
        wbg.init(project="p", id="nope", resume="must")
    wbg.init(project="p", id="abc", group="g").finish()
    with pytest.raises(wbg.UsageError, match="exists and resume is 'never'"):
        wbg.init(project="p", id="abc", resume="never")
    monkeypatch.setenv("WANDB_RUN_ID", "abc")
    monkeypatch.setenv("WANDB_RESUME", "allow")
    with wbg.init(project="p") as run:
        assert run.id == "abc" and run.group == "g"
    with pytest.raises(wbg.UsageError, match="invalid run id"):
        wbg.init(project="p", id="a/b")
    assert len(records(db_path)) == 1


def test_disabled_mode_records_nothing(db_path, monkeypatch):
    run = wbg.init(project="p", mode="disabled", config={"a": 1})
    assert wbg.run is run and run.disabled
    run.log({"x": 1.0}, step=3)
    wbg.log({"x": 2.0})
    run.config.update({"a": 2})
    run.summary["s"] = 1
    run.define_metric("x", summary="max")
    run.watch(object())
    with open(os.path.join(run.dir, "model.pt"), "w") as handle:  # scripts save into it
        handle.write("weights")
    run.finish()
    assert wbg.run is None
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with wbg.init(project="p") as second:
        second.log({"y": 1})
    assert not db_path.exists()
    with pytest.raises(wbg.UsageError, match="mode must be one of"):
        wbg.init(project="p", mode="cloud")


def test_settings_object_and_dict(db_path):
    with wbg.init(settings=wbg.Settings(run_group="from-settings", project="p", silent=True)) as r:
        assert r.group == "from-settings" and r.settings.silent is True
    with wbg.init(group="arg", settings={"run_group": "from-dict", "project": "p"}) as r:
        assert r.group == "arg"  # arguments win over settings
    assert [r["group"] for r in records(db_path)] == ["from-settings", "arg"]


def test_config_sources(db_path, tmp_path):
    class FlagValues:  # absl's FlagValues, as far as wandb reads it
        def flag_values_dict(self):
            return {"flag_lr": 0.3}

    class Hparams:
        def __init__(self):
            self.width = 64
            self._private = "no"

    sources = [
        (argparse.Namespace(lr=0.1, layers=[1, 2]), {"lr": 0.1, "layers": [1, 2]}),
        (FlagValues(), {"flag_lr": 0.3}),
        (Hparams(), {"width": 64}),
    ]
    yaml_file = tmp_path / "config-defaults.yaml"
    yaml_file.write_text("wandb_version: 1\nlr:\n  desc: rate\n  value: 0.01\nepochs: 3\n")
    sources.append((str(yaml_file), {"lr": 0.01, "epochs": 3}))
    for source, expected in sources:
        with wbg.init(project="p", config=source) as run:
            assert dict(run.config) == expected
    with wbg.init(project="p", config={"a": 1, "b": 2, "c": 3}, config_exclude_keys=["b"]) as run:
        assert dict(run.config) == {"a": 1, "c": 3}
    with wbg.init(project="p", config={"a": 1, "b": 2}, config_include_keys=["b"]) as run:
        assert dict(run.config) == {"b": 2}
    assert [r["config"] for r in records(db_path)][-1] == {"b": 2}


def test_config_update_rules(db_path):
    with wbg.init(project="p", config={"lr": 0.1, "opt": {"name": "adam", "eps": 1e-8}}) as run:
        with pytest.raises(wbg.ConfigError) as caught:
            run.config.lr = 0.2
        assert str(caught.value) == (
            'Attempted to change value of key "lr" from 0.1 to 0.2\n'
            "If you really want to do this, pass allow_val_change=True to config.update()"
        )
        run.config.update({"opt": {"name": "sgd"}, "none": None}, allow_val_change=True)
        run.config.update({"": 1, "a..b": 2})
    config = only_record(db_path)["config"]
    assert config == {"lr": 0.1, "opt": {"name": "sgd"}, "none": None, "a..b": 2}
    assert "allow_val_change" not in config
    with wbg.init(project="p", config={"lr": 0.1}, allow_val_change=True, reinit=True) as run:
        run.config.lr = 0.2  # allowed for the whole run by init
        assert run.config.lr == 0.2


def test_writable_run_fields_are_recorded(db_path):
    with wbg.init(project="p", name="first", tags=["a"], entity="team") as run:
        run.name = "second"
        run.notes = "why"
        run.tags = (*run.tags, "b")
        assert run.tags == ("a", "b") and run.path == f"team/p/{run.id}" and run.url is None
        folder = run.dir
        with open(os.path.join(folder, "model.txt"), "w") as handle:
            handle.write("weights")
    record = only_record(db_path)
    assert (record["name"], record["notes"], record["tags"]) == ("second", "why", ["a", "b"])
    assert os.path.exists(os.path.join(folder, "model.txt"))


def test_log_keys_and_values(db_path):
    with wbg.init(project="p") as run:
        with pytest.raises(TypeError, match="must be strings"):
            run.log({5: 1.0})
        with pytest.raises(TypeError, match="must be passed a dictionary"):
            run.log([1, 2])  # type: ignore[arg-type]
        run.log({"flops": 4 * 10**20, "ok": 1})
    assert history(db_path, run.id) == [(0, "flops", 4e20), (0, "ok", 1)]


def test_define_metric_summary_reaches_the_table(db_path):
    for seed in range(2):
        with wbg.init(project="p", group="g", config={"seed": seed}, reinit=True) as run:
            run.define_metric("acc", summary="max")
            for step in range(3):
                run.log({"acc": 0.5 + seed / 10 + (1 - step) ** 2 / 10})
    table = run_wbg("table", "-p", "p", "--format", "json", "-m", "acc.max")
    assert table.returncode == 0, table.stderr
    (row,) = json.loads(table.stdout)
    assert row["acc.max.mean"] == pytest.approx((0.6 + 0.7) / 2)


def test_arguments_wbg_cannot_honour_are_named_once(db_path):
    done = run_script(
        """
        import wbg
        for _ in range(2):
            with wbg.init(project="p", sync_tensorboard=True, monitor_gym=True, save_code=True,
                          future_keyword=1, reinit=True) as run:
                run.watch(object())
                run.log_artifact("model.pt")
                wbg.save("*.pt")
        """
    )
    assert done.returncode == 0, done.stderr
    for line in (
        "wbg: sync_tensorboard is not supported; ignored",
        "wbg: monitor_gym is not supported; ignored",
        "wbg: init(future_keyword=...) is not supported; ignored",
        "wbg: watch is not supported; ignored",
        "wbg: artifacts are not stored by wbg; ignored",
    ):
        assert done.stderr.count(line) == 1, done.stderr
    assert len(records(db_path)) == 2


def test_under_wbg_run_the_first_init_attaches_and_later_ones_get_runs_of_their_own(db_path):
    script = textwrap.dedent(
        """
        import wbg
        for fold in range(3):
            with wbg.init(config={"fold": fold}, reinit=True) as run:
                run.log({"acc": fold / 10})
        """
    )
    done = run_wbg("run", "-g", "cv", "-j", "fold", "--", PY, "-c", script)
    assert done.returncode == 0, done.stderr
    found = records(db_path)
    assert [(r["group"], r["job_type"], r["config"]) for r in found] == [
        ("cv", "fold", {"fold": 0}),
        ("cv", "fold", {"fold": 1}),
        ("cv", "fold", {"fold": 2}),
    ]
    assert found[0]["command"][:2] == [PY, "-c"], "the first is the wbg run record itself"
    assert all(r["state"] == "finished" for r in found)


@no_database
def test_import_wbg_and_wbg_run_stay_cheap():
    done = run_script(
        """
        import sys
        import wbg
        assert wbg.run is None
        heavy = [m for m in ("sqlite3", "typer", "wbg.api", "wbg.compat") if m in sys.modules]
        print(heavy)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_resume_from_and_fork_from_a_step(db_path):
    with wbg.init(project="p", group="g", id="base0001", config={"lr": 0.1}) as run:
        for step in range(5):
            run.log({"loss": 1.0 / (step + 1)})
    with wbg.init(project="p", fork_from="base0001?_step=2", config={"lr": 0.2}) as fork:
        assert fork.step == 3 and fork.group == "g"
        fork.log({"loss": 0.01})
    with wbg.init(project="p", resume_from="base0001?_step=1") as again:
        assert again.id == "base0001" and again.step == 2
        again.log({"loss": 0.05})
    base, forked = records(db_path)
    assert history(db_path, "base0001") == [(0, "loss", 1.0), (1, "loss", 0.5), (2, "loss", 0.05)]
    assert base["summary"] == {"loss": 0.05}
    assert forked["config"] == {"lr": 0.2} and forked["group"] == "g"
    assert history(db_path, forked["id"]) == [
        (0, "loss", 1.0), (1, "loss", 0.5), (2, "loss", 1 / 3), (3, "loss", 0.01),
    ]  # fmt: skip
    with pytest.raises(wbg.UsageError, match="must read RUN_ID"):
        wbg.init(project="p", fork_from="base0001")
