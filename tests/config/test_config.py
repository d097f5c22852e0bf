from pathlib import Path

import pytest

from soxai.config import Config, load_config, parse_overrides
from soxai.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_load_config__demo_yaml_equals_defaults():
    assert load_config(REPO / "configs" / "demo.yaml") == Config()


def test_load_config__smoke_yaml_is_valid():
    cfg = load_config(REPO / "configs" / "smoke.yaml")
    assert cfg.name == "smoke"


def test_load_config__override_sets_nested_value():
    cfg = load_config(None, ["concepts.min_cluster_size=33", "retrain.seeds=[1, 2]", "data.artifact=null"])
    assert cfg.concepts.min_cluster_size == 33
    assert cfg.retrain.seeds == (1, 2)
    assert cfg.data.artifact is None


def test_load_config__typo_names_dotted_path_and_suggestion():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["concepts.min_cluster_sise=3"])
    msg = str(err.value)
    assert "concepts.min_cluster_sise" in msg and "did you mean concepts.min_cluster_size" in msg


def test_load_config__bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["saliency.method=gradcamm"])
    assert "saliency.method" in str(err.value) and "gradcam" in str(err.value)


def test_load_config__out_of_range_value_is_error():
    with pytest.raises(ConfigError, match="data.artifact.rate"):
        load_config(None, ["data.artifact.rate=1.5"])


def test_load_config__manifest_source_needs_path():
    with pytest.raises(ConfigError, match="data.manifest"):
        load_config(None, ["data.source=manifest"])


def test_load_config__yaml_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_load_config__yaml_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_config(evil)
    assert not marker.exists()


def test_parse_overrides__rejects_missing_equals():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["concepts.min_cluster_size"])


def test_config__is_frozen():
    cfg = Config()
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        cfg.seed = 3  # type: ignore[misc]


def test_section_hash__changes_only_with_its_sections():
    a, b = Config(), load_config(None, ["concepts.min_cluster_size=99"])
    assert a.section_hash("saliency", "embed") == b.section_hash("saliency", "embed")
    assert a.section_hash("concepts") != b.section_hash("concepts")


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "a\\b", "", "  "])
def test_load_config__name_with_path_parts__refused(name):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"name={name!r}"])
    msg = str(err.value)
    assert "name" in msg and "one folder name" in msg and "e.g. name: my-audit" in msg


def test_load_config__plain_names_accepted():
    assert load_config(None, ["name=my-audit_2"]).name == "my-audit_2"


def test_cli__run_name_escaping_runs_fails_before_any_output(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from soxai.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", "--set", "name=../outside"])
    assert res.exit_code != 0 and "one folder name" in res.output
    assert list(tmp_path.iterdir()) == []


def test_load_config__root_without_image_folder_source__refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"data.root={tmp_path}"])
    msg = str(err.value)
    assert "data.root" in msg and "data.source: image_folder" in msg and "'cells'" in msg


def test_load_config__manifest_without_manifest_source__refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"data.manifest={tmp_path / 'm.csv'}"])
    assert "data.source: manifest" in str(err.value)


def test_load_config__other_user_source_leftover_path__accepted(tmp_path):
    # soxai monitor of an image-folder run, new data from a manifest: data.root is a harmless leftover
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={tmp_path / 'm.csv'}",
                             f"data.root={tmp_path}"])
    assert cfg.data.source == "manifest"


@pytest.mark.parametrize(("override", "written"), [("retrain.seeds=3", "retrain.seeds=[3]"),
                                                   ("retrain.variants=pruned", "retrain.variants=[pruned]")])
def test_load_config__one_value_where_a_list_is_wanted_shows_the_bracket_syntax(override, written):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert f"a list is written in brackets: --set '{written}'" in str(info.value)
    try:  # which is read as a list: the type error is gone (seeds then need two items)
        load_config(None, [written])
    except ConfigError as exc:
        assert "valid tuple" not in str(exc) and "at least 2 items" in str(exc)
