"""``judge-rl ppo --monitor-*``, ``judge-rl overopt`` and ``judge-rl probe`` end to end on a tiny
model (in-process through ``judge_rl.cli.main``; one real subprocess checks exit status 2)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.fixture()
def prompt_files(tmp_path):
    train = tmp_path / "train.jsonl"
    held = tmp_path / "held.jsonl"
    train.write_text("".join(json.dumps({"prompt": f"say {w}"}) + "\n" for w in "abcdefgh"))
    held.write_text("".join(json.dumps({"prompt": f"write {w}"}) + "\n" for w in "ijkl"))
    return train, held


def test_ppo_monitor_then_offline_overopt(
    tmp_path, tiny_model_dir, prompt_files, capsys, monkeypatch
):
    import torch

    from judge_rl.cli import main

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    train, held = prompt_files
    try:
        rc = main(
            [
                "ppo",
                "--policy",
                str(tiny_model_dir),
                "--reward",
                "count:a",
                "--prompts",
                str(train),
                "--output",
                str(tmp_path / "out"),
                "--batch-size",
                "4",
                "--mini-batch-size",
                "4",
                "--ppo-epochs",
                "1",
                "--steps",
                "4",
                "--max-new-tokens",
                "6",
                "--lr",
                "1e-3",
                "--threads",
                "1",
                "--device",
                "cpu",
                "--run",
                str(tmp_path / "run"),
                "--monitor-gold",
                "contains:a",
                "--monitor-every",
                "2",
                "--monitor-prompts",
                str(held),
                "--monitor-samples",
                "2",
                "--probe",
            ]
        )
        assert rc == 0
        log = json.loads((tmp_path / "run" / "log.json").read_text())
        ov = log["overopt"]
        assert ov["gold"] == "contains:a" and ov["proxy"] == "count:a"
        assert [p["step"] for p in ov["points"]] == [0, 2, 4]
        for p in ov["points"]:
            assert p["gold_n"] == 8 and p["kl"] is not None and p["checkpoint"]
            assert p["gold_lo"] <= p["gold_mean"] <= p["gold_hi"]
        assert ov["points"][0]["kl"] == pytest.approx(0.0, abs=1e-4)
        assert [d["step"] for d in ov["degeneration"]] == [0, 2, 4]
        assert {r["step"] for r in ov["probes"]} == {0, 2, 4}
        assert ov["best_checkpoint"]["step"] in (0, 2, 4)
        assert "need at least 4 points" in ov["fit"]["note"]  # too few points to fit: a note
        monitor_ckpts = [c for c in log["ppo"]["checkpoints"] if "monitor" in c.get("tag", "")]
        assert len(monitor_ckpts) == 3

        # offline: the same run's checkpoints against the gold
        capsys.readouterr()
        rc = main(
            [
                "overopt",
                str(tmp_path / "run"),
                "--gold",
                "contains:a",
                "--prompts",
                str(held),
                "--samples",
                "2",
                "--run",
                str(tmp_path / "off"),
                "--threads",
                "1",
            ]
        )
        assert rc == 0
        out = capsys.readouterr().out
        assert "recommended checkpoint" in out and "proxy count:a vs gold contains:a" in out
        off = json.loads((tmp_path / "off" / "log.json").read_text())
        assert off["command"] == "overopt"
        steps = [p["step"] for p in off["overopt"]["points"]]
        assert steps[0] == 0 and steps == sorted(set(steps)) and 4 in steps
        assert off["overopt"]["points"][0]["kl"] == pytest.approx(0.0, abs=1e-4)
        assert off["overopt"]["best_checkpoint"]["path"]
        # resume: a second run with the same settings reuses every point
        mtime = (tmp_path / "off" / "log.json").stat().st_mtime
        assert (
            main(
                [
                    "overopt",
                    str(tmp_path / "run"),
                    "--gold",
                    "contains:a",
                    "--prompts",
                    str(held),
                    "--samples",
                    "2",
                    "--run",
                    str(tmp_path / "off"),
                ]
            )
            == 0
        )
        again = json.loads((tmp_path / "off" / "log.json").read_text())
        assert again["overopt"]["points"] == off["overopt"]["points"]
        assert (tmp_path / "off" / "log.json").stat().st_mtime >= mtime
    finally:
        torch.set_num_threads(threads)


def test_probe_command_flags_length_reward(tmp_path, capsys, monkeypatch):
    from judge_rl.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["probe", "--reward", "length", "--run", str(tmp_path / "p1")]) == 0
    out = capsys.readouterr().out
    assert "the reward is hackable" in out and "repeat_word_200" in out
    log = json.loads((tmp_path / "p1" / "log.json").read_text())
    rows = {r["name"]: r for r in log["overopt"]["probes"]}
    assert rows["repeat_word_200"]["flagged"] and not rows["empty"]["flagged"]
    assert log["notes"] and "hackable" in log["notes"][0]
    # a verifier against reference answers is not fooled; --fail-on-flag exits 1 only when flagged
    assert (
        main(
            ["probe", "--reward", "verifier:exact", "--run", str(tmp_path / "p2"), "--fail-on-flag"]
        )
        == 0
    )
    assert (
        main(["probe", "--reward", "length", "--run", str(tmp_path / "p3"), "--fail-on-flag"]) == 1
    )


def test_bad_input_exits_2_with_one_line(tmp_path):
    r = run_cli("overopt", str(tmp_path / "nothing"), "--gold", "contains:a", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().startswith("error:") and "no run log here" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--monitor-every", "0"], "--monitor-every: must be a positive integer"),
        (["--stop-on-alarm"], "needs the monitor"),
        (["--monitor"], "--monitor-gold: the monitor needs a gold reward"),
        (["--monitor-gold", "magic:1"], "unknown reward kind 'magic'"),
    ],
)
def test_bad_monitor_flags(tmp_path, tiny_model_dir, prompt_files, extra, message, capsys):
    from judge_rl.cli import main

    train, _ = prompt_files
    rc = main(
        [
            "ppo",
            "--policy",
            str(tiny_model_dir),
            "--reward",
            "count:a",
            "--prompts",
            str(train),
            "--output",
            str(tmp_path / "o"),
            "--run",
            str(tmp_path / "r"),
            "--monitor-gold",
            "contains:a",
            *extra,
        ]
        if extra[0] not in ("--monitor-gold", "--stop-on-alarm", "--monitor")
        else [
            "ppo",
            "--policy",
            str(tiny_model_dir),
            "--reward",
            "count:a",
            "--prompts",
            str(train),
            "--output",
            str(tmp_path / "o"),
            "--run",
            str(tmp_path / "r"),
            *extra,
        ]
    )
    assert rc == 2
    assert message in capsys.readouterr().err
