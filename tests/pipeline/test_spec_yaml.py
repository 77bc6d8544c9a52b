"""Pipeline specs and trainer config files are read by the one hardened YAML reader that judge
specs and tournament specs use (``judge_rl._io.safe_yaml_load``): bounded size, depth and alias
expansion, errors naming the file and line, never a traceback."""

from __future__ import annotations

import pytest

from judge_rl.errors import ConfigError


def test_a_deeply_nested_pipeline_spec_is_one_clear_error(tmp_path):
    from judge_rl.pipeline.spec import read_pipeline

    spec = tmp_path / "deep.yaml"
    spec.write_text("version: '1'\nstages: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml.*(nested|deep)"):
        read_pipeline(spec)


def test_a_pipeline_spec_yaml_error_names_the_line(tmp_path):
    from judge_rl.pipeline.spec import read_pipeline

    spec = tmp_path / "bad.yaml"
    spec.write_text("version: '1'\nstages:\n  prompts: {config: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+: not valid YAML"):
        read_pipeline(spec)


def test_an_alias_bomb_in_a_ppo_config_file_is_refused(tmp_path):
    from judge_rl.commands.ppo import load_config_file

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    cfg = tmp_path / "ppo.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="ppo.yaml: line .*aliases are expanded"):
        load_config_file(str(cfg))
