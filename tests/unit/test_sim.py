"""Trace simulator on tiny hand-made CSV files with known answers, and the `simulate` CLI."""

import argparse
import json

import numpy as np
import pytest

from orion_ray.sim import read_nodes, read_pods, replay, report_points, unallocated_at, workload
from orion_ray.sim.cli import add_simulate_parser, parse_seeds, simulate_main

NODE_HEAD = "sn,cpu_milli,memory_mib,gpu,model\n"
POD_HEAD = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
    "deletion_time,scheduled_time\n"
)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.fixture
def two_gpu_nodes(tmp_path):
    return write(tmp_path, "nodes.csv", NODE_HEAD + "n0,8000,1000,1,T4\nn1,8000,1000,1,V100\n")


def test_reads_both_pod_list_formats(tmp_path):
    full = write(
        tmp_path,
        "full.csv",
        POD_HEAD + "p0,4000,100,1,500,T4|V100,LS,Running,0,10,0\np1,2000,50,0,0,,BE,Running,0,1,0\n",
    )
    short = write(
        tmp_path,
        "short.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,4000,100,1,500\np1,2000,50,0,0\n",
    )
    a, b = read_pods(full), read_pods(short)
    assert [p.req.cpu for p in a] == [p.req.cpu for p in b] == [4000, 2000]
    assert a[0].req.milli == 500 and a[0].req.types == frozenset({"T4", "V100"})
    assert b[0].req.types is None and a[1].req.num_gpu == 0
    with pytest.raises(ValueError):
        read_pods(write(tmp_path, "bad.csv", "name,cpu_milli\np,1\n"))


def test_reads_nodes_with_and_without_gpus(tmp_path):
    nodes = read_nodes(write(tmp_path, "n.csv", NODE_HEAD + "a,32000,262144,0,\nb,64000,1,2,P100\n"))
    assert nodes[0].gpus == 0 and nodes[0].model is None
    assert nodes[1].gpus == 2 and nodes[1].model == "P100"


def test_resampling_stops_before_passing_the_target(tmp_path):
    pods = read_pods(write(tmp_path, "p.csv", POD_HEAD + "p0,1000,1,1,500,,LS,Running,0,1,0\n"))
    seq = workload(pods, capacity_milli=2000, seed=42, max_arrived=130)
    # 500 milli each on 2 GPUs: 5 pods = 2500 (125 %); a sixth would pass 130 %.
    assert len(seq) == 5
    assert workload(pods, 2000, 42) == workload(pods, 2000, 42)  # seeded


def test_every_pod_fits_known_curve(tmp_path, two_gpu_nodes):
    pods = read_pods(
        write(tmp_path, "p.csv", POD_HEAD + "a,1000,10,1,1000,,LS,R,0,1,0\nb,1000,10,1,1000,,LS,R,0,1,0\n")
    )
    for policy in ("best_fit", "fgd", "orion", "random"):
        res = replay(read_nodes(two_gpu_nodes), pods, policy, seed=42)
        # Two whole-GPU pods on two GPUs: arrived 50 % then 100 %, nothing fails, no resampling
        # (a third pod would take 150 % > 130 %).
        assert list(res.arrived_pct) == [50.0, 100.0]
        assert list(res.allocated_pct) == [50.0, 100.0]
        assert res.failed == 0
        assert res.unallocated["100"] == 0.0 and res.unallocated["50"] == 50.0


def test_cpu_and_type_constraints_make_pods_fail(tmp_path, two_gpu_nodes):
    pods = read_pods(
        write(
            tmp_path,
            "p.csv",
            POD_HEAD + "big,9000,10,1,1000,,LS,R,0,1,0\n"  # more CPU than any node
            "t4,1000,10,1,1000,T4,LS,R,0,1,0\n",
        )
    )
    res = replay(read_nodes(two_gpu_nodes), pods, "orion", seed=1, max_arrived=100)
    assert res.failed >= 1 and res.placed >= 1
    # Only the T4 pods can ever be placed, and only one fits (one T4 GPU).
    assert res.allocated_pct.max() == 50.0


def test_metric_averages_arrivals_that_round_to_the_point():
    arrived = np.array([9.6, 10.2, 10.4, 20.0, 40.0])
    allocated = np.array([9.0, 10.0, 8.0, 19.0, 30.0])
    out = unallocated_at(arrived, allocated, [10, 20, 30])
    assert out["10"] == pytest.approx(100 - 9.0)  # mean of 9, 10, 8
    assert out["20"] == pytest.approx(81.0)
    assert out["30"] == pytest.approx(81.0)  # nothing rounds to 30: last value before it


def test_report_points():
    pts = report_points(130)
    assert pts[:3] == [10, 20, 30] and 95 in pts and 105 in pts and pts[-1] == 130
    assert 105 not in report_points(100)


def test_parse_seeds():
    assert parse_seeds("42-45") == [42, 43, 44, 45]
    assert parse_seeds("42,43") == [42, 43]
    assert parse_seeds("1,5-6") == [1, 5, 6]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds("9-3")


def test_simulate_main_json_last_line(tmp_path, two_gpu_nodes, capsys):
    pods = write(
        tmp_path,
        "p.csv",
        POD_HEAD + "a,1000,10,1,300,,LS,R,0,1,0\nb,2000,10,1,1000,,LS,R,0,1,0\nc,500,5,0,0,,BE,R,0,1,0\n",
    )
    rc = simulate_main(
        [
            "--nodes",
            two_gpu_nodes,
            "--pods",
            pods,
            "--policy",
            "fgd",
            "--seeds",
            "42,43",
            "--jobs",
            "1",
            "--output",
            "json",
        ]
    )
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    doc = json.loads(last)
    assert doc["policy"] == "fgd" and doc["seeds"] == [42, 43]
    keys = set(doc["unallocated_pct"])
    assert {str(x) for x in range(10, 131, 10)} | {"95", "105"} <= keys
    assert all(0 <= v <= 100 for v in doc["unallocated_pct"].values())
    assert doc["decisions_per_s"] > 0


def test_simulate_main_default_policy_and_bad_file(tmp_path, two_gpu_nodes, capsys):
    pods = write(tmp_path, "p.csv", POD_HEAD + "a,1000,10,1,1000,,LS,R,0,1,0\n")
    assert (
        simulate_main(
            [
                "--nodes",
                two_gpu_nodes,
                "--pods",
                pods,
                "--seeds",
                "42",
                "--output",
                "json",
                "--max-arrived",
                "100",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["policy"] == "orion" and "100" in doc["unallocated_pct"]
    assert "105" not in doc["unallocated_pct"]
    assert (
        simulate_main(["--nodes", two_gpu_nodes, "--pods", str(tmp_path / "nope.csv"), "--seeds", "42"]) == 2
    )


def test_add_simulate_parser_registers_subcommand(tmp_path, two_gpu_nodes):
    parser = argparse.ArgumentParser(prog="orion")
    add_simulate_parser(parser.add_subparsers(dest="cmd"))
    pods = write(tmp_path, "p.csv", POD_HEAD + "a,1000,10,1,1000,,LS,R,0,1,0\n")
    args = parser.parse_args(
        [
            "simulate",
            "--nodes",
            two_gpu_nodes,
            "--pods",
            pods,
            "--seeds",
            "42-43",
            "--policy",
            "best_fit",
            "--jobs",
            "1",
        ]
    )
    assert args.cmd == "simulate" and args.seeds == [42, 43] and callable(args.fn)
    assert args.fn(args) == 0
