"""The option declarations: validators that take text or typed values, errors that name the
flag (from Python and from Rust), the groups the core reads, and the README's generated tables
(no server)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import juggler
import pytest
from juggler import _juggler, validators
from juggler.config import BY_NAME, GROUPS, OPTIONS, Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "options_doc.py"


@pytest.mark.parametrize(
    ("validate", "given", "expected"),
    [
        (validators.integer(1), "3", 3),
        (validators.integer(1), " 3 ", 3),
        (validators.integer(1), 3, 3),
        (validators.integer(0, 65535), "65535", 65535),
        (validators.seconds, "2.5", 2.5),
        (validators.seconds, 2, 2.0),
        (validators.seconds, 0.25, 0.25),
        (validators.boolean, "yes", True),
        (validators.boolean, "Off", False),
        (validators.boolean, True, True),
        (validators.text, "x", "x"),
        (validators.text, 2, "2"),
        (validators.one_of("auto", "2"), "2", "2"),
        (validators.one_of("auto", "2"), 2, "2"),
        (validators.url_path, "/health", "/health"),
        (validators.host_port, ":9000", ":9000"),
        (validators.host_port, "[::1]:9000", "[::1]:9000"),
        (validators.header, "x-a: 1", ("x-a", "1")),
        (validators.header, ("x-a", "1"), ("x-a", "1")),
        (validators.header, ["x-a", "1"], ("x-a", "1")),
        (validators.many(validators.text), "a,b,", ("a", "b")),
        (validators.many(validators.text), ["a", "b"], ("a", "b")),
        (validators.many(validators.header), ["x-a:1", ("x-b", "2")], (("x-a", "1"), ("x-b", "2"))),
        (validators.hook, "hooks:worker_start", "hooks:worker_start"),
        (validators.hook, "pkg.hooks:obj.start", "pkg.hooks:obj.start"),
        (validators.hook, len, len),
    ],
)
def test_validators_take_text_and_typed_values(validate, given, expected):
    value = validate(given)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("validate", "given", "error"),
    [
        (validators.integer(1), "0", "at least 1"),
        (validators.integer(1), "x", "invalid literal"),
        (validators.integer(0, 65535), 65536, "between 0 and 65535"),
        (validators.integer(0), True, "not bool"),
        (validators.integer(0), 2.0, "not float"),
        (validators.integer(0), "2.0", "invalid literal"),
        (validators.seconds, "-1", "non-negative"),
        (validators.seconds, math.nan, "non-negative"),
        (validators.seconds, False, "not bool"),
        (validators.seconds, [1], "not list"),
        (validators.boolean, "maybe", "true or false"),
        (validators.boolean, 1, "not int"),
        (validators.text, True, "not bool"),
        (validators.text, ["a"], "not list"),
        (validators.one_of("auto", "2"), "3", "choose from auto, 2"),
        (validators.url_path, "health", "start with '/'"),
        (validators.host_port, 9000, "not int"),
        (validators.host_port, "9000", "HOST:PORT"),
        (validators.host_port, "::1:9000", "brackets"),
        (validators.header, "no-colon", "NAME:VALUE"),
        (validators.header, ("x-a", 1), "pair of texts"),
        (validators.many(validators.text), 3, "not int"),
        (validators.many(validators.text), [True], "not bool"),
        (validators.hook, "hooks", "module:function"),
        (validators.hook, ":start", "module:function"),
        (validators.hook, "hooks: ", "module:function"),
        (validators.hook, 3, "not int"),
    ],
)
def test_validators_refuse_wrong_values_and_types(validate, given, error):
    with pytest.raises((TypeError, ValueError), match=error):
        validate(given)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"metrics_bind": 9000}, "--metrics-bind"),
        ({"fd": True}, "--fd"),
        ({"port": True}, "--port"),
        ({"port": 8000.0}, "--port"),
        ({"limit_request_body": 1e6}, "--limit-request-body"),
        ({"limit_request_body": -1}, "--limit-request-body"),
        ({"timeout_keep_alive": True}, "--timeout-keep-alive"),
        ({"timeout_keep_alive": "soon"}, "--timeout-keep-alive"),
        ({"access_log": 1}, "--access-log"),
        ({"header": [("x-a", 1)]}, "--header"),
        ({"header": 5}, "--header"),
        ({"health_path": "health"}, "--health-path"),
        ({"static_path_route": "static"}, "--static-path-route"),
        ({"ws": "yes"}, "--ws"),
        ({"root_path": ["a"]}, "--root-path"),
        ({"worker_start": 3}, "--worker-start"),
        ({"on_exit": "hooks"}, "--on-exit"),
        ({"max_worker_memory": 0}, "--max-worker-memory"),
        ({"max_worker_memory": 1.5}, "--max-worker-memory"),
    ],
)
def test_wrong_types_name_the_flag(options, flag):
    with pytest.raises(ConfigError, match=f"for {flag}( |:)"):
        Config.resolve("x:app", options, env={})


def test_every_checked_option_names_its_flag_for_a_value_of_no_type_it_takes():
    for option in OPTIONS:
        with pytest.raises(ConfigError) as info:
            option.convert(object(), "juggler.run()")
        assert f"for {option.flag} (from juggler.run())" in str(info.value)


def test_typed_values_are_kept_and_text_is_converted():
    options = {"port": 0, "timeout_keep_alive": 2, "http": 2, "header": [("x-a", "1")]}
    config = Config.resolve("x:app", options, env={"JUGGLER_LIMIT_REQUEST_BODY": "10"})
    assert config.port == 0
    assert config.timeout_keep_alive == 2.0 and isinstance(config.timeout_keep_alive, float)
    assert config.http == "2"
    assert config.header == (("x-a", "1"),)
    assert config.limit_request_body == 10


def test_juggler_run_raises_config_error_naming_the_flag():
    with pytest.raises(juggler.ConfigError, match="--metrics-bind") as info:
        juggler.run("x:app", metrics_bind=9000)
    # A bad keyword argument is a TypeError too, as juggler.run() always raised.
    assert isinstance(info.value, TypeError)
    with pytest.raises(juggler.ConfigError, match="--fd"):
        juggler.run("x:app", fd=True)


def test_one_config_error_class_from_rust():
    assert juggler.ConfigError is _juggler.ConfigError
    assert juggler.config.ConfigError is _juggler.ConfigError
    assert issubclass(juggler.ConfigError, ValueError)


def _core(**options):
    return _juggler.CoreConfig(Config.resolve("x:app", options, env={}))


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"max_header_size": 100}, "--max-header-size must be at least 1024 bytes, got 100"),
        ({"static_path_route": "/s", "static_path_mount": "/no/such/dir"}, "--static-path-mount"),
        ({"static_path_route": "/s"}, "--static-path-route and --static-path-mount go together"),
        ({"access_log_format": "%(zz)s"}, "--access-log-format"),
        ({"access_log_format": "%(h)s", "access_log_json": True}, "--access-log-json"),
        ({"header": ["bad name:x"]}, "--header: invalid name"),
        ({"forwarded_allow_ips": "10.0.0.300"}, "--forwarded-allow-ips"),
        # Finite, but more seconds than a Duration holds: an error, not a panic.
        ({"timeout_keep_alive": 1e20}, "--timeout-keep-alive is too long"),
        ({"timeout_write": 1e20}, "--timeout-write is too long"),
        ({"timeout_request": "inf"}, "--timeout-request must be a non-negative number"),
    ],
)
def test_the_core_raises_config_error_naming_the_flag(options, flag):
    with pytest.raises(ConfigError, match=flag.replace("(", r"\(")) as info:
        _core(**options)
    assert type(info.value) is _juggler.ConfigError
    assert "invalid option" not in str(info.value)


def test_the_core_checks_what_python_let_through():
    # Built by hand, as a caller other than Config.resolve might: Rust's own checks hold.
    config = Config.resolve("x:app", {}, env={})
    groups = {name: getattr(config, name) for name in GROUPS}
    groups["websocket"] = SimpleNamespace(**{**vars_of(groups["websocket"]), "ws_max_size": 0})
    with pytest.raises(ConfigError, match="--ws-max-size"):
        _juggler.CoreConfig(SimpleNamespace(**groups))
    with pytest.raises(ConfigError, match="--threads must be at least 1"):
        wsgi = SimpleNamespace(threads=0, queue_size=None, queue_timeout=0.0)
        _juggler.WsgiInterface(None, None, None, None, None, wsgi)


def test_more_http2_streams_than_the_protocol_counts_is_refused_in_python():
    with pytest.raises(ConfigError, match="--h2-max-concurrent-streams"):
        Config.resolve("x:app", {"h2_max_concurrent_streams": 2**32}, env={})
    assert Config.resolve("x:app", {"h2_max_concurrent_streams": 2**32 - 1}, env={})


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_trusted_list_means_the_default_loopback(empty):
    # As before the options were regrouped: JUGGLER_FORWARDED_ALLOW_IPS= in an env file.
    assert repr(_core(forwarded_allow_ips=empty)) == repr(_core())
    assert "127.0.0.1" in repr(_core(forwarded_allow_ips=empty))


def vars_of(group):
    return {name: getattr(group, name) for name in group.__dataclass_fields__}


def test_groups_carry_the_options_under_their_own_names():
    config = Config.resolve("x:app", {"limit_request_body": 5, "timeout_keep_alive": 7}, env={})
    assert config.limits.limit_request_body == 5
    assert config.timeouts.timeout_keep_alive == 7.0
    assert config.access.access_log_format is None
    grouped = [o.name for o in OPTIONS if o.group]
    assert sorted(grouped) == sorted(f for g in GROUPS for f in vars_of(getattr(config, g)))
    assert all(BY_NAME[name].group for name in vars_of(config.wsgi))
    with pytest.raises(AttributeError):
        config.nothing  # noqa: B018


def test_the_core_reads_the_options_it_is_given():
    core = repr(_core(limit_request_body=123, timeout_keep_alive=0, ws="none", header=["x-a:1"]))
    assert "body: Some(123)" in core
    assert "timeout_keep_alive: None" in core
    assert "ws: None" in core
    assert '("x-a", "1")' in core
    core = repr(_core())
    assert '("server", "juggler")' in core and "body: None" in core


def _check(readme: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", str(readme)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_readme_tables_are_generated_from_the_declarations(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    assert _check(readme).returncode == 0, _check(readme).stderr
    text = readme.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `--limit-request-body"))
    readme.write_text(text.replace(row, row.replace("largest request body", "biggest body")))
    out = _check(readme)
    assert out.returncode == 1
    assert "differ from python/juggler/config.py" in out.stderr
    # Without --check the tables are written back, and the text around them is kept.
    subprocess.run([sys.executable, str(SCRIPT), str(readme)], check=True, timeout=60)
    assert readme.read_text() == text


def test_the_readme_check_needs_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no tables\n")
    out = _check(readme)
    assert out.returncode == 1 and "markers" in out.stderr


def _rust_groups() -> dict[str, set[str]]:
    """The fields of each group struct in src/options.rs, by the attribute it is read from."""
    source = (ROOT / "src" / "options.rs").read_text()
    structs = dict(re.findall(r"pub struct (\w+) \{(.*?)\n\}", source, re.DOTALL))
    fields = {name: set(re.findall(r"pub (\w+):", body)) for name, body in structs.items()}
    groups = dict(re.findall(r"pub (\w+): (\w+),", structs["CoreOptions"]))
    found = {group: fields[struct] for group, struct in groups.items()}
    found["wsgi"] = fields["Wsgi"]
    return found


def test_python_groups_and_rust_structs_list_the_same_options():
    # An option added to a group in config.py but not read in Rust would be silently ignored.
    python = {g: {o.name for o in OPTIONS if o.group == g} for g in GROUPS}
    assert python == _rust_groups()
