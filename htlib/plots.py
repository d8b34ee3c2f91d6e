"""The figures the notebooks show. Plots never train and never read files."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def _as_display(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) image in [-1, 1] or uint8 -> (H, W) or (H, W, 3) floats in [0, 1]."""
    img = image.detach().cpu().float()
    if image.dtype == torch.uint8:
        img = img / 255.0
    else:
        img = (img + 1.0) / 2.0
    img = img.clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def image_grid(
    images: torch.Tensor | list[list[torch.Tensor | None]],
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str | None = None,
    cell: float = 0.9,
    frames: list[list[str | None]] | None = None,
) -> plt.Figure:
    """Show images as a grid: a tensor (R, C, channels, H, W) or nested lists with None for blanks.

    `frames` optionally gives an R x C nested list of matplotlib colours (or None) drawn
    around single cells, e.g. to mark unlabelled samples.
    """
    rows, cols = len(images), len(images[0])
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell + 1.5, rows * cell + 0.6), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if row_labels is not None and c == 0:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
            if col_labels is not None and r == 0:
                ax.set_title(col_labels[c], fontsize=8)
            if images[r][c] is None:
                for spine in ax.spines.values():
                    spine.set_visible(False)
                continue
            ax.imshow(_as_display(images[r][c]), cmap="gray", vmin=0, vmax=1)
            colour = None if frames is None else frames[r][c]
            for spine in ax.spines.values():
                spine.set_visible(colour is not None)
                if colour is not None:
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def episode_grid(
    images: torch.Tensor,
    columns: torch.Tensor,
    names: list[str],
    title: str,
    highlight: torch.Tensor | None = None,
) -> plt.Figure:
    """One episode's images (S, channels, H, W), one grid column per entry of `names`.

    `columns` (S,) says which column each image goes to (usually its class slot);
    images where `highlight` (S,) is True get an orange frame (e.g. unlabelled ones).
    """
    stacks: list[list[tuple[torch.Tensor, bool]]] = [[] for _ in names]
    for i, column in enumerate(columns.tolist()):
        stacks[column].append((images[i], bool(highlight[i]) if highlight is not None else False))
    depth = max(len(s) for s in stacks)
    grid = [[s[r][0] if r < len(s) else None for s in stacks] for r in range(depth)]
    frames = [[("tab:orange" if s[r][1] else None) if r < len(s) else None for s in stacks] for r in range(depth)]
    return image_grid(grid, col_labels=names, title=title, frames=frames)


