"""Component map, gates (hooks and nnsight), and the exact shared-prompt forward, on tiny models."""
import pytest
import torch

from cca.models.architectures import TINY
from cca.models.components import GateSite, component_map, update_slices
from cca.circuits.gating import NNsightGates, execution_order, hook_gates, scale_last_position
from cca.models.shared_prefix import (common_prefix_length, completion_nll_backward, decoder, last_position_hidden,
                               last_position_logits, logit_difference_backward, pair_logit_difference, prefix_cache)
from cca.models.tiny import ARCHITECTURES, build_tiny_model


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request):
    model, tok = build_tiny_model(request.param, seed=1)
    return request.param, model


def _ids(model, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, model.config.vocab_size, (n,), generator=g).tolist()


def test_map_counts_heads_kv_heads_and_neurons(tiny):
    arch, model = tiny
    cmap = component_map(model)
    cfg = model.config
    assert cmap.n_layers == cfg.num_hidden_layers and cmap.n_heads == 4 and cmap.n_kv_heads == 2
    assert cmap.head_dim == (64 if TINY[arch].own_head_dim else 32)
    per_layer = cmap.n_heads + 2 * cmap.n_kv_heads + cfg.intermediate_size
    assert cmap.total == per_layer * cmap.n_layers
    q = cmap.site("layers.0.q")
    if TINY[arch].qk_norm:  # gemma3, olmo2
        assert q.module.endswith("q_norm") and cmap.site("layers.0.k").module.endswith("k_norm")
    else:
        assert q.module.endswith("q_proj")
    assert cmap.site("layers.1.mlp").module.endswith("mlp.down_proj") and cmap.site("layers.1.mlp").where == "input"


def test_doubling_any_component_moves_the_logits_like_a_v_head(tiny):
    """Gated after the q/k norm, a Q or K head matters as much as a V head; gated before a norm it would not
    (checked on Gemma-3 and OLMo-2 below: ~1e-6 and changes of other heads)."""
    arch, model = tiny
    cmap = component_map(model)
    ids = torch.tensor([_ids(model, 40)])
    effect = {}
    with torch.no_grad():
        base = model(input_ids=ids).logits[0, -1]
        for kind in ("q", "k", "v", "mlp"):
            site = cmap.site(f"layers.0.{kind}")
            s = torch.ones(site.count)
            s[0] = 2.0
            with hook_gates(model, cmap, {site.name: s}):
                effect[kind] = (model(input_ids=ids).logits[0, -1] - base).abs().max().item()
        assert torch.equal(model(input_ids=ids).logits[0, -1], base)  # hooks are removed on exit
    for kind in ("q", "k", "mlp"):
        assert effect[kind] > 1e-2 * effect["v"], (arch, effect)


def test_gating_before_gemma3_q_norm_would_not_learn():
    model, _ = build_tiny_model("gemma3", seed=1)
    cmap = component_map(model)
    ids = torch.tensor([_ids(model, 40)])
    proj = GateSite("layers.0.q", 0, "q", "model.layers.0.self_attn.q_proj", "output", "bt(hd)", 4, 64)
    s = torch.tensor([2.0, 1, 1, 1])
    with torch.no_grad():
        base = model(input_ids=ids).logits[0, -1]
        with hook_gates(model, cmap.__class__(**{**cmap.__dict__, "sites": (proj,)}), {"layers.0.q": s}):
            before_norm = (model(input_ids=ids).logits[0, -1] - base).abs().max().item()
        with hook_gates(model, cmap, {"layers.0.q": s}):
            after_norm = (model(input_ids=ids).logits[0, -1] - base).abs().max().item()
    assert before_norm < 1e-4 < after_norm


def test_gate_touches_only_the_last_position():
    site = GateSite("x", 0, "q", "m", "output", "bt(hd)", 2, 3)
    x = torch.randn(2, 5, 6)
    y = scale_last_position(x, torch.tensor([0.0, 2.0]), site)
    assert torch.equal(y[:, :-1], x[:, :-1])
    assert torch.equal(y[:, -1, :3], torch.zeros(2, 3)) and torch.allclose(y[:, -1, 3:], 2 * x[:, -1, 3:])
    bh = GateSite("x", 0, "q", "m", "output", "bhtd", 2, 3)
    x = torch.randn(2, 2, 5, 3)
    y = scale_last_position(x, torch.tensor([3.0, 1.0]), bh)
    assert torch.equal(y[:, :, :-1], x[:, :, :-1]) and torch.allclose(y[:, 0, -1], 3 * x[:, 0, -1])


