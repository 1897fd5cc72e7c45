"""The run browser: one static HTML page (no server, opens from disk) from a run's artifacts.

Per localization method: the Error-Localization pairs (the completion prefix with its intervention token
highlighted, the desired vs undesired next token, what the search found per tried prefix), the chosen mask
(heads and neurons per layer, the DCM figures), each selected component's direct contribution to the logit
difference on the pairs (cca.circuits.attribution) with the norm of its delta after the update, and the
update's validation curves. Figures are embedded, so the page is one file.

``component_rows`` and ``delta_norms`` are pure functions over the mask, attribution and delta tensors;
``render_page`` turns ``MethodView`` records into the page.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field

import pandas as pd
import torch

from cca.models.architectures import PROJECTIONS
from cca.models.components import ComponentMap, update_slices


def delta_norms(cmap: ComponentMap, components: list[tuple[str, int]], tensors: dict[str, torch.Tensor],
                axes: dict[str, str]) -> list[float]:
    """The Frobenius norm of each component's part of a sparse delta (``<weight>.delta`` / ``<weight>.index``,
    cca.update.row_delta.delta_tensors): the rows or columns ``update_slices`` gives it over every target."""
    out = []
    for name, index in components:
        total = 0.0
        for weight, (axis, lines) in update_slices(cmap, {name: [index]}, tuple(PROJECTIONS)).items():
            if weight not in axes or axes[weight] != axis:
                continue
            wanted = set(lines)
            where = [pos for pos, line in enumerate(tensors[f"{weight}.index"].tolist()) if line in wanted]
            if where:
                d = tensors[f"{weight}.delta"].float()
                part = d[where] if axis == "rows" else d[:, where]
                total += float(part.pow(2).sum())
        out.append(total ** 0.5)
    return out


def component_rows(cmap: ComponentMap, selected: dict[str, torch.Tensor], per_pair) -> pd.DataFrame:
    """One row per selected component: name, layer, kind, index and its direct contribution per pair
    (``per_pair(name, index)`` -> tensor over pairs) as mean, std and the share of pairs where it is positive."""
    rows = []
    for s in cmap.sites:
        for index in torch.nonzero(selected[s.name]).flatten().tolist():
            v = per_pair(s.name, index).float()
            rows.append({"component": s.name, "layer": s.layer, "kind": s.kind, "index": int(index),
                         "dla_mean": float(v.mean()) if len(v) else float("nan"),
                         "dla_std": float(v.std()) if len(v) > 1 else float("nan"),
                         "dla_positive": float((v > 0).float().mean()) if len(v) else float("nan")})
    return pd.DataFrame(rows, columns=["component", "layer", "kind", "index", "dla_mean", "dla_std",
                                       "dla_positive"])


@dataclass
class PairView:
    instance_id: str
    template_id: str
    tokens: list[str]          # the completion up to and including the intervention token, one string a token
    desired: str
    undesired: str
    greedy_correct: bool
    search: str                # what the localization found, in words
    kept: str | None = None    # branching scan: the correctness every tried prefix up to the pivot completed with


@dataclass
class MethodView:
    method: str
    pairs: list[PairView]
    counts: pd.DataFrame                   # cca.circuits.dcm.count_table of the chosen mask
    components: pd.DataFrame               # component_rows plus delta_norm
    chosen: dict                           # the update's choice: lambda, lr, step, val_accuracy, base_val
    mask_meta: dict
    figures: dict[str, bytes] = field(default_factory=dict)   # title -> PNG


def pair_views(dataset: pd.DataFrame, prompt_lengths: dict[str, int], decode_token, method: str,
               search: str) -> list[PairView]:
    """The pairs with a pivot, their completion prefix split into tokens (``decode_token(id) -> str``)."""
    views = []
    for r in dataset[dataset["status"] == "ok"].itertuples():
        completion = list(r.prefix_ids)[prompt_lengths[r.instance_id]:]
        tokens = [decode_token(int(t)) for t in completion]
        greedy = "correct" if r.greedy_correct else "wrong"
        cost, position = int(r.completions), int(r.pivot_position)
        if method == "branching" and search == "scan":
            text = (f"exact scan, {cost} greedy completions: every prefix of the sampled trace up to the "
                    f"pivot completes {greedy}, as the greedy trace does; with the sampled token at position "
                    f"{position} it completes {'wrong' if r.greedy_correct else 'correct'}")
            kept = greedy
        elif method == "branching":
            text = (f"bisection, {cost} greedy completions: a prefix completing {greedy} before position "
                    f"{position}, the opposite with the sampled token there")
            kept = None
        else:
            text = f"first difference of the greedy and the sampled trace, at position {position}"
            kept = None
        views.append(PairView(r.instance_id, r.template_id, tokens, str(r.desired_text), str(r.undesired_text),
                              bool(r.greedy_correct), text, kept))
    return views


MAX_COMPONENT_ROWS = 300   # a dense mask's table is left to components.parquet past this

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 1em 3em;color:#222}
h1{margin-top:.6em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1em} table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:2px 6px;
text-align:right} th{background:#f4f4f4;cursor:pointer} td.l,th.l{text-align:left}
.tok{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px}
.kept-correct{background:#e5f5e0} .kept-wrong{background:#fde0dd}
.pivot{outline:2px solid #e6550d;background:#fff3b0} .desired{color:#006d2c;font-weight:bold}
.undesired{color:#a50f15;font-weight:bold;text-decoration:line-through}
details.pair{border:1px solid #ddd;border-radius:4px;margin:4px 0;padding:4px 8px}
details.pair summary{cursor:pointer} img{max-width:100%} .note{color:#555;font-size:13px}
figure{display:inline-block;width:48%;margin:0 1% 1em 0;vertical-align:top}
"""

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows), dir = th.dataset.dir === 'up' ? -1 : 1;
    th.dataset.dir = dir === 1 ? 'up' : 'down';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v, nx = parseFloat(x), ny = parseFloat(y);
      return (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny) * dir;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
