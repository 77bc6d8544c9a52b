"""Issue 16: hostile input files end as one line naming the file/line or setting, exit 2;
bounded memory and time; exit codes that mean something. Each test failed on the code before."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import time
from pathlib import Path

import pytest

from judge_rl.cli import main

ROW = {"prompt": "q", "chosen": "a", "rejected": "b"}


def _line(row=ROW) -> bytes:
    return (json.dumps(row) + "\n").encode()


def _run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _convert(capsys, tmp_path, src, *extra: str, out: str = "out.jsonl"):
    return _run(
        capsys,
        "data",
        "convert",
        str(src),
        str(tmp_path / out),
        "--run",
        str(tmp_path / "run"),
        *extra,
    )


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- non-finite and huge numbers -------------------------------------------------------------


@pytest.mark.parametrize("token", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_p_chosen_is_refused_not_a_hard_label(capsys, tmp_path, token):
    src = tmp_path / "p.jsonl"
    src.write_text(f'{{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": {token}}}\n')
    rc, _, err = _convert(capsys, tmp_path, src)
    line = _one_error_line(err)
    assert rc == 2 and "p.jsonl:1" in line and "p_chosen" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_non_finite_p_chosen_in_csv_is_refused(capsys, tmp_path):
    src = tmp_path / "p.csv"
    src.write_text("prompt,chosen,rejected,p_chosen\nq,a,b,inf\n")
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "p.csv:2" in err and "p_chosen" in err


def test_huge_integer_is_refused(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(
        '{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": 1%s}\n' % ("0" * 400)
    )
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "p.jsonl:1" in _one_error_line(err) and "too large" in err


def test_nan_in_candidate_metadata_is_written_as_null(capsys, tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(
        '{"prompt_id": "p1", "prompt": "q", "response": "r", "source": "m", '
        '"metadata": {"x": NaN, "y": Infinity}}\n'
    )
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 0, err
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["metadata"]["x"] is None and row["metadata"]["y"] is None


# --- encodings -------------------------------------------------------------------------------


def test_lone_surrogate_is_refused_with_its_line(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line() + b'{"prompt": "q\\ud800", "chosen": "a", "rejected": "b"}\n')
    rc, _, err = _convert(capsys, tmp_path, src)
    line = _one_error_line(err)
    assert rc == 2 and "p.jsonl:2" in line and "surrogate" in line


def test_utf16_with_bom_is_read(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line().decode().encode("utf-16"))
    rc, out, err = _convert(capsys, tmp_path, src)
    assert rc == 0 and "wrote 1 pairs" in out, err


def test_latin1_line_is_named(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(
        _line() + '{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'.encode("latin-1")
    )
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "p.jsonl:2" in _one_error_line(err) and "UTF-8" in err


# --- compression and containers, by magic bytes ----------------------------------------------


@pytest.mark.parametrize(
    "name,pack",
    [
        ("p.jsonl.bz2", bz2.compress),
        ("p.jsonl.xz", lzma.compress),
        ("p.jsonl", gzip.compress),  # gzip without a .gz name
        ("p.data", bz2.compress),
    ],
)
def test_compression_is_recognised_by_magic_bytes(capsys, tmp_path, name, pack):
    src = tmp_path / name
    src.write_bytes(pack(_line() * 3))
    rc, out, err = _convert(capsys, tmp_path, src)
    assert rc == 0 and "wrote 3 pairs" in out, err


def test_zstd_without_the_library_is_one_line(capsys, tmp_path):
    try:
        import zstandard  # noqa: F401

        pytest.skip("zstandard installed: .zst files are read")
    except ImportError:
        pass
    src = tmp_path / "p.jsonl.zst"
    src.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "p.jsonl.zst" in _one_error_line(err) and "zstd" in err


def test_corrupt_bz2_is_one_line(capsys, tmp_path):
    src = tmp_path / "p.jsonl.bz2"
    src.write_bytes(bz2.compress(_line())[:20])
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "p.jsonl.bz2" in _one_error_line(err) and "bzip2" in err


def test_parquet_with_a_jsonl_name_is_read(capsys, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "p.jsonl"
    pq.write_table(pa.Table.from_pylist([ROW]), src)
    rc, out, err = _convert(capsys, tmp_path, src)
    assert rc == 0 and "wrote 1 pairs" in out, err


def test_jsonl_with_a_parquet_name_is_one_line(capsys, tmp_path):
    src = tmp_path / "p.parquet"
    src.write_bytes(_line())
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "p.parquet" in _one_error_line(err) and "Parquet" in err


# --- special files and folders ----------------------------------------------------------------


def test_fifo_is_refused_without_blocking(capsys, tmp_path):
    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    t = time.perf_counter()
    rc, _, err = _run(capsys, "data", "inspect", str(fifo))
    assert time.perf_counter() - t < 10
    assert rc == 2 and "p.jsonl" in _one_error_line(err) and "FIFO" in err


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_is_refused_without_reading(capsys):
    rc, _, err = _run(capsys, "data", "inspect", "/dev/zero")
    assert rc == 2 and "/dev/zero" in _one_error_line(err) and "device" in err


def test_directory_without_data_files_is_one_line(capsys, tmp_path):
    d = tmp_path / "folder"
    d.mkdir()
    rc, _, err = _run(capsys, "data", "inspect", str(d))
    assert rc == 2 and "folder" in _one_error_line(err)


# --- bounds -----------------------------------------------------------------------------------


def test_gzip_bomb_stops_at_the_decompressed_cap(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_RL_MAX_INPUT_BYTES", "1M")
    src = tmp_path / "bomb.jsonl.gz"
    src.write_bytes(gzip.compress(b" " * (8 << 20)))  # 8 MiB of blanks, 8 KiB on disk
    rc, _, err = _run(capsys, "data", "inspect", str(src))
    line = _one_error_line(err)
    assert rc == 2 and "bomb.jsonl.gz" in line and "JUDGE_RL_MAX_INPUT_BYTES" in line


def test_file_over_the_size_cap_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_RL_MAX_INPUT_BYTES", "100")
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line() * 10)
    rc, _, err = _run(capsys, "data", "inspect", str(src))
    assert rc == 2 and "JUDGE_RL_MAX_INPUT_BYTES" in _one_error_line(err)


def test_bad_cap_setting_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_RL_MAX_ROWS", "lots")
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line())
    rc, _, err = _run(capsys, "data", "inspect", str(src))
    assert rc == 2 and "JUDGE_RL_MAX_ROWS" in _one_error_line(err)


def test_rows_per_file_cap(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_RL_MAX_ROWS", "3")
    src = tmp_path / "p.jsonl"
    src.write_bytes(b"".join(_line(dict(ROW, prompt=f"q{i}")) for i in range(5)))
    rc, _, err = _convert(capsys, tmp_path, src)
    line = _one_error_line(err)
    assert rc == 2 and "p.jsonl:4" in line and "JUDGE_RL_MAX_ROWS" in line


def test_ranked_row_of_2000_responses_fails_fast(capsys, tmp_path):
    src = tmp_path / "ranked.jsonl"
    src.write_text(json.dumps({"prompt": "q", "responses": [f"r{i}" for i in range(2000)]}) + "\n")
    t = time.perf_counter()
    rc, _, err = _convert(capsys, tmp_path, src)
    assert time.perf_counter() - t < 5
    line = _one_error_line(err)
    assert rc == 2 and "ranked.jsonl:1" in line and "JUDGE_RL_MAX_PAIRS_PER_ROW" in line


def test_ratings_of_one_prompt_are_bounded_too(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_RL_MAX_PAIRS_PER_ROW", "10")
    src = tmp_path / "r.jsonl"
    src.write_text(
        "".join(
            json.dumps({"prompt": "q", "response": f"r{i}", "rating": i}) + "\n" for i in range(8)
        )
    )
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "r.jsonl:" in _one_error_line(err) and "JUDGE_RL_MAX_PAIRS_PER_ROW" in err


@pytest.mark.parametrize("depth", [100, 5000])
def test_deep_nesting_is_refused(capsys, tmp_path, depth):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps(ROW)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}\n")
    rc, _, err = _convert(capsys, tmp_path, src)
    line = _one_error_line(err)
    assert rc == 2 and "p.jsonl:1" in line and "nested" in line


def test_deep_nesting_in_a_json_array(capsys, tmp_path):
    src = tmp_path / "p.json"
    src.write_text("[" + json.dumps(ROW) + ', {"x": ' + "[" * 200 + "]" * 200 + "}]")
    rc, _, err = _convert(capsys, tmp_path, src)
    assert rc == 2 and "p.json:1" in _one_error_line(err)


# --- outputs checked before the work ----------------------------------------------------------


def test_output_that_is_a_directory_is_refused_first(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line())
    (tmp_path / "outdir").mkdir()
    rc, _, err = _convert(capsys, tmp_path, src, out="outdir")
    line = _one_error_line(err)
    assert rc == 2 and "outdir" in line and "directory" in line


def test_output_under_a_file_is_refused_first(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line())
    (tmp_path / "afile").write_text("")
    rc, _, err = _convert(capsys, tmp_path, src, out="afile/out.jsonl")
    assert rc == 2 and "afile" in _one_error_line(err)


def test_output_extension_is_checked_before_reading(capsys, tmp_path):
    src = tmp_path / "missing.jsonl"  # not even read: the output is wrong first
    rc, _, err = _convert(capsys, tmp_path, src, out="out.txt")
    assert rc == 2 and "out.txt" in _one_error_line(err)


def test_inspect_run_outside_reports_is_refused(capsys, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # the code before the fix wrote tmp_path/escape/log.json
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line())
    rc, _, err = _run(capsys, "data", "inspect", str(src), "--run", "../../escape")
    assert rc == 2 and "--run" in _one_error_line(err)
    assert not (tmp_path / "escape").exists()


# --- exit codes -------------------------------------------------------------------------------


def test_drop_ties_leaving_nothing_is_not_a_success(capsys, tmp_path):
    src = tmp_path / "ties.jsonl"
    src.write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "response_a": "x", "response_b": "y", "winner": "tie"})
            + "\n"
            for i in range(3)
        )
    )
    rc, _, err = _convert(capsys, tmp_path, src, "--drop-ties")
    assert rc == 1, err
    assert "no pairs to write" in err and "3 ties" in err
    assert not (tmp_path / "out.jsonl").exists()  # no empty file for a trainer to choke on


def test_all_rows_invalid_with_skip_invalid_is_exit_1(capsys, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(
        '{"prompt": "q", "chosen": "a"}\n{"prompt": "q", "chosen": 3, "rejected": "b"}\n'
    )
    rc, _, err = _convert(
        capsys, tmp_path, src, "--format", "trl", "--skip-invalid", "--max-failures", "100%"
    )
    assert rc == 1  # an empty output is never a success, whatever the tolerance
    assert "2 of 2 rows failed" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_max_failures_setting_is_validated(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line())
    rc, _, err = _convert(capsys, tmp_path, src, "--max-failures", "lots")
    assert rc == 2 and "--max-failures" in _one_error_line(err)


def test_failure_summary_line_and_exit_codes():
    from judge_rl.errors import EXIT_OK, EXIT_PARTIAL, FailureSummary, MaxFailures

    s = FailureSummary(total=40)
    s.add("timeout", 30)
    s.add("http_404", 8)
    assert s.line("comparisons") == "38 of 40 comparisons failed (timeout: 30, http_404: 8)"
    assert s.exit_code() == EXIT_PARTIAL
    assert s.exit_code(MaxFailures.parse("38")) == EXIT_OK
    assert s.exit_code(MaxFailures.parse("95%")) == EXIT_OK
    assert s.exit_code(MaxFailures.parse("90%")) == EXIT_PARTIAL
    assert FailureSummary(total=5).exit_code(written=0) == EXIT_PARTIAL
    assert FailureSummary(total=5).exit_code(written=5) == EXIT_OK


def test_bootstrap_cap_is_a_shared_constant():
    from judge_rl.errors import MAX_BOOTSTRAP, ConfigError, check_count

    assert check_count(MAX_BOOTSTRAP, "--bootstrap", maximum=MAX_BOOTSTRAP) == MAX_BOOTSTRAP
    with pytest.raises(ConfigError, match="--bootstrap"):
        check_count(100_000_000, "--bootstrap", maximum=MAX_BOOTSTRAP)


# --- YAML specs -------------------------------------------------------------------------------


def _laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        prev, cur = chr(96 + i), chr(97 + i)
        text += f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text + f"system: *{chr(96 + levels)}\n"


def test_yaml_billion_laughs_fails_at_once(tmp_path):
    from judge_rl._io import safe_yaml_load
    from judge_rl.errors import ConfigError

    spec = tmp_path / "judge.yaml"
    spec.write_text(_laughs())
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="JUDGE_RL_MAX_YAML_NODES") as e:
        safe_yaml_load(spec)
    assert time.perf_counter() - t < 2
    assert "judge.yaml" in str(e.value)


@pytest.mark.parametrize(
    "data,needle",
    [
        (b"name: \xff\xfe\n", "UTF-8"),
        (b"name: [\n", "line 2"),
        (b"- " * 300 + b"x\n", "nested"),
        (b"a: &x\n  b: *x\n", "itself"),
    ],
)
def test_yaml_bad_specs_are_config_errors(tmp_path, data, needle):
    from judge_rl._io import safe_yaml_load
    from judge_rl.errors import ConfigError

    spec = tmp_path / "s.yaml"
    spec.write_bytes(data)
    with pytest.raises(ConfigError, match=needle) as e:
        safe_yaml_load(spec)
    assert "s.yaml" in str(e.value)


def test_yaml_plain_spec_loads_and_no_python_tags(tmp_path):
    from judge_rl._io import safe_yaml_load
    from judge_rl.errors import ConfigError

    assert safe_yaml_load(text="a: 1\nb: [x, y]\n") == {"a": 1, "b": ["x", "y"]}
    with pytest.raises(ConfigError):
        safe_yaml_load(text="a: !!python/object/apply:os.system ['id']\n")
    spec = tmp_path / "ok.yaml"
    spec.write_text("name: x\n")
    assert safe_yaml_load(str(spec)) == safe_yaml_load(spec) == {"name": "x"}  # str is a path
    with pytest.raises(ConfigError):
        safe_yaml_load(Path(tmp_path / "missing.yaml"))


def test_check_output_helpers(tmp_path):
    from judge_rl._io import check_output_dir, check_output_file
    from judge_rl.errors import ConfigError

    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    assert check_output_file(tmp_path / "new.jsonl", "--output") == tmp_path / "new.jsonl"
    assert check_output_dir(tmp_path / "d" / "sub", "--output") == tmp_path / "d" / "sub"
    with pytest.raises(ConfigError, match="--output: .*directory"):
        check_output_file(tmp_path / "d", "--output")
    with pytest.raises(ConfigError, match="--output: .*not a folder"):
        check_output_dir(tmp_path / "f", "--output")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(tmp_path / "f" / "x", "--output")
    assert not (tmp_path / "d" / "sub").exists()  # checks create nothing


def test_report_html_under_a_file_is_refused_before_rendering(capsys, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(_line())
    assert main(["data", "inspect", str(src), "--run", str(tmp_path / "run")]) == 0
    (tmp_path / "afile").write_text("")
    capsys.readouterr()
    rc, _, err = _run(
        capsys, "report", str(tmp_path / "run"), "--html", str(tmp_path / "afile" / "r.html")
    )
    assert rc == 2 and "--html" in _one_error_line(err)


def test_non_utf8_file_name_is_read_and_logged(capsys, tmp_path):
    """A file name that is not UTF-8 (Python surrogate-escapes it) must not break the output
    or the run log: its undecodable bytes show as U+FFFD."""
    src = Path(os.fsdecode(bytes(tmp_path) + b"/\xffbad.jsonl"))
    src.write_bytes(_line())
    rc, out, err = _convert(capsys, tmp_path, src)
    assert rc == 0, err
    row = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert row["provenance"]["file"] == "\ufffdbad.jsonl"
    assert json.loads((tmp_path / "run" / "log.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "header,cell",
    [
        ("prompt_id,prompt,response,source,metadata", "p,q,r,m,"),
        ("prompt,chosen,rejected,provenance", "q,a,b,"),
        ("prompt,chosen,rejected", "q,a,"),
    ],
)
def test_deep_json_inside_a_csv_cell_is_refused(capsys, tmp_path, header, cell):
    """JSON written in a CSV cell (metadata, provenance, messages) is bounded like a row: it
    used to hit RecursionError (exit 70) at 900 levels."""
    deep = (
        '{"a":' * 900 + "1" + "}" * 900
        if "meta" in header or "prov" in header
        else "[" * 900 + "]" * 900
    )
    src = tmp_path / "deep.csv"
    src.write_text(header + "\n" + cell + '"' + deep.replace('"', '""') + '"\n')
    rc, _, err = _convert(capsys, tmp_path, src)
    line = _one_error_line(err)
    assert rc == 2 and "deep.csv:2" in line and "nested deeper" in line
