"""The promotion gate: the alias ``champion`` moves only to a version that wins.

A version wins when its primary metric (NDCG@10 by default) beats the current
champion's on the same data fingerprint and protocol. A forced promotion
records its reason. The alias ``previous-champion`` keeps the version it
replaced, for ``rollback``.

Data changes (every import of new events changes the fingerprint), so a
champion measured on other data is not compared as it stands:

- a challenger with the champion's own *recipe* (model, parameters and
  interaction settings: the ``recipe`` tag) is the champion retrained on this
  data: it replaces it (a *refresh*), so that the storefront is never held on
  a model of old data; under the temporal protocol only with a cut-off no
  earlier than the champion's (a refresh does not go back in time);
- any other challenger must beat the champion's recipe measured on the same
  data (the latest version of that recipe on the challenger's fingerprint and
  protocol); without one the gate refuses and says which recipe to train.
"""

from __future__ import annotations

import fcntl
import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from mlflow.exceptions import MlflowException

from training.tracking import CHAMPION, PREVIOUS, RECIPE_TAG, Tracking


class PromotionRefused(Exception):
    """The challenger did not win; the message says by how much it lost."""

    def __init__(self, message: str, decision: dict):
        super().__init__(message)
        self.decision = decision


def _version(tracking: Tracking, version: int):
    try:
        return tracking.client.get_model_version(tracking.registered_model, str(version))
    except MlflowException:
        raise PromotionRefused(
            f"{tracking.registered_model} has no version {version}; see `recsys models list`",
            {"promoted": False, "version": version},
        ) from None


def champion(tracking: Tracking):
    """The champion's model version, or None."""
    try:
        return tracking.client.get_model_version_by_alias(tracking.registered_model, CHAMPION)
    except MlflowException:
        return None


def run_of(tracking: Tracking, version):
    """The version's run, or None when it is gone (purged by ``mlflow gc``, or no run)."""
    try:
        return tracking.client.get_run(version.run_id) if version.run_id else None
    except MlflowException:
        return None


def metric_of(tracking: Tracking, version, metric: str) -> float | None:
    """The version's run metric (``ndcg@10`` is logged as ``ndcg_at_10``), None when the
    run has none, is gone, or the value is not a number (NaN: there is nothing to compare)."""
    return _metric_in(run_of(tracking, version), metric)


def _metric_in(run, metric: str) -> float | None:
    value = None if run is None else run.data.metrics.get(metric.replace("@", "_at_"))
    return value if value is not None and math.isfinite(value) else None


