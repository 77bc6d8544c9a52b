"""Tournaments: rate models from head-to-head battles and decide which battles to run.

- :mod:`~judge_rl.tournament.bradley_terry`: Bradley-Terry on aggregated pair counts (ties half
  or Davidson), Elo scale, bootstrap CIs, rank intervals, predicted win rates, diagnostics.
- :mod:`~judge_rl.tournament.elo`: online Elo, for comparison (order-dependent).
- :mod:`~judge_rl.tournament.winrate`: win rate vs a baseline, and the length-controlled one.
- :mod:`~judge_rl.tournament.pairing`: round robin, vs baseline, adaptive pairing.
- :mod:`~judge_rl.tournament.runner`: ``judge-rl tournament``: contestants x prompts x judge.
- :mod:`~judge_rl.tournament.battles`: battle files with file:line validation.

Submodules import numpy only; nothing heavy loads until used.
"""
