"""The component map: where each attention head and MLP neuron of a model can be gated and updated.

Components, per decoder layer ``i`` (canonical names, as in the mask files):

- ``layers.{i}.q``   one per query head            (n_heads)
- ``layers.{i}.k``   one per key head (KV head)    (n_kv_heads; grouped-query attention shares it)
- ``layers.{i}.v``   one per value head (KV head)  (n_kv_heads)
- ``layers.{i}.mlp`` one per MLP neuron            (d_ff: the input of down_proj, act(gate) * up)

Each component has a *gate site*: the module, and whether its input or output, whose activation is
scaled to gate it. Queries and keys are gated after any normalisation of them, because a norm undoes a
scale applied before it: Gemma-3 normalises each head (``q_norm``/``k_norm`` over head_dim), OLMo-2 all
heads jointly (``q_norm`` over n_heads*head_dim). Elsewhere the gate sits on the projection's output.
Where the layers, their attention and MLP, and the q/k norms are: cca.models.architectures.
Each component also has *update rows*: the rows of the weights that produce it (``update_slices``).
"""
from __future__ import annotations

from dataclasses import dataclass

from cca.errors import CCAError
from cca.models.architectures import PROJECTIONS, QK_NORMS, architecture_of, text_config


@dataclass(frozen=True)
class GateSite:
    """One gate site: ``module`` (a dotted path inside the model), gated on its ``input`` or ``output``.

    ``layout`` says where the position and component axes are in that activation:
    ``bt(hd)`` (batch, position, n*head_dim), ``bhtd`` (batch, n, position, head_dim),
    ``btf`` (batch, position, d_ff).
    """
    name: str       # canonical component name, e.g. "layers.3.q"
    layer: int
    kind: str       # q | k | v | mlp
    module: str
    where: str      # "output" | "input"
    layout: str
    count: int      # components at this site
    width: int      # features per component (head_dim; 1 for neurons)


@dataclass(frozen=True)
class ComponentMap:
    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    sites: tuple[GateSite, ...]

    @property
    def total(self) -> int:
        return sum(s.count for s in self.sites)

    def site(self, name: str) -> GateSite:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)


def _layers_path(model, layers: str) -> str:
    obj = model
    try:
        for part in layers.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise CCAError(f"cannot find the decoder layers of {type(model).__name__} at {layers}, where the "
                       "architecture table (cca/models/architectures.py) puts them for model_type "
                       f"'{model.config.model_type}'") from None
    return layers


def component_map(model) -> ComponentMap:
    """The component map of a Hugging Face causal LM (see module docstring)."""
    arch = architecture_of(model.config)
    cfg = text_config(model.config)
    model_type = getattr(cfg, "model_type", "")
    n_heads, n_kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    d_ff, n_layers = cfg.intermediate_size, cfg.num_hidden_layers
    layers = _layers_path(model, arch.layers)
    sites = []
    for i in range(n_layers):
        attn, mlp = f"{layers}.{i}.{arch.attention}", f"{layers}.{i}.{arch.mlp}"
        for kind, n in (("q", n_heads), ("k", n_kv), ("v", n_kv)):
            if kind in QK_NORMS and arch.qk_norm:
                sites.append(GateSite(f"layers.{i}.{kind}", i, kind, f"{attn}.{QK_NORMS[kind]}", "output",
                                      arch.qk_norm, n, head_dim))
            else:
                sites.append(GateSite(f"layers.{i}.{kind}", i, kind, f"{attn}.{PROJECTIONS[kind]}", "output",
                                      "bt(hd)", n, head_dim))
        sites.append(GateSite(f"layers.{i}.mlp", i, "mlp", f"{mlp}.{PROJECTIONS['down']}", "input", "btf", d_ff, 1))
    cmap = ComponentMap(model_type, n_layers, n_heads, n_kv, head_dim, d_ff, tuple(sites))
    _check_shapes(model, cmap)
    return cmap


def _check_shapes(model, cmap: ComponentMap) -> None:
    modules = dict(model.named_modules())
    for s in cmap.sites:
        if s.module not in modules:
            raise CCAError(f"{cmap.model_type}: module {s.module} of component {s.name} not found; the "
                           "architecture's module names differ from its entry in cca/models/architectures.py")
    for i in range(cmap.n_layers):
        attn = cmap.site(f"layers.{i}.q").module.rsplit(".", 1)[0]
        for kind, n in (("q", cmap.n_heads), ("k", cmap.n_kv_heads), ("v", cmap.n_kv_heads)):
            w = modules[f"{attn}.{PROJECTIONS[kind]}"].weight
            if w.shape[0] != n * cmap.head_dim:
                raise CCAError(f"{attn}.{PROJECTIONS[kind]} has {w.shape[0]} output rows, expected {n} heads x "
                               f"head_dim {cmap.head_dim}")


def update_slices(cmap: ComponentMap, selection: dict[str, "object"], targets
                  ) -> dict[str, tuple[str, list[int]]]:
    """Weights to update for selected components: ``{weight name: (axis, indices)}``.

    ``selection`` maps component names (``layers.3.q``) to the indices of selected components.
    Targets: ``q``/``k``/``v`` - the rows of q_proj/k_proj/v_proj that produce a selected head; ``o`` - the
    columns of o_proj that read a selected Q head's output, or the outputs of the query heads that share a
    selected V head (a K head only steers attention, so it has none); ``up``/``gate`` - the rows of
    up_proj/gate_proj of a selected neuron; ``down`` - its column of down_proj.
    """
    out: dict[str, tuple[str, list[int]]] = {}
    o_heads: dict[str, set[int]] = {}
    group = cmap.n_heads // cmap.n_kv_heads      # query heads per key/value head
    for s in cmap.sites:
        idx = sorted(int(j) for j in selection.get(s.name, []))
        if not idx:
            continue
        if s.kind in ("q", "k", "v"):
            attn = s.module.rsplit(".", 1)[0]
            if "o" in targets and s.kind != "k":
                heads = idx if s.kind == "q" else [h * group + r for h in idx for r in range(group)]
                o_heads.setdefault(attn, set()).update(heads)
            if s.kind not in targets:
                continue
            rows = [r for h in idx for r in range(h * s.width, (h + 1) * s.width)]
            out[f"{attn}.{PROJECTIONS[s.kind]}.weight"] = ("rows", rows)
        else:
            mlp = s.module.rsplit(".", 1)[0]
            for t in ("up", "gate"):
                if t in targets:
                    out[f"{mlp}.{PROJECTIONS[t]}.weight"] = ("rows", idx)
            if "down" in targets:
                out[f"{mlp}.{PROJECTIONS['down']}.weight"] = ("cols", idx)
    for attn, heads in o_heads.items():
        cols = [c for h in sorted(heads) for c in range(h * cmap.head_dim, (h + 1) * cmap.head_dim)]
        out[f"{attn}.{PROJECTIONS['o']}.weight"] = ("cols", cols)
    return out