def learning_curve(metrics, title: str = "training") -> plt.Figure:
    """Training loss and accuracy (and validation accuracy) against episodes seen.

    `metrics` is the DataFrame a training run writes (metrics.csv).
    """
    import pandas as pd
    import seaborn as sns

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    sns.lineplot(data=metrics, x="episodes", y="loss", ax=ax_loss)
    ax_loss.set_title("query cross-entropy (train)")
    acc = metrics.melt(id_vars="episodes", value_vars=[c for c in ("accuracy", "val_accuracy") if c in metrics],
                       var_name="split", value_name="query accuracy").dropna()
    acc["split"] = acc["split"].map({"accuracy": "train episodes", "val_accuracy": "validation episodes"})
    sns.lineplot(data=pd.DataFrame(acc), x="episodes", y="query accuracy", hue="split", marker="o",
                 markersize=4, ax=ax_acc)
    ax_acc.set_title("query accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def kernel_grid(kernels: torch.Tensor, row_labels: list[str], title: str) -> plt.Figure:
    """Show single-input-channel conv kernels (R, C_out, k, k) with a shared diverging colour scale."""
    rows, cols = kernels.shape[:2]
    limit = float(kernels.abs().max())
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9 + 1.5, rows * 0.9 + 0.6), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            im = ax.imshow(kernels[r, c].detach().cpu().numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
            if r == 0:
                ax.set_title(f"ch {c}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return fig


def attention_heatmap(attention: torch.Tensor, row_labels: list[str], col_labels: list[str],
                      title: str, ax=None):
    """Heatmap of an attention matrix (rows attend over columns), e.g. placeholders x samples."""
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(0.32 * len(col_labels) + 2, 0.3 * len(row_labels) + 1.5))
    sns.heatmap(attention.detach().cpu().numpy(), ax=ax, cmap="viridis", xticklabels=col_labels,
                yticklabels=row_labels, cbar_kws={"label": "attention"})
    ax.set_title(title)
    ax.tick_params(labelsize=7)
    return ax


def _panels(count: int, hues: list, size: tuple[float, float], sharey: bool):
    """A row of `count` panels and one colour-blind-safe colour per hue value."""
    import seaborn as sns

    fig, axes = plt.subplots(1, count, figsize=(size[0] * count, size[1]), squeeze=False, sharey=sharey)
    return fig, list(axes[0]), dict(zip(hues, sns.color_palette("colorblind", len(hues))))


def sweep_accuracy(table, title: str = "test accuracy against CNN size") -> plt.Figure:
    """Accuracy (with its 95% CI as error bars) against channels C, one panel per shot count.

    `table` is a sweep table (htlib.experiments.sweep.collect): one row per (method, channels, shots, seed).
    """
    shots = sorted(table["shots"].unique())
    methods = sorted(table["method"].unique())
    fig, axes, colours = _panels(len(shots), methods, (5.5, 3.8), sharey=False)
    for ax, k in zip(axes, shots):
        for method in methods:
            rows = table[(table["shots"] == k) & (table["method"] == method)]
            rows = rows.groupby("channels").agg(acc=("test_accuracy", "mean"), ci=("ci95", "mean")).reset_index()
            if rows.empty:
                continue
            ax.errorbar(rows["channels"], 100 * rows["acc"], yerr=100 * rows["ci"], label=method,
                        color=colours[method], marker="o", markersize=4, capsize=3)
        ax.set_xscale("log", base=2)
        ticks = sorted(table["channels"].unique())
        ax.set_xticks(ticks, [str(c) for c in ticks])
        ax.set_xlabel("channels C of every conv layer")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{k}-shot")
        ax.grid(alpha=0.3)
    # one legend for every method of the figure: a method may have points in one panel only
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    axes[-1].legend(handles.values(), handles.keys(), title="method", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def headline_accuracy(table, title: str = "the paper's accuracies beside ours") -> plt.Figure:
    """Each row of htlib.report.headline_table as a point with its 95% CI (the paper's rows have
    none), one panel per task, coloured by the protocol of its test tasks: the paper's numbers are
    measured on its authors' split, so only rows of the same colour compare like with like."""
    tasks = list(dict.fromkeys(table["task"]))
    protocols = sorted(table["test protocol"].unique())
    fig, axes, colours = _panels(len(tasks), protocols, (6.0, 0.45 * table.groupby("task").size().max() + 1.4),
                                 sharey=False)
    for ax, task in zip(axes, tasks):
        rows = table[table["task"] == task].reset_index(drop=True)
        for i, r in rows.iterrows():
            paper = r["source"].startswith("paper")
            ax.errorbar(r["accuracy (%)"], i, xerr=None if paper else r["95% CI (points)"], capsize=3,
                        marker="D" if paper else "o", color=colours[r["test protocol"]], linestyle="none")
        ax.set_yticks(range(len(rows)), [s.replace(": HT", ":\nHT") if len(s) > 45 else s for s in rows["source"]],
                      fontsize=7)
        ax.invert_yaxis()  # the table's order, top to bottom
        ax.set_xlabel("test accuracy (%)")
        ax.set_title(task)
        ax.grid(alpha=0.3, axis="x")
    handles = [plt.Line2D([], [], color=colours[p], marker="o", linestyle="none", label=f"tested on `{p}`")
               for p in protocols]
    handles.append(plt.Line2D([], [], color="grey", marker="D", linestyle="none", label="the paper (no CI)"))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below the panels
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles))
    return fig


