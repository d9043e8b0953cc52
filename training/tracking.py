"""MLflow wiring: where runs go, the shop's one registered model and its aliases.

``MLFLOW_TRACKING_URI`` wins when set; otherwise a SQLite store under the data
directory (``<data>/mlflow/mlflow.db``, artifacts in ``<data>/mlflow/artifacts``),
which ``mlflow ui --backend-store-uri sqlite:///<data>/mlflow/mlflow.db`` opens.
Each data directory keeps its own default store within one process too (MLflow
exports the store it is pointed at as ``MLFLOW_TRACKING_URI``; that is not taken
for the user's choice).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

EXPERIMENT_ENV = "RECSYS_EXPERIMENT"
REGISTERED_MODEL_ENV = "RECSYS_REGISTERED_MODEL"
DEFAULT_EXPERIMENT = "recsys"
DEFAULT_REGISTERED_MODEL = "shop-recommender"
CHAMPION = "champion"
PREVIOUS = "previous-champion"
#: The tag holding a run's (and its version's) recipe: model, parameters, interaction settings.
RECIPE_TAG = "recipe"
#: Tags naming the process that writes a run (see ``close_orphaned_runs``).
HOST_TAG, PID_TAG, PROCESS_TAG = "host", "pid", "process"
#: The default stores opened in this process: ``mlflow.set_tracking_uri`` exports
#: each as ``MLFLOW_TRACKING_URI``, which must not then count as the user's choice.
_DEFAULT_URIS: set[str] = set()


class TrackingError(Exception):
    """The MLflow store cannot be opened (a store this MLflow refuses, a bad URI)."""


class NoTrackingStore(LookupError):
    """The data directory has no MLflow store yet (nothing was trained there)."""


@dataclass
class Tracking:
    """The tracking store, experiment and registered model of one data directory."""

    data_dir: Path
    tracking_uri: str
    experiment_id: str
    registered_model: str

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def open_tracking(data_dir: str | os.PathLike, create: bool = True) -> Tracking:
    """Point MLflow at the store for ``data_dir`` and make sure the experiment exists.

    With ``create=False`` (commands that only read or move what training
    registered) a data directory without a store raises ``NoTrackingStore``
    instead of getting an empty one: a mistyped ``--data`` is not made into a
    data directory. With ``create=True`` (jobs that log runs) a deleted experiment
    raises ``TrackingError``: MLflow refuses runs in it; so does a default store whose
    experiment keeps its artifacts outside the data directory (one copied or moved),
    where new runs would write into the original's folder."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no phoning home from jobs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    data_dir = Path(data_dir)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri in _DEFAULT_URIS:  # exported by mlflow.set_tracking_uri for another data dir
        uri = None
    artifacts = None
    if not uri:
        folder = (data_dir / "mlflow").resolve()
        if not create and not (folder / "mlflow.db").exists():
            raise NoTrackingStore(
                f"{data_dir} has no MLflow store (nothing was trained there): train a "
                f"model first (`recsys --data {data_dir} train --model blend --promote`) "
                "or check --data"
            )
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        artifacts = (folder / "artifacts").as_uri()
        _DEFAULT_URIS.add(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.get_experiment_by_name(name)
    except MlflowException as exc:
        raise TrackingError(f"the MLflow store {uri} cannot be opened: {exc.message}") from exc
    except (ImportError, OSError, SQLAlchemyError) as exc:
        # a database without its driver, a path that cannot hold the file: MLflow
        # lets these through as they are
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrackingError(f"the MLflow store {uri} cannot be opened: {why}") from exc
    if experiment is None:
        experiment_id = client.create_experiment(name, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
        moved = artifacts is not None and not _same_folder(experiment.artifact_location, artifacts)
        if create and moved:  # MLflow keeps the folder it was created with, by absolute path
            raise TrackingError(
                f"the MLflow experiment {name!r} of {data_dir} keeps its artifacts in "
                f"{experiment.artifact_location} (the data directory was copied or moved, "
                "or the experiment was made by other means): "
                f"new runs would write there; set {EXPERIMENT_ENV} to another name to log "
                "them in this directory"
            )
        if create and experiment.lifecycle_stage == "deleted":  # MLflow refuses new runs in it
            raise TrackingError(
                f"the MLflow experiment {name!r} of {uri} is deleted: restore it "
                f"(`MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id "
                f"{experiment_id}`) or set "
                f"{EXPERIMENT_ENV} to log runs in another one"
            )
    registered = os.environ.get(REGISTERED_MODEL_ENV, DEFAULT_REGISTERED_MODEL)
    try:
        client.get_registered_model(registered)
    except MlflowException:
        client.create_registered_model(
            registered, description="The shop's recommender: every version, of any model type."
        )
    tracking = Tracking(data_dir, uri, experiment_id, registered)
    close_orphaned_runs(tracking)
    return tracking


def _same_folder(location: str, artifacts: str) -> bool:
    """Whether the experiment's artifact ``location`` is the folder of the ``artifacts``
    URI: the same text, or a path that leads there (a symlink left where the data
    directory was before it moved)."""
    if location == artifacts:
        return True
    parsed = urlparse(location)
    if parsed.scheme not in ("file", ""):
        return False
    try:
        return os.path.samefile(url2pathname(parsed.path), url2pathname(urlparse(artifacts).path))
    except OSError:  # one of them does not exist
        return False


def owner_tags() -> dict[str, str]:
    """Tags for a new run: this host and process id and, on Linux, where that pid
    is valid (machine, boot, PID namespace) and when the process started."""
    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid)}
    started = _start_time(pid)
    if started is not None:
        tags[PROCESS_TAG] = "/".join([*_pid_scope(), started])
    return tags


