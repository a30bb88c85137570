"""Cluster files: every example loads; a bad one fails with the file, the field, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.plan.cluster import ClusterError, load_cluster, parse_cluster
from shoal.plan.devices import DEVICES, device

CLUSTERS = Path(__file__).resolve().parents[2] / "configs" / "clusters"
NODE = {"cpu": {"cores": 8, "gflops_per_core": 50, "memory_bw_gbs": 40, "memory_gib": 64},
        "intra": {"bandwidth_gbs": 10, "latency_us": 5}}


@pytest.mark.parametrize("path", sorted(CLUSTERS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_loads(path: Path) -> None:
    spec = load_cluster(path)
    assert spec.nodes >= 1 and spec.node.cpu.cores >= 1


def test_known_devices() -> None:
    assert set(DEVICES) == {"A100", "H100", "H200", "L4"}
    assert device("a100").memory_gib == 80 and device("H200").memory_bw == 4.8e12
    with pytest.raises(KeyError, match="unknown device 'B9'; known devices: A100, H100, H200, L4"):
        device("B9")


def test_unknown_device_names_the_choices() -> None:
    with pytest.raises(ClusterError) as err:
        parse_cluster({"node": {**NODE, "gpu": {"device": "B9", "count": 8}}}, "c.yaml")
    assert str(err.value) == ("c.yaml: invalid cluster (1 problem)\n"
                              "  - node.gpu.device: unknown device 'B9'; known devices: A100, H100, H200, L4")


def test_errors_name_field_and_value() -> None:
    with pytest.raises(ClusterError) as err:
        parse_cluster({"nodes": 2, "node": {**NODE, "cpu": {**NODE["cpu"], "cores": 0, "speed": 3}}}, "c.yaml")
    assert str(err.value) == (
        "c.yaml: invalid cluster (2 problems)\n"
        "  - node.cpu.cores: Input should be greater than or equal to 1 (got 0)\n"
        "  - node.cpu.speed: unknown key 'speed'")
    with pytest.raises(ClusterError) as err:
        parse_cluster({"nodes": 2, "node": NODE}, "c.yaml")
    assert str(err.value) == ("c.yaml: invalid cluster (1 problem)\n"
                              "  - inter: required with 2 nodes (the link between them: bandwidth_gbs, latency_us)")


def test_missing_file_says_where_to_look(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not exist; see configs/clusters/"):
        load_cluster(tmp_path / "none.yaml")


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """A "billion laughs" cluster file is refused by the bounded YAML reader, naming the file, not expanded."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ClusterError, match="bomb.yaml: YAML aliases expand to over"):
        load_cluster(bomb)


def test_links_are_derated_and_a_ring_over_nodes_takes_the_slower_link() -> None:
    """A cluster file's link bandwidths are peaks, times ``efficiency.network``; a ring over several nodes crosses
    both links: the slower bandwidth, the longer latency."""
    from shoal.plan.cluster import parse_cluster
    from shoal.plan.rates import rates_for

    cpu = {"cores": 32, "gflops_per_core": 50, "memory_bw_gbs": 200, "memory_gib": 512}
    spec = parse_cluster({"nodes": 2, "node": {"cpu": cpu, "gpu": {"device": "A100", "count": 4},
                                               "intra": {"bandwidth_gbs": 1.0, "latency_us": 2.0}},
                          "inter": {"bandwidth_gbs": 100.0, "latency_us": 9.0}, "efficiency": {"network": 0.5}})
    rates = rates_for(spec, 4)
    assert rates.link(1).bandwidth_gbs == 0.5 and rates.link(1).latency_us == 2.0
    assert rates.link(2).bandwidth_gbs == 0.5 and rates.link(2).latency_us == 9.0  # intra is the slower here


def test_an_empty_cluster_file_says_so() -> None:
    import pytest

    from shoal.plan.cluster import ClusterError, parse_cluster

    with pytest.raises(ClusterError, match="c.yaml: the cluster file is empty"):
        parse_cluster(None, "c.yaml")
