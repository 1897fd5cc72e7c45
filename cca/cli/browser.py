"""``cca browser`` (workflow/rules/browser.smk): results/<model>/browser/index.html, the run's static page, and
components.parquet beside it (every selected component's direct contribution and delta norm)."""
from __future__ import annotations

from cca.cli.common import named_paths, torch_threads


def browser(args) -> None:
    import json
    from pathlib import Path

    import pandas as pd

    from cca.circuits.attribution import component_attribution, direct_logit_attribution
    from cca.circuits.dcm import count_table, progress_bar
    from cca.cli.update import mask_of_lambda
    from cca.errors import CCAError
    from cca.evaluate.browser import MethodView, component_rows, delta_norms, pair_views, render_page
    from cca.io import atomic_file, read_parquet, write_parquet
    from cca.models.components import component_map
    from cca.models.registry import load_model
    from cca.update.row_delta import read_delta
    from cca.update.sweep import chosen_lambda

    torch_threads()
    datasets, updates = named_paths(args.dataset, "--dataset"), named_paths(args.update, "--update")
    masks = {name: paths.split(",") for name, paths in named_paths(args.masks, "--masks").items()}
    if not (set(datasets) == set(updates) == set(masks)):
        raise CCAError("give --dataset, --update and --masks for the same methods, got "
                       f"{sorted(datasets)}, {sorted(updates)}, {sorted(masks)}")
    greedy = read_parquet(args.greedy)
    prompt_lengths = dict(zip(greedy["instance_id"], greedy["prompt_ids"].map(len)))
    model, tokenizer = load_model(args.checkpoint, dtype="float32")
    cmap = component_map(model)
    views, tables = [], []
    for method in datasets:
        dataset = read_parquet(datasets[method])
        run = Path(updates[method]).parent
        summary = json.loads(Path(updates[method]).read_text())
        curve = read_parquet(run / "curve.parquet")
        lam = chosen_lambda(summary["best"], curve.to_dict("records"))
        mask_path, selected, meta = mask_of_lambda(masks[method], lam)
        pairs = dataset[dataset["status"] == "ok"]
        bar = progress_bar(args.progress, len(pairs), f"attribution ({method})")
        attribution = direct_logit_attribution(model, cmap, list(pairs["prefix_ids"]), list(pairs["desired_id"]),
                                               list(pairs["undesired_id"]), progress=bar.update if bar else None)
        if bar:
            bar.close()
        comps = component_rows(cmap, selected, lambda name, i: component_attribution(attribution, cmap, name, i))
        delta_path = run / "delta.safetensors"
        tensors, axes = read_delta(delta_path) if delta_path.is_file() else ({}, {})
        comps["delta_norm"] = delta_norms(cmap, list(zip(comps["component"], comps["index"])), tensors, axes)
        tables.append(comps.assign(method=method, **{"lambda": lam}))
        stem = str(Path(mask_path).with_suffix(""))
        figures = {}
        for title, path in ((f"selected heads (lambda {lam:g})", f"{stem}.heads.png"),
                            (f"selected neurons per layer (lambda {lam:g})", f"{stem}.neurons.png"),
                            ("selected components over DCM steps", f"{stem}.selected.png"),
                            ("validation accuracy of the update's candidates", str(run / "curve.png"))):
            if Path(path).is_file():
                figures[title] = Path(path).read_bytes()
        chosen = {**summary["best"], "base_val": summary.get("base_val_accuracy")}
        views.append(MethodView(method, pair_views(dataset, prompt_lengths, lambda t: tokenizer.decode([t]), method,
                                                   args.search), count_table(cmap, selected), comps, chosen, meta,
                                figures))
    facts = {"model": args.model, "checkpoint": args.checkpoint, "seed": args.seed, "branching search": args.search,
             "components": cmap.total}
    page = render_page(args.model, args.seed, views, facts)
    out = Path(args.out)
    write_parquet(pd.concat(tables, ignore_index=True), out.parent / "components.parquet")
    with atomic_file(out) as tmp:
        tmp.write_text(page)
    print(f"browser: {out} ({sum(len(v.pairs) for v in views)} pairs, {len(views)} methods)")


def register(sub) -> None:
    s = sub.add_parser("browser", help="a static HTML page of a run: pairs, masks, components, validation curves")
    s.add_argument("--checkpoint", required=True, help="the base model's prepared checkpoint (results/<model>/checkpoint)")
    s.add_argument("--greedy", required=True, help="traces/greedy.parquet (the prompts' lengths)")
    s.add_argument("--model", required=True, help="the model's name, for the page's title")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--search", required=True, choices=("scan", "bisect"), help="the branching search that ran")
    s.add_argument("--dataset", nargs="+", required=True, help="METHOD=error_localization_<method>.parquet")
    s.add_argument("--update", nargs="+", required=True, help="METHOD=<method>/mask/update.json (the w/ mask update)")
    s.add_argument("--masks", nargs="+", required=True, help="METHOD=mask1.safetensors,mask2.safetensors,... (every lambda)")
    s.add_argument("--no-progress", dest="progress", action="store_false")
    s.add_argument("--out", required=True, help="browser/index.html; components.parquet is written beside it")
    s.set_defaults(run=browser)
