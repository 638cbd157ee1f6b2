"""The `arnstream` command as a user runs it, in a subprocess."""

import json
import subprocess
import sys

import yaml


def arnstream(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "arnstream.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_evaluate_fits_arn_on_generated_flows_and_separates_the_attacks(tmp_path):
    out = tmp_path / "r.json"
    proc = arnstream("evaluate", "--dataset", "synthetic", "--model", "arn-n", "--runs", "2",
                     "--epochs", "5", "--batch-size", "256", "--device", "cpu",
                     "--set", "model.params.lr_d=1e-3", "--set", "model.params.lr_g=1e-3",
                     "--set", "model.params.box_negatives=1.0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [r["seed"] for r in report["runs"]] == [0, 1]
    assert all(r["auc"] > 0.9 for r in report["runs"]), report["runs"]
    assert report["summary"]["auc"]["n"] == 2 and report["config"]["runtime"]["device"] == "cpu"
    assert report["runs"][0]["sizes"]["train"]["anomalous"] == 0
    assert len(report["runs"][0]["history"]) == 5
    assert "mean ± std" in proc.stdout and "epoch 5/5" in proc.stderr
    combined = report["summary"]["alternatives"]["combined"]["auc"]["mean"]
    assert f"score_mode=combined: AUC {combined:.4f}" in proc.stdout  # both scorings of the same fits


def test_evaluate_baseline_with_contamination_and_weak_labels(tmp_path):
    out = tmp_path / "r.json"
    proc = arnstream("evaluate", "--dataset", "synthetic", "--model", "iforest", "--runs", "1",
                     "--contamination", "0.01", "--weak", "0.05", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    sizes = json.loads(out.read_text())["runs"][0]["sizes"]
    assert sizes["train"]["anomalous"] == 160 and sizes["weak"]["anomalous"] == 100


def test_user_errors_exit_2_with_a_message_naming_the_fault():
    proc = arnstream("evaluate", "--dataset", "kdd2000")
    assert proc.returncode == 2 and "unknown dataset 'kdd2000'" in proc.stderr
    proc = arnstream("evaluate", "--dataset", "synthetic", "--set", "runtime.thread=2")
    assert proc.returncode == 2 and "runtime.thread" in proc.stderr
    proc = arnstream("evaluate", "--dataset", "synthetic", "--model", "arn-n", "--set", "model.params.lr=1")
    assert proc.returncode == 2 and "no parameter(s) ['lr']" in proc.stderr
    proc = arnstream("evaluate", "--dataset", "kddcup99", "--data-dir", "/nonexistent")
    assert proc.returncode == 2 and "kddcup.data_10_percent.gz" in proc.stderr


def test_config_show_prints_the_merged_configuration():
    proc = arnstream("config", "show", "--set", "runtime.threads=2")
    assert proc.returncode == 0
    assert yaml.safe_load(proc.stdout)["runtime"]["threads"] == 2


def test_fit_saves_a_model_that_generate_loads_and_a_tampered_one_is_refused(tmp_path):
    model = tmp_path / "model"
    proc = arnstream("fit", "--dataset", "synthetic", "--model", "arn-g", "--epochs", "1",
                     "--batch-size", "512", "--device", "cpu", "--out", str(model))
    assert proc.returncode == 0, proc.stderr
    assert "threshold" in proc.stdout and (model / "weights.safetensors").is_file()
    proc = arnstream("generate", "--model-dir", str(model), "--n", "3")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 3
    assert set(lines[0]["variant"]) == set(lines[0]["normal"])  # decoded back to record fields
    assert isinstance(lines[0]["variant"]["service"], str)
    envelope = model / "detector.json"
    envelope.write_text(envelope.read_text().replace('"arn"', '"ae"', 1))
    proc = arnstream("generate", "--model-dir", str(model))
    assert proc.returncode == 2 and "sha256 mismatch" in proc.stderr
