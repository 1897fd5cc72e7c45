"""Settings objects and registries: one source for every setting and every name list."""
import dataclasses
import json

import pytest

from cca.config import ROOT, _schema, load_config, model_settings
from cca.errors import CCAError
from cca.settings import Settings

TINY = ROOT / "tests" / "data" / "config_tiny.yaml"


def stage_classes():
    from cca.cli import dcm, evaluation, generation, localization, lora, table, update

    return [generation.GreedyTracesSettings, generation.OppositeTracesSettings, localization.LocalizeSettings,
            dcm.MaskSettings, update.UpdateSettings, lora.LoRASettings, evaluation.MathEvalSettings,
            evaluation.GeneralEvalSettings, table.TableSettings]


def section_classes():
    from cca.circuits.config import DCMConfig
    from cca.evaluate.config import GeneralConfig
    from cca.localize.config import LocalizationConfig
    from cca.tasks.config import TaskConfig
    from cca.traces.config import GenerationConfig, SamplingConfig
    from cca.update.config import LoRAConfig, UpdateConfig

    return [DCMConfig, GeneralConfig, LocalizationConfig, TaskConfig, GenerationConfig, SamplingConfig,
            LoRAConfig, UpdateConfig]


@pytest.mark.parametrize("model", ["tiny-gsm", "tiny-llama"])
def test_every_stage_object_round_trips_through_its_json(model):
    s = model_settings(load_config(TINY), model)
    for cls in stage_classes():
        obj = cls.from_model(s)
        assert cls.from_json(obj.to_json()) == obj, cls.__name__


def test_no_settings_field_has_a_default():
    """Defaults live in the schema only."""
    for cls in stage_classes() + section_classes():
        with_default = [f.name for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert not with_default, (cls.__name__, with_default)


def test_every_section_field_is_a_schema_key_and_every_schema_key_a_field():
    from cca.config import schema_node

    for cls in section_classes():
        keys = set(schema_node(cls.schema_path)["properties"])
        assert {f.name for f in dataclasses.fields(cls)} == keys, cls.__name__


def test_a_hand_written_settings_gets_the_schema_defaults_and_names_what_is_missing():
    from cca.cli.dcm import MaskSettings

    st = MaskSettings.from_json(json.dumps({"dcm": {"lr": 0.1, "epochs": 1, "batch_size": 2}}))
    assert st.dcm.lr_step_size == _schema()["$defs"]["profile"]["properties"]["dcm"]["properties"]["lr_step_size"][
        "default"]
    assert st.dcm.lambdas is None and st.device_map is None
    with pytest.raises(CCAError, match=r"--settings.dcm: 'epochs' is missing"):
        MaskSettings.from_json(json.dumps({"dcm": {"lr": 0.1, "batch_size": 2}}))
    with pytest.raises(CCAError, match=r"unknown settings \['lrr'\]"):
        MaskSettings.from_json(json.dumps({"dcm": {"lrr": 0.1, "epochs": 1, "batch_size": 2}}))
    with pytest.raises(CCAError, match="not valid JSON"):
        MaskSettings.from_json("{dcm")


def test_a_lambda_or_a_method_is_not_part_of_the_settings_of_one_job():
    """Adding a lambda re-runs only its mask; adding a method re-runs only its own localization; choosing
    other controls re-runs no update."""
    from cca.cli.dcm import MaskSettings
    from cca.cli.localization import LocalizeSettings
    from cca.cli.update import UpdateSettings

    config = load_config(TINY)
    before = model_settings(config, "tiny-gsm")
    config["profiles"]["tiny"]["dcm"]["lambdas"].append(0.5)
    config["profiles"]["tiny"]["localization"]["methods"] = ["prefix"]
    config["profiles"]["tiny"]["controls"] = ["body"]
    after = model_settings(config, "tiny-gsm")
    assert MaskSettings.from_model(before) == MaskSettings.from_model(after)
    assert LocalizeSettings.from_model(before) == LocalizeSettings.from_model(after)
    assert UpdateSettings.from_model(before) == UpdateSettings.from_model(after)   # a control re-runs no update


def test_a_registered_localization_method_reaches_schema_wildcards_cli_and_configurations(monkeypatch):
    import cca.config
    from cca import layout
    from cca.cli import build_parser
    from cca.localize import methods

    extra = methods.Method("oracle", generates=False, prefix_source="greedy", no_pivot="none",
                           find=methods.prefix_pivots)
    monkeypatch.setitem(methods.METHODS, "oracle", extra)
    cca.config._schema.cache_clear()
    try:
        profile = cca.config._schema()["$defs"]["profile"]["properties"]
        assert "oracle" in profile["localization"]["properties"]["methods"]["items"]["enum"]
        assert {"cca-oracle-mask", "cca-oracle-nomask", "cca-oracle-random", "cca-oracle-body"} <= set(
            profile["general"]["properties"]["configurations"]["items"]["enum"])
        assert layout.all_configurations()[-5:] == ["cca-oracle-mask", "cca-oracle-nomask", "cca-oracle-random",
                                                    "cca-oracle-body", "lora"]
        assert layout.run_dir("cca-oracle-mask", 2) == "seed2/oracle/mask"
        assert layout.label("cca-oracle-nomask") == "CCA oracle, w/o mask"
        args = build_parser().parse_args(["localize", "--method", "oracle", "--checkpoint", "c", "--greedy", "g",
                                          "--opposite", "o", "--settings", "{}", "--out", "x"])
        assert args.method == "oracle"
    finally:
        monkeypatch.undo()
        cca.config._schema.cache_clear()


def test_cli_has_one_handler_shape():
    """Every subcommand's handler takes the parsed arguments and nothing else."""
    import argparse
    import inspect

    from cca.cli import build_parser

    def leaves(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from leaves(sub)
        if parser.get_default("run"):
            yield parser

    found = list(leaves(build_parser()))
    assert len(found) >= 13
    for p in found:
        assert list(inspect.signature(p.get_default("run")).parameters) == ["args"], p.prog


def test_settings_is_the_base_of_every_settings_object():
    assert all(issubclass(c, Settings) for c in stage_classes() + section_classes())
