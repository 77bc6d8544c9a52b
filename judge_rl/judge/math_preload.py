"""Imported once by the verifier's forkserver: loads and warms the math engine, so that every
worker forked from it (including replacements for timed-out workers) starts in milliseconds."""

from judge_rl.judge.math_equiv import prepare

prepare()