def close_orphaned_runs(tracking: Tracking) -> list[str]:
    """Mark ``KILLED`` the runs left ``RUNNING`` by a process of this host that is
    gone (killed by SIGKILL, the OOM killer, a reboot), and say so on the log;
    returns their ids. Runs of other hosts, of live processes or without the owner
    tags are left alone, and so are runs of another PID namespace or machine that
    shares the host name (containers): their pids mean nothing here."""
    client, host = tracking.client, socket.gethostname()
    running = client.search_runs(
        [tracking.experiment_id], "attributes.status = 'RUNNING'", max_results=1000
    )
    closed = []
    for run in running:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) != host or not pid.isdigit():
            continue
        why = _gone(int(pid), tags.get(PROCESS_TAG))
        if why is None:
            continue
        client.set_tag(run.info.run_id, "killed", f"process {pid} {why} without closing the run")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
        logging.getLogger(__name__).warning(
            "run %s (%s) was left RUNNING by process %s, which is gone: marked KILLED",
            run.info.run_id,
            run.info.run_name,
            pid,
        )
    return closed


def _gone(pid: int, process: str | None) -> str | None:
    """How the run's process ended (``ended``, or the machine restarted), or None while
    it may still run. ``process`` is its ``PROCESS_TAG`` (None: tagged before there was
    one, or not on Linux: the pid alone decides)."""
    if not process:
        return None if _alive(pid) else "ended"
    *scope, started = process.split("/")
    machine, boot, namespace = scope if len(scope) == 3 else ("", "", "")
    here_machine, here_boot, here_namespace = _pid_scope()
    if machine != here_machine:
        return None  # another machine of the same name
    if boot != here_boot:
        # with no machine id (a slim container), another machine cannot be told from a
        # restart of this one; the boot id, random per boot, still tells this boot apart
        return "ended when the machine restarted" if machine else None
    if not boot:
        return None  # nothing tells where the pid is valid
    if namespace != here_namespace:
        return None  # another container on this machine: its pids are not ours to check
    return None if _start_time(pid) == started else "ended"


def _pid_scope() -> tuple[str, str, str]:
    """(machine id, boot id, PID namespace) of this process; empty where unknown."""
    return (
        _read_first(("/etc/machine-id", "/var/lib/dbus/machine-id")),
        _read_first(("/proc/sys/kernel/random/boot_id",)),
        _pid_namespace(),
    )


def _read_first(paths: tuple[str, ...]) -> str:
    for path in paths:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot, from ``/proc``); None if
    it does not exist or there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
