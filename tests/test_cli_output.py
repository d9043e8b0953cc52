"""The ``--json`` summaries are strict JSON, whatever the metrics hold."""

from __future__ import annotations

import json
import math

import click
from click.testing import CliRunner

from recsys.cli.common import emit, finite


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_metrics_are_printed_as_null_in_strict_json():
    summary = {
        "metrics": {"ndcg@10": 0.25, "mrr@10": math.nan},
        "metrics_new_items": {"ndcg@10": float("inf")},
        "per_k": [0.1, -math.inf, (math.nan, 2)],
        "run_id": "abc",
    }

    @click.command()
    def show():
        emit(summary, as_json=True)

    out = CliRunner().invoke(show).output
    parsed = _strict(out)
    assert parsed["metrics"] == {"ndcg@10": 0.25, "mrr@10": None}
    assert parsed["metrics_new_items"] == {"ndcg@10": None}
    assert parsed["per_k"] == [0.1, None, [None, 2]]
    assert parsed["run_id"] == "abc"
    assert math.isnan(summary["metrics"]["mrr@10"])  # the caller's summary is left alone


def test_finite_keeps_numbers_bools_and_text():
    assert finite({"a": 1, "b": True, "c": "nan", "d": 0.5}) == {
        "a": 1,
        "b": True,
        "c": "nan",
        "d": 0.5,
    }
