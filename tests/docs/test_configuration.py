"""docs/configuration.md is generated from the Settings classes and kept in step with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from docs import gen_config


def test_the_reference_is_in_step_with_the_settings_classes() -> None:
    written = gen_config.OUTPUT.read_text(encoding="utf-8")
    assert written == gen_config.render(), (
        "docs/configuration.md is out of step: run `uv run python -m docs.gen_config`"
    )


def test_every_variable_of_every_service_is_documented() -> None:
    text = gen_config.render()
    for settings_class in gen_config.SERVICES.values():
        for name in gen_config.env_vars(settings_class):
            assert f"| `{name}` |" in text, name


def test_the_check_fails_on_a_stale_file_until_it_is_regenerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "configuration.md"
    target.write_text(gen_config.render().replace("`ADMIN_API_KEY`", "`ADMIN_KEY`"))
    monkeypatch.setattr(gen_config, "OUTPUT", target)
    assert gen_config.main(["--check"]) == 1
    assert gen_config.main([]) == 0
    assert gen_config.main(["--check"]) == 0
