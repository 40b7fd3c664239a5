"""Settings: defaults < TOML file < NEXUS_* environment < flags; bad values are clear errors."""

from pathlib import Path

import pytest

from nexus_app.config import ConfigError, load_settings


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('port = 9001\nhost = "0.0.0.0"\nworker_share_percent = 70\n')
    env = {"NEXUS_CONFIG": str(config), "NEXUS_PORT": "9002"}
    settings = load_settings({"host": None}, environ=env)
    assert (settings.port, settings.host, settings.worker_share_percent) == (9002, "0.0.0.0", 70)
    assert load_settings({"port": 9003}, environ=env).port == 9003
    assert load_settings({}, environ={"NEXUS_CONFIG": str(tmp_path / "none.toml")}).port == 8080


def test_tables_from_toml_and_json_env(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[prices."m-1"]\nper_request = 5\n')
    assert load_settings({"config": config}, environ={}).prices["m-1"].per_request == 5
    env = {"NEXUS_PRICES": '{"m-2": {"output_per_million": 9}}'}
    assert load_settings({"config": config}, environ=env).prices["m-2"].output_per_million == 9


def test_data_dir_paths(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path}, environ={})
    assert settings.db_path.parent == tmp_path
    assert settings.wallet_path == tmp_path / "wallet.json"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NEXUS_PORT": "eighty"}, "port"),
        ({"NEXUS_WORKER_SHARE_PERCENT": "120"}, "worker_share_percent"),
        ({"NEXUS_PRICES": "{not json"}, "NEXUS_PRICES"),
        ({"NEXUS_PRICES": '{"m": {"per_request": -1}}'}, "per_request"),
    ],
)
def test_invalid_values_are_named(environ: dict[str, str], message: str, tmp_path: Path) -> None:
    environ = {"NEXUS_CONFIG": str(tmp_path / "none.toml"), **environ}
    with pytest.raises(ConfigError, match=message):
        load_settings({}, environ=environ)


def test_unreadable_toml_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("port = = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings({"config": config}, environ={})


def test_the_example_config_is_valid() -> None:
    from nexus_app.gateway.money.pricing import PriceBook

    example = Path(__file__).resolve().parent.parent / "assets" / "config.example.toml"
    settings = load_settings({"config": example}, environ={})
    price = PriceBook(settings).for_model("smollm2-135m-instruct-q4_1")
    assert price.output_per_million == 400_000  # 0.02 USD at 0.05 USD/NEXUS, 6 decimals
