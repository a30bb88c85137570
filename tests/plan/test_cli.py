"""``shoal plan`` end to end: calibrate (quick), then plan on this machine and on a described cluster: the
tables print, the JSON and the PNG are written; errors are one line and exit code 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from typer.testing import CliRunner

from shoal.cli import main as cli
from shoal.plan.calibrate import PROFILE_FILE, load_profile

runner = CliRunner()
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic.yaml"
CLUSTERS = Path(__file__).resolve().parents[2] / "configs" / "clusters"


def test_calibrate_stores_a_profile(profile_home: Path) -> None:
    profile = load_profile(profile_home)
    assert (profile_home / PROFILE_FILE).is_file()
    for key in ("matmul", "interaction", "memory_bw", "embedding", "overhead", "allreduce", "base_rss", "disk_bw"):
        assert key in profile, key
    assert all(f > 0 for points in profile["matmul"].values() for _, f in points)
    assert set(profile["embedding"]["1"]) == {"fused/small", "fused/large", "unfused/small", "unfused/large"}


def test_plan_on_this_machine_writes_json_and_png(profile_home: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "plan.json", tmp_path / "step.png"
    result = runner.invoke(cli.app, ["plan", str(CONFIG), "--cluster", "local", "--home", str(profile_home),
                                     "--rows", "100000", "--qps", "5000", "--json", str(out), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "bottleneck" in result.output and "memory per process" in result.output
    assert "serving (predicted)" in result.output
    plan = json.loads(out.read_text())
    assert plan["model"] == "dlrm" and plan["step"]["rows_per_s"] > 0 and plan["epoch_s"] > 0
    assert plan["serving"]["servers"] >= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_on_a_described_cluster_advises_sharding(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["plan", str(CONFIG), "--cluster", str(CLUSTERS / "8xa100.yaml"),
                                     "--rows", "1000000", "--json", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    assert "embedding placement: recommended" in result.output and "USD" in result.output
    plan = json.loads((tmp_path / "p.json").read_text())
    assert plan["step"]["world"] == 8 and plan["recommended"] in plan["options"]
    # the GPU's memory and the host's, each adding up; the first pass in the host's
    step = plan["step"]
    assert step["peak_bytes"] == sum(step["memory_bytes"].values()) < plan["device_memory_bytes"]
    assert step["host_peak_bytes"] == sum(step["host_memory_bytes"].values()) < plan["host_memory_bytes"]
    assert "passing (first pass)" in step["host_memory_bytes"] and "passing (first pass)" not in step["memory_bytes"]
    assert "memory per process: GPU" in result.output and "host" in result.output


def test_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"node": {"cpu": {"cores": 2}}}))
    result = runner.invoke(cli.app, ["plan", str(CONFIG), "--cluster", str(bad)])
    assert result.exit_code == 2
    assert "invalid cluster" in result.output and "node.cpu.gflops_per_core: required field is missing" in result.output
    result = runner.invoke(cli.app, ["plan", str(CONFIG), "--home", str(tmp_path)])
    assert result.exit_code == 2 and "shoal plan --calibrate" in result.output


def test_bad_numbers_are_one_line_errors(tmp_path: Path) -> None:
    cluster = str(CLUSTERS / "8xa100.yaml")
    for args, message in ((["--rows", "0"], "--rows must be at least 1"),
                          (["--qps", "-1"], "--qps must be a positive"), (["--qps", "inf"], "--qps must be a positive"),
                          (["--nproc", "0"], "--nproc must be at least 1"),
                          (["--nproc", "9"], "--nproc 9 on nodes of 8 A100 GPU(s)"),
                          (["--json", str(tmp_path)], f"cannot write {tmp_path}")):
        result = runner.invoke(cli.app, ["plan", str(CONFIG), "--cluster", cluster, *args])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (args, result.output)


def test_a_job_that_does_not_fit_says_so_first(tmp_path: Path) -> None:
    """One process whose tables are larger than its device: said in red before the notes, and in the reason."""
    from shoal.plan.cluster import load_cluster
    from shoal.plan.planner import make_plan
    from tests.plan.conftest import run_config

    cfg = run_config({"name": "dlrm", "embedding_dim": 64}, sparse=26, buckets=20_000_000)
    plan = make_plan(cfg, load_cluster(CLUSTERS / "1xl4.yaml"), rows=1000)
    assert plan.notes[0].startswith("DOES NOT FIT") and "does not fit" in plan.reason
    fits = make_plan(run_config({"name": "dlrm"}), load_cluster(CLUSTERS / "1xl4.yaml"), rows=1000)
    assert not any(n.startswith("DOES NOT FIT") for n in fits.notes) and fits.reason == "one process: nothing to shard"


def test_serving_on_a_gpu_cluster_counts_gpus_not_cores() -> None:
    """A GPU node's serving is sized by its GPUs, each at one GPU's rate (it was a GPU's rate times the CPU's
    cores: 128 'cores' of 1.6M rows/s each on 8 A100s)."""
    from shoal.config import load_config
    from shoal.plan.cluster import load_cluster
    from shoal.plan.planner import make_plan

    cfg = load_config(CONFIG)
    gpus = make_plan(cfg, load_cluster(CLUSTERS / "8xa100.yaml"), rows=1000, qps=2e7).serving
    assert gpus is not None and gpus.unit == "GPU" and gpus.cores_per_server == 8
    assert gpus.servers == math.ceil(2e7 / (gpus.rows_per_s_per_core * 8 * 0.6))
    cpus = make_plan(cfg, load_cluster(CLUSTERS / "local-2core.yaml"), rows=1000, qps=5000).serving
    assert cpus is not None and cpus.unit == "core" and cpus.cores_per_server == 2
    result = runner.invoke(cli.app, ["plan", str(CONFIG), "--cluster", str(CLUSTERS / "8xa100.yaml"), "--qps", "20000"])
    flat = " ".join(result.output.split())
    assert result.exit_code == 0 and "rows/s a GPU" in flat and "server(s) of 8 GPUs" in flat
