"""DCM mask training and the targeted update on tiny models."""
import pandas as pd
import pytest
import torch

from cca.models.components import component_map, update_slices
from cca.circuits.config import DCMConfig
from cca.circuits.dcm import STEPS, ExampleStates, MaskGates, count_table, scales_from_mask, train_mask
from cca.config import profile_section
from cca.errors import CCAError
from cca.update.row_delta import RowDelta, attach, delta_tensors, detach, load_delta, merge, merged, unmerge
from cca.models.shared_prefix import cache_bytes, logit_difference_backward, visible_keys
from cca.models.tiny import ARCHITECTURES, SLIDING_WINDOW, build_tiny_model
from cca.update.targeted import Examples, train


def _examples(model, n=6, shared=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    common = torch.randint(5, model.config.vocab_size, (shared,), generator=g).tolist()
    prefixes = [common + torch.randint(5, model.config.vocab_size, (3 + i,), generator=g).tolist() for i in range(n)]
    desired = torch.randint(5, model.config.vocab_size, (n,), generator=g).tolist()
    undesired = [(d + 1) % model.config.vocab_size for d in desired]
    return Examples(prefixes, desired, undesired)


@pytest.fixture(scope="module")
def llama():
    model, _ = build_tiny_model("llama", seed=2)
    return model


def _full_gated_diffs(model, cmap, ex, scales):
    from cca.circuits.gating import hook_gates

    out = []
    with torch.no_grad(), hook_gates(model, cmap, scales):
        for p, d, u in zip(ex.prefixes, ex.desired, ex.undesired):
            lg = model(input_ids=torch.tensor([p])).logits[0, -1]
            out.append(float(lg[d] - lg[u]))
    return torch.tensor(out)


PAPER_TARGETS = ("q", "k", "v", "up")


def dcm_config(**values) -> DCMConfig:
    """DCM settings as a profile gives them: these values, the schema's defaults for the rest."""
    return DCMConfig.from_dict(profile_section("dcm", {"lambdas": [1.0], **values}))


def test_dcm_raises_the_logit_difference_and_backends_agree(llama):
    cmap = component_map(llama)
    ex = _examples(llama)
    cfg = dcm_config(lr=5e-2, epochs=4, batch_size=3, early_stop_fraction=1.0)
    hooks = train_mask(llama, cmap, ex.prefixes, ex.desired, ex.undesired, cfg, lam=1e-4, seed=0)
    nns = train_mask(llama, cmap, ex.prefixes, ex.desired, ex.undesired, cfg.replace(backend="nnsight"),
                     lam=1e-4, seed=0)
    for k in hooks.values:
        assert torch.allclose(hooks.values[k], nns.values[k], atol=1e-5), k
    assert hooks.history[-1]["logit_diff"] > hooks.history[0]["logit_diff"]
    # the learned gates, applied in full forwards, raise the mean logit difference over the identity
    names, sizes = [s.name for s in cmap.sites], [s.count for s in cmap.sites]
    flat = torch.cat([hooks.values[n] for n in names])
    learned = dict(zip(names, torch.split(scales_from_mask(flat, "ablate"), sizes)))
    identity = {n: torch.ones(c) for n, c in zip(names, sizes)}
    assert _full_gated_diffs(llama, cmap, ex, learned).mean() > _full_gated_diffs(llama, cmap, ex, identity).mean()
    counts = count_table(cmap, hooks.selected)
    assert counts["selected"].sum() == hooks.n_selected and counts["total"].sum() == cmap.total
    assert set(counts["kind"]) == {"q", "k", "v", "mlp"}
    for p in llama.parameters():
        p.requires_grad_(True)


def test_dcm_large_lambda_drives_masks_to_zero_and_early_stops(llama):
    cmap = component_map(llama)
    ex = _examples(llama, n=4)
    res = train_mask(llama, cmap, ex.prefixes, ex.desired, ex.undesired,
                     dcm_config(lr=0.2, epochs=30, batch_size=2, early_stop_fraction=0.5), lam=10.0, seed=0)
    assert res.n_selected == 0
    assert res.stopped_early and res.epochs_run < 30
    for p in llama.parameters():
        p.requires_grad_(True)


def test_early_stop_from_start_stops_with_everything_selected_as_the_reference_does(llama):
    cmap = component_map(llama)
    ex = _examples(llama, n=4)
    cfg = dict(lr=0.01, epochs=5, batch_size=2, early_stop_fraction=0.5)
    ours = train_mask(llama, cmap, ex.prefixes, ex.desired, ex.undesired, dcm_config(**cfg), lam=0.01, seed=0)
    reference = train_mask(llama, cmap, ex.prefixes, ex.desired, ex.undesired,
                           dcm_config(**cfg, early_stop_from="start"), lam=0.01, seed=0)
    # every mask starts at 1 and moves ~lr a step: flat from the first step, so counted from the start the
    # rule stops after its patience (one step here) with every component still selected
    assert reference.stopped_early and len(reference.history) == 1
    assert reference.n_selected == reference.n_total
    assert not ours.stopped_early and len(ours.history) == 5 * 2
    for p in llama.parameters():
        p.requires_grad_(True)


def _uneven_examples(model, seed=0):
    """Prefixes on both sides of the tiny Gemma models' sliding window (256), one with nothing of its own
    before its last token (its cache is the shared prompt's)."""
    g = torch.Generator().manual_seed(seed)
    ids = lambda k: torch.randint(5, model.config.vocab_size, (k,), generator=g).tolist()
    common = ids(200)
    prefixes = [common + ids(k) for k in (1, 90, 4, 130, 30, 2, 75)]
    desired = ids(len(prefixes))
    return Examples(prefixes, desired, [(d + 7) % model.config.vocab_size for d in desired])


def _close(a, b, rtol=1e-5, atol=1e-6):
    return torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=rtol, atol=atol)


