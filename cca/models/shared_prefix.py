"""Exact forward passes that compute the prompt part shared by every example once.

Every Error-Localization prefix starts with the same few-shot prompt, which is most of its tokens.
Under causal attention the keys and values of that shared part do not depend on what follows, so:

- ``prefix_cache`` runs it once and ``cache_view`` hands each example a cheap copy of the cache
  (new cache objects over the same tensors: a forward appends to the copy, not to the shared one);
- ``last_position_hidden`` runs only each example's own suffix on top of it, for a batch, and returns
  the final hidden state at each example's last position; ``pair_logit_difference`` turns it into
  logit(desired) - logit(undesired) with just those two rows of the LM head;
- ``logit_difference_backward`` gives the exact gradient of the mean logit-difference loss over all
  examples, the shared part's contribution included: the suffixes see detached copies of the shared
  keys/values, whose gradients are then pushed through the shared forward once;
- ``next_token_inputs`` stacks the caches of examples of different lengths into one batch for a forward of
  their next tokens: padded keys/values, an attention mask that hides the padding (and what a sliding
  window hides), and each example's own position.

The results equal full forward passes to float tolerance (tests compare them on tiny models).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch

from cca.errors import CCAError
from cca.models.architectures import architecture_of, text_config
from cca.models.registry import input_device


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix, leaving at least one token of every sequence out."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def cache_view(cache):
    """A copy of ``cache`` that shares its tensors: forwarding with it leaves ``cache`` as it was."""
    view = copy.copy(cache)
    view.layers = [copy.copy(layer) for layer in cache.layers]
    return view


def decoder(model):
    """The decoder stack of a causal LM (its final hidden states feed the LM head)."""
    return model.model if hasattr(model, "model") else model.get_decoder()


def _softcap(model, logits: torch.Tensor) -> torch.Tensor:
    """The model's final logit soft-capping (its architecture's ``final_softcap``: Gemma-2), or the logits
    unchanged."""
    attr = architecture_of(model.config).final_softcap
    cap = getattr(text_config(model.config), attr, None) if attr else None
    return torch.tanh(logits / cap) * cap if cap else logits


def pair_logit_difference(model, hidden: torch.Tensor, desired: torch.Tensor, undesired: torch.Tensor
                          ) -> torch.Tensor:
    """logit(desired) - logit(undesired) from final hidden states (batch, hidden): only the two rows of
    the LM head the loss needs (gemma-3-270m's head has 262,144), with the model's final soft-capping.
    Equal to gathering from the full logits (a test compares them on every architecture)."""
    head = model.get_output_embeddings()
    rows = head.weight[torch.stack([desired, undesired], dim=1).to(head.weight.device)]   # (batch, 2, hidden)
    # a model spread over GPUs may end its decoder on another device than its LM head
    logits = torch.einsum("bh,bkh->bk", hidden.to(rows.device, rows.dtype), rows).float()
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[torch.stack([desired, undesired], dim=1).to(head.bias.device)].float()
    logits = _softcap(model, logits)
    return logits[:, 0] - logits[:, 1]


def prefix_cache(model, ids: Sequence[int]):
    """The KV cache of ``ids`` (batch of one); with gradient if grad mode is on."""
    if not ids:
        return None
    return decoder(model)(input_ids=torch.tensor([list(ids)], device=input_device(model)),
                          use_cache=True).past_key_values


def _expand(cache, batch: int):
    if cache is None:
        return None
    view = cache_view(cache)
    if batch > 1:
        view.batch_repeat_interleave(batch)
    return view


def _right_padded(suffixes: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, width) ids right-padded with ``pad_id``, and each row's last real position."""
    lengths = [len(s) for s in suffixes]
    width = max(lengths)
    ids = torch.tensor([list(s) + [pad_id] * (width - len(s)) for s in suffixes])
    return ids, torch.tensor(lengths) - 1


def last_position_hidden(model, shared, suffixes: Sequence[Sequence[int]], pad_id: int = 0) -> torch.Tensor:
    """(batch, hidden) final hidden states after ``shared`` + each suffix.

    Suffixes are right-padded: under causal attention a real token never sees the padding after it,
    and every example's positions continue from the shared length, so no attention mask is needed.
    """
    ids, last = _right_padded(suffixes, pad_id)
    out = decoder(model)(input_ids=ids.to(input_device(model)), past_key_values=_expand(shared, len(suffixes)),
                         use_cache=shared is not None)
    hidden = out.last_hidden_state
    return hidden[torch.arange(len(suffixes), device=hidden.device), last.to(hidden.device)]


def last_position_logits(model, shared, suffixes: Sequence[Sequence[int]], pad_id: int = 0) -> torch.Tensor:
    """(batch, vocab) next-token logits after ``shared`` + each suffix (see ``last_position_hidden``)."""
    ids, last = _right_padded(suffixes, pad_id)
    keep = torch.unique(last)
    out = model(input_ids=ids.to(input_device(model)), past_key_values=_expand(shared, len(suffixes)),
                use_cache=shared is not None, logits_to_keep=keep)
    at = out.logits.device
    return out.logits[torch.arange(len(suffixes), device=at), torch.searchsorted(keep, last).to(at)]


def logit_difference(logits: torch.Tensor, desired: torch.Tensor, undesired: torch.Tensor) -> torch.Tensor:
    """logit(desired) - logit(undesired), gathered per example: (batch,)."""
    desired, undesired = desired.to(logits.device), undesired.to(logits.device)
    return logits.gather(1, desired.view(-1, 1)).squeeze(1) - logits.gather(1, undesired.view(-1, 1)).squeeze(1)


PAIR_LOSSES = {
    # the paper's: unbounded, it keeps pushing a pair whose desired token already wins
    "logit_difference": lambda d: -d,
    # bounded: -log sigmoid(d) = softplus(-d), whose gradient fades once the desired token wins
    "log_sigmoid": lambda d: torch.nn.functional.softplus(-d),
}


def logit_difference_backward(model, prefixes: Sequence[Sequence[int]], desired: Sequence[int],
                              undesired: Sequence[int], micro_batch: int = 8, shared_len: int | None = None,
                              pad_id: int = 0, loss: str = "logit_difference") -> torch.Tensor:
    """Backward of loss = mean_i f(logit_desired_i - logit_undesired_i) at each prefix's last position, with
    f from ``PAIR_LOSSES`` (the paper's: f(d) = -d).

    Accumulates gradients into the model's trainable parameters (exactly those of one full-batch
    forward/backward over all prefixes) and returns the per-example logit differences (detached).
    """
    per_pair = PAIR_LOSSES[loss]
    n = len(prefixes)
    if shared_len is None:
        shared_len = common_prefix_length(prefixes)
    shared = prefix_cache(model, prefixes[0][:shared_len])
    originals, leaves = _shared_leaves(shared)
    diffs = []
    for start in range(0, n, micro_batch):
        sl = slice(start, min(start + micro_batch, n))
        suffixes = [p[shared_len:] for p in prefixes[sl]]
        hidden = last_position_hidden(model, shared, suffixes, pad_id)
        d = pair_logit_difference(model, hidden, torch.tensor(list(desired[sl])), torch.tensor(list(undesired[sl])))
        total = per_pair(d).sum() / n
        if total.requires_grad:
            total.backward()
        diffs.append(d.detach())
    _push_through_shared(originals, leaves)
    return torch.cat(diffs)


def _shared_leaves(shared):
    """Swap the shared cache's keys/values for detached leaves; returns (originals, leaves)."""
    originals, leaves = [], []
    if shared is not None:
        for layer in shared.layers:
            for attr in ("keys", "values"):
                t = getattr(layer, attr)
                if t.requires_grad:
                    leaf = t.detach().requires_grad_(True)
                    originals.append(t)
                    leaves.append(leaf)
                    setattr(layer, attr, leaf)
    return originals, leaves


def _push_through_shared(originals, leaves) -> None:
    """Backward of the shared part once, with the gradients its detached leaves collected."""
    pairs = [(o, leaf.grad) for o, leaf in zip(originals, leaves) if leaf.grad is not None]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])


