"""docs/deploy.md's container and Kubernetes files, which no test here can run (there is no
Docker engine on these machines): every juggler flag they pass exists, and their time
limits and health checks fit together."""

from __future__ import annotations

import json
import re

import yaml
from juggler.config import OPTIONS
from recipes import recipe


def flags() -> set[str]:
    known = set()
    for option in OPTIONS:
        known.add("--" + option.name.replace("_", "-"))
    return known


def parse_args(args: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of a juggler command line (after the app), checked to exist."""
    assert args[0] == "juggler" and ":" in args[1], args
    known = flags()
    parsed: dict[str, str | None] = {}
    rest = args[2:]
    while rest:
        flag = rest.pop(0)
        assert flag in known, f"{flag} is not a juggler option"
        parsed[flag] = rest.pop(0) if rest and not rest[0].startswith("--") else None
    return parsed


def dockerfile_cmd(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    m = re.search(r"^CMD (\[.*\])\s*$", joined, re.M)
    assert m, "no exec-form CMD"
    return json.loads(m.group(1))


def test_the_dockerfile_runs_juggler_from_the_wheel_as_a_user_with_a_health_check() -> None:
    text = recipe("Dockerfile")
    assert re.search(r"pip install .*juggler-\*\.whl", text)
    user = re.search(r"^USER (\S+)$", text, re.M)
    assert user and user.group(1) not in ("root", "0")
    args = parse_args(dockerfile_cmd(text))
    health = args["--health-path"]
    assert health and f"127.0.0.1:{args['--port']}{health}" in text.replace("\\\n", " ")
    assert float(args["--shutdown-delay"] or 0) > 0


def test_kubernetes_probes_and_grace_period_fit_the_flags() -> None:
    deployment = yaml.safe_load(recipe("kubernetes.yaml"))
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = parse_args(container["args"])
    port = int(args["--port"] or 0)
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert (check["path"], check["port"]) == (args["--health-path"], port), probe
    delay = float(args["--shutdown-delay"] or 0)
    graceful = float(args["--timeout-graceful-shutdown"] or 0)
    assert pod["terminationGracePeriodSeconds"] > delay + graceful
    # Endpoints must drop the pod (readiness failing) before the delay is over...
    ready = container["readinessProbe"]
    assert ready["periodSeconds"] * ready["failureThreshold"] < delay
    # ...and the 503s of the delay must not get it restarted.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > delay
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [p["containerPort"] for p in container["ports"]] == [port]


def test_an_unknown_flag_is_caught() -> None:
    try:
        parse_args(["juggler", "a:app", "--no-such-flag", "1"])
    except AssertionError as e:
        assert "--no-such-flag" in str(e)
    else:
        raise AssertionError("an unknown flag passed")
