"""``flamecam batch --ray``: the per-file task (``app.batch_worker.track_file``) as Ray tasks.

Each file is one task with ``num_cpus`` CPUs and ``max_retries`` retries: Ray re-runs a task whose
worker process or node was lost, and the task itself starts over from its input (the output is
written under a temporary name, so a lost attempt leaves nothing that looks finished). Ray reuses
its worker processes between tasks, so ``app.batch_worker.MODEL_CACHE`` loads each model once per
worker. Outputs are written by the nodes themselves, so the output folder must be shared storage
mounted at the same path everywhere: :func:`check_shared_storage` proves it before any work starts.
Every node needs the same flamecam installed (``pip install 'flamecam[cluster]'``).

Ray is an optional dependency (the ``cluster`` extra); without it ``--ray`` says how to get it.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from app.batch_worker import FileJob, track_file

RAY_MISSING = "--ray needs Ray, which is not installed: pip install 'flamecam[cluster]'"
PROGRESS_POLL_S = 0.3


class RaySetupError(Exception):
    """Ray cannot be used as asked (not installed, no cluster, storage not shared): one sentence."""


def import_ray():
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        raise RaySetupError(RAY_MISSING) from None
    return ray


def connect(address: str, log=print) -> bool:
    """Join the Ray cluster at ``address`` ('auto': the one this machine belongs to; 'local': start a
    private one on this machine, loopback only). True when this call started or joined it (so the
    caller shuts it down); False when the process was already connected."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address == "local":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            ray.init(num_cpus=cores, _node_ip_address="127.0.0.1", **quiet)
        else:
            ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except Exception as exc:  # noqa: BLE001  (ConnectionError, RuntimeError, ... depending on the failure)
        hint = ("start one with 'ray start --head' (or give its address, or --ray local for this machine only)"
                if address == "auto" else "check the address ('ray status' on the head node prints it)")
        raise RaySetupError(f"cannot connect to a Ray cluster at {address!r} ({str(exc).splitlines()[0]}); "
                            f"{hint}") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    log(f"Ray: {len([n for n in ray.nodes() if n['Alive']])} node(s), {cpus:g} CPUs")
    return True


def _visit(probe: str, token: str, reply: str, input_root: str) -> dict:
    """On one node: is the driver's probe file there, can this node write beside it, can it see the inputs?"""
    seen = False
    try:
        seen = Path(probe).read_text() == token
    except OSError:
        pass
    error = ""
    try:
        Path(reply).write_text(token)
    except OSError as exc:
        error = exc.strerror or str(exc)
    return {"host": socket.gethostname(), "seen": seen, "write_error": error, "inputs": os.path.isdir(input_root)}


def check_shared_storage(out_dir: Path, input_root: Path, cpus_per_task: float = 1.0, timeout_s: float = 120.0) -> int:
    """Prove that every alive node with CPUs reads and writes ``out_dir`` at the same path (and sees the
    inputs' root folder): a task pinned to each node reads a file this driver wrote there and writes one
    back. Returns the number of nodes; raises :class:`RaySetupError` naming the first node that fails, or
    when no node has ``cpus_per_task`` CPUs (the tasks would wait forever)."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    largest = max((n["Resources"]["CPU"] for n in nodes), default=0)
    if largest < cpus_per_task:
        raise RaySetupError(f"no Ray node has {cpus_per_task:g} CPUs for a task (the largest has {largest:g}); "
                            "lower --cpus-per-task")
    token = uuid.uuid4().hex
    probe = out_dir / f".flamecam-probe-{token}"
    probe.write_text(token)
    visit = ray.remote(num_cpus=0, max_retries=0)(_visit)
    replies = {n["NodeID"]: out_dir / f".flamecam-probe-{token}-{n['NodeID'][:12]}" for n in nodes}
    try:
        refs = {visit.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(probe), token, str(replies[n["NodeID"]]), str(input_root)): n for n in nodes}
        try:
            results = ray.get(list(refs), timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001
            raise RaySetupError(f"could not check the output folder on every Ray node ({exc})") from None
        fix = "give an output folder on a filesystem every node mounts at the same path (NFS, Lustre, CephFS, ...)"
        for node, result in zip(refs.values(), results):
            where = f"{result['host']} ({node.get('NodeManagerAddress', '?')})"
            if not result["seen"]:
                raise RaySetupError(f"{out_dir} is not shared storage: node {where} does not see the file this "
                                    f"machine wrote there; {fix}")
            if result["write_error"]:
                raise RaySetupError(f"node {where} cannot write into {out_dir} ({result['write_error']}); {fix}")
            try:
                back = replies[node["NodeID"]].read_text() == token
            except OSError:
                back = False
            if not back:
                raise RaySetupError(f"{out_dir} is not shared storage: the file node {where} wrote there is not "
                                    f"visible here; {fix}")
            if not result["inputs"]:
                raise RaySetupError(f"node {where} does not see the inputs' folder {input_root}; put the inputs on "
                                    "storage every node mounts at the same path")
        return len(nodes)
    finally:
        for path in (probe, *replies.values()):
            path.unlink(missing_ok=True)


class _Inbox:
    """A Ray actor that collects the tasks' messages for the driver (``take`` empties it)."""

    def __init__(self):
        self.messages: list[tuple] = []

    def put(self, message: tuple) -> None:
        self.messages.append(message)

    def take(self) -> list[tuple]:
        messages, self.messages = self.messages, []
        return messages


class _Sender:
    """``send`` for a Ray task: fire-and-forget to the inbox actor. Never ``ray.get`` here: a task blocked
    in ``ray.get`` lends its CPUs to another task, and the node would run more files than it has cores for."""

    def __init__(self, inbox):
        self.inbox = inbox

    def __call__(self, message: tuple) -> None:
        try:
            self.inbox.put.remote(message)
        except Exception:  # noqa: BLE001  (a lost message only costs progress display)
            pass


def _ray_track_file(job: FileJob, inbox) -> dict:
    return track_file(job, _Sender(inbox))


def run_ray(jobs: list[FileJob], cpus_per_task: float, retries: int):
    """Run every job as a Ray task; yields the messages of ``app.batch_worker`` and ``("done", index, fields)``."""
    ray = import_ray()
    inbox = ray.remote(num_cpus=0)(_Inbox).remote()
    task = ray.remote(_ray_track_file).options(num_cpus=cpus_per_task, max_retries=retries, retry_exceptions=False)
    refs = {task.remote(job, inbox): job.index for job in jobs}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=PROGRESS_POLL_S, fetch_local=False)
            yield from _drain(ray, inbox)
            for ref in ready:
                index = refs.pop(ref)
                try:
                    fields = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    fields = {"status": "failed",
                              "error": f"the Ray task failed after {retries} retries ({type(exc).__name__}: {first})"}
                yield ("done", index, fields)
        yield from _drain(ray, inbox)
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        ray.kill(inbox)


def _drain(ray, inbox) -> list[tuple]:
    try:
        return ray.get(inbox.take.remote(), timeout=30)
    except Exception:  # noqa: BLE001  (progress only)
        return []
