"""A generator of hostile input files and an in-process CLI runner that classifies outcomes.

Issue 16's checklist of what a reader meets in the wild: encodings (non-UTF-8, BOMs, UTF-16, lone
surrogates), compression (gzip, bzip2, xz, zstd, truncated streams, bombs), Parquet (real, with a
wrong name, truncated), folders, special files (FIFOs, ``/dev/zero``, broken and looping
symlinks), deep nesting, huge and non-finite numbers, expansion bombs (a ranked row of 2,000
responses), malformed JSON/CSV, and YAML specs with aliases, tags, cycles and wrong types.

:func:`run_inprocess` runs ``judge_rl.cli.main`` in this process (no interpreter start per run)
under a wall-clock bound and returns an :class:`Outcome`: the exit status, the output, whether an
exception escaped (a traceback), and whether the bound was hit (a hang).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import os
import re
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Builder = Callable[[Path], Path]
"""Writes one hostile input under the given folder and returns its path."""

VALID_PREF = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
VALID_BATTLE = {"model_a": "m1", "model_b": "m2", "winner": "model_a", "prompt_id": "p1"}
VALID_CAND = {"prompt_id": "p1", "prompt": "What is 2+2?", "response": "4", "source": "m1"}


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _write(name: str, data: bytes) -> Builder:
    def build(folder: Path) -> Path:
        p = folder / name
        p.write_bytes(data)
        return p

    return build


def _parquet(name: str, rows: list[dict], truncate: int | None = None) -> Builder:
    def build(folder: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = folder / name
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        data = buf.getvalue()
        p.write_bytes(data[:truncate] if truncate else data)
        return p

    return build


def _fifo(name: str) -> Builder:
    def build(folder: Path) -> Path:
        p = folder / name
        os.mkfifo(p)
        return p

    return build


def _dir(name: str, files: dict[str, bytes] | None = None) -> Builder:
    def build(folder: Path) -> Path:
        p = folder / name
        p.mkdir()
        for fname, data in (files or {}).items():
            (p / fname).write_bytes(data)
        return p

    return build


def _symlink(name: str, target: str) -> Builder:
    def build(folder: Path) -> Path:
        p = folder / name
        os.symlink(target if target.startswith("/") else folder / target, p)
        return p

    return build


def _existing(path: str) -> Builder:
    def build(folder: Path) -> Path:
        return Path(path)

    return build


def _pref_with(**fields: object) -> dict:
    return dict(VALID_PREF, **fields)


def _raw_pref(extra: str) -> bytes:
    """A preference row with raw JSON text appended as field ``x`` (for non-JSON constants)."""
    return b'{"prompt": "q", "chosen": "a", "rejected": "b", "x": ' + extra.encode("utf-8") + b"}\n"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _ranked(k: int) -> bytes:
    return _jsonl([{"prompt": "q", "responses": [f"response {i}" for i in range(k)]}])


_ONE = _jsonl([VALID_PREF])
_BATTLES = _jsonl([VALID_BATTLE, dict(VALID_BATTLE, winner="model_b", prompt_id="p2")])

HOSTILE_FILES: dict[str, Builder] = {
    # encodings
    "empty": _write("empty.jsonl", b""),
    "blank_lines": _write("blank.jsonl", b"\n\n  \n\t\n"),
    "only_utf8_bom": _write("bom.jsonl", b"\xef\xbb\xbf"),
    "utf8_bom_row": _write("bomrow.jsonl", b"\xef\xbb\xbf" + _ONE),
    "utf16_bom": _write("u16.jsonl", _ONE.decode().encode("utf-16")),
    "utf16_bom_odd_bytes": _write("u16odd.jsonl", b"\xff\xfe" + b"{\x00x"),
    "utf32_bom": _write("u32.jsonl", _ONE.decode().encode("utf-32")),
    "latin1": _write(
        "latin1.jsonl", '{"prompt": "café", "chosen": "a", "rejected": "b"}\n'.encode("latin-1")
    ),
    "random_bytes": _write("random.jsonl", bytes(range(256)) * 4),
    "nul_bytes": _write("nul.jsonl", b"\x00" * 64 + b"\n" + _ONE),
    "lone_surrogate": _write(
        "surrogate.jsonl", b'{"prompt": "q\\ud800", "chosen": "a", "rejected": "b"}\n'
    ),
    "surrogate_key": _write(
        "surrokey.jsonl", b'{"\\udfff": 1, "prompt": "q", "chosen": "a", "rejected": "b"}\n'
    ),
    "surrogate_csv": _write("surrogate.csv", b"prompt,chosen,rejected\nq\xed\xa0\x80,a,b\n"),
    "rich_markup": _write(
        "markup.jsonl",
        _jsonl(
            [{"prompt": "[bold red]x[/]", "chosen": "[link=file:///etc]", "rejected": "\x1b[31m"}]
        ),
    ),
    "rtl_and_zero_width": _write(
        "rtl.jsonl",
        _jsonl([{"prompt": "\u202eq\u200b", "chosen": "\ufeffa", "rejected": "b\u2028"}]),
    ),
    # compression
    "gzip_named_jsonl": _write("gz_named.jsonl", gzip.compress(_ONE)),
    "bz2": _write("p.jsonl.bz2", bz2.compress(_ONE)),
    "xz": _write("p.jsonl.xz", lzma.compress(_ONE)),
    "zstd_magic": _write("p.jsonl.zst", b"\x28\xb5\x2f\xfd" + b"\x00" * 32),
    "truncated_gzip": _write("trunc.jsonl.gz", gzip.compress(_ONE * 50)[:30]),
    "gz_name_not_gzip": _write("plain.jsonl.gz", _ONE),
    "gzip_bomb": _write("bomb.jsonl.gz", gzip.compress(b" " * (4 << 20))),  # run with a 1 MiB cap
    "double_gzip": _write("double.jsonl.gz", gzip.compress(gzip.compress(_ONE))),
    "gzip_garbage_inside": _write("garbage.jsonl.gz", gzip.compress(bytes(range(256)))),
    # containers
    "parquet": _parquet("p.parquet", [VALID_PREF, dict(VALID_PREF, prompt="q2")]),
    "parquet_named_jsonl": _parquet("pq.jsonl", [VALID_PREF]),
    "parquet_truncated": _parquet("trunc.parquet", [VALID_PREF] * 20, truncate=40),
    "parquet_nested": _parquet(
        "nested.parquet", [{"prompt": "q", "chosen": {"a": [1, 2]}, "rejected": [[1.5]]}]
    ),
    "parquet_battles_nan": _parquet(
        "battles.parquet",
        [dict(VALID_BATTLE, weight=float("nan")), dict(VALID_BATTLE, weight=float("inf"))],
    ),
    "jsonl_named_parquet": _write("fake.parquet", _ONE),
    "json_array_unterminated": _write(
        "arr.json", b'[{"prompt": "q", "chosen": "a", "rejected": "b"},'
    ),
    "json_top_scalar": _write("scalar.json", b"42"),
    "json_top_string": _write("string.jsonl", b'"just text"\n'),
    "json_array_of_arrays": _write("arrays.json", b"[[1, 2], [3]]"),
    "json_object_data_not_list": _write("obj.json", b'{"data": 5}'),
    "json_trailing_garbage": _write("trail.json", b'[{"a": 1}] xyz'),
    "csv_ragged": _write("ragged.csv", b"prompt,chosen,rejected\nq,a\nq,a,b,c,d\n"),
    "csv_unclosed_quote": _write("quote.csv", b'prompt,chosen,rejected\n"q,a,b\n'),
    "csv_header_only": _write("header.csv", b"prompt,chosen,rejected\n"),
    "csv_huge_field": _write(
        "huge.csv", b"prompt,chosen,rejected\n" + b"q" * (1 << 20) + b",a,b\n"
    ),
    "tsv_messages_garbage": _write("msgs.tsv", b'prompt\tchosen\trejected\n[{"role": 1}]\t[{\ta\n'),
    "very_long_line": _write("long.jsonl", _jsonl([_pref_with(prompt="x" * (2 << 20))])),
    # special files and folders
    "non_utf8_file_name": lambda folder: (
        Path(os.fsdecode(bytes(folder) + b"/\xffname.jsonl")).write_bytes(_ONE),
        Path(os.fsdecode(bytes(folder) + b"/\xffname.jsonl")),
    )[-1],
    "fifo": _fifo("fifo.jsonl"),
    "dev_zero": _existing("/dev/zero"),
    "dev_null": _existing("/dev/null"),
    "missing": lambda folder: folder / "does-not-exist.jsonl",
    "empty_dir": _dir("emptydir"),
    "dir_with_junk": _dir("junkdir", {"a.jsonl": b"\xff\xfe\xfa", "b.json": b"[", "c.txt": b"x"}),
    "dir_named_jsonl": _dir("folder.jsonl"),
    "broken_symlink": _symlink("broken.jsonl", "nowhere.jsonl"),
    "symlink_loop": lambda folder: (
        os.symlink(folder / "loop_b.jsonl", folder / "loop_a.jsonl"),
        os.symlink(folder / "loop_a.jsonl", folder / "loop_b.jsonl"),
        folder / "loop_a.jsonl",
    )[-1],
    # nesting and numbers
    "deep_100": _write("deep100.jsonl", _raw_pref(_deep(100))),
    "deep_100000": _write("deep1e5.jsonl", _raw_pref(_deep(100_000))),
    "deep_objects": _write("deepobj.jsonl", _raw_pref('{"a":' * 3000 + "1" + "}" * 3000)),
    "deep_in_messages": _write(
        "deepmsg.jsonl",
        _jsonl([_pref_with(chosen=[{"role": "assistant", "content": [[[[["x"]]]]]}])]),
    ),
    "csv_deep_metadata": _write(
        "deepmeta.csv",
        b'prompt_id,prompt,response,source,metadata\np,q,r,m,"'
        + b'{""a"":' * 900
        + b"1"
        + b"}" * 900
        + b'"\n',
    ),
    "csv_deep_messages": _write(
        "deepmsgs.csv", b'prompt,chosen,rejected\nq,a,"' + b"[" * 900 + b"]" * 900 + b'"\n'
    ),
    "p_chosen_infinity": _write(
        "pinf.jsonl", b'{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": Infinity}\n'
    ),
    "p_chosen_nan": _write(
        "pnan.jsonl", b'{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": NaN}\n'
    ),
    "p_chosen_1e999": _write(
        "p1e999.jsonl", b'{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": 1e999}\n'
    ),
    "p_chosen_huge_int": _write(
        "pbig.jsonl",
        b'{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": 1' + b"0" * 400 + b"}\n",
    ),
    "int_over_4300_digits": _write("bigint.jsonl", _raw_pref("9" * 5000)),
    "margin_neg_infinity": _write(
        "margin.jsonl", b'{"prompt": "q", "chosen": "a", "rejected": "b", "margin": -Infinity}\n'
    ),
    "rating_nan": _write(
        "rating.jsonl",
        b'{"prompt": "q", "response": "a", "rating": NaN}\n{"prompt": "q", "response": "b", "rating": 1}\n',
    ),
    "metadata_nan": _write(
        "metanan.jsonl",
        b'{"prompt_id": "p", "prompt": "q", "response": "r", "source": "m", "metadata": {"x": NaN}}\n',
    ),
    "winner_nan": _write("winnan.jsonl", b'{"model_a": "m1", "model_b": "m2", "winner": NaN}\n'),
    "weight_infinity": _write(
        "weightinf.jsonl",
        b'{"model_a": "m1", "model_b": "m2", "winner": "model_a", "weight": Infinity}\n',
    ),
    "weight_negative": _write("weightneg.jsonl", _jsonl([dict(VALID_BATTLE, weight=-5)])),
    "battle_ids_huge": _write(
        "bigid.jsonl",
        _jsonl([dict(VALID_BATTLE, model_a=10**300, model_b=[1], prompt_id={"a": 1})]),
    ),
    # expansion bombs
    "ranked_2000": _write("ranked2000.jsonl", _ranked(2000)),
    "ratings_one_prompt_400": _write(
        "ratings400.jsonl",
        _jsonl([{"prompt": "q", "response": f"r{i}", "rating": i} for i in range(400)]),
    ),
    "thumbs_one_prompt_400": _write(
        "thumbs400.jsonl",
        _jsonl([{"prompt": "q", "response": f"r{i}", "thumbs": i % 2 == 0} for i in range(400)]),
    ),
    # wrong shapes
    "battles_one_row": _write("battle1.jsonl", _jsonl([VALID_BATTLE])),
    "battles_self_play": _write("self.jsonl", _jsonl([dict(VALID_BATTLE, model_b="m1")] * 2)),
    "battles_unknown_winner": _write("unkwin.jsonl", _jsonl([dict(VALID_BATTLE, winner="banana")])),
    "alpaca_one_contestant": _write(
        "alpaca1.json",
        json.dumps(
            [
                {
                    "instruction": "q",
                    "output_1": "a",
                    "output_2": "b",
                    "generator_1": "m1",
                    "generator_2": "m1",
                    "preference": 1,
                }
            ]
        ).encode(),
    ),
    "pref_wrong_types": _write(
        "types.jsonl",
        _jsonl(
            [
                {"prompt": 1, "chosen": True, "rejected": None},
                {"prompt": ["x"], "chosen": {"a": 1}, "rejected": 3.5},
            ]
        ),
    ),
    "pref_identical": _write("same.jsonl", _jsonl([_pref_with(chosen="x", rejected="x")])),
    "messages_bad_roles": _write(
        "roles.jsonl",
        _jsonl([{"chosen": [{"role": "root", "content": "x"}], "rejected": [{"role": "user"}]}]),
    ),
    "mtbench_answers_bad": _write(
        "answers.jsonl",
        _jsonl([{"question_id": [1], "model_id": None, "choices": [{"turns": [1, None]}]}]),
    ),
    "candidates_bad": _write(
        "cands.jsonl",
        _jsonl([{"prompt_id": {"x": 1}, "prompt": "", "response": ["x"], "source": 5}]),
    ),
    "candidates_one": _write("cand1.jsonl", _jsonl([VALID_CAND])),
    "label_col_list": _write(
        "labellist.jsonl",
        _jsonl([{"prompt": "q", "response_a": "a", "response_b": "b", "winner": [1, 2]}]),
    ),
    "keys_only_numbers": _write("numkeys.jsonl", b'{"1": 1, "2": 2}\n'),
    "many_columns": _write("cols.jsonl", _jsonl([{f"c{i}": i for i in range(5000)}])),
    "valid_pairs": _write(
        "valid.jsonl", _jsonl([VALID_PREF, _pref_with(prompt="q2", chosen="b", rejected="c")])
    ),
    "valid_battles": _write("battles.jsonl", _BATTLES),
}
"""Hostile inputs by kind (each builder writes its file under a fresh folder)."""

NEEDS_CAP = {"gzip_bomb": {"JUDGE_RL_MAX_INPUT_BYTES": "1M"}}
"""Environment for kinds that test a cap (kept small so the suite stays fast)."""


# --- YAML specs --------------------------------------------------------------------------------


def billion_laughs(key: str = "system", levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        prev, cur = chr(96 + i), chr(97 + i)
        text += f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text + f"{key}: *{chr(96 + levels)}\n"


def laughs_value(levels: int = 9) -> str:
    """A flow-style YAML value holding a billion-laughs: ``[&a [lol x9], &b [*a x9], ...]``."""
    parts = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(96 + i), chr(97 + i)
        parts.append(f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "[" + ", ".join(parts) + "]"


HOSTILE_YAML: dict[str, bytes] = {
    "empty": b"",
    "not_utf8": b"version: 1\nname: caf\xe9\n",
    "utf16": "version: 1\n".encode("utf-16"),
    "binary": bytes(range(256)),
    "scalar": b"42\n",
    "list": b"- 1\n- 2\n",
    "syntax_error": b"version: 1\nname: [unclosed\n",
    "tabs": b"version: 1\n\tname: x\n",
    "python_tag": b"version: 1\nname: !!python/object/apply:os.system ['touch PWNED']\n",
    "billion_laughs_top": billion_laughs().encode(),
    "alias_cycle": b"a: &x\n  b: *x\n",
    "deep": b"version: 1\nname: " + b"[" * 2000 + b"]" * 2000 + b"\n",
    "huge_int": b"version: 1\nbudget: 1" + b"0" * 5000 + b"\n",
    "duplicate_keys": b"version: 1\nversion: 2\n",
    "null_values": b"version: null\nname: null\n",
    "version_list": b"version: [1]\n",
    "nan_values": b"version: 1\ntemperature: .nan\nmax_tokens: .inf\nbudget: .inf\n",
    "merge_key_bomb": b"a: &a {x: 1}\nb: &b {<<: [*a, *a, *a, *a]}\nc: {<<: [*b, *b, *b, *b]}\n",
}
"""YAML that a spec reader must refuse with one line (or read as data), never run or blow up."""


# --- running the CLI in-process ----------------------------------------------------------------


class Hang(BaseException):
    """Raised by the alarm when a run exceeds its bound (BaseException: no handler swallows it)."""


@dataclass
class Outcome:
    argv: list[str]
    rc: int | None
    out: str
    err: str
    seconds: float
    traceback: str | None = None
    """The exception that escaped ``main`` (the handler re-raises under pytest), formatted."""
    hang: bool = False

    @property
    def ok(self) -> bool:
        return self.traceback is None and not self.hang and self.rc in (0, 1, 2)

    def describe(self) -> str:
        head = f"judge-rl {' '.join(self.argv)} -> rc={self.rc} in {self.seconds:.1f}s"
        if self.hang:
            return head + " (HANG)"
        if self.traceback:
            return head + "\n" + self.traceback[-3000:]
        return head + "\nstderr: " + self.err[-1500:]


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise Hang()


def run_inprocess(
    argv: list[str],
    *,
    bound_s: float = 30.0,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Outcome:
    """``judge_rl.cli.main(argv)`` with stdout/stderr captured and a wall-clock bound."""
    from judge_rl.cli import main

    if cwd is not None:
        here = os.getcwd()
        os.chdir(cwd)
        try:
            return run_inprocess(argv, bound_s=bound_s, env=env)
        finally:
            os.chdir(here)

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, bound_s)
    t = time.perf_counter()
    rc: int | None = None
    tb: str | None = None
    hang = False
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:  # argparse usage errors
                rc = e.code if isinstance(e.code, int) else 2
    except Hang:
        hang = True
    except Exception:  # noqa: BLE001 - exactly what we count
        tb = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - t
    if tb is None and "Traceback (most recent call last)" in err.getvalue():
        tb = err.getvalue()
    return Outcome(list(map(str, argv)), rc, out.getvalue(), err.getvalue(), seconds, tb, hang)


_SETTING = re.compile(r"(--[a-z][a-z0-9-]*|JUDGE_RL_[A-Z_]+)")
_WHERE = re.compile(r"error: [^\s:]+(:\d+)?: ")
"""``error: <file, file:line or setting>: <message>``, as DataError and ConfigError print."""


def names_its_source(outcome: Outcome, *names: str | os.PathLike[str]) -> bool:
    """An error (exit 2) names one of the files (by base name), a ``--flag`` or a cap setting."""
    text = outcome.err + outcome.out
    for n in names:
        base = os.path.basename(os.fspath(n).rstrip("/"))
        if base and base in text:
            return True
    return bool(_SETTING.search(text) or _WHERE.search(text))


def check(outcome: Outcome, *names: str | os.PathLike[str], bound_s: float) -> list[str]:
    """The problems with one outcome (empty when it kept the contract)."""
    problems = []
    if outcome.hang or outcome.seconds > bound_s:
        problems.append(f"hang (>{bound_s:g}s)")
    if outcome.traceback:
        problems.append("traceback")
    elif outcome.rc not in (0, 1, 2):
        problems.append(f"exit status {outcome.rc}")
    elif outcome.rc == 2 and not names_its_source(outcome, *names):
        problems.append("error does not name its file/line or setting")
    return problems


# --- spec builders ------------------------------------------------------------------------------

PROMPT_J2 = (
    "Question: {{ prompt }}\n[Response A]\n{{ response_a }}\n[Response B]\n{{ response_b }}\n"
    "Answer [[A]], [[B]] or [[C]] for a tie.\n"
)


def _yaml_dump(data: dict) -> bytes:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")


def base_judge_spec() -> dict:
    return {
        "version": "1",
        "kind": "pairwise",
        "description": "fuzz judge",
        "backend": "mock",
        "model": "mock-longer",
        "template": "prompt.j2",
        "max_tokens": 64,
        "order": "both",
        "verdict": "brackets",
        "backend_options": {"rule": "longer"},
    }


def _judge_variant(**changes: object) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        spec = base_judge_spec()
        for k, v in changes.items():
            if v is _DROP:
                spec.pop(k, None)
            else:
                spec[k] = v
        return _yaml_dump(spec)

    return build


_DROP = object()

JUDGE_SPEC_VARIANTS: dict[str, Callable[[Path], bytes]] = {
    **{f"yaml_{k}": (lambda folder, v=v: v) for k, v in HOSTILE_YAML.items()},
    "valid": _judge_variant(),
    "backend_os_nope": _judge_variant(backend="os:nope"),
    "backend_list": _judge_variant(backend=["mock"]),
    "kind_number": _judge_variant(kind=3),
    "kind_unknown": _judge_variant(kind="oracle"),
    "max_tokens_negative": _judge_variant(max_tokens=-1),
    "max_tokens_text": _judge_variant(max_tokens="many"),
    "max_tokens_huge": _judge_variant(max_tokens=10**30),
    "temperature_nan": _judge_variant(temperature=float("nan")),
    "temperature_inf": _judge_variant(temperature=float("inf")),
    "order_weird": _judge_variant(order="sideways"),
    "template_missing": _judge_variant(template="nope.j2"),
    "template_dev_zero": _judge_variant(template="/dev/zero"),
    "template_dir": _judge_variant(template="."),
    "template_number": _judge_variant(template=12),
    "no_template": _judge_variant(template=_DROP),
    "backend_options_list": _judge_variant(backend_options=[1, 2]),
    "backend_options_unknown": _judge_variant(backend_options={"nope": 1}),
    "prices_negative": _judge_variant(prices={"input": -1, "output": -1}),
    "prices_nan": _judge_variant(prices={"input": float("nan"), "output": 0}),
    "system_laughs": lambda folder: (
        _yaml_dump(base_judge_spec()) + f"system: {laughs_value()}\n".encode()
    ),
    "jury_self_cycle": lambda folder: _yaml_dump(
        {"version": "1", "kind": "jury", "members": [str(folder / "judge.yaml")] * 2}
    ),
    "jury_empty": lambda folder: _yaml_dump({"version": "1", "kind": "jury", "members": []}),
    "jury_members_text": lambda folder: _yaml_dump(
        {"version": "1", "kind": "jury", "members": "pairwise"}
    ),
}
"""judge.yaml contents (bytes) written beside a plain ``prompt.j2``."""

TEMPLATE_VARIANTS: dict[str, bytes] = {
    "syntax_error": b"{% for %}",
    "undefined_var": b"{{ nothing.at.all }}",
    "not_utf8": b"Question: {{ prompt }} \xff\xfe",
    "huge_loop": b"{% for i in range(10**9) %}x{% endfor %}",
    "recursion": b"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "empty": b"",
}
"""prompt.j2 contents that must end as one line (the template sandbox itself is H2's)."""


def write_judge(folder: Path, spec: bytes, template: bytes = PROMPT_J2.encode()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompt.j2").write_bytes(template)
    (folder / "judge.yaml").write_bytes(spec)
    return folder / "judge.yaml"


def base_tournament_spec(contestant: str, other: str) -> dict:
    return {
        "version": 1,
        "name": "fuzz",
        "contestants": [{"file": contestant}, {"file": other}],
        "judge": "mock-pairwise",
        "cache": "none",
        "budget": 4,
        "bootstrap": 0,
        "seed": 0,
    }


def tournament_variants(folder: Path, valid_a: Path, valid_b: Path) -> dict[str, bytes]:
    base = base_tournament_spec(str(valid_a), str(valid_b))

    def v(**changes: object) -> bytes:
        spec = dict(base)
        spec.update(changes)
        return _yaml_dump(spec)

    return {
        **{f"yaml_{k}": val for k, val in HOSTILE_YAML.items()},
        "valid": v(),
        "name_dotdot": v(name="../../escaped"),
        "name_absolute": v(name=str(folder / "abs-escape")),
        "bootstrap_huge": v(bootstrap=100_000_000),
        "bootstrap_negative": v(bootstrap=-5),
        "budget_negative": v(budget=-1),
        "budget_text": v(budget="lots"),
        "budget_inf": v(budget=float("inf")),
        "max_prompts_negative": v(max_prompts=-3),
        "batch_size_zero": v(pairing={"batch_size": 0}),
        "batch_size_huge": v(pairing={"batch_size": 10**12}),
        "confidence_nan": v(pairing={"confidence": float("nan")}),
        "judge_missing": v(judge="no-such-judge"),
        "judge_os": v(judge="os:nope"),
        "judge_overrides_backend": v(judge_overrides={"backend": "os:nope"}),
        "judge_overrides_list": v(judge_overrides=[1]),
        "contestants_text": v(contestants="everyone"),
        "contestant_dev_zero": v(contestants=[{"file": "/dev/zero"}, {"file": str(valid_b)}]),
        "contestant_dir": v(contestants=[{"file": str(folder)}, {"file": str(valid_b)}]),
        "contestant_same_twice": v(contestants=[{"file": str(valid_a)}, {"file": str(valid_a)}]),
        "prompts_fifo": v(prompts=str(folder / "fifo.jsonl")),
        "cache_is_dir": v(cache=str(folder)),
        "ties_weird": v(ties="coin"),
        "seed_huge": v(seed=10**40),
        "laughs_description": v() + f"description: {laughs_value()}\n".encode(),
    }
