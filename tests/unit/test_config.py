"""``orion.yaml`` loading: defaults, validation, and the one error type."""
import pytest

from orion_ray.config import OrionConfig, load_config, orion_home
from orion_ray.errors import ConfigError


def test_no_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg == OrionConfig()
    assert cfg.orion.api.port == 8000 and cfg.orion.api.max_body_bytes == 1_048_576
    assert cfg.orion.scheduler.max_queue_size == 10_000


def test_contract_example_loads(tmp_path):
    f = tmp_path / "orion.yaml"
    f.write_text("orion:\n  api: {port: 9000, max_body_bytes: 2048}\n"
                 "  scheduler: {max_queue_size: 5, cycle_interval_ms: 20}\n"
                 "  tenants:\n    - {id: research, weight: 2, quota: {gpu: 16}}\n")
    cfg = load_config(str(f))
    assert (cfg.orion.api.port, cfg.orion.scheduler.max_queue_size) == (9000, 5)
    assert cfg.orion.tenants[0].id == "research" and cfg.orion.tenants[0].weight == 2


@pytest.mark.parametrize("text, field", [
    ("orion:\n  api: {prot: 9000}\n", "orion.api.prot"),
    ("orion:\n  api: {port: 70000}\n", "orion.api.port"),
    ("orion:\n  scheduler: {max_queue_size: 0}\n", "orion.scheduler.max_queue_size"),
    ("orion:\n  store: {synchronous: off}\n", "orion.store.synchronous"),
    ("orion:\n  mystery: 1\n", "orion.mystery"),
])
def test_invalid_config_names_the_field(tmp_path, text, field):
    f = tmp_path / "orion.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(f))
    assert field in [d["field"] for d in info.value.details]


@pytest.mark.parametrize("text", ["orion: [unclosed", None])
def test_unreadable_config_is_a_config_error(tmp_path, text):
    f = tmp_path / "orion.yaml"
    if text is not None:
        f.write_text(text)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(f))


def test_orion_home_and_store_path_follow_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ORION_HOME", str(tmp_path))
    assert orion_home() == tmp_path
    assert OrionConfig().orion.store.resolved_path() == str(tmp_path / "orion.db")
