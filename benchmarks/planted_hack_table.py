"""Print the planted reward hack's monitor table (docs/overopt.md): the hacked run (leaky proxy)
and the clean run (proxy ``contains:ok``, not the gold), 24 PPO steps, seed 0, one thread.

    python benchmarks/planted_hack_table.py    # about a minute on one idle core
"""

from __future__ import annotations

import tempfile

import torch

from judge_rl.overopt import planted


def main() -> None:
    torch.set_num_threads(1)
    sft = planted.sft_policy(seed=0)
    for hacked in (True, False):
        with tempfile.TemporaryDirectory() as d:
            mon, _ = planted.run(hacked=hacked, seed=0, steps=24, every=3, output=d, policy=sft)
            sec = mon.section
            print(f"\n{'hacked' if hacked else 'clean'} run: proxy {sec.proxy}, gold {sec.gold}")
            print("| step | KL | proxy [95% CI] | gold [95% CI] | degeneration flags |")
            for p in sec.points:
                flags = ", ".join(p.get("degeneration_flags", []))
                print(
                    f"| {p['step']} | {p['kl']:.2f} | {p['proxy_mean']:.3f} [{p['proxy_lo']:.3f}, "
                    f"{p['proxy_hi']:.3f}] | {p['gold_mean']:.3f} [{p['gold_lo']:.3f}, "
                    f"{p['gold_hi']:.3f}] | {flags} |"
                )
            for a in sec.alarms:
                print(f"alarm at step {a['step']}: {a['message']}")
            if not sec.alarms:
                print("no alarm")
            best = sec.best_checkpoint
            fit = sec.fit
            print(f"best by gold: step {best.get('step')} (gold {best.get('gold')})")
            print(
                "Gao fit: "
                + ", ".join(f"{k} {fit.get(k)}" for k in ("alpha", "beta", "kl_peak", "r2"))
            )


if __name__ == "__main__":
    main()
