"""The run browser's pieces on tiny models: direct logit attribution, delta norms per component, the page."""
import re

import pandas as pd
import pytest
import torch

from cca.circuits.attribution import component_attribution, direct_logit_attribution
from cca.evaluate.browser import (MAX_COMPONENT_ROWS, MethodView, PairView, component_rows, delta_norms,
                                  pair_views, render_page)
from cca.models.architectures import TINY
from cca.models.components import component_map, update_slices
from cca.models.tiny import ARCHITECTURES, build_tiny_model
from cca.update.row_delta import attach, delta_tensors, detach


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request):
    model, _ = build_tiny_model(request.param, seed=1)
    return request.param, model


def _prefixes(model):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(5, model.config.vocab_size, (n,), generator=g).tolist() for n in (6, 11)]


def test_head_neuron_and_embedding_terms_sum_to_the_logit_difference(tiny):
    """Completeness: with the norms' scales frozen the split is exact, on every architecture (post-norms or not)."""
    arch, model = tiny
    cmap = component_map(model)
    prefixes, desired, undesired = _prefixes(model), [7, 9], [8, 10]
    att = direct_logit_attribution(model, cmap, prefixes, desired, undesired)
    assert att.heads.shape == (2, cmap.n_layers, cmap.n_heads) and att.neurons.shape == (2, cmap.n_layers, cmap.d_ff)
    unembed = model.get_output_embeddings().weight
    with torch.no_grad():
        finals = [model(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states[-1][0, -1]
                  for p in prefixes]
    expected = torch.stack([(unembed[d] - unembed[u]) @ h for h, d, u in zip(finals, desired, undesired)])
    total = att.heads.sum((1, 2)) + att.neurons.sum((1, 2)) + att.embedding
    torch.testing.assert_close(att.logit_diff, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(total, expected, rtol=1e-4, atol=1e-5)


def test_each_layers_heads_sum_to_what_its_attention_writes(tiny):
    """Per layer, the heads' terms add up to the attention's actual write to the residual stream (after its
    post-norm where the architecture has one) along the frozen final norm's direction."""
    arch, model = tiny
    cmap = component_map(model)
    a = TINY[arch]
    prefix, d, u = _prefixes(model)[1], 7, 8
    att = direct_logit_attribution(model, cmap, [prefix], [d], [u])
    layers = model.get_submodule(a.layers)
    writes, final_in = {}, {}
    handles = []
    for i, layer in enumerate(layers):
        source = getattr(layer, a.post_norms[0]) if a.post_norms else getattr(layer, a.attention)
        handles.append(source.register_forward_hook(
            lambda m, args, out, i=i: writes.__setitem__(i, (out[0] if isinstance(out, tuple) else out)[0, -1])))
    norm = model.get_submodule(a.layers.rsplit(".", 1)[0] + ".norm")
    handles.append(norm.register_forward_hook(lambda m, args, out: final_in.__setitem__("r", args[0][0, -1])))
    with torch.no_grad():
        model(input_ids=torch.tensor([prefix]))
    for h in handles:
        h.remove()
    r = final_in["r"]
    eps = getattr(norm, "eps", None) or norm.variance_epsilon
    unembed = model.get_output_embeddings().weight
    g = norm(torch.ones(r.shape[-1])) * (1 + eps) ** 0.5
    direction = (unembed[d] - unembed[u]) * g / (r.pow(2).mean() + eps).sqrt()
    for i in range(cmap.n_layers):
        torch.testing.assert_close(att.heads[0, i].sum(), (writes[i] @ direction).detach(), rtol=1e-4, atol=1e-5)


def test_a_key_or_value_head_counts_the_query_heads_that_share_it():
    model, _ = build_tiny_model("llama", seed=1)
    cmap = component_map(model)
    att = direct_logit_attribution(model, cmap, _prefixes(model), [7, 9], [8, 10])
    group = cmap.n_heads // cmap.n_kv_heads
    torch.testing.assert_close(component_attribution(att, cmap, "layers.1.v", 1),
                               att.heads[:, 1, group:2 * group].sum(-1))
    torch.testing.assert_close(component_attribution(att, cmap, "layers.0.q", 3), att.heads[:, 0, 3])
    torch.testing.assert_close(component_attribution(att, cmap, "layers.1.mlp", 5), att.neurons[:, 1, 5])


def test_delta_norm_of_a_component_is_the_norm_of_its_rows_and_columns():
    model, _ = build_tiny_model("gemma3", seed=1)
    cmap = component_map(model)
    selection = {"layers.0.q": [1], "layers.1.mlp": [3, 7]}
    wrapped = attach(model, update_slices(cmap, selection, ("q", "up", "down")))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for rd in wrapped.values():
            rd.delta.copy_(torch.randn(rd.delta.shape, generator=g))
    tensors, axes = delta_tensors(wrapped)
    q = wrapped[f"{cmap.site('layers.0.q').module.rsplit('.', 2)[0]}.self_attn.q_proj.weight"].delta.detach()
    mlp = cmap.site("layers.1.mlp").module.rsplit(".", 1)[0]
    up, down = (wrapped[f"{mlp}.{p}_proj.weight"].delta.detach() for p in ("up", "down"))
    norms = delta_norms(cmap, [("layers.0.q", 1), ("layers.1.mlp", 7), ("layers.1.mlp", 3), ("layers.0.k", 0)],
                        tensors, axes)
    assert norms[0] == pytest.approx(float(q.norm()))
    assert norms[1] == pytest.approx(float((up[1].pow(2).sum() + down[:, 1].pow(2).sum()).sqrt()))
    assert norms[2] == pytest.approx(float((up[0].pow(2).sum() + down[:, 0].pow(2).sum()).sqrt()))
    assert norms[3] == 0.0
    detach(model, wrapped)


def _view(method="branching", n_pairs=3, n_components=4):
    pairs = [PairView(f"t/{i}#0", f"t/{i}", ["The", " answer", " <b>is"], " 4", " 5", i % 2 == 0, "searched", "correct")
             for i in range(n_pairs)]
    counts = pd.DataFrame([{"layer": 0, "kind": k, "selected": 1, "total": 4} for k in ("q", "k", "v", "mlp")])
    comps = pd.DataFrame([{"component": "layers.0.mlp", "layer": 0, "kind": "mlp", "index": i, "dla_mean": float(i),
                           "dla_std": 0.1, "dla_positive": 1.0, "delta_norm": 0.5} for i in range(n_components)])
    chosen = {"config": "lambda=0.1 lr=1e-05", "lambda": 0.1, "lr": 1e-5, "step": 4, "val_accuracy": 0.4,
              "base_val": 0.3}
    return MethodView(method, pairs, counts, comps, chosen, {"lambda": 0.1, "selected": 4, "total": 16,
                                                             "percent": 25.0}, {"curve": b"\x89PNG"})


def test_page_has_one_pair_block_per_pair_and_escapes_tokens():
    page = render_page("tiny", 0, [_view("prefix", 2), _view("branching", 3)], {"model": "tiny"})
    assert page.count('<details class="pair"') == 5
    assert "&lt;b&gt;is" in page and "<b>is" not in page
    # the intervention token (the prefix's last) is the one outlined
    assert re.search(r'<span class="pivot"[^>]*> &lt;b&gt;is</span>', page)
    assert 'id="prefix"' in page and 'id="branching"' in page and "data:image/png;base64," in page


def test_page_leaves_a_dense_masks_table_to_the_parquet():
    page = render_page("tiny", 0, [_view(n_components=MAX_COMPONENT_ROWS + 5)], {})
    table = page[page.index('<table class="sortable">'):]
    assert table[:table.index("</table>")].count("<tr>") == MAX_COMPONENT_ROWS + 1   # header + rows
    assert f"of {MAX_COMPONENT_ROWS + 5} (all in components.parquet)" in page


def test_pair_views_take_the_completion_after_the_prompt():
    ds = pd.DataFrame([{"instance_id": "a", "template_id": "t", "status": "ok", "prefix_ids": [1, 2, 3, 4],
                        "desired_text": "x", "undesired_text": "y", "greedy_correct": True, "pivot_position": 1,
                        "completions": 3},
                       {"instance_id": "b", "template_id": "t", "status": "no_flip", "prefix_ids": None,
                        "desired_text": None, "undesired_text": None, "greedy_correct": False,
                        "pivot_position": None, "completions": None}])
    views = pair_views(ds, {"a": 2, "b": 2}, lambda t: f"<{t}>", "branching", "scan")
    assert len(views) == 1 and views[0].tokens == ["<3>", "<4>"] and views[0].kept == "correct"
    assert "completes correct" in views[0].search and "3 greedy completions" in views[0].search


def test_component_rows_summarise_each_selected_components_pairs():
    model, _ = build_tiny_model("llama", seed=1)
    cmap = component_map(model)
    selected = {s.name: torch.zeros(s.count, dtype=torch.bool) for s in cmap.sites}
    selected["layers.1.k"][0] = True
    selected["layers.0.mlp"][[2, 5]] = True
    rows = component_rows(cmap, selected, lambda name, i: torch.tensor([1.0, -3.0]) * (i + 1))
    assert list(zip(rows["component"], rows["index"])) == [("layers.0.mlp", 2), ("layers.0.mlp", 5),
                                                           ("layers.1.k", 0)]
    assert rows["dla_mean"].tolist() == [-3.0, -6.0, -1.0] and rows["dla_positive"].tolist() == [0.5] * 3