def _longest_cache_gib(model, ex):
    states = ExampleStates(model, ex.prefixes, 0)
    return cache_bytes(states.cache(max(range(len(ex.prefixes)), key=lambda i: len(ex.prefixes[i])))) / 2**30


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("budget", ["ample", "two_examples"])
def test_batched_steps_follow_the_per_example_trajectory(arch, budget):
    """Losses, logit differences and selected counts of every step, and the masks after 4 epochs (12 steps,
    the selection shrinking from all components to a few): batched equals per-example. With a budget of two
    examples' caches the batched step runs in forwards of two and recomputes the caches it cannot keep."""
    model, _ = build_tiny_model(arch, seed=4)
    cmap = component_map(model)
    ex = _uneven_examples(model)
    assert min(map(len, ex.prefixes)) < SLIDING_WINDOW < max(map(len, ex.prefixes))
    gib = 8.0 if budget == "ample" else 2.5 * _longest_cache_gib(model, ex)
    cfg = dcm_config(lr=0.1, epochs=4, batch_size=3, early_stop_fraction=1.0, cache_budget_gib=gib)
    states = ExampleStates(model, ex.prefixes, gib * 2**30, batch=3)
    states.precompute()
    assert (states.per_forward, len(states.kept)) == ((3, 7) if budget == "ample" else (2, 1))
    runs = {step: train_mask(model, cmap, ex.prefixes, ex.desired, ex.undesired, cfg.replace(step=step),
                             lam=1e-2, seed=0) for step in ("per_example", "batched")}
    exact, fast = runs["per_example"], runs["batched"]
    assert len(exact.history) == len(fast.history) == 12
    assert exact.history[-1]["selected"] < cmap.total // 4
    for key in ("loss", "logit_diff"):
        assert _close([h[key] for h in fast.history], [h[key] for h in exact.history]), key
    assert [h["selected"] for h in fast.history] == [h["selected"] for h in exact.history]
    for k in exact.values:
        assert _close(fast.values[k], exact.values[k], atol=1e-5), k
    assert fast.sum_lr_lambda == exact.sum_lr_lambda == pytest.approx(sum(h["lr"] for h in exact.history) * 1e-2)
    assert exact.history[-1]["sum_lr_lambda"] == exact.sum_lr_lambda


