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
                    "output_a": _text(c["a"].get("response")),
                    "output_b": _text(c["b"].get("response")),
                    "prompt_id": c.get("prompt_id", ""),
                },
            )
        )
    if not out:
        raise DataError("run log has no labelled comparisons (label section)", file=str(path))
    return out


def _len(text: str | None) -> int | None:
    """Length of an output in characters; an empty output is 0 (kept), a missing one None."""
    return None if text is None else len(text)


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
                o1 = None if row.get("output_1") is None else str(row["output_1"])
                o2 = None if row.get("output_2") is None else str(row["output_2"])
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
                sides = (
                    ga,
                    gb,
                    pa,
                    None if row.get("output_a") is None else str(row["output_a"]),
                    None if row.get("output_b") is None else str(row["output_b"]),
                )
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
            out.append(PrefRow(a, b, pid, None if pa is None else 0.5, _len(oa), _len(ob)))
        elif a == baseline and b != baseline:
            out.append(PrefRow(b, a, pid, None if pa is None else 1 - pa, _len(ob), _len(oa)))
        elif b == baseline and a != baseline:
            out.append(PrefRow(a, b, pid, pa, _len(oa), _len(ob)))
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
    difficulty: dict[str, float] | None = None,
    gamed: Sequence[PrefRow] | None = None,
) -> list[dict[str, Any]]:
    """One summary per contestant vs its baseline, best mean preference first.

    Failed rows (``p is None``) are skipped and counted in ``skipped``. With
    ``length_controlled``, AlpacaEval's ``length_controlled_v1`` per contestant
    (:func:`lc_winrates`): ``lc_win_rate``, the fitted ``lc_weights`` and ``length_coef``.
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
        lc = lc_winrates(ok, difficulty=difficulty, gamed=gamed)
        for s in out:
            got = lc.get(s["model"], {})
            s["lc_win_rate"] = got.get("lc_win_rate")
            s["lc_weights"] = got.get("weights")
            s["lc_n"] = got.get("n")
            s["lc_difficulty"] = got.get("difficulty")
            s["length_coef"] = (got.get("weights") or {}).get("length")
            if got.get("note"):
                s["note"] = got["note"]
    out.sort(key=lambda r: -(r["mean_pref"] if r["mean_pref"] is not None else -1))
    return out


# ----------------------------------------------------------------------------------------------
# AlpacaEval's length_controlled_v1 (Dubois et al. 2024, sec. 3; alpaca_eval.metrics.glm_winrate)
# ----------------------------------------------------------------------------------------------

LC_V1_LAMBDA = 0.2
"""Weight of the length-gamed baselines' rows in the fit, split over the gamed generators."""
LC_V1_SPLITS = 5
LC_V1_CS = np.logspace(-4, 4, 10)
"""Inverse L1 strengths tried by cross-validation (scikit-learn's ``LogisticRegressionCV``
default grid, which AlpacaEval uses)."""
LC_FEATURES = ("length", "instruction_difficulty", "model")
"""The three coefficients of ``tanh(std_delta_len) + instruction_difficulty +
not_gamed_baseline - 1`` (no intercept)."""