def completion_nll_backward(model, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                            micro_batch: int = 8, pad_id: int = 0) -> torch.Tensor:
    """Backward of loss = (sum of -log p(completion tokens)) / (number of completion tokens), the usual
    supervised fine-tuning loss on the completion only, over all (prompt, completion) examples.

    The prompts' common prefix is computed once (as in ``logit_difference_backward``), and the LM head
    runs only at the positions that predict a completion token. Returns the per-example summed NLL
    (detached). Exact: equal to one full-batch forward/backward (tests compare them).
    """
    n = len(prompts)
    seqs = [list(p) + list(c) for p, c in zip(prompts, completions)]
    shared_len = max(0, min(common_prefix_length(seqs), min(len(p) for p in prompts) - 1))
    total = sum(len(c) for c in completions)
    shared = prefix_cache(model, seqs[0][:shared_len])
    originals, leaves = _shared_leaves(shared)
    head = model.get_output_embeddings()
    nll = []
    for start in range(0, n, micro_batch):
        sl = slice(start, min(start + micro_batch, n))
        suffixes = [s[shared_len:] for s in seqs[sl]]
        ids, _ = _right_padded(suffixes, pad_id)
        hidden = decoder(model)(input_ids=ids.to(input_device(model)),
                                past_key_values=_expand(shared, len(suffixes)),
                                use_cache=shared is not None).last_hidden_state
        # position j of a suffix predicts its token j + 1; completion tokens sit at the end of each suffix
        rows, cols, targets = [], [], []
        for b, (s, c) in enumerate(zip(suffixes, completions[sl])):
            first = len(s) - len(c)
            rows += [b] * len(c)
            cols += range(first - 1, len(s) - 1)
            targets += list(c)
        at = hidden.device
        logits = _softcap(model, head(hidden[torch.tensor(rows, device=at), torch.tensor(cols, device=at)]).float())
        token_nll = torch.nn.functional.cross_entropy(logits, torch.tensor(targets, device=logits.device),
                                                      reduction="none")
        loss = token_nll.sum() / total
        if loss.requires_grad:
            loss.backward()
        per_example = torch.zeros(len(suffixes)).index_add_(0, torch.tensor(rows), token_nll.detach().cpu())
        nll.append(per_example)
    _push_through_shared(originals, leaves)
    return torch.cat(nll)


