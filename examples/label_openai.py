"""Label preference pairs with a judge served by any OpenAI-compatible endpoint.

What it shows: the Python API of the judge layer. ``load_judge`` builds the shipped ``pairwise``
judge (both orders, injection-hardened) and points it at your server; ``compare_sync`` judges
HH-RLHF pairs; verdicts become a TRL-ready preference file; agreement with the human labels,
failures, tokens and cost are printed. The API key comes from an environment variable (named by
``--api-key-env``) and never reaches a file, cache or log.

Run (the base URL of each kind of server):

    # vLLM (GPU box):  vllm serve Qwen/Qwen2.5-7B-Instruct          -> http://localhost:8000/v1
    python examples/label_openai.py --base-url http://localhost:8000/v1 \\
        --model Qwen/Qwen2.5-7B-Instruct
    # Ollama:          ollama pull llama3.1 && ollama serve          -> http://localhost:11434/v1
    python examples/label_openai.py --base-url http://localhost:11434/v1 --model llama3.1
    # OpenAI:          export OPENAI_API_KEY=sk-...
    python examples/label_openai.py --base-url https://api.openai.com/v1 --model gpt-4o-mini \\
        --max-cost 0.05

Several ``--base-url`` flags spread the requests over several servers. Local servers need no key.
The same from the command line (writes the run log reports/<run>/log.json as well):

    judge-rl label --judge pairwise --base-url http://localhost:8000/v1 --model NAME \\
        --input examples/data/hh_rlhf/harmless-base_test_300.jsonl.gz --output prefs.jsonl --limit 20

Small budget (what the test runs): ``--quick`` or ``JUDGE_RL_EXAMPLES_QUICK=1`` judges 6 pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "data" / "hh_rlhf" / "harmless-base_test_300.jsonl.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", action="append", required=True, help="OpenAI-compatible /v1 URL")
    p.add_argument("--model", required=True, help="model name the server knows")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="NAME of the key's variable")
    p.add_argument("--judge", default="pairwise", help="judge spec (name or judge.yaml)")
    p.add_argument("--input", default=str(DEFAULT_INPUT), help="pair file (any supported format)")
    p.add_argument("--output", default="out/label_openai/prefs.jsonl", help="preference file")
    p.add_argument("--limit", type=int, default=40, help="pairs to judge")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument("--max-cost", type=float, default=None, help="stop before spending USD")
    p.add_argument("--cache", default=None, help="judgment cache (SQLite) to resume from")
    p.add_argument("--quick", action="store_true", help="tiny budget (6 pairs)")
    args = p.parse_args(argv)
    if args.quick or os.environ.get("JUDGE_RL_EXAMPLES_QUICK"):
        args.limit = min(args.limit, 6)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from judge_rl.data import read_comparisons, write_preferences
    from judge_rl.judge import Budget, load_judge
    from judge_rl.types import PreferenceRecord

    # 1. Pairs: labelled HH-RLHF pairs; which side is `a` is a seeded coin flip, the human label
    #    is kept in comparison.metadata["human"].
    comparisons = read_comparisons(args.input)[: args.limit]

    # 2. The judge: the shipped spec, pointed at your endpoint. Nothing but the variable's NAME
    #    goes into the judge; the key is read when a request is sent.
    budget = Budget(max_cost=args.max_cost)
    judge = load_judge(
        args.judge,
        overrides={
            "backend": "openai",
            "base_urls": args.base_url,
            "model": args.model,
            "api_key_env": args.api_key_env,
            "concurrency": args.concurrency,
        },
        cache=args.cache,
        budget=budget,
    )
    fp = judge.fingerprint
    print(
        f"judge {fp.name} v{fp.version} ({fp.model} at {', '.join(args.base_url)}), "
        f"{len(comparisons)} pairs, order={getattr(judge, 'order', 'fixed')}"
    )

    # 3. Judge. A failed judgment is a record with `error` set, never a guessed verdict. Judges
    #    are async; close the HTTP client in the same event loop (compare_sync is the one-liner
    #    for judges that hold no connections).
    async def judge_all() -> list:
        try:
            return await judge.compare(comparisons)
        finally:
            await judge.aclose()

    t0 = time.perf_counter()
    judgments = asyncio.run(judge_all())
    elapsed = time.perf_counter() - t0

    # 4. Preferences for the verdicts that did not fail (ties: p_chosen = 0.5).
    records = []
    for c, j in zip(comparisons, judgments, strict=True):
        if not j.ok:
            continue
        chosen, rejected = (c.b, c.a) if j.winner == "b" else (c.a, c.b)
        p_a = j.p_a if j.p_a is not None else (0.5 if j.winner == "tie" else 1.0)
        p = 0.5 if j.winner == "tie" else max(p_a, 1 - p_a)
        records.append(
            PreferenceRecord(
                prompt=c.prompt,
                chosen=chosen.response,
                rejected=rejected.response,
                prompt_id=c.prompt_id,
                p_chosen=p,
                origin="judge",
                provenance={"judge_key": fp.key, "consistent": j.consistent},
            )
        )
    out = write_preferences(records, args.output)

    # 5. Summary: verdicts, agreement with the humans (decided verdicts only), failures, cost.
    ok = [(c, j) for c, j in zip(comparisons, judgments, strict=True) if j.ok]
    decided = [(c, j) for c, j in ok if j.winner != "tie" and c.metadata.get("human") in ("a", "b")]
    agree = sum(j.winner == c.metadata["human"] for c, j in decided)
    failures = Counter(j.error_kind for j in judgments if not j.ok)
    consistent = [j.consistent for _, j in ok if j.consistent is not None]
    print(f"verdicts: {dict(Counter(j.winner for _, j in ok))}")
    if decided:
        print(f"agreement with human labels: {agree}/{len(decided)} = {agree / len(decided):.2f}")
    if consistent:
        print(f"position consistency: {sum(consistent)}/{len(consistent)}")
    print(f"failures: {sum(failures.values())} {dict(failures) if failures else ''}".rstrip())
    tokens = sum(j.prompt_tokens + j.completion_tokens for j in judgments)
    cost = sum(j.cost for j in judgments)
    print(f"tokens {tokens:,}, cost ${cost:.4f}, {elapsed:.1f} s")
    print(f"wrote {len(records)} preferences to {out}")
    return 0


if __name__ == "__main__":
    from judge_rl.errors import JudgeRLError

    try:
        sys.exit(main())
    except JudgeRLError as e:  # a bad file, an unreachable server: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