def l1_logistic(
    x: np.ndarray, p: np.ndarray, w: np.ndarray, c: float, beta0: np.ndarray | None = None
) -> np.ndarray:
    """``argmin_b ||b||_1 + c * sum_i w_i CE(p_i, sigmoid(x_i b))``, soft targets ``p``.

    The objective of liblinear's L1-regularised logistic regression without intercept, with the
    soft label written as two weighted rows (what AlpacaEval does). Solved by proximal Newton:
    a coordinate-descent pass on the quadratic model, then a backtracking line search.
    Shapes: ``x (n, k)``, ``p (n,)``, ``w (n,)``; returns ``(k,)``.
    """
    n, k = x.shape
    beta = np.zeros(k) if beta0 is None else np.array(beta0, float)

    def obj(b: np.ndarray) -> float:
        z = x @ b
        ce = p * np.logaddexp(0, -z) + (1 - p) * np.logaddexp(0, z)
        return float(np.abs(b).sum() + c * np.sum(w * ce))

    f = obj(beta)
    for _ in range(200):
        z = x @ beta
        q = 0.5 * (1 + np.tanh(0.5 * z))  # (n,)
        g = c * x.T @ (w * (q - p))  # (k,)
        h = c * (x.T * (w * q * (1 - q))) @ x  # (k, k)
        u = beta.copy()
        for _sweep in range(100):
            prev = u.copy()
            for j in range(k):
                if h[j, j] <= 1e-300:
                    u[j] = 0.0
                    continue
                cj = g[j] + h[j] @ (u - beta) - h[j, j] * (u[j] - beta[j])
                t = beta[j] - cj / h[j, j]
                u[j] = np.sign(t) * max(abs(t) - 1.0 / h[j, j], 0.0)
            if np.max(np.abs(u - prev)) < 1e-13:
                break
        d = u - beta
        step, f_new = 1.0, obj(beta + d)
        while f_new > f + 1e-12 * max(1.0, abs(f)) and step > 1e-10:
            step *= 0.5
            f_new = obj(beta + step * d)
        if f_new > f:
            break
        beta = beta + step * d
        done = abs(f - f_new) <= 1e-12 * max(1.0, abs(f)) and np.max(np.abs(step * d)) < 1e-10
        f = f_new
        if done:
            break
    return beta


def _soft_logloss(x: np.ndarray, p: np.ndarray, w: np.ndarray | None, beta: np.ndarray) -> float:
    """Mean (weighted) cross-entropy on held-out rows, as AlpacaEval's CV scorer computes it."""
    q = np.clip(0.5 * (1 + np.tanh(0.5 * (x @ beta))), 1e-15, 1 - 1e-15)
    ll = p * np.log(q) + (1 - p) * np.log(1 - q)
    return float(-np.mean(ll if w is None else ll * w))


def fit_lc_cv(
    x: np.ndarray, p: np.ndarray, w: np.ndarray | None, *, n_splits: int = LC_V1_SPLITS
) -> tuple[np.ndarray, float]:
    """L1 logistic regression with ``C`` chosen by ``n_splits``-fold cross-validation.

    Folds as scikit-learn's ``GroupKFold`` assigns rows of equal size (one group per row): the
    last row to fold 0, the one before to fold 1, and so on. The best ``C`` maximises the mean
    held-out score over folds (first of ties); the coefficients are refitted on all rows.
    Returns ``(beta (k,), C)``.
    """
    n = len(p)
    wt = np.ones(n) if w is None else w
    folds = (n - 1 - np.arange(n)) % n_splits  # (n,)
    scores = []
    for c in LC_V1_CS:
        fold_scores = []
        for f in range(n_splits):
            test = folds == f
            if not test.any() or test.all():
                continue
            b = l1_logistic(x[~test], p[~test], wt[~test], float(c))
            fold_scores.append(-_soft_logloss(x[test], p[test], None if w is None else wt[test], b))
        scores.append(np.mean(fold_scores) if fold_scores else -np.inf)
    best = float(LC_V1_CS[int(np.argmax(np.asarray(scores, float)))])
    return l1_logistic(x, p, wt, best), best


def _lc_design(
    rows: Sequence[PrefRow], difficulty: dict[str, float] | None, gamed: bool
) -> np.ndarray:
    """Rows of ``[tanh(std_delta_len), instruction_difficulty, not_gamed]``.  # (n, 3)

    ``std_delta_len = (len_baseline - len_model) / sd`` (AlpacaEval: output_1 minus output_2,
    sample sd over these rows); an empty output has length 0 and stays in.
    """
    lb = np.array([r.len_baseline for r in rows], float)
    lm = np.array([r.len_model for r in rows], float)
    delta = lb - lm
    sd = float(np.std(delta, ddof=1)) if len(delta) > 1 else 0.0
    std_delta = delta / sd if sd > 0 else np.zeros_like(delta)
    diff = np.array([(difficulty or {}).get(r.prompt_id, 0.0) for r in rows], float)
    return np.column_stack([np.tanh(std_delta), diff, np.full(len(rows), 0.0 if gamed else 1.0)])