def cache_bytes(cache) -> int:
    """Bytes of the keys and values a cache holds (0 for None)."""
    if cache is None:
        return 0
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


def _cached_tokens(cache, layer: int) -> int:
    return 0 if cache is None else cache.layers[layer].keys.shape[-2]


def _window(layer) -> int | None:
    """The sliding window of a cache layer (the model's attention window of that layer), or None."""
    return layer.sliding_window if getattr(layer, "is_sliding", False) else None


def visible_keys(cached: torch.Tensor, width: int, window: int | None) -> torch.Tensor:
    """(batch, 1, 1, width + 1) bool: what each example's next token attends to in one layer.

    Row i holds example i's ``cached[i]`` cached keys at indices 0.., the last of them one position before
    the new token, then padding up to ``width``, then the new token itself at index ``width``. A cached key
    at index j lies ``cached[i] - j`` positions before the new token; a sliding window of w keeps those
    less than w positions back (the model's rule: kv_position > q_position - w).
    """
    j = torch.arange(width + 1).view(1, -1)                     # (1, width + 1)
    back = cached.view(-1, 1) - j                                # (batch, width + 1): positions back
    seen = (j < cached.view(-1, 1))
    if window is not None:
        seen = seen & (back < window)
    seen[:, width] = True
    return seen[:, None, None, :]


def _model_mask(seen: torch.Tensor, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """A bool mask in the form the attention implementation takes: sdpa bool, eager additive."""
    if implementation == "sdpa":
        return seen
    if implementation == "eager":
        return torch.zeros(seen.shape, dtype=dtype).masked_fill(~seen, torch.finfo(dtype).min)
    raise CCAError(f"a batched next-token forward needs an attention mask, which the '{implementation}' "
                   "attention implementation does not take: set dcm.step to per_example")


def _padded(tensors: Sequence[torch.Tensor | None], width: int, like: torch.Tensor) -> torch.Tensor:
    """(batch, kv_heads, width, head_dim): each (1, kv_heads, n_i, head_dim) right-padded with zeros."""
    out = like.new_zeros((len(tensors), like.shape[1], width, like.shape[3]))
    for i, t in enumerate(tensors):
        if t is not None and t.shape[-2]:
            out[i, :, :t.shape[-2]] = t[0]
    return out


def next_token_inputs(model, caches: Sequence, lengths: Sequence[int], ids: Sequence[int]) -> dict:
    """Decoder inputs for one forward of a batch's next tokens, each on top of its own cache.

    ``caches[i]`` (a batch of one, or None) holds the states of example i's first ``lengths[i]`` tokens (a
    sliding-window layer only the last of them); ``ids[i]`` is its next token, at position ``lengths[i]``.
    Per layer the caches are right-padded to the batch's longest, and the mask lets each next token see its
    own cached keys (within the layer's window) and itself, never the padding: the result equals a forward
    per example. Layers of one type (``config.layer_types``) cache alike and so share a mask; a config
    without layer types has a single kind of layer.
    """
    device = input_device(model)
    inputs = dict(input_ids=torch.tensor([[t] for t in ids], device=device), use_cache=True,
                  position_ids=torch.tensor([[n] for n in lengths], device=device))
    template = next((c for c in caches if c is not None), None)
    if template is None:                      # no example has a past: each token attends to itself only
        return inputs
    cache = cache_view(template)
    for l, layer in enumerate(cache.layers):
        width = max(_cached_tokens(c, l) for c in caches)
        layer.keys = _padded([c.layers[l].keys if c is not None else None for c in caches], width, layer.keys)
        layer.values = _padded([c.layers[l].values if c is not None else None for c in caches], width,
                               layer.values)
    config = text_config(model.config)

    def mask(l: int) -> torch.Tensor:
        keys = cache.layers[l].keys
        cached = torch.tensor([_cached_tokens(c, l) for c in caches])
        seen = visible_keys(cached, keys.shape[-2], _window(template.layers[l]))
        return _model_mask(seen, config._attn_implementation, keys.dtype).to(keys.device)

    types = getattr(config, "layer_types", None)
    if types is None:
        inputs.update(past_key_values=cache, attention_mask=mask(0))
    else:
        first = {}
        for l, kind in enumerate(types[:len(cache.layers)]):
            first.setdefault(kind, l)
        inputs.update(past_key_values=cache, attention_mask={kind: mask(l) for kind, l in first.items()})
    return inputs
