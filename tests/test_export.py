"""A CCA delta exported as a PEFT LoRA adapter loads with plain PEFT and equals this package's merged model."""
import pytest
import torch

from cca.models.tiny import ARCHITECTURES, build_tiny_model
from cca.update.export import lora_adapter, lora_factors
from cca.update.row_delta import attach, delta_tensors, merged


def _random_delta(model, seed=0):
    """Deltas on some rows of q/k/v/up/gate and some columns of down_proj and o_proj of two layers."""
    gen = torch.Generator().manual_seed(seed)
    slices = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".layers." not in name or ".layers.1." in name:
            continue
        out_f, in_f = module.weight.shape
        axis = "cols" if name.endswith(("down_proj", "o_proj")) else "rows"
        size = in_f if axis == "cols" else out_f
        k = int(torch.randint(1, max(2, size // 3), (1,), generator=gen))
        slices[f"{name}.weight"] = (axis, sorted(torch.randperm(size, generator=gen)[:k].tolist()))
    wrapped = attach(model, slices)
    with torch.no_grad():
        for rd in wrapped.values():
            rd.delta.copy_(torch.randn(rd.delta.shape, generator=gen) * 0.05)
    return wrapped


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_plain_peft_loads_the_adapter_and_merges_to_the_same_weights(architecture, tmp_path):
    from peft import PeftModel

    assert architecture in ARCHITECTURES
    model, _ = build_tiny_model(architecture, seed=0)
    wrapped = _random_delta(model)
    tensors, axes = delta_tensors(wrapped)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with merged(model, wrapped):
        ours = {k: v.clone() for k, v in model.state_dict().items()}
        ours_logits = model(ids).logits
        # a fresh copy of the base model for the adapter (the wrappers are out while merged)
        base_state = {k: v.clone() for k, v in ours.items()}
    for name, rd in wrapped.items():   # the base model's own weights
        base_state[name] = rd.base.weight.detach().clone()

    fresh, _ = build_tiny_model(architecture, seed=0)
    fresh.load_state_dict(base_state)
    lora_adapter(fresh, tensors, axes).save_pretrained(tmp_path / "adapter")

    # a user's side: a plain base model and PEFT, nothing of the delta format
    base, _ = build_tiny_model(architecture, seed=0)
    base.load_state_dict(base_state)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    with torch.no_grad():
        unmerged_logits = loaded(ids).logits
    torch.testing.assert_close(unmerged_logits, ours_logits, rtol=1e-4, atol=1e-5)
    plain = loaded.merge_and_unload()
    theirs = plain.state_dict()
    assert set(theirs) == set(ours)
    for key in ours:
        assert torch.equal(theirs[key], ours[key]), key   # bit for bit
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, ours_logits, rtol=0, atol=0)


def test_factors_put_each_delta_row_or_column_in_place():
    delta = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    a, b = lora_factors(delta, torch.tensor([3, 0]), "rows", (4, 3))
    expected = torch.zeros(4, 3)
    expected[3], expected[0] = delta[0], delta[1]
    assert torch.equal(b @ a, expected)
    cols = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a, b = lora_factors(cols, torch.tensor([4, 1]), "cols", (2, 5))
    expected = torch.zeros(2, 5)
    expected[:, 4], expected[:, 1] = cols[:, 0], cols[:, 1]
    assert torch.equal(b @ a, expected)


def test_an_empty_delta_is_a_clear_error():
    from cca.errors import CCAError

    model, _ = build_tiny_model("llama", seed=0)
    with pytest.raises(CCAError, match="kept the base model"):
        lora_adapter(model, {}, {})


def test_export_command_writes_a_peft_adapter_and_a_merged_model_with_model_cards(tmp_path):
    import json

    import pandas as pd
    from peft import PeftModel
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from cca.circuits.mask_file import save_mask
    from cca.cli import main
    from cca.models.components import component_map
    from cca.models.registry import load_model, prepare_model

    prepare_model("tiny-llama", tmp_path / "ckpt")
    model, _ = load_model(tmp_path / "ckpt")
    wrapped = _random_delta(model)
    tensors, axes = delta_tensors(wrapped)
    run = tmp_path / "run"
    run.mkdir()
    save_file(tensors, str(run / "delta.safetensors"), metadata={"axes": json.dumps(axes), "chosen": "x"})
    summary = {"variant": "mask", "seed": 0, "examples": 12, "pairs": 20, "base_val_accuracy": 0.25,
               "best": {"config": "lambda=0.1 lr=3e-05", "lambda": 0.1, "lr": 3e-5, "step": 4, "val_accuracy": 0.375},
               "trainable_delta_values": sum(int(t.numel()) for k, t in tensors.items() if k.endswith(".delta"))}
    (run / "update.json").write_text(json.dumps(summary))
    questions = pd.DataFrame({"seed": 0, "set": "test", "instance_id": [f"i{i}" for i in range(40)],
                              "template_id": [f"t{i % 4}" for i in range(40)]})
    questions.assign(correct=[i % 3 == 0 for i in range(40)]).to_parquet(tmp_path / "orig.parquet")
    questions.assign(correct=[i % 2 == 0 for i in range(40)]).to_parquet(tmp_path / "this.parquet")
    # a mask selecting the first head of each kind in layer 0 and three neurons of layer 1
    sites = component_map(load_model(tmp_path / "ckpt")[0]).sites
    selected = {site.name: torch.zeros(site.count, dtype=torch.bool) for site in sites}
    for site in sites:
        if site.layer == 0 and site.kind != "mlp":
            selected[site.name][0] = True
        if site.layer == 1 and site.kind == "mlp":
            selected[site.name][:3] = True
    save_mask(tmp_path / "mask.safetensors", {}, selected, {"lambda": 0.1})
    main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--update-dir", str(run), "--mask",
          str(tmp_path / "mask.safetensors"), "--math",
          str(tmp_path / "this.parquet"), "--original-math", str(tmp_path / "orig.parquet"), "--out", str(tmp_path / "out")])

    with merged(model, wrapped):
        ours = {k: v.clone() for k, v in model.state_dict().items()}
    base, _ = load_model(tmp_path / "ckpt")
    from_adapter = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter").merge_and_unload().state_dict()
    from_merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "merged").state_dict()
    for key in ours:
        assert torch.equal(from_adapter[key], ours[key]) and torch.equal(from_merged[key], ours[key]), key
    for folder, library in (("adapter", "peft"), ("merged", "transformers")):
        card = (tmp_path / "out" / folder / "README.md").read_text()
        assert card.startswith("---\nbase_model: ") and f"library_name: {library}\n" in card
        assert "validation accuracy 37.5 (base model 25.0" in card and "lambda 0.1, lr 3e-05, step 4" in card
        # test: 50.0 vs 35.0 (per-template means), the difference with its interval
        assert "| test | 50.0 | 35.0 | +15.0 [" in card and "cca export --checkpoint" in card
        # heads and neurons per layer, from the mask over the model's components
        assert "| layer | k | mlp | q | v |\n|---|---|---|---|---|\n| 0 | 1 | 0 | 1 | 1 |\n| 1 | 0 | 3 | 0 | 0 |" in card


def test_export_needs_both_math_tables(tmp_path):
    from cca.cli import main

    (tmp_path / "run").mkdir()
    for name in ("update.json", "delta.safetensors"):
        (tmp_path / "run" / name).write_text("{}")
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", str(tmp_path), "--update-dir", str(tmp_path / "run"), "--math", "m.parquet",
              "--out", str(tmp_path / "out")])