@pytest.mark.parametrize("arch,attention", [(a, None) for a in ARCHITECTURES] + [("gemma2", "eager")])
def test_batched_step_gives_the_per_example_gradient(arch, attention):
    """One batch, a random mask: the same logit differences and the same gradient w.r.t. the mask, on every
    tiny architecture (Gemma-2's mixed sliding and full layers included) with its default attention, and
    with eager attention, which soft-caps Gemma-2's attention logits and takes an additive mask."""
    model, _ = build_tiny_model(arch, seed=5)
    if attention:
        model.set_attn_implementation(attention)
    for p in model.parameters():
        p.requires_grad_(False)
    cmap = component_map(model)
    ex = _uneven_examples(model, seed=1)
    mask = torch.nn.Parameter(torch.rand(cmap.total, generator=torch.Generator().manual_seed(0)))
    gates = MaskGates(model, cmap, mask, dcm_config(lr=1e-2, epochs=1, batch_size=5))
    idx = [3, 0, 6, 1, 4]
    out = {}
    for step in STEPS:
        states = ExampleStates(model, ex.prefixes, 2**30, batch=len(idx) if step == "batched" else 0)
        mask.grad = None
        d = STEPS[step](gates, states, idx, ex.desired, ex.undesired)
        out[step] = d, mask.grad.clone()
    (d0, g0), (d1, g1) = out["per_example"], out["batched"]
    assert _close(d1, d0, atol=1e-5)
    assert (g1 - g0).abs().max() <= 1e-5 * g0.abs().max()
    for p in model.parameters():
        p.requires_grad_(True)


def test_next_token_mask_hides_padding_and_what_the_window_hides():
    # example 0: 5 cached keys, window 3 keeps the 2 nearest; example 1: 2 cached keys then 3 of padding
    seen = visible_keys(torch.tensor([5, 2]), 5, window=3)[:, 0, 0]
    assert seen.tolist() == [[False, False, False, True, True, True], [True, True, False, False, False, True]]
    seen = visible_keys(torch.tensor([5, 2]), 5, window=None)[:, 0, 0]
    assert seen.tolist() == [[True] * 6, [True, True, False, False, False, True]]


def test_keep_reading_scales_one_plus_m():
    m = torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(scales_from_mask(m, "keep"), torch.tensor([1.0, 1.5, 2.0]))
    assert torch.equal(scales_from_mask(m, "ablate"), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(CCAError, match="dcm.unselected"):
        scales_from_mask(m, "other")


def test_row_delta_forward_equals_a_merged_weight_and_unmerge_restores_bits():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 5, bias=False)
    original = lin.weight.detach().clone()
    for axis, index in (("rows", [1, 3]), ("cols", [0, 4])):
        rd = RowDelta(lin, axis, index)
        with torch.no_grad():
            rd.delta.normal_()
        x = torch.randn(2, 4, 6)
        y = rd(x)
        rd.merge()
        assert torch.allclose(rd(x), y, atol=1e-6) and torch.allclose(lin(x), y, atol=1e-6)
        changed = (lin.weight != original)
        if axis == "rows":
            assert not changed[[0, 2, 4]].any()
        else:
            assert not changed[:, [1, 2, 3, 5]].any()
        rd.unmerge()
        assert torch.equal(lin.weight, original)


