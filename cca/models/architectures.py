"""The architecture table: what CCA relies on of each Hugging Face ``model_type`` it supports.

Adding an architecture edits two files: this one (an entry in ``ARCHITECTURES``; ``tiny`` gives it a
tiny test model, registered and tested from here) and cca/models/registry.py (its models, with their
``model_type`` and dimensions).

One entry per ``model_type`` (``config.model_type`` of the checkpoint: for a multimodal wrapper, the
wrapper's, e.g. ``gemma3``; its text decoder has a type of its own, ``gemma3_text``). Every architecture here
names its projections alike (``PROJECTIONS``: q/k/v/o_proj in the attention, a gated MLP of gate/up/down_proj
whose down_proj input is act(gate) * up) and, where queries and keys are normalised after projection, the
norms ``q_norm`` / ``k_norm`` in the attention (``QK_NORMS``). The component map (cca.models.components),
the tiny test models (cca.models.tiny), the final soft-capping of the shared-prefix forward
(cca.models.shared_prefix), the direct logit attribution (cca.circuits.attribution) and the memory arithmetic
(cca.models.scaling) read this table.
"""
from __future__ import annotations

from dataclasses import dataclass

from cca.errors import CCAError

# component kind / update target -> module name inside a layer's attention or MLP, for every entry
PROJECTIONS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
               "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
QK_NORMS = {"q": "q_norm", "k": "k_norm"}


@dataclass(frozen=True)
class Architecture:
    """What CCA relies on of one ``model_type``.

    ``qk_norm`` is the layout of the q_norm/k_norm outputs, where queries and keys are gated (a norm
    undoes a scale applied before it): ``bhtd`` normalised per head (batch, heads, position, head_dim),
    ``bt(hd)`` normalised over all heads jointly (batch, position, heads*head_dim); None: no q/k norm, the
    gate sits on q_proj/k_proj. The soft-cap fields name attributes of the (text) config; an attribute
    that is absent or None means no capping.
    """
    model_type: str
    config_class: str                  # the transformers config class of this model_type
    layers: str = "model.layers"       # the decoder layers, a dotted path from the causal LM
    attention: str = "self_attn"       # a layer's attention submodule (holds PROJECTIONS q/k/v/o, QK_NORMS)
    mlp: str = "mlp"                   # a layer's MLP submodule (holds PROJECTIONS gate/up/down)
    qk_norm: str | None = None         # "bhtd" | "bt(hd)" | None (see above)
    attn_softcap: str | None = None    # config attribute of the attention-logit soft cap
    final_softcap: str | None = None   # config attribute of the final-logit soft cap
    tied_embeddings: bool = False      # the config's default tie_word_embeddings (LM head = input embedding);
                                       # the memory arithmetic counts the LM head by it
    own_head_dim: bool = False         # config.head_dim is set on its own, not hidden_size / heads
    sliding_window: bool = False       # some layers attend only within config.sliding_window
    post_norms: tuple[str, str] | None = None  # a layer's norms of its attention and MLP outputs, applied before
                                       # they join the residual stream (None: outputs are added as they are)
    tiny: str | None = None            # the name of its tiny test model (cca.models.tiny), if it has one


_CAPS = dict(attn_softcap="attn_logit_softcapping", final_softcap="final_logit_softcapping")  # Gemma-2 and -3
_POST = ("post_attention_layernorm", "post_feedforward_layernorm")  # Gemma-2/-3 and OLMo-2: post-norms

ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in [
        Architecture("gemma", "GemmaConfig", tied_embeddings=True, own_head_dim=True),
        Architecture("gemma2", "Gemma2Config", **_CAPS, tied_embeddings=True, own_head_dim=True,
                     sliding_window=True, post_norms=_POST, tiny="gemma2"),
        Architecture("gemma3_text", "Gemma3TextConfig", qk_norm="bhtd", **_CAPS, tied_embeddings=True,
                     own_head_dim=True, sliding_window=True, post_norms=_POST, tiny="gemma3"),
        # the multimodal wrapper: its text decoder is a gemma3_text model inside model.language_model
        Architecture("gemma3", "Gemma3Config", layers="model.language_model.layers", qk_norm="bhtd",
                     **_CAPS, tied_embeddings=True, own_head_dim=True, sliding_window=True, post_norms=_POST),
        Architecture("olmo2", "Olmo2Config", qk_norm="bt(hd)", post_norms=_POST, tiny="olmo2"),
        Architecture("llama", "LlamaConfig", tiny="llama"),
        Architecture("mistral", "MistralConfig"),
        Architecture("qwen2", "Qwen2Config", tiny="qwen2"),
    ]
}

# tiny model name -> its architecture, in table order
TINY: dict[str, Architecture] = {a.tiny: a for a in ARCHITECTURES.values() if a.tiny}


def architecture(model_type: str) -> Architecture:
    """The entry of ``model_type``; a CCAError naming the supported ones otherwise."""
    if model_type not in ARCHITECTURES:
        raise CCAError(f"model_type '{model_type}' is not in the architecture table: supported are "
                       f"{', '.join(ARCHITECTURES)}; add an entry to cca/models/architectures.py")
    return ARCHITECTURES[model_type]


def architecture_of(config) -> Architecture:
    """The entry of a model's (outer) config."""
    return architecture(getattr(config, "model_type", ""))


def text_config(config):
    """The decoder's config: the text config of a multimodal wrapper, else ``config`` itself."""
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