def lc_v1(
    rows: Sequence[PrefRow],
    *,
    difficulty: dict[str, float] | None = None,
    gamed: Sequence[PrefRow] | None = None,
    lam: float = LC_V1_LAMBDA,
) -> dict[str, Any]:
    """AlpacaEval's ``length_controlled_v1`` for ONE contestant against its baseline.

    A GLM of the preference for the contestant (Dubois et al. 2024, eq. 3; AlpacaEval's
    ``alpaca_eval.metrics.glm_winrate``)::

        logit P = w_len tanh(std_delta_len) + w_diff difficulty_x + w_model

    fitted on this contestant's rows only (so its rate does not depend on the other contestants
    in the file), by L1 logistic regression with C chosen by 5-fold cross-validation
    (:func:`fit_lc_cv`). With ``gamed`` rows (the baseline's length-gamed variants judged against
    it: ``not_gamed = 0``) the fit is regularised toward them: they join the training rows with
    weight ``lam`` split over the gamed generators. The LC win rate is the mean over the
    contestant's rows of ``sigmoid(w_diff difficulty_x + w_model)`` (no length difference).
    The baseline against itself is 50% by construction.
    """
    use = [r for r in rows if r.p is not None]
    if not use:
        return {"lc_win_rate": None, "weights": None, "n": 0}
    if use[0].model == use[0].baseline:
        return {"lc_win_rate": 0.5, "weights": dict.fromkeys(LC_FEATURES, 0.0), "n": len(use)}
    missing = sum(1 for r in use if r.len_model is None or r.len_baseline is None)
    if missing:
        raise JudgeRLError(
            f"--length-controlled needs the outputs' text (output_1/output_2, or "
            f"output_a/output_b); {missing} of {len(use)} rows of {use[0].model} have none"
        )
    x = _lc_design(use, difficulty, gamed=False)
    p = np.array([r.p for r in use], float)
    w = None
    n_gamed = 0
    if gamed:
        by_gen: dict[str, list[PrefRow]] = {}
        for g in gamed:
            if g.p is not None and g.len_model is not None and g.len_baseline is not None:
                by_gen.setdefault(g.model, []).append(g)
        parts = [_lc_design(v, difficulty, gamed=True) for v in by_gen.values()]
        if parts:
            xg = np.concatenate(parts)
            pg = np.concatenate([[r.p for r in v] for v in by_gen.values()]).astype(float)
            n_gamed = len(pg)
            w = np.concatenate([np.full(n_gamed, lam / len(by_gen)), np.ones(len(p))])
            x, p = np.concatenate([xg, x]), np.concatenate([pg, p])
    beta, c = fit_lc_cv(x, p, w)
    xm = x[n_gamed:]
    lc = float(np.mean(1 / (1 + np.exp(-(xm[:, 1] * beta[1] + beta[2])))))
    weights = dict(zip(LC_FEATURES, (float(v) for v in beta), strict=True))
    return {"lc_win_rate": lc, "weights": {**weights, "C": c}, "n": len(use), "n_gamed": n_gamed}