def test_targeted_update_leaves_every_other_weight_bit_identical():
    model, _ = build_tiny_model("gemma3", seed=3)
    cmap = component_map(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ex = _examples(model, n=4)
    slices = update_slices(cmap, {"layers.0.q": [1], "layers.1.v": [0], "layers.1.mlp": [2, 9]}, PAPER_TARGETS)
    wrapped = attach(model, slices)
    params = [rd.delta for rd in wrapped.values()]
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.endswith(".delta"))
    curve, best, state = train(model, params, ex, lr=0.5, steps=3, eval_steps=[1, 3],
                               evaluate=lambda step: float(step), micro_batch=8, loss="logit_difference", max_step_norm=None,
                               snapshot=lambda: delta_tensors(wrapped))
    assert [r["step"] for r in curve] == [1, 2, 3] and best == 3 and curve[2]["loss"] < curve[0]["loss"]
    assert all(p.grad is None for p in model.parameters())  # no gradient was kept for base weights
    with merged(model, wrapped):
        after = model.state_dict()
        for name, w in after.items():
            if name in slices:
                axis, idx = slices[name]
                keep = torch.ones(w.shape[0], dtype=torch.bool)
                keep[idx] = False
                assert torch.equal(w[keep], before[name][keep]) and not torch.equal(w[~keep], before[name][~keep])
            else:
                assert torch.equal(w, before[name]), name
    detach(model, wrapped)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # the saved delta reloads to the same model
    tensors, axes = state
    again = load_delta(model, tensors, axes)
    merge(again)
    unmerge(again)
    detach(model, again)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_update_gradient_reaches_only_the_deltas(llama):
    cmap = component_map(llama)
    ex = _examples(llama, n=3)
    wrapped = attach(llama, update_slices(cmap, {"layers.1.mlp": [0, 1]}, PAPER_TARGETS))
    logit_difference_backward(llama, ex.prefixes, ex.desired, ex.undesired, micro_batch=2)
    grads = {n: p.grad for n, p in llama.named_parameters() if p.grad is not None}
    assert set(grads) == {"model.layers.1.mlp.up_proj.delta"}
    detach(llama, wrapped)
    for p in llama.parameters():
        p.grad = None
        p.requires_grad_(True)


def test_empty_dataset_is_refused_with_advice():
    df = pd.DataFrame({"status": ["no_flip", "no_flip"], "prefix_ids": [None, None], "desired_id": [None, None],
                       "undesired_id": [None, None]})
    with pytest.raises(CCAError, match="no pivots.*sampling.num_samples"):
        Examples.from_frame(df, "x.parquet")


def test_nan_loss_stops_the_update(llama):
    ex = _examples(llama, n=2)
    wrapped = attach(llama, update_slices(component_map(llama), {"layers.0.q": [0]}, PAPER_TARGETS))
    with torch.no_grad():
        next(iter(wrapped.values())).delta.fill_(float("nan"))
    with pytest.raises(CCAError, match="lower update.lrs"):
        train(llama, [rd.delta for rd in wrapped.values()], ex, 0.1, 2, [2], lambda s: 0.0, lambda: None, micro_batch=8,
              loss="logit_difference", max_step_norm=None)
    detach(llama, wrapped)
    for p in llama.parameters():
        p.requires_grad_(True)


def test_o_target_takes_the_output_columns_of_selected_query_heads_and_of_a_v_heads_group():
    model, _ = build_tiny_model("llama", seed=0)
    cmap = component_map(model)
    group, hd = cmap.n_heads // cmap.n_kv_heads, cmap.head_dim
    s = update_slices(cmap, {"layers.0.q": [1], "layers.1.v": [0], "layers.1.k": [1]}, ("o",))
    assert set(s) == {"model.layers.0.self_attn.o_proj.weight", "model.layers.1.self_attn.o_proj.weight"}
    assert s["model.layers.0.self_attn.o_proj.weight"] == ("cols", list(range(hd, 2 * hd)))
    assert s["model.layers.1.self_attn.o_proj.weight"] == ("cols", list(range(0, group * hd)))
    # zeroing those columns silences exactly the selected head: its gate at 0 gives the same logits
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    w = model.get_submodule("model.layers.0.self_attn.o_proj").weight
    with torch.no_grad():
        saved = w[:, hd:2 * hd].clone()
        w[:, hd:2 * hd] = 0
        zeroed = model(input_ids=ids).logits
        w[:, hd:2 * hd] = saved
    site = cmap.site("layers.0.q")
    attn = model.get_submodule(site.module.rsplit(".", 1)[0])

    def silence(module, args, kwargs):
        x = args[0].clone()
        x[..., hd:2 * hd] = 0    # o_proj's input is the concatenated head outputs
        return (x,), kwargs

    h = attn.o_proj.register_forward_pre_hook(silence, with_kwargs=True)
    try:
        with torch.no_grad():
            ablated = model(input_ids=ids).logits
    finally:
        h.remove()
    assert torch.allclose(zeroed, ablated, atol=1e-6)


