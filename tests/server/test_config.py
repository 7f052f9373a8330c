"""Server configuration: one TOML file over defaults; secrets only from the environment or a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from review_server.config import ConfigError, ServerConfig, load_config


def test_defaults_run_the_demo_with_production_password_cost() -> None:
    cfg = load_config(None, env={})
    assert cfg == ServerConfig()
    assert cfg.database_url.startswith("sqlite:///") and cfg.media_backend == "local"
    assert (cfg.argon2_time_cost, cfg.argon2_memory_kib) == (3, 65536)
    assert cfg.insecure_cookies is False
    assert cfg.body_timeout_s == 30  # a request body must arrive within this (app.body_deadline)


def test_file_values_relative_paths_and_environment_secrets(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "server.toml"
    path.parent.mkdir()
    path.write_text('media_backend = "s3"\nmedia_dir = "media"\ns3_bucket = "b"\nport = 9000\nbody_timeout_s = 5\n',
                    encoding="utf-8")
    env = {
        "OSCE_DATABASE_URL": "postgresql+psycopg://u:p@db/osce",
        "OSCE_S3_ACCESS_KEY_ID": "AK",
        "OSCE_S3_SECRET_ACCESS_KEY": "SK",
    }
    cfg = load_config(path, env=env)
    assert cfg.media_dir == tmp_path / "conf" / "media"
    assert cfg.port == 9000 and cfg.s3_bucket == "b" and cfg.body_timeout_s == 5
    assert cfg.database_url == env["OSCE_DATABASE_URL"]
    assert cfg.s3_credentials() == ("AK", "SK")
    assert "SK" not in repr(cfg)


def test_credentials_file(tmp_path: Path) -> None:
    creds = tmp_path / "s3.toml"
    creds.write_text('access_key_id = "A"\nsecret_access_key = "S"\n', encoding="utf-8")
    path = tmp_path / "server.toml"
    path.write_text(f's3_credentials_file = "{creds}"\n', encoding="utf-8")
    assert load_config(path, env={}).s3_credentials() == ("A", "S")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('s3_secret_access_key = "x"\n', "s3_secret_access_key"),
        ('databse_url = "x"\n', "databse_url"),
        ('port = "80"\n', "port"),
        ("insecure_cookies = 1\n", "insecure_cookies"),
        ('media_backend = "ftp"\n', "media_backend"),
        ("port = \n", "server.toml"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value) or "<defaults>" in str(info.value)
    assert names in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})
