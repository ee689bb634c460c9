"""The fiftyone-dnniqa command and the offline demo."""

import subprocess
import sys

import pytest

import fiftyone as fo
import numpy as np

from fiftyone_dnniqa.cli import main


def test_help_reads_well():
    out = subprocess.run([sys.executable, "-m", "fiftyone_dnniqa.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for cmd in ("demo", "score", "list-metrics", "runs", "install-plugin"):
        assert cmd in out
    out = subprocess.run([sys.executable, "-m", "fiftyone_dnniqa.cli", "score", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--reference-field" in out and "resumes" in out


def test_list_metrics(capsys):
    main(["list-metrics"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert lines[0].split() == ["metric", "kind", "better", "status"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["aligned", "aligned_task", "aligned_fr"]
    assert "No-reference" in rows["piqe"] and "lower" in rows["piqe"] and "ready offline" in rows["piqe"]
    assert "Full-reference" in rows["ssim"] and "higher" in rows["ssim"]
    assert "needs pyiqa's weight file" in rows["musiq"] and "fid" not in rows


def test_list_metrics_check_is_quiet_and_says_why(capfd, monkeypatch):
    from fiftyone_dnniqa import cli
    from fiftyone_dnniqa.metrics.catalog import metric_info

    picked = [metric_info(n) for n in ("aligned", "tg_iqa", "musiq", "piqe")]
    monkeypatch.setattr(cli, "metric_catalog", lambda source=None: picked)
    main(["list-metrics", "--check"])
    out, err = capfd.readouterr()
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["aligned"].endswith("ready") and rows["piqe"].endswith("ready")
    assert "not ready: tg_iqa scores with a fitted head: pass path=" in rows["tg_iqa"]
    assert "not ready:" in rows["musiq"] and "weight" in rows["musiq"]
    assert "Downloading" not in out + err and "Warning" not in out + err and err == ""


def test_score_resume_and_runs(imagenet_files, make_dataset, capsys, tmp_path):
    ds = make_dataset(imagenet_files[:4] + [str(tmp_path / "missing.jpg")])
    ds.persistent = True
    main(["score", "--dataset", ds.name, "--metric", "piqe", "--metric", "entropy", "--quiet"])
    out = capsys.readouterr().out
    assert "iqa_piqe: completed, 4 scored, 1 failed" in out and "missing file" in out
    ds.reload()
    assert ds.count("iqa_piqe") == 4 and ds.count("iqa_entropy") == 4
    main(["score", "--dataset", ds.name, "--metric", "piqe", "--quiet"])
    assert "0 scored, 1 failed of 1 to do" in capsys.readouterr().out
    main(["runs", "--dataset", ds.name])
    assert "iqa_entropy" in capsys.readouterr().out
    main(["runs", "--dataset", ds.name, "--delete", "iqa_entropy"])
    ds.reload()
    assert not ds.has_sample_field("iqa_entropy")


def test_score_errors_are_one_line(make_dataset, capsys):
    with pytest.raises(SystemExit, match="no dataset named"):
        main(["score", "--dataset", "no-such-dataset", "--metric", "piqe"])
    ds = make_dataset([])
    ds.persistent = True
    with pytest.raises(SystemExit, match="Unknown metric"):
        main(["score", "--dataset", ds.name, "--metric", "nope"])


def test_demo_builds_scores_and_ranks_clean_first(capsys):
    main(["demo", "--name", "dnniqa-demo-test", "--metric", "piqe", "--metric", "psnr"])
    out = capsys.readouterr().out
    assert "iqa_piqe ↓" in out and "iqa_psnr ↑" in out and "launch_app" in out
    assert "Which score predicts" in out and "spearman" in out.lower()
    ds = fo.load_dataset("dnniqa-demo-test")
    try:
        assert len(ds) >= 9 * 13 and ds.count("iqa_piqe") == len(ds)
        # a real evaluation: a classifier's predictions, right on most clean images
        assert "eval" in ds.list_evaluations() and ds.count("predictions") == len(ds)
        clean_acc = np.mean(ds.match({"corruption": "clean"}).values("eval"))
        noisy_acc = np.mean(ds.match({"corruption": "gaussian_noise", "severity": 3}).values("eval"))
        assert clean_acc >= 0.5 and noisy_acc < clean_acc
        clean = ds.match({"corruption": "clean"})
        for c in ("gaussian_noise", "gaussian_blur"):
            worst = ds.match({"corruption": c, "severity": 3})
            assert clean.mean("iqa_piqe") < worst.mean("iqa_piqe")
            assert clean.mean("iqa_psnr") > worst.mean("iqa_psnr")
        assert set(ds.distinct("corruption")) == {"clean", "gaussian_noise", "gaussian_blur", "jpeg", "contrast"}
    finally:
        ds.delete()


def test_score_refuses_bad_options_and_empty_views_in_one_line(imagenet_files, make_dataset, capsys):
    ds = make_dataset(imagenet_files[:2])
    ds.persistent = True
    for argv, expected in (
            (["--metric", "aligned", "--option", "tta=banana"], "'aligned' option 'tta' must be one of null, "
                                                                 "\"flip\", \"multiscale\", not \"banana\""),
            (["--metric", "aligned", "--option", "tempreature=2"], "did you mean 'temperature'?"),
            (["--metric", "algned"], "Did you mean 'aligned'"),
            (["--metric", "piqe", "--proxy", "efficientnet_lite0"], "take(s) no proxy network")):
        with pytest.raises(SystemExit) as e:
            main(["score", "--dataset", ds.name, "--quiet"] + argv)
        assert str(e.value.code).startswith("error: ") and expected in str(e.value.code), e.value.code
        assert "\n" not in str(e.value.code) and len(str(e.value.code)) < 400
    ds.save_view("nothing", ds.limit(0))
    with pytest.raises(SystemExit, match="this view has no samples: nothing to score"):
        main(["score", "--dataset", ds.name, "--view", "nothing", "--metric", "entropy", "--quiet"])
    ds.reload()
    assert ds.list_runs() == [] and not ds.has_sample_field("iqa_entropy")


def test_score_takes_the_proxy_repeated_or_comma_separated(imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:2])
    ds.persistent = True
    main(["score", "--dataset", ds.name, "--metric", "aligned", "--metric", "entropy", "--device", "cpu",
          "--proxy", "efficientnet_lite0", "--proxy", "efficientnet_lite1,efficientnet_lite2",
          "--options", '{"aligned": {"statistic": "margin"}}', "--quiet"])
    cfg = fo.load_dataset(ds.name).get_run_info("iqa_aligned").config.metric_options
    ensemble = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert cfg.get("proxy", cfg.get("backbone")) == ensemble and cfg["statistic"] == "margin"
    from fiftyone_dnniqa.cli import _listed

    assert _listed(["a,b", "c", " "]) == ["a", "b", "c"] and _listed(None) is None
