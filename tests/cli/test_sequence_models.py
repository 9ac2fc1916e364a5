"""Sequence models end to end: the adding problem, a character language model, sampling."""

import json

import yaml

from conftest import CONFIGS


def run_folder(out):
    (folder,) = list(out.iterdir())
    return folder


def test_lstm_learns_the_adding_problem(cli, tmp_path):
    result = cli("train", CONFIGS / "seq_lstm.yaml", "--epochs", "10", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((run_folder(tmp_path) / "summary.json").read_text())
    assert summary["test_loss"] < 0.02  # predicting the mean scores ~0.167


def _tiny_text_model(tmp_path, layers):
    (tmp_path / "words.txt").write_text("\n".join(["cat", "car", "cart", "care", "dog", "door",
                                                   "dot", "do"] * 40) + "\n")
    config = tmp_path / "chars.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "words", "path": "words.txt", "seq_len": 8},
        "model": {"layers": layers},
        "loss": "cross_entropy", "metrics": ["bits_per_char", "accuracy"],
        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 15, "batch_size": 16}}))
    return config


def test_character_model_trains_and_samples(cli, tmp_path):
    config = _tiny_text_model(tmp_path, [{"embedding": {"dim": 8}},
                                         {"gru": {"units": 32, "return_sequences": True}},
                                         {"dense": {"units": "classes"}}])
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    run = run_folder(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_bits_per_char"] < 2.0  # 12 letters + newline: uniform is 3.7 bits
    assert json.loads((run / "vocab.json").read_text())["chars"][0] == "\n"
    sampled = cli("sample", run, "--length", "60", "--prompt", "ca", "--seed", "1")
    assert sampled.exit_code == 0, sampled.stderr
    text = sampled.stdout.rstrip("\n")
    assert text.startswith("ca") and len(text) == 62
    assert set(text) <= set("catrdoge\n")
    again = cli("sample", run, "--length", "60", "--prompt", "ca", "--seed", "1")
    assert again.stdout == sampled.stdout  # seeded


def test_causal_transformer_config_trains(cli, tmp_path):
    config = _tiny_text_model(tmp_path, [
        {"embedding": {"dim": 16}}, {"positional_encoding": {}},
        {"transformer_encoder": {"heads": 2, "ff_units": 32, "dropout": 0.0, "causal": True}},
        {"dense": {"units": "classes"}}])
    result = cli("train", config, "--epochs", "5", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr


def test_sample_needs_a_text_run(cli, tmp_path):
    assert cli("train", CONFIGS / "spirals.yaml", "--epochs", "1", "--out", tmp_path).exit_code == 0
    result = cli("sample", run_folder(tmp_path))
    assert result.exit_code == 2
    assert "sampling needs a character-level language model" in result.stderr


def test_sample_refuses_characters_outside_the_vocabulary(cli, tmp_path):
    config = _tiny_text_model(tmp_path, [{"embedding": {"dim": 4}},
                                         {"rnn": {"units": 8, "return_sequences": True}},
                                         {"dense": {"units": "classes"}}])
    assert cli("train", config, "--epochs", "1", "--out", tmp_path / "runs").exit_code == 0
    result = cli("sample", run_folder(tmp_path / "runs"), "--prompt", "cat!")
    assert result.exit_code == 2 and "'!'" in result.stderr
