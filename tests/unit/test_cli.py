"""The ``orion`` command line: every command parses with its flags."""

import pytest

from orion_ray import cli


@pytest.fixture
def parse():
    return cli.build_parser().parse_args


def test_up_defaults(parse):
    a = parse(["up"])
    assert a.fn is cli.cmd_up
    assert (a.address, a.config, a.port, a.num_cpus, a.num_gpus, a.resources) == (None,) * 6
    assert (a.ray_port, a.dashboard_port, a.output) == (6379, 8265, "table")


def test_up_with_every_flag(parse):
    a = parse(
        [
            "up",
            "--address",
            "10.0.0.1:6379",
            "--config",
            "o.yaml",
            "--port",
            "9000",
            "--num-cpus",
            "4",
            "--num-gpus",
            "0.5",
            "--resources",
            '{"accel": 2}',
            "--ray-port",
            "7000",
            "--dashboard-port",
            "9265",
            "-o",
            "json",
        ]
    )
    assert (a.address, a.config, a.port) == ("10.0.0.1:6379", "o.yaml", 9000)
    assert (a.num_cpus, a.num_gpus, a.resources) == (4.0, 0.5, '{"accel": 2}')
    assert (a.ray_port, a.dashboard_port, a.output) == (7000, 9265, "json")


def test_down(parse):
    assert parse(["down"]).fn is cli.cmd_down


def test_submit(parse):
    a = parse(["submit", "job.yaml"])
    assert (a.fn, a.file, a.wait, a.timeout, a.output) == (cli.cmd_submit, "job.yaml", False, None, "table")
    a = parse(["submit", "-", "--wait", "--timeout", "30", "--output", "json"])
    assert (a.file, a.wait, a.timeout, a.output) == ("-", True, 30.0, "json")


@pytest.mark.parametrize("command, fn", [("status", cli.cmd_status), ("cancel", cli.cmd_cancel)])
def test_commands_on_one_workload(parse, command, fn):
    a = parse([command, "wl-123", "-o", "json"])
    assert (a.fn, a.id, a.output) == (fn, "wl-123", "json")


def test_list(parse):
    a = parse(["list"])
    assert (a.fn, a.status, a.tenant, a.limit, a.cursor) == (cli.cmd_list, None, None, 50, None)
    a = parse(["list", "--status", "queued", "--tenant", "acme", "--limit", "5", "--cursor", "17"])
    assert (a.status, a.tenant, a.limit, a.cursor) == ("queued", "acme", 5, 17)


def test_logs(parse):
    a = parse(["logs", "wl-1"])
    assert (a.fn, a.id, a.follow) == (cli.cmd_logs, "wl-1", False)
    assert parse(["logs", "wl-1", "-f"]).follow is True
    assert parse(["logs", "wl-1", "--follow"]).follow is True


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["status"],
        ["submit"],
        ["list", "--limit", "x"],
        ["status", "wl-1", "-o", "yaml"],
        ["up", "--port", "http"],
    ],
)
def test_bad_command_lines_exit_2(parse, argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2


def test_main_reports_orion_errors_in_one_line(monkeypatch, capsys):
    from orion_ray.errors import NotFound

    def boom(args):
        raise NotFound("no workload 'wl-x'", [{"field": "id", "problem": "unknown"}])

    monkeypatch.setattr(cli, "cmd_status", boom)
    assert cli.main(["status", "wl-x"]) == 2
    err = capsys.readouterr().err
    assert err == "error: no workload 'wl-x' (id: unknown)\n"


# -- serving commands ----------------------------------------------------------------------------
def test_serving_commands_parse(parse):
    from orion_ray.serving import cli as scli

    assert parse(["deploy", "m.yaml"]).fn is scli.cmd_deploy
    a = parse(["deployments", "--model", "m", "--tenant", "t", "-o", "json"])
    assert (a.fn, a.model, a.tenant, a.output) == (scli.cmd_deployments, "m", "t", "json")
    a = parse(["scale", "m", "--max", "4", "--min", "0", "--version", "v2"])
    assert (a.fn, a.model, a.replicas, a.min, a.max, a.version) == (scli.cmd_scale, "m", None, 0, 4, "v2")
    assert parse(["undeploy", "m--v1"]).id == "m--v1"
    assert parse(["release", "m", "--rollback"]).rollback is True
    assert parse(["up", "--demo"]).demo is True and parse(["up"]).demo is False
    from orion_ray.serving.specs import DeploymentSpec

    assert DeploymentSpec.model_validate(scli.DEMO_MODEL).engine == "cpu"


def test_deploy_file_holds_deployments_and_releases():
    from orion_ray.serving.cli import documents

    deps, rels = documents(
        "model_id: a\n---\nmodel_id: a\nstrategy: canary\n---\n"
        "deployments: [{model_id: b}, {model_id: b, version: v2}]\n"
        "release: {model_id: b, stable: v1}\n"
    )
    assert [d["model_id"] for d in deps] == ["a", "b", "b"]
    assert [r["model_id"] for r in rels] == ["a", "b"]
    with pytest.raises(SystemExit):
        documents("- a\n- b\n")


def test_the_readme_example_deploy_file_is_valid():
    from pathlib import Path

    from orion_ray.serving.cli import documents
    from orion_ray.serving.specs import DeploymentSpec, ReleaseSpec

    path = Path(__file__).resolve().parents[2] / "serve_apps/llm/examples/chat-canary.yaml"
    deps, rels = documents(path.read_text())
    assert [DeploymentSpec.model_validate(d).id for d in deps] == ["chat--v1", "chat--v2"]
    assert ReleaseSpec.model_validate(rels[0]).steps[1].duration == 600