window.addEventListener('load', function(){
  var broken = Array.from(document.images).filter(function(i){ return !(i.complete && i.naturalWidth > 0); });
  document.body.dataset.brokenImages = broken.length;
  document.body.dataset.pairs = document.querySelectorAll('details.pair').length;
  document.body.dataset.ready = '1';
});
"""

_ERRORS = ("window.addEventListener('error', function(e){ document.documentElement.dataset.errors = "
           "(document.documentElement.dataset.errors || '') + (e.message || 'error') + ';'; });")


def _e(x) -> str:
    return html.escape(str(x))


def _png(title: str, data: bytes) -> str:
    return (f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
            f"<figcaption class=note>{_e(title)}</figcaption></figure>")


def _table(df: pd.DataFrame, floats: dict[str, str] | None = None, sortable: bool = False) -> str:
    floats = floats or {}
    head = "".join(f'<th class="{"l" if df[c].dtype == object else ""}">{_e(c)}</th>' for c in df.columns)
    body = []
    for r in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, r):
            shown = format(v, floats[c]) if c in floats and pd.notna(v) else ("" if pd.isna(v) else v)
            cls = ' class="l"' if isinstance(v, str) else ""
            cells.append(f'<td{cls} data-v="{_e(v)}">{_e(shown)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _pair(p: PairView) -> str:
    kept = f' class="tok kept-{p.kept}"' if p.kept else ' class="tok"'
    head = "".join(_e(t) for t in p.tokens[:-1])
    last = f'<span class="pivot" title="intervention token">{_e(p.tokens[-1])}</span>' if p.tokens else ""
    choice = (f' <span class="desired" title="desired">{_e(p.desired)}</span> / '
              f'<span class="undesired" title="undesired">{_e(p.undesired)}</span>')
    return (f'<details class="pair" data-instance="{_e(p.instance_id)}"><summary>{_e(p.instance_id)} '
            f'(greedy {"correct" if p.greedy_correct else "wrong"}): next token{choice}</summary>'
            f'<p class=note>{_e(p.search)}</p><div{kept}>{head}{last}</div>'
            f'<p>desired <span class="desired">{_e(repr(p.desired))}</span>, undesired '
            f'<span class="undesired">{_e(repr(p.undesired))}</span></p></details>')


def _method(v: MethodView) -> str:
    per_layer = v.counts.pivot_table(index="layer", columns="kind", values="selected", aggfunc="sum").reset_index()
    per_layer.columns = [str(c) for c in per_layer.columns]
    meta = v.mask_meta
    c = v.chosen
    chosen = ("the update kept the base model (no candidate validated above it)" if c.get("config") == "base"
              else f"lambda {c.get('lambda')}, lr {c.get('lr')}, step {c.get('step')}: validation "
                   f"{100 * c.get('val_accuracy', float('nan')):.1f}% (base {100 * c.get('base_val', float('nan')):.1f}%)")
    parts = [f'<h2 id="{_e(v.method)}">{_e(v.method)} localization</h2>',
             f"<p>{len(v.pairs)} Error-Localization pairs. Chosen update: {_e(chosen)}. Its mask "
             f"(lambda {_e(meta.get('lambda'))}): {_e(meta.get('selected'))} of {_e(meta.get('total'))} components "
             f"({float(meta.get('percent', float('nan'))):.2f}%).</p>",
             "<h3>Selected components per layer</h3>", _table(per_layer)]
    parts += [_png(title, data) for title, data in v.figures.items()]
    comps = v.components.reindex(v.components["dla_mean"].abs().sort_values(ascending=False).index)
    shown = (f"the {MAX_COMPONENT_ROWS} of largest |dla_mean| of {len(comps)} (all in components.parquet)"
             if len(comps) > MAX_COMPONENT_ROWS else f"all {len(comps)}")
    comps = comps.head(MAX_COMPONENT_ROWS)
    parts += [f"<h3>Selected components: {shown}</h3>",
              "<p class=note>dla: direct contribution to the logit difference (desired - undesired, before any final "
              "soft cap) at the pair's last position, RMS norms' scales frozen; a K or V head counts the outputs of the "
              "query heads that share it. delta_norm: Frobenius norm of the component's rows/columns of the chosen "
              "delta (0 where the update kept the base model). Click a header to sort.</p>",
              _table(comps, {"dla_mean": ".4f", "dla_std": ".4f", "dla_positive": ".2f", "delta_norm": ".3g"},
                     sortable=True),
              "<h3>Error-Localization pairs</h3>",
              "<p class=note>The completion up to the intervention token (outlined); for the exact branching scan, "
              "shaded by how every prefix completed. Open a pair for its search.</p>"]
    parts += [_pair(p) for p in v.pairs]
    return "\n".join(parts)


def render_page(model: str, seed: int, views: list[MethodView], facts: dict) -> str:
    """The whole page: a header with the run's facts, then one section per localization method."""
    nav = " ".join(f'<a href="#{_e(v.method)}">{_e(v.method)}</a>' for v in views)
    facts_rows = "".join(f"<tr><td class=l>{_e(k)}</td><td class=l>{_e(json.dumps(val) if not isinstance(val, str) else val)}"
                         "</td></tr>" for k, val in facts.items())
    body = "\n".join(_method(v) for v in views)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>CCA run: {_e(model)} seed {seed}</title>"
            f"<script>{_ERRORS}</script><style>{_STYLE}</style></head><body>"
            f"<h1>CCA run: {_e(model)}, seed {seed}</h1><nav>{nav}</nav><table>{facts_rows}</table>{body}"
            f"<script>{_SCRIPT}</script></body></html>")