def test_bounded_pair_loss_backward_equals_autograd_and_fades_for_won_pairs(llama):
    from cca.models.shared_prefix import PAIR_LOSSES, last_position_logits, logit_difference

    ex = _examples(llama)
    for p in llama.parameters():
        p.grad = None
    diffs = logit_difference_backward(llama, ex.prefixes, ex.desired, ex.undesired, micro_batch=2,
                                      loss="log_sigmoid")
    fast = {n: p.grad.clone() for n, p in llama.named_parameters() if p.grad is not None}
    for p in llama.parameters():
        p.grad = None
    d = torch.cat([logit_difference(llama(input_ids=torch.tensor([p])).logits[:, -1], torch.tensor([a]),
                                    torch.tensor([b])) for p, a, b in zip(ex.prefixes, ex.desired, ex.undesired)])
    torch.nn.functional.softplus(-d).mean().backward()
    assert torch.allclose(diffs, d.detach(), atol=1e-5)
    for n, p in llama.named_parameters():
        assert torch.allclose(fast[n], p.grad, atol=1e-5, rtol=1e-4), n
        p.grad = None
    won = torch.tensor([30.0])
    assert PAIR_LOSSES["log_sigmoid"](won) < 1e-12 and PAIR_LOSSES["logit_difference"](won) == -30.0


def test_step_norm_cap_scales_the_step_down_and_leaves_small_steps_alone():
    from cca.update.targeted import sgd_step

    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])           # |lr * grad| = 5 * lr
    assert sgd_step([p], 1.0, max_norm=1.0) == pytest.approx(1.0)
    assert torch.allclose(p.detach(), -torch.tensor([0.6, 0.8, 0.0, 0.0]))
    q = torch.nn.Parameter(torch.zeros(4))
    q.grad = p.grad.clone()
    assert sgd_step([q], 0.1, max_norm=1.0) == pytest.approx(0.5)   # below the cap: plain SGD
    assert torch.allclose(q.detach(), -0.1 * p.grad)


def test_a_candidate_stops_after_a_look_below_the_floor(llama):
    """stop_below ends training after the first look under it; without it every step is trained."""
    from cca.models.components import update_slices

    cmap = component_map(llama)
    ex = _examples(llama, n=3)
    looks = iter([0.5, 0.2, 0.9, 0.9, 0.9])
    wrapped = attach(llama, update_slices(cmap, {"layers.0.mlp": [1, 2]}, ("up",)))
    try:
        params = [rd.delta for rd in wrapped.values()]
        rows, best, _ = train(llama, params, ex, 0.1, 6, [1, 2, 3, 4], lambda step: next(looks),
                              lambda: delta_tensors(wrapped), micro_batch=2, loss="logit_difference",
                              max_step_norm=None, stop_below=0.3)
        assert [r["step"] for r in rows] == [1, 2] and best == 1
        looks = iter([0.5, 0.2, 0.9, 0.9])
        rows, best, _ = train(llama, params, ex, 0.1, 6, [1, 2, 3, 4], lambda step: next(looks),
                              lambda: delta_tensors(wrapped), micro_batch=2, loss="logit_difference",
                              max_step_norm=None)
        assert len(rows) == 6 and best == 3
    finally:
        detach(llama, wrapped)
