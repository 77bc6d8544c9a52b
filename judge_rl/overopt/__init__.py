"""Reward over-optimisation: catch the policy gaming its reward, during PPO and after.

- :mod:`judge_rl.overopt.monitor`: :class:`~judge_rl.overopt.monitor.OveroptMonitor`, the PPO
  callback (gold vs proxy vs KL, alarms, best checkpoint by gold);
- :mod:`judge_rl.overopt.stats`: bootstrap CIs, the Gao et al. (2022) fit, the alarm rule;
- :mod:`judge_rl.overopt.degeneration`: degeneration detectors relative to the reference policy;
- :mod:`judge_rl.overopt.probes`: degenerate inputs that a sound reward must not prefer;
- :mod:`judge_rl.overopt.offline`: the same analysis over a finished run's checkpoints;
- :mod:`judge_rl.overopt.planted`: a planted reward hack on a tiny model (tests, docs).

The ``--monitor-*`` flags of ``judge-rl ppo`` / ``grpo`` live in
:mod:`judge_rl.commands._monitor_options`. Nothing is imported here.
"""
