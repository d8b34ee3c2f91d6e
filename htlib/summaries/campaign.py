"""The CPU campaign (notebook 06): where each campaign stands against the paper's budget and numbers."""

from __future__ import annotations

from htlib.report import PAPER_EPISODES, PAPER_REPORTED
from htlib.summaries.text import listing, md_table, wrap


def campaign_summary(campaign: dict) -> str:
    """Where one campaign stands (a row of htlib.campaign.status), against the paper's numbers for
    Omniglot 20-way at 1 and 5 shots and its 4M training episodes: Markdown bullets."""
    c = campaign
    trained_shots = c.get("shots", 1)
    machines = f" ({', '.join(c['cpus'])})" if c["cpus"] else ""
    lines = []
    if c.get("init"):  # a fine-tune: where its weights came from
        start = c["init"]
        lines.append(f"**Start.** The best weights of `{start['from']}` after {start['trained_episodes']:,} episodes "
                     f"(best at {start['best_at_episodes']:,}, validation {100 * start['best_val_accuracy']:.1f}% "
                     f"at 1 shot), fine-tuned at {trained_shots} shots.")
    lines.append(f"**Budget.** {c['episodes']:,} {'fine-tuning' if c.get('init') else 'training'} episodes, "
                 f"{c['episodes'] / PAPER_EPISODES:.1%} of the paper's {PAPER_EPISODES:,}, in {c['segments']} "
                 f"segment{'s' if c['segments'] != 1 else ''} and {c['hours']:.1f} CPU hours{machines}, on the "
                 f"`{c['split_scheme']}` split.")
    if c["best_val_accuracy"] is not None:
        lines.append(f"**Validation.** Best so far {100 * c['best_val_accuracy']:.1f}% at "
                     f"{c['best_at_episodes']:,} episodes.")
    for shots, (accuracy, ci95, episodes) in sorted(c["tests"].items()):
        paper = PAPER_REPORTED[("omniglot", 20, shots)]["HT (paper)"]
        trained = ("as trained" if shots == trained_shots else
                   f"the {trained_shots}-shot model given {shots} support image{'s' if shots > 1 else ''} per class")
        lines.append(f"**Test, {shots}-shot** ({trained}): {100 * accuracy:.1f} ± {100 * ci95:.1f}% with the best "
                     f"weights after {episodes:,} episodes, {paper - 100 * accuracy:.1f} points below the paper's "
                     f"{paper}%.")
    if not c["tests"]:
        lines.append("No test yet: the first segment's end tests the best weights.")
    if c["result"] is not None:
        lines.append(f"**Finished.** Final test {100 * c['result']['test_accuracy']:.1f} ± "
                     f"{100 * c['result']['ci95']:.1f}%.")
    return "\n".join(f"* {line}" for line in lines)


def campaign_section(campaigns: list[dict]) -> str:
    """Where the CPU campaign stands (htlib.campaign.status), against the paper's budget."""
    if not campaigns:
        return wrap("No campaign started yet: `python -m htlib campaign --minutes M` trains one (protocol `paper` "
                    "by default) and resumes it at every later call.")
    rows = []
    for c in campaigns:
        best = "–" if c["best_val_accuracy"] is None else (
            f"{100 * c['best_val_accuracy']:.1f}% at {c['best_at_episodes']:,} episodes")
        tests = {shots: "–" if shots not in c["tests"] else
                 f"{100 * c['tests'][shots][0]:.1f} ± {100 * c['tests'][shots][1]:.1f}%" for shots in (1, 5)}
        final = "–" if c["result"] is None else f"{100 * c['result']['test_accuracy']:.1f} ± {100 * c['result']['ci95']:.1f}%"
        rows.append([f"`{c['name']}`", f"`{c['split_scheme']}`",
                     f"{c['episodes']:,} of {c['total_episodes']:,} ({100 * c['episodes'] / c['total_episodes']:.1f}%)",
                     best, tests[1], tests[5], final, f"{c['segments']} in {c['hours']:.1f} h", listing(c["cpus"])])
    return "\n".join(md_table(["run", "split", "episodes trained", "best validation", "test now, 1-shot",
                                 "test now, 5-shot", "final test", "segments", "CPUs"], rows))
