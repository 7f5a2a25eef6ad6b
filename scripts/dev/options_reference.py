"""Print the key tables of docs/options.md from the option schema (imdn_plugin.options).

    python scripts/dev/options_reference.py > /tmp/tables.md

Each record of the schema becomes one table: key, what is allowed (the rule's
own words, the ones its errors use), default.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

from imdn_plugin.options import inference, schema
from imdn_plugin.options.fields import show

BLOCKS = [
    ("top level", schema.Options),
    ("`network_g` / `network_d` (checked against the network's constructor)", None),
    ("`datasets: <phase>:`", schema.DatasetOptions),
    ("`datasets: <phase>: io_backend:`", schema.IoBackend),
    ("`path:`", schema.PathOptions),
    ("`train:`", schema.TrainOptions),
    ("`val:`", schema.ValOptions),
    ("`logger:`", schema.LoggerOptions),
    ("`logger: wandb:`", schema.WandbOptions),
    ("`dist_params:`", schema.DistParams),
]


def _default(f: dataclasses.Field) -> str:
    if f.metadata.get("required"):
        return "required"
    if f.default is dataclasses.MISSING:
        return "—"
    return f"`{show(f.default)}`"


def _need(rule: Any) -> str:
    text = rule.need
    if getattr(rule, "none_means", ""):
        text += f", or `~` ({rule.none_means})"
    return text.replace("|", "\\|")


def table(cls: type) -> list[str]:
    rows = ["| key | allowed | default |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if "rule" in f.metadata:
            rows.append(f"| `{f.name}` | {_need(f.metadata['rule'])} | {_default(f)} |")
    return rows


def main() -> int:
    out: list[str] = []
    for title, cls in BLOCKS:
        if cls is None:
            continue
        out += [f"### {title}", "", *table(cls), ""]
    out += ["### `inference:`", "", "| key | allowed | default |", "|---|---|---|"]
    defaults = {f.name: f.default for f in dataclasses.fields(inference.InferenceOptions)}
    for name, rule in inference.RULES.items():
        need = rule.need if hasattr(rule, "need") and rule.need != "any value" else "see below"
        none = f", or `~` ({rule.none_means})" if getattr(rule, "none_means", "") else ""
        out.append(f"| `{name}` | {need}{none} | `{show(defaults[name])}` |")
    out += ["", "### Arguments of `network_g`, `optim_g`, `scheduler`, `*_opt` and metrics, by name", "",
            "| argument | allowed |", "|---|---|"]  # fmt: skip
    for name, rule in schema.ARG_RULES.items():
        out.append(f"| `{name}` | {_need(rule)} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
