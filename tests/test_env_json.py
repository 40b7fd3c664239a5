"""Which settings are read as JSON from the environment follows from their types."""

from pathlib import Path
from typing import Literal

from nexus_app.config import Settings
from nexus_app.config_gateway import ModelPrice
from nexus_app.env_json import is_json_type


def test_lists_tables_and_models_are_json_and_scalars_are_not() -> None:
    for annotation in (list[str], dict[str, ModelPrice], ModelPrice, list[str] | None):
        assert is_json_type(annotation), annotation
    for annotation in (str, int, Path | None, Literal["local", "remote"] | None, bool):
        assert not is_json_type(annotation), annotation


def test_the_json_settings_are_the_prices_origins_and_models() -> None:
    json_fields = {name for name, field in Settings.model_fields.items()
                   if is_json_type(field.annotation)}
    assert json_fields == {"default_price", "prices", "cors_allowed_origins", "models"}
