"""The study's views in MLflow's UI, as MLflow 3.17's own shared view state: an experiment tag
`mlflow.sharedViewState.<key>` that the runs page loads for `?viewStateShareKey=<key>`.

The UI reads the tag as a saved view (JSON: name, createdAt, updatedAt, state), its state
compressed the way the UI compresses it ("deflate;" + base64 of zlib). Two views:

* `curves`: the KL, reconstruction and total bits/char charts first (the "valid" section,
  open), the training, timing and other sections after them and closed; every trial charted
  (the UI charts the first 10 by default), best bound first, the parent run filtered out.
* `seeds`: the same, with the trials grouped by their grid point (the `grid_point` param: the
  swept values without the seed), each group charted as its mean with a min-max band.

Sort and filter live in the state: the UI ignores a shared view when the URL has its own.
The navigation is the model-training one by the URL's `workflowType`. What no state covers:
the Assistant panel, which the UI opens once by itself on a local host (its localStorage
flag `mlflow.assistant.panelOpen`), and which no server flag, variable or tag turns off.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import zlib

from textvae_core.measures import key as metric_key, parse_key

from .uris import GRID_POINT_PARAM, TRIAL_KEY_TAG

SHARED_VIEW_TAG = "mlflow.sharedViewState."
CURVES, SEEDS = "vaestudy-curves", "vaestudy-seeds"
FIRST_CHARTS = tuple(
    metric_key("valid", m) for m in ("kl_bpc", "rec_bpc", "total_bpc")
)  # its subject
ORDER_METRIC = metric_key(
    "valid", "total_bpc"
)  # every character study logs it: the bound, lower first
# a word corpus's study (tokens=word): the same in nats per sentence
WORD_CHARTS = tuple(metric_key("valid", m) for m in ("kl_nats", "rec_nats", "nll_nats"))
WORD_ORDER_METRIC = metric_key("valid", "nll_nats")
CLOSED_SECTIONS = ("train", "time")  # listed after "valid" and closed; others come after
# 2 charts a row, 220 px high: at 1400x900 both rows end inside the window, and each card is
# ~220 px wide, so its title is drawn whole (at 3 a row, beside the Assistant panel the UI
# opens on a local host, the cards were ~150 px wide and every title was drawn "val...")
COLUMNS, CARD_HEIGHT = 2, 220


def _compress(text: str) -> str:
    """As the UI's own compress(): pako's zlib deflate, base64, after a "deflate;" prefix."""
    return "deflate;" + base64.b64encode(zlib.compress(text.encode())).decode()


def view_state(grouped: bool, words: bool = False) -> dict:
    sections = [
        {
            "uuid": "valid",
            "name": "valid",
            "display": True,
            "isReordered": True,
            "columns": COLUMNS,
            "cardHeight": CARD_HEIGHT,
        }
    ] + [
        {"uuid": name, "name": name, "display": False, "isReordered": True}
        for name in CLOSED_SECTIONS
    ]
    charts = [
        {
            "uuid": f"chart-{key}",
            "type": "LINE",
            "metricSectionId": "valid",
            "metricKey": key,
            "displayName": key,
            "isGenerated": True,
            "deleted": False,
            "runsCountToCompare": 100,
            "lineSmoothness": 0,
            "scaleType": "linear",
            "xAxisScaleType": "linear",
            "xAxisKey": "step",
            "selectedXAxisMetricKey": "",
            "yAxisKey": "metric",
            "yAxisExpressions": [],
            "ignoreOutliers": False,
            "useGlobalXaxisKey": True,
            "useGlobalLineSmoothing": True,
            "range": {},
        }
        for key in (WORD_CHARTS if words else FIRST_CHARTS)
    ]
    state = {
        "orderByKey": f"metrics.`{WORD_ORDER_METRIC if words else ORDER_METRIC}`",
        "orderByAsc": True,
        "searchFilter": f"tags.`{TRIAL_KEY_TAG}` LIKE '%'",
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "isAccordionReordered": True,
        "compareRunSections": sections,
        "compareRunCharts": charts,
        "useGroupedValuesInCharts": True,
        "groupBy": None,
    }
    if grouped:
        state["groupBy"] = {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "param", "groupByData": GRID_POINT_PARAM}],
        }
        state["groupsExpanded"] = {}
    return state


def view_tags(metric: str = ORDER_METRIC) -> dict[str, str]:
    """The experiment tags that hold both views, charting what the study's `metric` is
    measured in: bits per character, or nats per sentence (words)."""
    words = parse_key(metric)[1].summary == "word"  # the study ranks on a word measure
    now = int(time.time() * 1000)
    names = {CURVES: "vaestudy: KL and reconstruction", SEEDS: "vaestudy: seeds grouped"}
    return {
        SHARED_VIEW_TAG + key: json.dumps(
            {
                "name": names[key],
                "createdAt": now,
                "updatedAt": now,
                "state": _compress(json.dumps(view_state(grouped=key == SEEDS, words=words))),
            }
        )
        for key in (CURVES, SEEDS)
    }


def view_url(base: str, experiment_id: str, key: str) -> str:
    query = urllib.parse.urlencode(
        {"viewStateShareKey": key, "compareRunsMode": "CHART", "workflowType": "machine_learning"}
    )
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def ensure_tags(client, experiment, tags: dict[str, str]) -> None:
    """Set on `experiment` each of `tags` it lacks (one made before vaestudy wrote them)."""
    for key, value in tags.items():
        if experiment.tags.get(key) is None:
            client.set_experiment_tag(experiment.experiment_id, key, value)