def semi_accuracy(table, title: str = "accuracy against unlabelled samples per class") -> plt.Figure:
    """Semi-supervised table -> accuracy (95% CI bars) against U at test, one panel per method;
    solid: the arm trained with unlabelled samples, dashed: the control trained without; crosses:
    the same test with distractor classes added."""
    methods = sorted(table["method"].unique())
    arms = sorted(table["train_unlabelled"].unique())
    fig, axes, colours = _panels(len(methods), arms, (4.6, 3.6), sharey=True)
    for ax, method in zip(axes, methods):
        for arm in arms:
            rows = table[(table["method"] == method) & (table["train_unlabelled"] == arm)]
            clean = rows[rows["test_distractors"] == 0].sort_values("test_unlabelled")
            label = f"trained with U = {arm}" + (" (control)" if arm == 0 else "")
            ax.errorbar(clean["test_unlabelled"], 100 * clean["test_accuracy"], yerr=100 * clean["ci95"],
                        color=colours[arm], ls="--" if arm == 0 else "-", marker="o", markersize=4, capsize=3,
                        label=label)
            noisy = rows[rows["test_distractors"] > 0]
            ax.errorbar(noisy["test_unlabelled"], 100 * noisy["test_accuracy"], yerr=100 * noisy["ci95"],
                        color=colours[arm], ls="none", marker="x", markersize=8, capsize=3,
                        label=f"+ {int(noisy['test_distractors'].max())} distractor classes" if len(noisy) else None)
        ax.set_title(method)
        ax.set_xlabel("unlabelled samples per class at test (U)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def recipe_curves(curves: dict, ways: int, title: str = "the recipe study's learning curves") -> plt.Figure:
    """Training loss (with the chance level ln N) and validation accuracy against episodes seen, one
    line per arm; `curves` maps an arm's name to its metrics.csv DataFrame. The baseline is black."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for arm, metrics in curves.items():
        style = dict(color="black", lw=2.2, zorder=3) if arm == "baseline" else dict(lw=1.0, alpha=0.8)
        ax_loss.plot(metrics["episodes"], metrics["loss"], label=arm, **style)
        val = metrics.dropna(subset=["val_accuracy"]) if "val_accuracy" in metrics else metrics.iloc[:0]
        ax_val.plot(val["episodes"], val["val_accuracy"], marker="o", markersize=3, label=arm, **style)
    ax_loss.axhline(np.log(ways), color="grey", ls="--", lw=1)
    ax_loss.text(0, np.log(ways), f" chance: ln {ways}", va="bottom", color="grey", fontsize=8)
    ax_loss.set(xlabel="training episodes", ylabel="query cross-entropy (train)")
    ax_val.axhline(1 / ways, color="grey", ls="--", lw=1)
    ax_val.set(xlabel="training episodes", ylabel="validation accuracy")
    ax_val.legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def campaign_curve(metrics, tests, paper: dict[int, float], paper_episodes: int,
                   title: str = "the campaign") -> plt.Figure:
    """The campaign so far against the paper's budget: training and validation accuracy, the
    tests of the best weights (one marker per shot count) and the paper's accuracies (dashed), on
    a log axis of training episodes that ends at the paper's budget."""
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(metrics["episodes"], metrics["accuracy"], lw=1, color="tab:blue", alpha=0.7, label="training episodes")
    val = metrics.dropna(subset=["val_accuracy"])
    ax.plot(val["episodes"], val["val_accuracy"], marker="o", markersize=3, color="tab:orange",
            label="validation episodes")
    colors = dict(zip(sorted(set(paper) | set(tests["shots"])), ("black", "tab:green", "tab:red", "tab:purple")))
    for shots, rows in tests.groupby("shots"):
        ax.errorbar(rows["episodes"], rows["test_accuracy"], yerr=rows["ci95"], fmt="s", color=colors[shots],
                    capsize=3, label=f"test, {shots}-shot (best weights)")
    for shots, accuracy in paper.items():
        ax.axhline(accuracy / 100, color=colors[shots], ls="--", lw=1)
        ax.text(paper_episodes, accuracy / 100, f"paper, {shots}-shot ", ha="right", va="bottom",
                color=colors[shots], fontsize=8)
    ax.axvline(paper_episodes, color="grey", ls=":", lw=1)
    ax.set(xscale="log", xlim=(max(1, metrics["episodes"].min()), paper_episodes * 1.2),
           xlabel="training episodes (the dotted line: the paper's budget)", ylabel="query accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig
