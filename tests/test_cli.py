import time

from tests.conftest import run_cli


def test_help_is_fast_and_lists_commands():
    t = time.perf_counter()
    r = run_cli("--help")
    elapsed = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    for cmd in ("data", "label", "train-rm", "ppo", "tournament", "report", "demo"):
        assert cmd in r.stdout
    # A subprocess start included: the budget is generous, the point is no torch import.
    assert elapsed < 5


def test_help_imports_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys; from judge_rl.cli import build_parser; build_parser(); "
        "bad=[m for m in ('torch','transformers','openai','vllm','pandas','scipy') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_command_is_exit_2():
    assert run_cli().returncode == 2


# --- the last-resort handler (issue 16: no traceback reaches a user) -------------------------


def test_a_bug_prints_one_line_and_a_crash_report(tmp_path, monkeypatch, capsys):
    import judge_rl.commands.models as models_cmd
    from judge_rl.cli import main
    from judge_rl.errors import EXIT_INTERNAL

    def boom(args):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(models_cmd, "run", boom)
    monkeypatch.setenv("JUDGE_RL_CRASH_RAISE", "0")  # the user's view, not the test suite's
    monkeypatch.setenv("JUDGE_RL_CRASH_DIR", str(tmp_path / "crash"))
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    rc = main(["models"])
    err = capsys.readouterr().err
    assert rc == EXIT_INTERNAL
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "RuntimeError: kaboom" in lines[0]
    reports = list((tmp_path / "crash").iterdir())
    assert len(reports) == 1 and str(reports[0]) in err.replace("\n", "")
    text = reports[0].read_text()
    assert "Traceback" in text and "kaboom" in text and "judge-rl models" in text


def test_crash_report_masks_secrets():
    from judge_rl.cli import _masked_argv

    masked = _masked_argv(["label", "--api-key", "sk-1", "--token=t2", "--model", "m"])
    assert masked == ["label", "--api-key", "***", "--token=***", "--model", "m"]


def test_inside_pytest_the_handler_reraises(monkeypatch):
    """The suite treats reaching the handler as a failure: in-process it re-raises."""
    import pytest

    import judge_rl.commands.models as models_cmd
    from judge_rl.cli import main

    def boom(args):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(models_cmd, "run", boom)
    monkeypatch.delenv("JUDGE_RL_CRASH_RAISE", raising=False)
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["models"])


def test_subprocess_crash_is_one_line_and_exit_70(tmp_path):
    """The real entry point: a crash in a command module is one line and exit 70."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, judge_rl.commands.models as m\n"
        "def boom(a): raise ValueError('deep bug')\n"
        "m.run = boom\n"
        "from judge_rl.cli import main\n"
        "sys.exit(main(['models']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["JUDGE_RL_CRASH_DIR"] = str(tmp_path)
    env["NO_COLOR"] = "1"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 70, r.stderr
    assert "Traceback" not in r.stderr and "deep bug" in r.stderr
    assert len(list(tmp_path.glob("crash-*.txt"))) == 1


def test_judge_rl_error_is_one_line_exit_2(tmp_path, capsys):
    from judge_rl.cli import main

    rc = main(["data", "inspect", str(tmp_path / "missing.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "missing.jsonl" in err and "Traceback" not in err


# --- run folders stay inside reports/ (issue 16 item 7) ---------------------------------------


def test_run_name_with_dotdot_is_refused(tmp_path, monkeypatch, capsys):
    from judge_rl.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    rc = main(["data", "convert", str(f), str(tmp_path / "out.jsonl"), "--run", "../escaped"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "--run" in err
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "out.jsonl").exists()  # refused before the work started


def test_run_dir_confines_relative_paths(tmp_path, monkeypatch):
    import pytest

    from judge_rl import runlog
    from judge_rl.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    assert runlog.run_dir("a/b") == tmp_path.joinpath("reports", "a", "b").relative_to(tmp_path)
    assert runlog.run_dir("reports/c").as_posix() == "reports/c"
    for bad in ("..", "../x", "a/../../x", "reports/../../x"):
        with pytest.raises(ConfigError, match="--run"):
            runlog.run_dir(bad)
    assert not (tmp_path.parent / "x").exists()
    (tmp_path / "reports" / "afile").write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        runlog.run_dir("afile")


def test_check_run_name_for_spec_names():
    import pytest

    from judge_rl._io import check_run_name
    from judge_rl.errors import ConfigError

    assert check_run_name("arena-1") == "arena-1"
    for bad in ("../x", "/etc", "a/b", "..", "", "a\\b"):
        with pytest.raises(ConfigError):
            check_run_name(bad, setting="name", file="spec.yaml")


def test_disk_full_is_a_setup_error_not_a_crash(monkeypatch, capsys):
    import errno

    import judge_rl.commands.models as models_cmd
    from judge_rl.cli import main

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.jsonl")

    monkeypatch.setattr(models_cmd, "run", full)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert "/data/out.jsonl: No space left on device" in err and "Traceback" not in err


def test_closed_stdout_pipe_ends_quietly(monkeypatch):
    import judge_rl.commands.models as models_cmd
    from judge_rl.cli import main

    def pipe(args):
        raise BrokenPipeError()

    monkeypatch.setattr(models_cmd, "run", pipe)
    monkeypatch.setattr("judge_rl.cli._quiet_stdout", lambda: None)
    assert main(["models"]) == 0
