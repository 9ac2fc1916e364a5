"""`nnctl translate` on a tiny run trained here (a GRU encoder-decoder with attention that
reverses short words): the output lines, the options, and the one-line errors."""

import random

import pytest

from nnctl.backend import get_backend
from nnctl.cli.translate import output_line
from nnctl.train.inference import load_run
from nnctl.train.translate import translate_scored

CONFIG = """\
seed: 0
data:
  dataset: text_pairs
  path: pairs.txt
  split: {val: 0.1, test: 0.1}
model:
  layers:
    - embedding: {name: source, dim: 8, inputs: [input]}
    - gru: {name: encoder, units: 16, return_sequences: true}
    - sequence_pool: {name: summary, mode: last, inputs: [encoder]}
    - embedding: {name: target, dim: 8, inputs: [decoder_input]}
    - gru: {name: decoder, units: 16, return_sequences: true, inputs: [target, summary]}
    - attention: {score: dot, inputs: [decoder, encoder]}
    - dense: {units: classes}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 32}
metrics: [accuracy, exact_match]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    root = tmp_path_factory.mktemp("translate")
    rng = random.Random(0)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(2, 5))) for _ in range(200)]
    (root / "pairs.txt").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words))
    (root / "tiny.yaml").write_text(CONFIG)
    result = CliRunner().invoke(app, ["train", str(root / "tiny.yaml"), "--out",
                                      str(root / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    (run,) = (root / "runs").iterdir()
    return run


def api(run, texts, **options):
    return translate_scored(load_run(run, get_backend("cpu")), texts, **options)


def test_one_line_per_text_as_the_api_decodes(cli, run_dir):
    texts = ["abc", "dcba", "a"]
    result = cli("translate", run_dir, *texts)
    assert result.exit_code == 0, result.output
    # not a terminal: only the translations, in order
    assert result.stdout.splitlines() == [t for t, _ in api(run_dir, texts)]


def test_beam_and_scores(cli, run_dir):
    texts = ["abcd", "bad"]
    result = cli("translate", run_dir, *texts, "--beam", "3", "--length-penalty", "0.5",
                 "--show-score")
    assert result.exit_code == 0, result.output
    want = api(run_dir, texts, beam=3, length_penalty=0.5)
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [t for t, _ in lines] == [t for t, _ in want]
    for (_, score), (_, decoded) in zip(lines, want):
        assert float(score) == pytest.approx(decoded.log_prob, abs=1e-4) and float(score) < 0


def test_file_and_max_len(cli, run_dir, tmp_path):
    listing = tmp_path / "texts.txt"
    listing.write_text("abc\ndcba\n")
    from_file = cli("translate", run_dir, "--file", listing, "--max-len", "1")
    assert from_file.exit_code == 0, from_file.output
    lines = from_file.stdout.splitlines()
    assert len(lines) == 2 and all(len(line) <= 1 for line in lines)
    assert lines == cli("translate", run_dir, "abc", "dcba", "--max-len", "1").stdout.splitlines()


def test_terminal_lines_show_the_source():
    assert output_line("12/03/1995", "1995-03-12", None, True) == "12/03/1995 -> 1995-03-12"
    assert output_line("x", "y", -0.123456, False) == "y\t-0.1235"
    assert output_line("x", "y", -2.0, True) == "x -> y\t-2.0000"


@pytest.mark.parametrize("args,message", [
    (["abcdefghabcdefgh"], "text 1 ('abcdefghabcdefgh'): 16 tokens, more than the 5"),
    (["abc", ""], "text 2 (''): empty"),
    ([], "nothing to translate"),
    (["abc", "--weights", "last"], "--weights: expected final or best"),
])
def test_bad_inputs_are_one_line_and_exit_2(cli, run_dir, args, message):
    result = cli("translate", run_dir, *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_files_and_folders(cli, run_dir, tmp_path):
    listing = tmp_path / "texts.txt"
    listing.write_text("abc\n\nbad\n")
    result = cli("translate", run_dir, "--file", listing)
    assert result.exit_code == 2 and f"{listing}:2 (''): empty" in result.stderr
    assert cli("translate", run_dir, "--file", tmp_path / "none.txt").exit_code == 2
    listing.write_bytes(b"ab\xff\n")
    assert "not UTF-8" in cli("translate", run_dir, "--file", listing).stderr
    result = cli("translate", tmp_path, "abc")
    assert result.exit_code == 2 and "not a run folder" in result.stderr
    assert cli("translate", run_dir, "abc", "--beam", "0").exit_code == 2


def test_predict_translates_a_file_and_evaluate_decodes_with_a_beam(cli, run_dir, tmp_path):
    """predict on a text file gives the same translations as the API, row by row; evaluate
    --beam reports the decoded metrics of that search (and differs from nothing it must
    not: the teacher-forced accuracy is the same at any beam)."""
    texts = ["abc", "dcba", "a"]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out.csv"
    result = cli("predict", run_dir, tmp_path / "in.txt", "-o", out, "--beam", "2")
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "source,prediction"
    expected = [text for text, _ in api(run_dir, texts, beam=2)]
    assert [r.split(",")[1] for r in rows[1:]] == expected
    from nnctl.train.inference import evaluate_run
    greedy, _, _ = evaluate_run(run_dir, get_backend("cpu"), "test", beam=1)
    beam, _, _ = evaluate_run(run_dir, get_backend("cpu"), "test", beam=3)
    assert set(greedy) == set(beam) >= {"test_loss", "test_accuracy", "test_exact_match"}
    assert greedy["test_accuracy"] == beam["test_accuracy"]
    assert 0.0 <= beam["test_exact_match"] <= 1.0
