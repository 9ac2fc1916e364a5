"""nnctl.tune without the CLI: the space from the config and --space, the target metric, the
checks that run before any trial, and how a trial's values reach its config."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnctl.config import load_config
from nnctl.config.tune_specs import Distribution
from nnctl.errors import ConfigError, UsageError
from nnctl.tune import (Search, TrialResult, corners, parse_space_option, search_space, set_text,
                        target)

SPIRALS = Path(__file__).resolve().parents[1] / "configs" / "spirals.yaml"
# the shipped config less its search (and the comment above it): 20 lines
BASE = SPIRALS.read_text().split("\ntune:")[0].rsplit("\n#", 1)[0]


def config(tmp_path, tune: str = "", overrides=()):
    path = tmp_path / "c.yaml"
    path.write_text(BASE + ("\n" + tune if tune else ""))
    return load_config(path, overrides)


def test_space_option_reads_each_kind():
    assert parse_space_option("optimizer.lr=log_uniform(1e-4, 1e-1)") == \
        ("optimizer.lr", Distribution("log_uniform", 1e-4, 1e-1))
    assert parse_space_option("train.batch_size=int(16, 128, 16)") == \
        ("train.batch_size", Distribution("int", 16, 128, 16))
    assert parse_space_option("model.layers.0.dense.activation=choice(tanh, relu)") == \
        ("model.layers.0.dense.activation", Distribution("choice", choices=("tanh", "relu")))
    assert parse_space_option(" data.noise = uniform(0, 0.5) ") == \
        ("data.noise", Distribution("uniform", 0, 0.5))


@pytest.mark.parametrize("text, message", [
    ("optimizer.lr", "--space optimizer.lr: expected KEY=KIND(ARGS), e.g. "
                     "optimizer.lr=log_uniform(1e-4, 1e-1) or train.batch_size=choice(16, 32, 64)"),
    ("optimizer.lr=log_uniform(0, 1)", "--space optimizer.lr=log_uniform(0, 1): log_uniform: "
                                       "expected low > 0 (a log scale), got 0"),
    ("optimizer.lr=uniform(0.5, 0.1)", "--space optimizer.lr=uniform(0.5, 0.1): uniform: "
                                       "expected low < high, got [0.5, 0.1]"),
    ("train.batch_size=int(8.5, 64)", "--space train.batch_size=int(8.5, 64): int: expected "
                                      "[low, high] or [low, high, step] of integers, got "
                                      "[8.5, 64]"),
    ("optimizer.lr=loguniform(1, 2)", "--space optimizer.lr=loguniform(1, 2): unknown value "
                                      "'loguniform' (did you mean 'log_uniform'?)"),
])
def test_a_bad_space_option_is_one_line(text, message):
    with pytest.raises(UsageError) as err:
        parse_space_option(text)
    assert str(err.value) == message


def test_the_config_space_is_checked_where_it_is_written(tmp_path):
    with pytest.raises(ConfigError) as err:
        config(tmp_path, "tune:\n  space:\n    optimizer.lr: {log_uniform: [0.1, 0.01]}\n")
    assert str(err.value) == (f"{tmp_path / 'c.yaml'}:23: tune.space['optimizer.lr']: "
                              "log_uniform: expected low < high, got [0.1, 0.01]")
    with pytest.raises(ConfigError) as err:
        config(tmp_path, "tune:\n  direction: maximise\n")
    assert "tune.direction: unknown value 'maximise' (did you mean 'maximize'?)" in str(err.value)


def test_option_replaces_the_config_key_and_adds_others(tmp_path):
    cfg = config(tmp_path, "tune:\n  space:\n    optimizer.lr: {log_uniform: [0.001, 0.1]}\n"
                           "    train.batch_size: {choice: [16, 32]}\n")
    space, origin = search_space(cfg, ["optimizer.lr=uniform(0.01, 0.02)", "data.noise="
                                       "uniform(0.1, 0.3)"])
    assert space == {"optimizer.lr": Distribution("uniform", 0.01, 0.02),
                     "train.batch_size": Distribution("choice", choices=(16, 32)),
                     "data.noise": Distribution("uniform", 0.1, 0.3)}
    assert origin["train.batch_size"] == ("config", "train.batch_size")
    assert origin["optimizer.lr"] == ("option", "optimizer.lr=uniform(0.01, 0.02)")


def test_no_space_at_all_says_how_to_give_one(tmp_path):
    with pytest.raises(UsageError, match="nothing to search: add a tune.space section"):
        search_space(config(tmp_path), [])


def test_target_defaults_to_the_monitor_and_a_direction_from_the_name(tmp_path):
    assert target(config(tmp_path)) == target(config(tmp_path, "tune: {metric: val_loss}"))
    assert target(config(tmp_path)).direction == "minimize"
    acc = target(config(tmp_path, "tune: {metric: val_accuracy}"))
    assert (acc.metric, acc.direction) == ("val_accuracy", "maximize")
    odd = target(config(tmp_path, "tune: {metric: val_accuracy, direction: minimize}"))
    assert odd.direction == "minimize" and odd.better(0.1, 0.2)
    with pytest.raises(ConfigError) as err:
        target(config(tmp_path, "tune: {metric: val_f1_macro}"))
    assert str(err.value) == (f"{tmp_path / 'c.yaml'}:21: tune.metric: 'val_f1_macro' is not a "
                              "reported metric; expected one of: train_loss, train_accuracy, "
                              "val_loss, val_accuracy")


def test_values_become_set_texts_the_config_reads_back(tmp_path):
    texts = [set_text("optimizer.lr", 1e-05), set_text("model.layers.0.dense.units", 48),
             set_text("model.layers.0.dense.activation", "relu"),
             set_text("train.shuffle", False)]
    assert texts == ["optimizer.lr=1e-05", "model.layers.0.dense.units=48",
                     "model.layers.0.dense.activation=relu", "train.shuffle=false"]
    spec = config(tmp_path, overrides=texts).spec
    assert spec.optimizer.lr == 1e-05 and spec.train.shuffle is False
    assert spec.model.layers[0].units == 48 and spec.model.layers[0].activation == "relu"
    assert corners(Distribution("int", 16, 128, 16)) == [16, 128]
    assert corners(Distribution("uniform", 8, 64)) == [8, 36.0, 64]
    assert corners(Distribution("log_uniform", 1e-4, 1e-2)) == [1e-4, pytest.approx(1e-3), 1e-2]
    assert corners(Distribution("choice", choices=("a", "b", "c"))) == ["a", "b", "c"]


def test_an_edge_the_config_refuses_stops_the_search_before_any_trial(tmp_path):
    pytest.importorskip("optuna")
    from nnctl.backend import get_backend
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "\ntune:\n  space:\n    model.layers.0.dense.units: "
                           "{int: [0, 8]}\n")
    with pytest.raises(ConfigError) as err:
        Search(path, [], [], tmp_path / "out", get_backend("cpu"))
    assert str(err.value) == (f"{path}:23: tune.space['model.layers.0.dense.units']: int(0, 8) "
                              "can draw 0, which the config refuses: "
                              "model.layers[0].dense.units: expected a positive integer, got 0")
    path.write_text(BASE)
    with pytest.raises(UsageError) as err:
        Search(path, [], ["model.layers.7.dense.units=choice(4, 8)"], tmp_path / "out",
               get_backend("cpu"))
    assert str(err.value) == ("--space model.layers.7.dense.units=choice(4, 8): choice(4, 8) "
                              "can draw 4, which the config refuses: model.layers[7]: no such "
                              "list item (the list has 3)")
    with pytest.raises(UsageError) as err:  # a float range over an integer key
        Search(path, [], ["model.layers.0.dense.units=uniform(8, 64)"], tmp_path / "out",
               get_backend("cpu"))
    assert str(err.value) == ("--space model.layers.0.dense.units=uniform(8, 64): uniform(8, 64) "
                              "can draw 36.0, which the config refuses: "
                              "model.layers[0].dense.units: expected a positive integer, got 36.0")
    assert not (tmp_path / "out").exists()  # nothing was created for a search that never ran


def test_ranking_puts_complete_trials_first_best_first(tmp_path):
    pytest.importorskip("optuna")
    from nnctl.backend import get_backend
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    search = Search(path, [], ["optimizer.lr=log_uniform(0.001, 0.1)"], tmp_path / "out",
                    get_backend("cpu"))
    search.results = [TrialResult(1, {}, "pruned", 0.1), TrialResult(2, {}, "complete", 0.3),
                      TrialResult(3, {}, "failed"), TrialResult(4, {}, "complete", 0.2),
                      TrialResult(5, {}, "pruned", 0.05)]
    assert [r.number for r in search.ranked()] == [4, 2, 5, 1, 3]
    assert search.best().number == 4


def test_an_interrupted_search_names_the_trial_and_keeps_the_finished_ones(tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("optuna")
    from nnctl.backend import get_backend
    from nnctl.train import Trainer
    from nnctl.train.trainer import Interrupted
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    fit, calls = Trainer.fit, []

    def fit_until_the_second(self):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted("interrupted after epoch 1, step 3")
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", fit_until_the_second)
    search = Search(path, ["data.samples=200", "train.epochs=2"],
                    ["optimizer.lr=log_uniform(0.001, 0.1)"], tmp_path / "out",
                    get_backend("cpu"), trials=5)
    with pytest.raises(Interrupted) as err:
        search.run()
    assert str(err.value) == (f"search stopped in trial 2 (interrupted after epoch 1, step 3); "
                              f"the 1 finished trial(s) are in {search.folder / 'trials.csv'}")
    assert [(r.number, r.state) for r in search.ranked()] == [(1, "complete"), (2, "stopped")]
    lines = (search.folder / "trials.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].startswith("1,1,complete,")
    assert (search.folder / "best.yaml").exists()


def test_a_diverging_trial_is_failed_and_the_search_goes_on(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from nnctl.backend import get_backend
    from nnctl.errors import TrainingError
    from nnctl.train import Trainer
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    fit, calls, lines = Trainer.fit, [], []

    def diverge_in_the_second(self):
        calls.append(1)
        if len(calls) == 2:
            raise TrainingError("non-finite loss at epoch 1, step 2")
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", diverge_in_the_second)
    search = Search(path, ["data.samples=200", "train.epochs=2"],
                    ["optimizer.lr=log_uniform(0.001, 0.1)"], tmp_path / "out",
                    get_backend("cpu"), trials=3, on_trial=lines.append)
    ranked = search.run()
    assert [(r.number, r.state) for r in ranked][-1] == (2, "failed")
    assert sorted(r.number for r in ranked if r.state == "complete") == [1, 3]
    assert ranked[-1].error == "non-finite loss at epoch 1, step 2"
    assert [r.number for r in lines] == [1, 2, 3]  # each reported as it ended
