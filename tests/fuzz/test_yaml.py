"""Hypothesis over ``judge_rl._io.safe_yaml_load``: any bytes or text give data or one
ConfigError naming the spec, within a bound (no other exception, no alias blow-up)."""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from judge_rl._io import safe_yaml_load
from judge_rl.errors import ConfigError

TOKENS = [
    "a: ", "b: ", "- ", "&x ", "*x", "&y ", "*y", "[", "]", "{", "}", ", ", "\n", "  ", "<<: ",
    "!!python/object/apply:os.system ['id']", "!!binary AAAA", "!!set ", "? ", ": ", "|\n  ",
    ">\n  ", "'", '"', "\\u", "1e999", ".nan", "0x", "9" * 5000, "~", "\t", "%YAML 1.1\n", "---\n",
    "...\n", "\ufeff", "\x00", "\udcff",
]  # fmt: skip
FUZZ = settings(
    max_examples=int(os.environ.get("JUDGE_RL_FUZZ_EXAMPLES", "12")) * 10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=5), max_size=40))
def test_yaml_text_is_data_or_one_config_error(parts):
    text = "".join(parts)
    t = time.perf_counter()
    try:
        safe_yaml_load(text=text, file="spec.yaml")
    except ConfigError as e:
        assert "spec.yaml" in str(e)
    assert time.perf_counter() - t < 5


@FUZZ
@given(st.binary(max_size=200))
def test_yaml_bytes_are_data_or_one_config_error(data):
    try:
        safe_yaml_load(data, file="spec.yaml")
    except ConfigError as e:
        assert "spec.yaml" in str(e)