def estimate_difficulty(rows: Sequence[PrefRow]) -> dict[str, float] | None:
    """Instruction difficulty estimated from every contestant in the file, when no difficulty
    file is given: ``-gamma_x`` of a joint ridge GLM with a per-contestant strength and length
    slope (:func:`fit_lc_glm`), as AlpacaEval's difficulties come from a joint fit over its
    leaderboard. ``None`` when fewer than two contestants share prompts (not identifiable)."""
    use = [r for r in rows if r.p is not None and r.len_model is not None and r.model != r.baseline]
    models = sorted({r.model for r in use})
    if len(models) < 2:
        return None
    prompts = sorted({r.prompt_id for r in use})
    m_idx = {m: k for k, m in enumerate(models)}
    p_idx = {q: k for k, q in enumerate(prompts)}
    mi = np.array([m_idx[r.model] for r in use])
    pi = np.array([p_idx[r.prompt_id] for r in use])
    length = np.zeros(len(use))
    for k in range(len(models)):
        sel = mi == k
        lm = np.array([use[t].len_model for t in np.flatnonzero(sel)], dtype=float)
        lb = np.array([use[t].len_baseline for t in np.flatnonzero(sel)], dtype=float)
        length[sel] = length_feature(lm, lb)
    p = np.array([r.p for r in use], float)
    _, _, gamma = fit_lc_glm(mi, length, pi, p, len(models), len(prompts))
    # AlpacaEval's difficulty enters with a positive weight on "harder for the baseline"; the
    # per-model fit learns the sign and scale, so any affine version works: use -gamma.
    return {q: float(-gamma[k]) for q, k in p_idx.items()}


def read_difficulty(path: str | Path) -> dict[str, float]:
    """Instruction difficulty per prompt from a file with ``instruction`` (or ``prompt_id``)
    and ``instruction_difficulty`` (or ``difficulty``) columns, any format the reader takes."""
    from judge_rl.tournament.battles import read_table

    t = read_table(path)
    cols = set(t.columns)
    key = next((k for k in ("instruction", "prompt_id", "index") if k in cols), None)
    val = next((k for k in ("instruction_difficulty", "difficulty") if k in cols), None)
    if key is None or val is None:
        raise DataError(
            "expected columns instruction (or prompt_id) and instruction_difficulty",
            file=str(path),
        )
    out: dict[str, float] = {}
    for k, row in enumerate(t.table.select([key, val]).to_pylist()):
        try:
            v = float(row[val])
        except (TypeError, ValueError):
            raise DataError(f"not a number: {row[val]!r}", file=str(path), line=t.line(k)) from None
        if not math.isfinite(v):
            raise DataError("must be finite", file=str(path), line=t.line(k), field=val)
        out[str(row[key])] = v
    return out


def lc_winrates(
    rows: Sequence[PrefRow],
    *,
    difficulty: dict[str, float] | None = None,
    gamed: Sequence[PrefRow] | None = None,
) -> dict[str, dict[str, Any]]:
    """``length_controlled_v1`` per contestant (:func:`lc_v1`), each fitted on its own rows.

    ``difficulty``: per prompt id; estimated from all contestants in ``rows`` when ``None``
    (:func:`estimate_difficulty`), or left out (0) when that is not possible, with a note.
    """
    use = [r for r in rows if r.p is not None]
    if not any(r.len_model is not None for r in use):
        raise JudgeRLError(
            "--length-controlled needs the outputs' text (output_1/output_2, or output_a/output_b) "
            "to measure lengths; this file has none"
        )
    note = ""
    source = "file"
    if difficulty is None:
        difficulty = estimate_difficulty(use)
        source = "estimated"
        if difficulty is None:
            source = "none"
            note = "instruction difficulty not estimable from one contestant (give a file)"
    out: dict[str, dict[str, Any]] = {}
    for m in sorted({r.model for r in use}):
        res = lc_v1([r for r in use if r.model == m], difficulty=difficulty, gamed=gamed)
        res["difficulty"] = source
        if note:
            res["note"] = note
        if res.get("n", 0) < 20:
            res["note"] = (note + "; " if note else "") + (
                f"only {res.get('n', 0)} rows: the length term is poorly determined"
            )
        out[m] = res
    return out


__all__ = [
    "PrefRow",
    "alpaca_preference",
    "basic_winrate",
    "estimate_difficulty",
    "fit_lc_cv",
    "fit_lc_glm",
    "l1_logistic",
    "lc_v1",
    "lc_winrates",
    "read_difficulty",
    "length_feature",
    "read_pref_rows",
    "winrates",
]
