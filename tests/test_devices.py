"""Device inventory rules (GPUs through NVML records, CPU slots) and Horovod rank assignment."""
import pytest

from parallax_nb.cluster.devices import Device, devices_from_probes, visible_gpus
from parallax_nb.cluster.selection import Selection, SelectionError, resolve, select
from parallax_nb.cluster.ranks import assign_ranks

GPUS = [{"index": i, "uuid": f"GPU-{i}aaa-{i}", "name": "Test GPU", "memory_total": 16 << 30,
         "memory_used": 1 << 30, "utilization": 10.0 * i} for i in range(4)]


def probe(hostname, gpus=(), visible=None, nthreads=2, label=None, name="0"):
    return {"hostname": hostname, "label": label, "address": None, "name": name,
            "nthreads": nthreads,
            "memory_limit": 8 << 30, "cuda_visible_devices": visible, "gpus": list(gpus),
            "pid": 1}


def test_visible_gpus_honours_indices_uuids_and_stops_at_an_unknown_entry():
    assert [g["index"] for g in visible_gpus(GPUS, None)] == [0, 1, 2, 3]
    assert [g["index"] for g in visible_gpus(GPUS, "2,0")] == [2, 0]
    assert [g["index"] for g in visible_gpus(GPUS, "GPU-3aaa-3,1")] == [3, 1]
    assert [g["index"] for g in visible_gpus(GPUS, "1,7,2")] == [1]
    assert visible_gpus(GPUS, "") == []


def test_one_worker_with_all_gpus_gets_one_device_per_gpu():
    devices = devices_from_probes({"tcp://a:1": probe("a", GPUS, "0,1")})
    assert [(d.kind, d.id, d.index) for d in devices] == [("GPU", "GPU-0aaa-0", 0),
                                                          ("GPU", "GPU-1aaa-1", 1)]
    assert devices[1].utilization == 10.0 and devices[0].memory_total == 16 << 30


def test_dask_cuda_workers_each_own_the_gpu_they_list_first():
    probes = {"tcp://a:1": probe("a", GPUS[:2], "0,1"), "tcp://a:2": probe("a", GPUS[:2], "1,0")}
    devices = devices_from_probes(probes)
    assert {(d.worker, d.id) for d in devices} == {("tcp://a:1", "GPU-0aaa-0"),
                                                    ("tcp://a:2", "GPU-1aaa-1")}
    # each worker's GPU is index 0 among its own, so the label names the machine's number
    assert sorted(d.label for d in devices) == ["GPU 0 (Test GPU)", "GPU 1 (Test GPU)"]


def test_workers_without_gpus_offer_cpu_slots_and_labels_group_hosts():
    probes = {"tcp://a:1": probe("a", nthreads=3), "tcp://a:2": probe("a", label="b", name="1")}
    devices = devices_from_probes(probes, host_labels={"tcp://a:1": "x"})
    assert [(d.host, d.kind, d.id) for d in devices] == [
        ("b", "CPU", "cpu0"), ("b", "CPU", "cpu1"),
        ("x", "CPU", "cpu0"), ("x", "CPU", "cpu1"), ("x", "CPU", "cpu2")]
    assert [d.label for d in devices] == [
        "worker 1 slot 0", "worker 1 slot 1", "worker 0 slot 0", "worker 0 slot 1",
        "worker 0 slot 2"]


def cpu(host, worker, i):
    return Device(host, worker, "CPU", i, f"cpu{i}")


DEVICES = [cpu("h0", "w0", 0), cpu("h0", "w0", 1), cpu("h1", "w1", 0)]


def test_ranks_of_a_host_are_consecutive_with_local_and_cross_numbers():
    slots = assign_ranks(select(DEVICES))
    got = [(s.rank, s.host, s.local_rank, s.local_size, s.cross_rank, s.cross_size)
           for s in slots]
    assert got == [(0, "h0", 0, 2, 0, 2), (1, "h0", 1, 2, 0, 1), (2, "h1", 0, 1, 1, 2)]
    env = slots[2].horovod_environment("10.0.0.1", 1234)
    assert env["HOROVOD_RANK"] == "2" and env["HOROVOD_HOSTNAME"] == "h1"
    assert env["HOROVOD_CROSS_SIZE"] == "2" and env["HOROVOD_GLOO_RENDEZVOUS_PORT"] == "1234"
    assert env["CUDA_VISIBLE_DEVICES"] == ""


def test_a_gpu_rank_sees_exactly_its_own_gpu():
    gpu = Device("h0", "w0", "GPU", 0, "GPU-1aaa-1")
    env = assign_ranks(Selection((gpu,)))[0].horovod_environment("127.0.0.1", 1)
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-1aaa-1"


def test_selection_by_host_worker_count_and_keys():
    assert len(select(DEVICES, hosts=["h0"])) == 2
    assert [d.host for d in select(DEVICES, workers=["w1"])] == ["h1"]
    assert len(select(DEVICES, count=2)) == 2
    picked = resolve(DEVICES, ["w1/cpu0", "w0/cpu1"])
    assert [d.key for d in picked] == ["w1/cpu0", "w0/cpu1"]
    assert [d.key for d in resolve(DEVICES, {"hosts": ["h1"]})] == ["w1/cpu0"]


@pytest.mark.parametrize("selector, message", [
    ([], "nothing selected"),
    (4, "asked for 4 ranks but only 3 CPU device"),
    ({"hosts": ["h9"]}, r"unknown host\(s\) \['h9'\]"),
    (["w0/cpu7"], r"no such device\(s\) \['w0/cpu7'\]"),
    ("all", "use None, a count"),
])
def test_bad_selections_say_what_is_wrong(selector, message):
    with pytest.raises(SelectionError, match=message):
        resolve(DEVICES, selector)