def test_nnsight_backend_gives_the_same_logits_and_gradients(tiny):
    arch, model = tiny
    for p in model.parameters():
        p.requires_grad_(False)
    cmap = component_map(model)
    ids = torch.tensor([_ids(model, 20, 1), _ids(model, 20, 2)])
    m = torch.nn.Parameter(torch.rand(cmap.total, generator=torch.Generator().manual_seed(0)))
    sizes = [s.count for s in cmap.sites]

    def scales():
        return dict(zip([s.name for s in cmap.sites], torch.split(2 * m, sizes)))

    with hook_gates(model, cmap, scales()):
        a = decoder(model)(input_ids=ids).last_hidden_state[:, -1]
    a.square().sum().backward()
    ga, m.grad = m.grad.clone(), None
    b = NNsightGates(model, cmap).hidden(scales(), input_ids=ids)[:, -1]
    b.square().sum().backward()
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ga, m.grad, rtol=1e-4, atol=1e-6)
    for p in model.parameters():
        p.requires_grad_(True)


def test_execution_order_follows_the_forward():
    model, _ = build_tiny_model("gemma3")
    order = execution_order(model, component_map(model), input_ids=torch.tensor([[5, 6, 7]]))
    assert order[:4] == ["layers.0.v", "layers.0.q", "layers.0.k", "layers.0.mlp"]  # Gemma-3 projects v first


def test_common_prefix_length_leaves_a_token():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6]]) == 3
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3]]) == 2
    assert common_prefix_length([[1, 9], [2, 9]]) == 0


def test_shared_prompt_forward_equals_full_forwards(tiny):
    """Logits and parameter gradients of the shared-prompt computation match plain full forwards,
    with a shared part longer than Gemma's sliding window (256 in the tiny models)."""
    arch, model = tiny
    shared = _ids(model, 300)
    prefixes = [shared + _ids(model, n, seed=n) for n in (3, 7, 1, 12)]
    desired, undesired = [5, 6, 7, 8], [9, 10, 11, 12]
    model.zero_grad()
    ref = []
    for p, d, u in zip(prefixes, desired, undesired):
        lg = model(input_ids=torch.tensor([p])).logits[0, -1]
        ref.append(lg[d] - lg[u])
    ref = torch.stack(ref)
    (-ref.mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    diffs = logit_difference_backward(model, prefixes, desired, undesired, micro_batch=3)
    assert torch.allclose(diffs, ref.detach(), atol=1e-4)
    for n, p in model.named_parameters():
        scale = grads[n].abs().max() + 1e-8
        assert ((p.grad - grads[n]).abs().max() / scale) < 1e-3, n
    model.zero_grad()
    with torch.no_grad():
        cache = prefix_cache(model, shared)
        lg = last_position_logits(model, cache, [p[300:] for p in prefixes])
        full = torch.stack([model(input_ids=torch.tensor([p])).logits[0, -1] for p in prefixes])
        pair = pair_logit_difference(model, last_position_hidden(model, cache, [p[300:] for p in prefixes]),
                                     torch.tensor(desired), torch.tensor(undesired))
    assert torch.allclose(lg, full, atol=1e-4)
    # two rows of the LM head (with Gemma-2's final soft-capping) give the same difference as full logits
    assert torch.allclose(pair, full[range(4), desired] - full[range(4), undesired], atol=1e-4)


def test_shared_prompt_completion_loss_equals_a_full_batch(tiny):
    """The LoRA baseline's loss (mean NLL of completion tokens) and its parameter gradients, computed with
    the shared prompt once, equal plain full forwards over every (prompt, completion)."""
    arch, model = tiny
    shared = _ids(model, 280)
    prompts = [shared + _ids(model, n, seed=n) for n in (2, 5, 1)]
    completions = [_ids(model, n, seed=10 + n) for n in (4, 1, 6)]
    total = sum(map(len, completions))
    model.zero_grad()
    ref = []
    for p, c in zip(prompts, completions):
        lg = model(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1:-1].float()
        ref.append(torch.nn.functional.cross_entropy(lg, torch.tensor(c), reduction="sum"))
    (torch.stack(ref).sum() / total).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    nll = completion_nll_backward(model, prompts, completions, micro_batch=2)
    assert torch.allclose(nll, torch.stack(ref).detach(), rtol=1e-4, atol=1e-4)
    for n, p in model.named_parameters():
        scale = grads[n].abs().max() + 1e-8
        assert ((p.grad - grads[n]).abs().max() / scale) < 1e-3, n
    model.zero_grad()


def test_update_slices_rows_of_selected_heads_and_neurons():
    model, _ = build_tiny_model("gemma2")
    cmap = component_map(model)
    s = update_slices(cmap, {"layers.0.q": [1], "layers.1.k": [0], "layers.1.mlp": [3, 7]},
                      targets=("q", "k", "v", "up", "down"))
    assert s["model.layers.0.self_attn.q_proj.weight"] == ("rows", list(range(64, 128)))
    assert s["model.layers.1.self_attn.k_proj.weight"] == ("rows", list(range(0, 64)))
    assert s["model.layers.1.mlp.up_proj.weight"] == ("rows", [3, 7])
    assert s["model.layers.1.mlp.down_proj.weight"] == ("cols", [3, 7])
    assert "model.layers.1.mlp.gate_proj.weight" not in s
