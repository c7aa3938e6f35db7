import re
from pathlib import Path

import pytest

from pipeline.config import Secret, load_config, load_credentials
from pipeline.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_examples_load():
    for name in ("example.toml", "sandbox.toml"):
        config = load_config(Path("configs") / name, env={})
        assert config.run.concurrency >= 1


def test_flag_beats_file(tmp_path):
    config = load_config(write(tmp_path, "[run]\nrate = 5\n"), {"run.rate": 40.0}, env={})
    assert config.run.rate == 40.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[run]\nrat = 5\n", "run.rat"),
        ("[runn]\n", "runn"),
        ("[run]\nconcurrency = 'x'\n", "run.concurrency"),
        ("[run]\nrate = 0\n", "run.rate"),
        ("[run]\nresults = 'out.txt'\n", "run.results"),
        ("[columns]\ncontact = 'Contact'\n", "columns.contact"),
        ("[api]\nbase_url = 'http://example.com/crm'\n", "http://"),
        ("[run\n", "not valid TOML"),
        ("[api]\ncheck_echo = 'no'\n", "api.check_echo"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert needle in str(info.value)


def test_the_echo_check_can_be_turned_off(tmp_path):
    assert load_config(None, env={}).api.check_echo is True
    assert load_config(write(tmp_path, "[api]\ncheck_echo = false\n"), env={}).api.check_echo is False


def test_http_allowed_for_loopback(tmp_path):
    config = load_config(None, {"api.base_url": "http://127.0.0.1:8080/crm/"}, env={})
    assert config.api.base_url == "http://127.0.0.1:8080/crm"


def test_credentials_only_from_env():
    config = load_config(None, env={})
    with pytest.raises(ConfigError) as info:
        load_credentials(config, env={"ZYNTRO_API_KEY": "k"})
    assert "ZYNTRO_DEVELOPER_SECRET" in str(info.value)
    creds = load_credentials(config, env={"ZYNTRO_API_KEY": "k", "ZYNTRO_DEVELOPER_SECRET": "zdk_s"})
    assert creds.api_key.reveal() == "k"
    assert "zdk_s" not in repr(creds)


def test_renamed_env_vars_and_default_org(tmp_path):
    path = write(
        tmp_path, '[credentials]\napi_key_env = "MY_KEY"\ndeveloper_secret_env = "MY_SECRET"\norg_id_env = "MY_ORG"\n'
    )
    org = "5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a"
    config = load_config(path, env={"MY_ORG": org})
    assert config.default_org_id == org
    assert load_credentials(config, env={"MY_KEY": "a", "MY_SECRET": "b"}).developer_secret.reveal() == "b"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("", {"ZYNTRO_ORG_ID": "acme-prod"}, "ZYNTRO_ORG_ID must be the default org's UUID; its value is not repeated"),
        ('[input]\ndefault_org_id = "acme"\n', {}, "'input.default_org_id' must be the org's UUID"),
        (
            '[columns]\norg_id = "contact_id"\n',
            {},
            "the column 'contact_id' would be read as both org_id and contact_id",
        ),
        ('[credentials]\napi_key_env = "zk live 9f8e7d6c5b4a"\n', {}, "must name an environment variable"),
        (
            '[orgs."5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a"]\napi_key_env = "K"\n'
            '[orgs."6f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a"]\napi_key_env = "K"\n',
            {},
            "both use K: each org has its own key",
        ),
        (
            '[orgs."5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a"]\napi_key_env = "K1"\n'
            '[orgs."5F0C2A9E-3B1D-4C8E-9A47-2D6B8E1F0C3A"]\napi_key_env = "K2"\n',
            {},
            "is there twice",
        ),
    ],
)
def test_config_mistakes_that_had_settled_rows_for_good_are_refused(tmp_path, text, env, message):
    """Found by a review: each had been accepted, and the rows went out wrong and came back
    `rejected` for good (or INVALID_UUID); the key written as a variable's name was printed."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(path, env=env)
    assert "9f8e7d6c5b4a" not in str(info.value) and "acme-prod" not in str(info.value)


def test_a_config_that_is_not_utf8_is_one_line_not_a_crash(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes("# réglages\n[run]\nrate = 5\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_config(path, env={})


def test_secret_never_prints():
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s}"


def test_a_key_written_where_a_variable_name_belongs_is_never_printed(tmp_path):
    """A name with . or - is a name env, Docker and Kubernetes can set; a key written there is
    then looked up as a variable, and the message must not repeat it (it had: into the cron log)."""
    path = write(tmp_path, '[credentials]\napi_key_env = "zk-live-9f8e7d6c5b4a"\ndeveloper_secret_env = "dev.secret"\n')
    config = load_config(path, env={})
    with pytest.raises(ConfigError) as info:
        load_credentials(config, env={"dev.secret": "zdk_x"})
    assert "9f8e7d6c5b4a" not in str(info.value) and "not in capitals" in str(info.value)
    assert (
        load_credentials(config, env={"zk-live-9f8e7d6c5b4a": "k", "dev.secret": "zdk_x"}).developer_secret.reveal()
        == "zdk_x"
    )


@pytest.mark.parametrize(
    ("pattern", "said"),
    [
        ("%Y-%m-%dT%H:%M:%S%z", "reads a time zone"),
        ("%Y-%m-%dT%H:%M:%S%:z", "reads a time zone"),
        ("%d/%m/%Y %H:%M %Z", "reads a time zone"),
        ("%Q %d", "cannot read back a time it writes"),
        ("%d/%m", "cannot read back a time it writes"),
        ("%d/%m/%Y %H:%M:%S.%f", r"Use `%\.f` instead"),  # Python's spelling: raw warnings on stderr, review h9b
    ],
)
def test_a_datetime_format_that_would_alter_or_never_read_a_time_is_refused(tmp_path, pattern, said):
    """Found by a review (h7b): `%z` converted 09:00+02:00 to 07:00 (UTC) and sent it as 07:00; a
    pattern that can never match made every row INVALID_DATETIME with no word about the pattern."""
    path = tmp_path / "c.toml"
    path.write_text(f'[input]\ndatetime_formats = ["{pattern}"]\n')
    with pytest.raises(ConfigError, match=said):
        load_config(path, env={})
