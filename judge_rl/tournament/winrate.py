"""Win rates against a baseline, raw and length-controlled.

* mean preference: the mean of P(contestant better) per prompt (soft labels count fractionally,
  a tie is 0.5) with its standard error — AlpacaEval's ``win_rate`` / ``standard_error``;
* discrete win rate: ``(wins + draws / 2) / n`` after rounding each preference;
* wins / draws / losses;
* length-controlled (LC) win rate after Dubois, Galambosi, Liang & Hashimoto (2024),
  "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic Evaluators"
  (arXiv:2404.04475), sec. 3: a logistic model of the preference on the contestant, the length
  difference ``tanh(delta_len / sd(delta_len))`` and, when several contestants share the prompts,
  a prompt-difficulty term ``gamma_x``::

      logit P(m beats baseline | x) = theta_m + phi_m * tanh(delta_len / sd_m) + gamma_x

  The LC win rate is the model's prediction with the length term removed, averaged over prompts:
  ``mean_x sigma(theta_m + gamma_x)``. ``gamma`` has a N(0, 1) prior (ridge), ``phi`` a weak one.

Input rows (:class:`PrefRow`) come from AlpacaEval annotation files as they are
(``instruction, output_1, output_2, generator_1, generator_2, preference``), judge_rl run logs
(label section: comparisons + judgments), judge_rl preference files written by ``judge-rl label``
(``chosen, rejected, p_chosen, provenance.chosen_source/rejected_source``), or battle-style rows
(``model_a, model_b, winner`` with optional ``output_a, output_b``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from judge_rl.errors import DataError, JudgeRLError


@dataclass
class PrefRow:
    """One judged pair: contestant vs baseline on one prompt."""

    model: str
    baseline: str
    prompt_id: str
    p: float | None
    """P(contestant better): 1 win, 0 loss, 0.5 tie, in between soft; None = failed judgment."""
    len_model: int | None = None
    len_baseline: int | None = None


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def alpaca_preference(value: Any) -> float | None:
    """P(output_2 better) from AlpacaEval's ``preference`` (1 = output_1, 2 = output_2, a float in
    between is soft, 0 is a draw as in ``alpaca_eval.metrics``); None/NaN = no annotation.

    >>> alpaca_preference(2), alpaca_preference(1.25), alpaca_preference(0), alpaca_preference(None)
    (1.0, 0.25, 0.5, None)
    """
    if value is None or value == "":
        return None
    v = float(value)
    if math.isnan(v):
        return None
    if v == 0.0:
        return 0.5
    if 1.0 <= v <= 2.0:
        return v - 1.0
    raise ValueError(f"preference {v:g} out of range (expected 1..2, or 0 for a draw)")


def _rows_of(path: Path) -> list[tuple[int, Any]]:
    """(line, row) pairs through the one battle/annotation reader (any format, compressed or
    not); a run log comes back as one ``(0, log)`` pair."""
    from judge_rl.tournament.battles import read_table

    t = read_table(path)
    if t.runlog is not None and "label" in t.runlog:
        return [(0, t.runlog)]
    # Arrow fills absent keys with nulls: drop them so "key in row" means the row has it.
    return [
        (t.line(k), {key: v for key, v in row.items() if v is not None})
        for k, row in enumerate(t.table.to_pylist())
    ]


def _from_runlog(data: dict[str, Any], path: Path) -> list[tuple[int, dict[str, Any]]]:
    label = data.get("label") or {}
    comps = {c["id"]: c for c in label.get("comparisons", [])}
    out = []
    for k, j in enumerate(label.get("judgments", []), start=1):
        c = comps.get(j.get("comparison_id"))
        if c is None:
            continue
        winner = j.get("winner")
        p = j.get("p_a")
        if winner is None or j.get("error"):
            pa = None
        else:
            pa = float(p) if p is not None else {"a": 1.0, "b": 0.0, "tie": 0.5}[winner]
        out.append(
            (
                k,
                {
                    "model_a": c["a"].get("source", ""),
                    "model_b": c["b"].get("source", ""),
                    "p_a": pa,
                    "output_a": c["a"].get("response", ""),
                    "output_b": c["b"].get("response", ""),
                    "prompt_id": c.get("prompt_id", ""),
                },
            )
        )
    if not out:
        raise DataError("run log has no labelled comparisons (label section)", file=str(path))
    return out


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return str(value or "")


def read_pref_rows(path: str | Path, baseline: str) -> tuple[list[PrefRow], list[str]]:
    """Rows against ``baseline`` (either side), and the generators seen.

    Raises:
        DataError: naming file:line for a malformed row, or when ``baseline`` appears nowhere.
    """
    p = Path(path)
    raw = list(_rows_of(p))
    if len(raw) == 1 and raw[0][0] == 0:
        raw = _from_runlog(raw[0][1], p)  # type: ignore[assignment]
    if not raw:
        raise DataError("no rows in the file (it is empty)", file=str(p))
    out: list[PrefRow] = []
    seen: set[str] = set()
    for ln, row in raw:
        if not isinstance(row, dict):
            raise DataError("expected an object", file=str(p), line=ln)
        try:
            if "generator_1" in row or "output_1" in row:  # AlpacaEval annotations
                g1, g2 = str(row.get("generator_1", "")), str(row.get("generator_2", ""))
                if not g1 or not g2:
                    raise DataError("missing generator_1/generator_2", file=str(p), line=ln)
                p2 = alpaca_preference(row.get("preference"))
                o1, o2 = str(row.get("output_1") or ""), str(row.get("output_2") or "")
                pid = str(row.get("instruction", row.get("prompt_id", ln)))
                sides = (g1, g2, None if p2 is None else 1 - p2, o1, o2)
            elif "chosen" in row and "rejected" in row:  # judge_rl preference files (label)
                prov = row.get("provenance") or {}
                if isinstance(prov, str):
                    prov = json.loads(prov or "{}")
                ga, gb = str(prov.get("chosen_source", "")), str(prov.get("rejected_source", ""))
                if not ga or not gb:
                    raise DataError(
                        "preference row without provenance.chosen_source/rejected_source "
                        "(written by `judge-rl label`)",
                        file=str(p),
                        line=ln,
                    )
                pc = row.get("p_chosen", 1.0)
                pid = str(row.get("prompt_id") or ln)
                sides = (
                    ga,
                    gb,
                    1.0 if pc is None else float(pc),
                    _text(row["chosen"]),
                    _text(row["rejected"]),
                )
            elif "model_a" in row:
                ga, gb = str(row.get("model_a", "")), str(row.get("model_b", ""))
                if "p_a" in row:
                    pa = None if row["p_a"] is None else float(row["p_a"])
                else:
                    w = row.get("winner")
                    from judge_rl.tournament.battles import parse_winner

                    pa = None if w in (None, "") else (1.0, 0.0, 0.5)[parse_winner(w)]
                pid = str(row.get("prompt_id", row.get("question_id", row.get("instruction", ln))))
                sides = (ga, gb, pa, str(row.get("output_a") or ""), str(row.get("output_b") or ""))
            else:
                raise DataError(
                    "unrecognised row: expected AlpacaEval annotations (generator_1, generator_2, "
                    "preference) or battles (model_a, model_b, winner)",
                    file=str(p),
                    line=ln,
                )
        except (ValueError, TypeError, RecursionError) as e:
            raise DataError(str(e)[:200], file=str(p), line=ln, field="preference") from None
        a, b, pa, oa, ob = sides
        if pa is not None and not 0.0 <= pa <= 1.0:  # also NaN and infinities
            raise DataError(
                f"preference must be a probability in [0, 1] (got {pa})", file=str(p), line=ln
            )
        seen.update((a, b))
        if a == baseline and b == baseline:
            # The baseline's own file (AlpacaEval ships one): identical outputs are draws, as
            # AlpacaEval scores them (50%, SE 0).
            out.append(
                PrefRow(a, b, pid, None if pa is None else 0.5, len(oa) or None, len(ob) or None)
            )
        elif a == baseline and b != baseline:
            out.append(
                PrefRow(b, a, pid, None if pa is None else 1 - pa, len(ob) or None, len(oa) or None)
            )
        elif b == baseline and a != baseline:
            out.append(PrefRow(a, b, pid, pa, len(oa) or None, len(ob) or None))
    if not out:
        raise DataError(
            f"no rows against the baseline {baseline!r} (generators: {', '.join(sorted(seen)[:10])})",
            file=str(p),
        )
    return out, sorted(seen)


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


def basic_winrate(p: np.ndarray) -> dict[str, Any]:
    """Mean preference ± SE, discrete win rate and W/D/L of preferences ``p``.  # p: (n,)

    >>> r = basic_winrate(np.array([1.0, 0.0, 0.5, 0.75]))
    >>> r["mean_pref"], r["win_rate"], (r["wins"], r["draws"], r["losses"])
    (0.5625, 0.625, (2, 1, 1))
    """
    n = len(p)
    wins = int(np.sum(p > 0.5))
    draws = int(np.sum(p == 0.5))
    losses = n - wins - draws
    se = float(np.std(p, ddof=1) / math.sqrt(n)) if n > 1 else None
    return {
        "n": n,
        "mean_pref": float(np.mean(p)),
        "se": se,
        "win_rate": (wins + 0.5 * draws) / n,
        "wins": wins,
        "draws": draws,
        "losses": losses,
    }


def length_feature(len_model: np.ndarray, len_base: np.ndarray) -> np.ndarray:
    """``tanh(delta / sd(delta))``, Dubois et al. (2024) eq. 3's length term.  # (n,)"""
    delta = len_model.astype(float) - len_base.astype(float)
    sd = float(np.std(delta))
    return np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)


