"""``cca table`` (workflow/rules/table.smk): results/<model>/table.csv and report.md from the run artifacts."""
from __future__ import annotations

from dataclasses import dataclass

from cca.cli.common import add_paths
from cca.evaluate.config import GeneralConfig
from cca.localize.config import LocalizationConfig
from cca.settings import Settings


@dataclass(frozen=True)
class TableSettings(Settings):
    profile: str
    task: str
    seeds: list
    seed_data: str                     # per_seed | shared: whether the seeds share the first seed's split
    localization: LocalizationConfig   # its methods name the configurations
    controls: list                     # the control variants that ran (cca.layout.VARIANTS)
    general: GeneralConfig | None      # None: no general evaluation
    deviations: list                   # cca.evaluate.study.deviations of the model's settings
    bootstrap_iters: int               # general.bootstrap_iters (its schema default without a general section)

    @classmethod
    def from_model(cls, s: dict) -> "TableSettings":
        from cca.config import profile_default

        from cca.evaluate.study import deviations

        picked = {k: s.get(k) for k in ("profile", "task", "seeds", "seed_data", "controls", "localization",
                                        "general")}
        iters = s["general"]["bootstrap_iters"] if s.get("general") else profile_default("general", "bootstrap_iters")
        return cls.from_dict({**picked, "deviations": deviations(s), "bootstrap_iters": iters})

    def general_seeds(self) -> list[int]:
        from cca.layout import general_seeds

        return general_seeds(self.seeds, self.general.seeds) if self.general else []


def table(args) -> None:
    import json
    from pathlib import Path

    import pandas as pd

    from cca.evaluate.table import component_percent, general_columns, math_delta_intervals, results_table, run_record
    from cca.io import atomic_file, read_parquet, write_parquet
    from cca.layout import configurations, general_configurations, run_dir, variant_of

    st = TableSettings.from_json(args.settings)
    root = Path(args.results)
    confs = configurations(st.localization.methods, st.controls)
    records, shares = [], []
    for conf in confs:
        for seed in st.seeds:
            d = root / run_dir(conf, seed)
            math = json.loads((d / "math.json").read_text())
            update = None if conf == "original" else json.loads((d / "update.json").read_text())
            size = 0 if update is None else int(update.get("pairs", update.get("examples", 0)))
            pct = 0.0 if update is None else component_percent(update, conf)
            records.append(run_record(conf, seed, math, update, size, pct))
            cca = variant_of(conf)
            # the update of every parameter (w/o mask) records the gradient's share of every parameter group
            if cca and cca[1].mask is None and not cca[1].frozen and "gradient_shares" in update:
                shares.append({"method": cca[0], "seed": seed, **update["gradient_shares"]})
    cols = ["set", "instance_id", "template_id", "correct"]
    items = {conf: pd.concat([read_parquet(root / run_dir(conf, s) / "math.parquet")[cols].assign(seed=s)
                              for s in st.seeds], ignore_index=True) for conf in confs}
    iters = st.bootstrap_iters
    intervals = math_delta_intervals(items, iters=iters)
    general = None
    gseeds = st.general_seeds()
    if gseeds:
        scores = {}
        for conf in general_configurations(st.localization.methods, st.controls, st.general.configurations):
            frames = [read_parquet(root / run_dir(conf, s) / "general.parquet").assign(
                item=lambda f, s=s: f"seed{s}/" + f["item"].astype(str)) for s in gseeds]
            scores[conf] = pd.concat(frames, ignore_index=True)
        general = general_columns(scores, iters=iters)
    result = results_table(records, general, intervals)
    with atomic_file(args.out) as tmp:
        result.to_csv(tmp, index=False, float_format="%.6g")
    if args.report:
        from cca.evaluate.report import render_report
        from cca.evaluate.study import findings, lambda_sweep_figure, read_lambda_sweep, versus_random

        sweep = read_lambda_sweep(root, st.seeds, st.localization.methods)
        write_parquet(sweep, root / "lambda_sweep.parquet")
        lambda_sweep_figure(sweep, root / "lambda_sweep.png")
        answer = findings(result, versus_random(items, result, st.localization.methods, iters))
        text = render_report(args.model, result, st.to_dict(), root, gseeds, shares,
                             {"sweep": sweep, "figure": "lambda_sweep.png", "findings": answer})
        with atomic_file(args.report) as tmp:
            Path(tmp).write_text(text)
    print(result[["configuration", "seeds", "percent_components", "test_mean", "test_delta"]].to_string(index=False))
    print(f"-> {args.out}" + (f", {args.report}" if args.report else ""))


def register(sub) -> None:
    s = sub.add_parser("table", help="results/<model>/table.csv (and report.md) from the run artifacts")
    add_paths(s, "--results", "--model", "--out")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.table.TableSettings")
    s.add_argument("--report")
    s.set_defaults(run=table)
