"""A CCA delta as a PEFT LoRA adapter: loadable with ``PeftModel.from_pretrained`` and nothing of this package.

A delta on the selected rows R of a weight W (out, in) is ``E_R @ D`` with D = the delta rows (k, in) and E_R the
(out, k) one-hot matrix that puts row j of D at row R[j]; a delta on selected columns C is ``D @ E_C^T`` with D
(out, k). Both are a rank-k LoRA with one factor one-hot:

- rows:    lora_A = D (k, in),        lora_B = E_R (out, k)
- columns: lora_A = E_C^T (k, in),    lora_B = D (out, k)

with ``lora_alpha = r`` per module (scaling 1) and no dropout. B @ A multiplies every value of D by 1.0 and adds
exact zeros, so PEFT's merged weight is W + delta computed as this package merges it (``cca.update.row_delta``):
bit for bit when the base weights are float32. PEFT's unmerge subtracts the delta again, which can differ from the
original weight in the last bit; this package's own unmerge restores the saved rows instead.

PEFT's own sparse tuner (SHiRA) cannot hold these deltas: it gives every module the same number of values,
r * (in + out), and the selected rows of a module are k * in values with k different for every module.
"""
from __future__ import annotations

import re
from typing import Mapping

import pandas as pd
import torch

from cca.errors import CCAError


def lora_factors(delta: torch.Tensor, index: torch.Tensor, axis: str, shape: tuple[int, int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A, lora_B) of one weight of ``shape`` (out, in) whose ``axis`` (rows / cols) ``index`` carry
    ``delta`` ((k, in) for rows, (out, k) for columns)."""
    out_f, in_f = shape
    k = len(index)
    one_hot = torch.zeros((out_f, k) if axis == "rows" else (k, in_f), dtype=delta.dtype)
    if axis == "rows":
        one_hot[index, torch.arange(k)] = 1.0
        return delta.clone(), one_hot
    if axis == "cols":
        one_hot[torch.arange(k), index] = 1.0
        return one_hot, delta.clone()
    raise CCAError(f"unknown delta axis {axis!r}: rows or cols")


def lora_adapter(model, tensors: Mapping[str, torch.Tensor], axes: Mapping[str, str]):
    """The PEFT model (``model`` wrapped, adapter ``default``) that holds the sparse delta of
    ``cca.update.row_delta.delta_tensors`` (``<weight>.delta``, ``<weight>.index``, ``axes``) as LoRA factors.
    ``save_pretrained`` on it writes an adapter folder that plain PEFT loads."""
    from peft import LoraConfig, get_peft_model

    if not axes:
        raise CCAError("the delta is empty (the update kept the base model): there is no adapter to export")
    modules = {name.removesuffix(".weight"): name for name in axes}
    for module_name in modules:
        if not isinstance(model.get_submodule(module_name), torch.nn.Linear):
            raise CCAError(f"delta target {module_name} is not a Linear layer of the model")
    ranks = {m: len(tensors[f"{w}.index"]) for m, w in modules.items()}
    # exact names: PEFT reads the keys of rank_pattern / alpha_pattern as regular expressions
    pattern = {re.escape(m): r for m, r in ranks.items()}
    config = LoraConfig(r=1, lora_alpha=1, lora_dropout=0.0, bias="none", target_modules=sorted(modules),
                        rank_pattern=pattern, alpha_pattern=dict(pattern), init_lora_weights=True)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for module_name, weight_name in modules.items():
            layer = peft_model.base_model.model.get_submodule(module_name)
            a, b = lora_factors(tensors[f"{weight_name}.delta"].float(), tensors[f"{weight_name}.index"].long(),
                                axes[weight_name], tuple(layer.base_layer.weight.shape))
            if layer.scaling["default"] != 1.0 or layer.lora_A["default"].weight.shape != a.shape:
                raise CCAError(f"{module_name}: PEFT built a LoRA of another shape or scaling than the delta's")
            layer.lora_A["default"].weight.copy_(a)
            layer.lora_B["default"].weight.copy_(b)
    return peft_model


def model_card(*, base_model: str, library: str, summary: dict, per_layer: pd.DataFrame | None,
               test: dict | None, command: str, base_weights: str | None = None,
               task: str = "gsm-symbolic math word problems") -> str:
    """README.md of an exported folder in the Hugging Face hub's format (YAML front matter, then Markdown).

    ``summary``: the run's update.json; ``per_layer``: ``cca.circuits.dcm.count_table`` of its mask (layer, kind,
    selected, total; None without one);
    ``test``: ``{set: {"accuracy", "original", "diff", "lo", "hi", "n"}}`` in points, from this run's and the
    original model's math evaluation (None when not evaluated); ``base_weights``: where the base weights come
    from when they are not the hub's (the embedded default is dequantised from a GGUF package)."""
    best = summary["best"]
    lines = ["---", f"base_model: {base_model}", f"library_name: {library}",
             "tags: [constructive-circuit-amplification, cca, math-reasoning]", "---", "",
             f"# {base_model}: CCA {summary['variant']} update (seed {summary['seed']})", "",
             f"Constructive Circuit Amplification (arXiv 2512.16914) of `{base_model}` on {task}: the selected "
             "components' weights updated on the pivot tokens where the model's reasoning goes wrong.", ""]
    if library == "peft":
        lines += ["Load it with PEFT alone (a LoRA whose factors put the delta on the selected rows and columns "
                  "exactly; `merge_and_unload()` gives the merged weights):", "", "```python",
                  "from peft import PeftModel", "from transformers import AutoModelForCausalLM",
                  "", "base = AutoModelForCausalLM.from_pretrained(" +
                  (f"\"{base_model}\"" if not base_weights else "\"path/to/the/base/checkpoint\"") +
                  ", torch_dtype=\"float32\")",
                  "model = PeftModel.from_pretrained(base, \"path/to/this/folder\")", "```", ""]
    if base_weights:
        lines += [f"The base weights are not the hub's: {base_weights} (`cca prepare-model` writes them).", ""]
    lines += ["## Training", "",
              f"- Error-Localization pairs: {summary['examples']} trained of {summary['pairs']}",
              f"- chosen on validation: {best['config']}, lambda {best.get('lambda')}, lr {best.get('lr')}, "
              f"step {best['step']}; validation accuracy {100 * best['val_accuracy']:.1f} "
              f"(base model {100 * summary['base_val_accuracy']:.1f}; mean of per-template exact match)"]
    if summary.get("trainable_delta_values"):
        lines.append(f"- values in the delta: {summary['trainable_delta_values']:,}")
    if per_layer is not None:
        table = per_layer.pivot_table(index="layer", columns="kind", values="selected", aggfunc="sum", fill_value=0)
        lines += ["", "## Selected components per layer", "",
                  "| layer | " + " | ".join(table.columns) + " |", "|---|" + "---|" * len(table.columns)]
        lines += [f"| {layer} | " + " | ".join(str(int(v)) for v in row) + " |" for layer, row in table.iterrows()]
    if test:
        lines += ["", "## Test results", "",
                  "Greedy exact match x100 (mean of per-template accuracies); the difference to the base model with "
                  "its paired bootstrap 95% interval over questions.", "",
                  "| set | this model | base model | difference | n |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {r['accuracy']:.1f} | {r['original']:.1f} | {r['diff']:+.1f} "
                  f"[{r['lo']:+.1f}, {r['hi']:+.1f}] | {r['n']} |" for name, r in test.items()]
    lines += ["", "## Reproduce", "", "```", command, "```", ""]
    return "\n".join(lines)