def fit_lc_glm(
    model_idx: np.ndarray,
    length: np.ndarray,
    prompt_idx: np.ndarray | None,
    p: np.ndarray,
    n_models: int,
    n_prompts: int,
    *,
    l2_gamma: float = 1.0,
    l2_phi: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum a-posteriori fit of the LC model (soft targets: cross-entropy).

    Returns ``theta (M,)``, ``phi (M,)``, ``gamma (X,)`` (zeros when ``prompt_idx`` is None).
    """
    from scipy.optimize import minimize

    m, x = n_models, (n_prompts if prompt_idx is not None else 0)

    def unpack(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return w[:m], w[m : 2 * m], w[2 * m :]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        theta, phi, gamma = unpack(w)
        z = theta[model_idx] + phi[model_idx] * length  # (n,)
        if x:
            z = z + gamma[prompt_idx]
        # cross-entropy with soft labels: -(p log s(z) + (1-p) log s(-z))
        nll = float(np.sum(np.logaddexp(0, -z) * p + np.logaddexp(0, z) * (1 - p)))
        r = 1 / (1 + np.exp(-z)) - p  # (n,) d nll / d z
        g_theta = np.bincount(model_idx, r, m)
        g_phi = np.bincount(model_idx, r * length, m) + l2_phi * phi
        parts = [g_theta, g_phi]
        if x and prompt_idx is not None:
            parts.append(np.bincount(prompt_idx, r, x) + l2_gamma * gamma)
        val = (
            nll
            + 0.5 * l2_phi * float(phi @ phi)
            + (0.5 * l2_gamma * float(gamma @ gamma) if x else 0.0)
        )
        return val, np.concatenate(parts)

    w0 = np.zeros(2 * m + x)
    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return unpack(res.x)


def winrates(
    rows: Sequence[PrefRow],
    *,
    length_controlled: bool = False,
) -> list[dict[str, Any]]:
    """One summary per contestant vs its baseline, best mean preference first.

    Failed rows (``p is None``) are skipped and counted in ``skipped``.
    """
    ok = [r for r in rows if r.p is not None]
    models = sorted({r.model for r in rows})
    out: list[dict[str, Any]] = []
    for m in models:
        ps = np.array([r.p for r in ok if r.model == m], dtype=float)
        skipped = sum(1 for r in rows if r.model == m and r.p is None)
        base = next(r.baseline for r in rows if r.model == m)
        if len(ps) == 0:
            out.append(
                {
                    "model": m,
                    "baseline": base,
                    "n": 0,
                    "skipped": skipped,
                    "mean_pref": None,
                    "se": None,
                    "win_rate": None,
                    "lc_win_rate": None,
                    "wins": 0,
                    "draws": 0,
                    "losses": 0,
                }
            )
            continue
        s = basic_winrate(ps)
        s.update({"model": m, "baseline": base, "skipped": skipped, "lc_win_rate": None})
        out.append(s)
    if length_controlled:
        lc = lc_winrates(ok)
        for s in out:
            s["lc_win_rate"] = lc.get(s["model"], {}).get("lc_win_rate")
            s["length_coef"] = lc.get(s["model"], {}).get("length_coef")
            if s["model"] in lc and lc[s["model"]].get("note"):
                s["note"] = lc[s["model"]]["note"]
    out.sort(key=lambda r: -(r["mean_pref"] if r["mean_pref"] is not None else -1))
    return out


def lc_winrates(rows: Sequence[PrefRow]) -> dict[str, dict[str, Any]]:
    """LC win rate per contestant (Dubois et al. 2024), see the module docstring."""
    use = [
        r
        for r in rows
        if r.p is not None and r.len_model is not None and r.len_baseline is not None
    ]
    if not use:
        raise JudgeRLError(
            "--length-controlled needs the outputs' text (output_1/output_2, or output_a/output_b) "
            "to measure lengths; this file has none"
        )
    models = sorted({r.model for r in use})
    m_idx = {m: k for k, m in enumerate(models)}
    mi = np.array([m_idx[r.model] for r in use])
    length = np.zeros(len(use))
    for k in m_idx.values():  # per contestant: tanh(delta / sd of that contestant's deltas)
        sel = mi == k
        lm = np.array([use[t].len_model for t in np.flatnonzero(sel)], dtype=float)
        lb = np.array([use[t].len_baseline for t in np.flatnonzero(sel)], dtype=float)
        length[sel] = length_feature(lm, lb)
    p = np.array([r.p for r in use], dtype=float)
    prompts = sorted({r.prompt_id for r in use})
    shared = len(models) > 1 and any(
        sum(1 for r in use if r.prompt_id == q) > 1 for q in prompts[: min(len(prompts), 200)]
    )
    p_idx = {q: k for k, q in enumerate(prompts)}
    pi = np.array([p_idx[r.prompt_id] for r in use]) if shared else None
    theta, phi, gamma = fit_lc_glm(mi, length, pi, p, len(models), len(prompts))
    out: dict[str, dict[str, Any]] = {}
    for m, k in m_idx.items():
        sel = mi == k
        if shared:
            g = gamma[pi[sel]]  # type: ignore[index]
            lc = float(np.mean(1 / (1 + np.exp(-(theta[k] + g)))))
        else:
            lc = float(1 / (1 + math.exp(-theta[k])))
        out[m] = {"lc_win_rate": lc, "length_coef": float(phi[k])}
        if int(sel.sum()) < 20:
            out[m]["note"] = f"only {int(sel.sum())} rows: the length term is poorly determined"
    return out


__all__ = [
    "PrefRow",
    "alpaca_preference",
    "basic_winrate",
    "fit_lc_glm",
    "lc_winrates",
    "length_feature",
    "read_pref_rows",
    "winrates",
]