@contextmanager
def registry_lock(tracking: Tracking) -> Iterator[None]:
    """Serialise moves of the champion (promote, rollback) between the processes of
    one data directory (an exclusive lock on ``.registry.lock``): each reads the
    champion, compares, then moves the aliases, so two at once could both pass the
    gate and leave the worse one champion. Jobs on other machines that share a
    tracking server are not covered."""
    root = Path(tracking.data_dir)
    if not root.is_dir():  # a remote store used from no data directory: nothing to lock
        yield
        return
    with open(root / ".registry.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _serialised(func):
    @functools.wraps(func)
    def locked(tracking: Tracking, *args, **kwargs):
        with registry_lock(tracking):
            return func(tracking, *args, **kwargs)

    return locked


@_serialised
def promote(
    tracking: Tracking,
    version: int,
    *,
    metric: str = "ndcg@10",
    force: bool = False,
    reason: str | None = None,
) -> dict:
    """Move ``champion`` to ``version`` if it wins (or ``force`` with a ``reason``).

    Returns the decision; raises ``PromotionRefused`` when the challenger loses
    or is not comparable.
    """
    if force and not reason:
        raise PromotionRefused(
            '--force needs --reason "..." to record why', {"promoted": False, "version": version}
        )
    challenger = _version(tracking, version)
    current = champion(tracking)
    value = metric_of(tracking, challenger, metric)
    decision = {
        "version": int(version),
        "metric": metric,
        "value": value,
        "model": challenger.tags.get("model"),
        "champion_version": int(current.version) if current else None,
    }
    if current is not None and current.version == challenger.version:
        raise PromotionRefused(
            f"version {version} is already the champion", {**decision, "promoted": False}
        )
    refresh = False
    if current is not None and not force:
        rival = current  # what the challenger must beat: the champion, on the same data
        if not _same_data(challenger, current):
            recipe = current.tags.get(RECIPE_TAG)
            refresh = recipe is not None and challenger.tags.get(RECIPE_TAG) == recipe
            rival = None if refresh else champion_recipe_on(tracking, current, challenger)
            if not refresh and rival is None:
                raise PromotionRefused(
                    f"version {version} was evaluated on other data or protocol "
                    f"({challenger.tags.get('protocol')}/{challenger.tags.get('data_fingerprint')})"
                    f" than champion {current.version} "
                    f"({current.tags.get('protocol')}/{current.tags.get('data_fingerprint')}); "
                    f"train the champion's recipe ({current.tags.get('model')}) on this data "
                    "so that the gate can compare them, or --force --reason",
                    {**decision, "promoted": False},
                )
        if refresh:
            decision["refresh"] = True
            theirs, ours = _cutoff(tracking, challenger), _cutoff(tracking, current)
            if theirs < ours:
                raise PromotionRefused(
                    f"version {version} has the champion's recipe but an earlier cut-off "
                    f"({theirs}) than champion {current.version} ({ours}): "
                    "a refresh does not go back in time; "
                    "--force --reason to roll back on purpose",
                    {**decision, "promoted": False},
                )
            if value is None:
                raise PromotionRefused(
                    f"version {version} has no {metric}", {**decision, "promoted": False}
                )
        else:
            decision["rival_version"] = int(rival.version)
            _must_beat(tracking, challenger, rival, current, metric, decision)
    client = tracking.client
    before = aliases(tracking)  # under the registry lock: what an undo puts back
    if current is not None:
        client.set_registered_model_alias(tracking.registered_model, PREVIOUS, current.version)
    client.set_registered_model_alias(tracking.registered_model, CHAMPION, challenger.version)
    note = {"promoted_at": datetime.now(UTC).isoformat(), "promotion": "forced" if force else "won"}
    if force:
        note["promotion_reason"] = reason
    for key, val in note.items():
        client.set_model_version_tag(tracking.registered_model, challenger.version, key, val)
    return {
        **decision,
        "promoted": True,
        "forced": force,
        "reason": reason,
        "refresh": refresh,
        "aliases_before": before,
    }


def _cutoff(tracking: Tracking, version) -> str:
    """The temporal cut-off the version was evaluated at (ISO text, UTC; "" for other
    protocols, or a run that is gone), as ``recsys train`` logs it."""
    run = run_of(tracking, version)
    return "" if run is None else run.data.params.get("protocol.cutoff", "")


def _same_data(a, b) -> bool:
    return all(a.tags.get(t) == b.tags.get(t) for t in ("data_fingerprint", "protocol"))


def _must_beat(tracking: Tracking, challenger, rival, current, metric: str, decision: dict):
    """Raise ``PromotionRefused`` unless ``challenger`` beats ``rival`` (the champion,
    or its recipe retrained on the challenger's data) on ``metric``."""
    value = decision["value"]
    best = metric_of(tracking, rival, metric)
    decision["champion_value"] = best
    if value is not None and (best is None or value > best):
        return
    margin = None if value is None else best - value
    against = (
        f"champion {current.version}"
        if rival.version == current.version
        else f"the champion's recipe retrained on this data (version {rival.version})"
    )
    message = (
        f"version {challenger.version} has no {metric} to compare"
        if value is None
        else f"version {challenger.version} ({challenger.tags.get('model')}) {metric} "
        f"{value:.4f} does not beat {against} ({rival.tags.get('model')}) "
        f"{best:.4f}: lost by {margin:.4f}"
    )
    raise PromotionRefused(message, {**decision, "promoted": False, "lost_by": margin})


def champion_recipe_on(tracking: Tracking, current, challenger):
    """The latest version with the champion's recipe on the challenger's data
    fingerprint and protocol (None: not trained there, or the champion has no recipe)."""
    recipe = current.tags.get(RECIPE_TAG)
    if recipe is None:
        return None
    found = [
        v
        for v in tracking.client.search_model_versions(f"name = '{tracking.registered_model}'")
        if v.tags.get(RECIPE_TAG) == recipe
        and _same_data(v, challenger)
        and v.version != challenger.version
    ]
    return max(found, key=lambda v: int(v.version), default=None)


@_serialised
def rollback(tracking: Tracking) -> dict:
    """Move ``champion`` back to ``previous-champion``."""
    client = tracking.client
    try:
        previous = client.get_model_version_by_alias(tracking.registered_model, PREVIOUS)
    except MlflowException:
        raise PromotionRefused(
            "no previous champion to roll back to", {"rolled_back": False}
        ) from None
    current = champion(tracking)
    if current is not None and current.version == previous.version:
        raise PromotionRefused(
            f"version {previous.version} is the champion already; no previous champion "
            "to roll back to",
            {"rolled_back": False},
        )
    client.set_registered_model_alias(tracking.registered_model, CHAMPION, previous.version)
    if current is None:  # the champion's version was deleted: nothing to keep as previous
        client.delete_registered_model_alias(tracking.registered_model, PREVIOUS)
    else:
        client.set_registered_model_alias(tracking.registered_model, PREVIOUS, current.version)
        client.set_model_version_tag(
            tracking.registered_model,
            current.version,
            "rolled_back_at",
            datetime.now(UTC).isoformat(),
        )
    return {
        "rolled_back": True,
        "champion_version": int(previous.version),
        "previous_champion_version": int(current.version) if current else None,
    }


#: Tags the gate sets on a version it promotes.
PROMOTION_TAGS = ("promoted_at", "promotion", "promotion_reason")


def aliases(tracking: Tracking) -> dict[str, int | None]:
    """The versions ``champion`` and ``previous-champion`` point at (None: unset)."""
    held = tracking.client.get_registered_model(tracking.registered_model).aliases
    return {a: None if held.get(a) is None else int(held[a]) for a in (CHAMPION, PREVIOUS)}


@_serialised
def undo_promotions(tracking: Tracking, before: dict, promoted: list[int]) -> bool:
    """Put the aliases back as ``before`` (from ``aliases``) and take the gate's tags
    off the versions ``promoted`` since, for a job that failed after its gate; left
    alone (False) when the champion is no longer the last of ``promoted``: another
    job moved it since."""
    current = champion(tracking)
    if not promoted or current is None or int(current.version) != promoted[-1]:
        return False
    client = tracking.client
    for alias, version in before.items():
        if version is None:
            client.delete_registered_model_alias(tracking.registered_model, alias)
        else:
            client.set_registered_model_alias(tracking.registered_model, alias, str(version))
    for version in promoted:
        tags = client.get_model_version(tracking.registered_model, str(version)).tags
        for key in PROMOTION_TAGS:
            if key in tags:
                client.delete_model_version_tag(tracking.registered_model, str(version), key)
    return True


def list_versions(tracking: Tracking, metric: str = "ndcg@10") -> list[dict]:
    """Every version of the registered model with its model type, metric and aliases;
    ``run_missing`` marks a version whose run is gone (its metrics and bundle with it)."""
    client = tracking.client
    versions = client.search_model_versions(f"name = '{tracking.registered_model}'")
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(tracking.registered_model).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for v in sorted(versions, key=lambda v: int(v.version)):
        run = run_of(tracking, v)
        out.append(
            {
                "version": int(v.version),
                "model": v.tags.get("model"),
                "protocol": v.tags.get("protocol"),
                "data_fingerprint": v.tags.get("data_fingerprint"),
                metric: _metric_in(run, metric),
                "run_missing": run is None,
                "aliases": sorted(aliases.get(str(v.version), [])),
                "run_id": v.run_id,
                "promotion": v.tags.get("promotion"),
                "promotion_reason": v.tags.get("promotion_reason"),
            }
        )
    return out
