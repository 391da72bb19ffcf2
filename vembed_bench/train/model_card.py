"""The fine-tuned model's own card: ``README.md`` in the saved model folder.

A folder that travels without its run folder must still say what it is: the
run that made it (the card's H1, which :mod:`vembed_bench.encoders.naming`
reads as the model's display name), the base model and its weights
fingerprint, the key settings and the full resolved recipe, the training data,
and how it scored against its base. Libraries copy the base model's card into
a saved folder (and so its title and its claims); this card replaces that.

The card is written when the model is saved (results still to come) and again
once the fine-tuned evaluation and the comparison exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["CARD_FILE", "CardFacts", "ScoredTask", "model_card", "write_model_card"]

CARD_FILE = "README.md"


@dataclass(frozen=True)
class ScoredTask:
    """One task's main metric before and after fine-tuning, with its paired interval."""

    task: str
    split: str
    role: str
    """``eval`` (a task the run aims at) or ``guard`` (one it must not forget)."""
    delta: Any
    """A :class:`~vembed_bench.report.stats.PairedDelta` on the main metric."""
    verdict: str = ""
    """Guard tasks: the forgetting verdict line."""


@dataclass(frozen=True)
class CardFacts:
    """What the card states besides the recipe itself."""

    base_name: str
    base_source: str
    base_fingerprint: str | None = None
    training_examples: int | None = None
    steps: int | None = None
    scored: Sequence[ScoredTask] = field(default_factory=tuple)
    evaluated: bool = False
    """False while the fine-tuned model has not been scored yet (the card written at save time)."""


def model_card(recipe: Any, facts: CardFacts) -> str:
    """The card's Markdown (H1: the run name)."""
    import yaml

    from vembed_bench import __version__
    from vembed_bench.train.recipe import recipe_to_dict

    fingerprint = (f"weights fingerprint `{facts.base_fingerprint}`" if facts.base_fingerprint
                   else "weights not fingerprinted (a hub id)")
    lines = [
        f"# {recipe.name}",
        "",
        *([recipe.description.strip(), ""] if recipe.description.strip() else []),
        f"Fine-tuned by `vembed-bench train` (vembed-bench {__version__}) from **{facts.base_name}** "
        f"(`{facts.base_source}`, {fingerprint}). This card describes this fine-tuned model, not its base.",
        "",
        "## Training",
        "",
        _settings_table(recipe, facts),
        "## Results",
        "",
        *_results(facts),
        "## Recipe",
        "",
        "The fully resolved recipe (defaults < recipe file < `--set`), as in the run's `config.yaml`:",
        "",
        "```yaml",
        yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
        "## Usage",
        "",
        "```bash",
        f"vembed-bench eval --model <this folder> --task {(recipe.eval.tasks or ['<task>'])[0]}",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: Path, text: str) -> Path:
    """Replace ``folder/README.md`` atomically (a reader never sees half a card)."""
    from vembed_bench.report.files import write_text

    return write_text(Path(folder) / CARD_FILE, text)


def _settings_table(recipe: Any, facts: CardFacts) -> str:
    from vembed_bench.report.document import Cell, Code, Table, to_markdown

    loss, lora, training, data = recipe.loss, recipe.lora, recipe.training, recipe.data
    loss_text = f"{loss.name}, temperature {loss.temperature:g}" + (", symmetric" if loss.symmetric else "")
    if loss.spread_out_weight:
        loss_text += f", spread-out weight {loss.spread_out_weight:g}"
    lora_text = (f"r={lora.r}, alpha={lora.alpha}, dropout {lora.dropout:g}, targets "
                 f"{', '.join(lora.target_modules) or 'peft default'}"
                 f"{', 4-bit base (QLoRA)' if lora.load_in_4bit else ''}; merged into these weights"
                 if lora.enabled else "off (full fine-tuning)")
    steps = f", {facts.steps} optimiser steps" if facts.steps is not None else ""
    examples = f": {facts.training_examples} examples" if facts.training_examples is not None else ""
    frozen = f"; frozen: {', '.join(recipe.model.freeze)}" if recipe.model.freeze else ""
    rows = [
        ("base model", (f"{facts.base_name} ", Code(facts.base_source))),
        ("model type", f"{_kind(recipe)}, max length {recipe.model.max_length}{frozen}"),
        ("loss", loss_text),
        ("optimiser", f"AdamW, lr {training.lr:g}, {training.schedule} schedule, warmup "
                      f"{training.warmup_ratio:g}, weight decay {training.weight_decay:g}"),
        ("epochs", f"{training.epochs}"
                   + (f" (max {training.max_steps} steps)" if training.max_steps else "") + steps),
        ("batch size", f"{training.batch_size}"
                       + (f" (GradCache chunks of {training.gradcache_chunk})" if training.gradcache_chunk else "")),
        ("LoRA", lora_text),
        ("Matryoshka dims", ", ".join(map(str, loss.matryoshka_dims)) or "none"),
        ("training data", (Code(data.train), f" (split {data.split}, format {data.format}"
                           f"{f', limit {data.limit}' if data.limit else ''}){examples}")),
        ("seed", str(training.seed)),
    ]
    table = Table(columns=["setting", "value"], rows=[[Cell(k), Cell(v)] for k, v in rows],
                  numeric=[False, False])
    return to_markdown([table], Path("."))


def _kind(recipe: Any) -> str:
    if recipe.model.type != "auto":
        return recipe.model.type
    from vembed_bench.train.model import model_kind

    return f"{model_kind(recipe)} (detected)"


def _results(facts: CardFacts) -> list[str]:
    from vembed_bench.report.document import Cell, Table, fmt_delta, fmt_score, to_markdown

    if not facts.evaluated:
        return ["Not scored yet: the run evaluates this model after saving it and then rewrites "
                "this card (see `comparison.md` in the run folder).", ""]
    if not facts.scored:
        return ["No zero-shot comparison: the recipe has no eval tasks, or the base model was not "
                "scored.", ""]
    rows = []
    for item in facts.scored:
        d = item.delta
        rows.append([
            Cell(item.task), Cell(item.split), Cell(item.role), Cell(d.metric),
            Cell(fmt_score(d.base)), Cell(fmt_score(d.tuned)), Cell(fmt_delta(d.delta)),
            Cell(f"[{fmt_delta(d.ci_low)}, {fmt_delta(d.ci_high)}]"),
        ])
    table = Table(columns=["task", "split", "role", "metric", "zero-shot", "fine-tuned", "Δ", "95% CI"],
                  rows=rows, numeric=[False, False, False, False, True, True, True, False])
    out = [
        "Main metric of each task, scores ×100; Δ = fine-tuned − zero-shot, with its 95% paired "
        f"bootstrap interval over the same queries ({facts.scored[0].delta.n_resamples:,} resamples, "
        f"seed {facts.scored[0].delta.seed}). Guard tasks are tasks the run did not train for.",
        "",
        to_markdown([table], Path(".")).rstrip(),
        "",
    ]
    verdicts = [item.verdict for item in facts.scored if item.role == "guard" and item.verdict]
    if verdicts:
        out += ["Guard tasks:", "", *[f"- {line}" for line in verdicts], ""]
    return out
