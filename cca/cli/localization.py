"""``cca localize`` (workflow/rules/localization.smk): an Error-Localization dataset for one method."""
from __future__ import annotations

from dataclasses import dataclass

from cca.cli.common import add_paths
from cca.localize.config import LocalizationConfig
from cca.localize.methods import METHODS
from cca.settings import Settings, placement
from cca.traces.config import GenerationConfig


@dataclass(frozen=True)
class LocalizeSettings(Settings):
    generation: GenerationConfig
    localization: LocalizationConfig   # methods None (one job localizes one method); bisect_points None
    #                                    unless the search is bisect (it changes nothing else)
    device_map: str | None

    @classmethod
    def from_model(cls, s: dict) -> "LocalizeSettings":
        loc = {**s["localization"], "methods": None}
        if loc["branching_search"] != "bisect":
            loc["bisect_points"] = None
        return cls.from_dict({"generation": s["generation"], "localization": loc,
                              "device_map": placement(s, s["generation"]["backend"] == "hf")})


def localize(args) -> None:
    from cca.io import read_parquet, write_json, write_parquet
    from cca.localize.dataset import localize as localize_pairs, pairs_table, summary, timed
    from cca.traces.generation import open_backend

    st = LocalizeSettings.from_json(args.settings)
    gen, loc = st.generation, st.localization
    greedy, opposite = read_parquet(args.greedy), read_parquet(args.opposite)
    pairs = pairs_table(greedy, opposite)
    if METHODS[args.method].generates and len(pairs):
        backend = open_backend(args.checkpoint, gen, seed=0, device_map=st.device_map)
        tokenizer = backend.tokenizer
    else:
        from transformers import AutoTokenizer

        from cca.models.registry import checkpoint_path

        backend, tokenizer = None, AutoTokenizer.from_pretrained(checkpoint_path(args.checkpoint))
    df, seconds = timed(localize_pairs, pairs, args.method, tokenizer, backend, gen.max_new_tokens,
                        loc.branching_search, args.batch, loc.bisect_points, progress=True)
    write_parquet(df, args.out)
    if args.summary:
        write_json(summary(len(opposite), opposite, {args.method: df}, {args.method: seconds}), args.summary)
    ok = df[df["status"] == "ok"]
    print(f"{args.method}: {len(ok)} pivots from {len(pairs)} pairs "
          f"({len(opposite) - len(pairs)} train instances without an opposite trace), "
          f"{ok['completions'].mean() if len(ok) else 0:.1f} completions per pair, {seconds:.0f}s -> {args.out}")


def register(sub) -> None:
    s = sub.add_parser("localize", help="Error-Localization dataset of one localization method")
    add_paths(s, "--checkpoint", "--greedy", "--opposite", "--out")
    s.add_argument("--settings", required=True, help="JSON of cca.cli.localization.LocalizeSettings")
    s.add_argument("--method", choices=list(METHODS), required=True)
    s.add_argument("--batch", type=int, default=8, help="branching scan: prefixes of a pair per engine round")
    s.add_argument("--summary", help="write the counts as JSON here")
    s.set_defaults(run=localize)
