"""Panel and variable builders every MT5 dashboard shares (grafana-foundation-sdk), so the agent's dashboards
(render.py) and the bridge's (bridge.py) look and query alike: one Prometheus data source variable, fixed
colours by series name, UP/DOWN mappings, dashed threshold lines, histogram quantile panels.

Knows nothing of any metric: the dashboards pass their own selectors and names in.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

with warnings.catch_warnings():  # the v1 Dashboard builder warns at import; v1 JSON is what we provision
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

TAGS = ["mt5", "mt5-monitor"]
DATASOURCE = common.DataSourceRef(type_val="prometheus", uid="${datasource}")
DASHED = common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)


def threshold_steps(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute colour steps, (None, base colour) first."""
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def prom(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False) -> prometheus.Dataquery:
    """A Prometheus query through the `datasource` variable (range unless `instant`)."""
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return query.instant() if instant else query.range()


def prom_table(expr: str, ref: str) -> prometheus.Dataquery:
    """An instant query in table format (one column per label, `Value #<ref>`)."""
    return prom(expr, ref=ref, instant=True).format(prom_model.PromQueryFormat.TABLE)


def prop(property_id: str, value: object) -> model.DynamicConfigValue:
    """One override property."""
    return model.DynamicConfigValue(id_val=property_id, value=value)


def by_names(*names: str) -> model.MatcherConfig:
    """Field-name matcher with object options (the schema rejects `byName`'s plain-string options)."""
    return model.MatcherConfig(id_val="byNames", options={"mode": "include", "names": list(names)})


def coloured(panel: Any, colours: dict[str, str]) -> Any:
    """Fixed colour per series/field name."""
    for name, colour in colours.items():
        panel = panel.with_override(by_names(name), [prop("color", {"mode": "fixed", "fixedColor": colour})])
    return panel


def up_mappings() -> list[model.ValueMapping]:
    """0 -> DOWN (red), 1 -> UP (green)."""
    return [
        model.ValueMap(
            options={
                "0": model.ValueMappingResult(text="DOWN", color="red", index=0),
                "1": model.ValueMappingResult(text="UP", color="green", index=1),
            }
        )
    ]


def query_variable(name: str, label: str, query: str, *, multi: bool = True) -> dash.QueryVariable:
    """A Prometheus label_values variable; multi-valued ones offer All (= `.*`, the regex the queries use)."""
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .definition(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.NATURAL_ASC)
    )
    if multi:
        variable = (
            variable.multi(True)
            .include_all(True)
            .all_value(".*")
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    return variable


def quantile_panel(
    title: str, buckets: str, labels: Sequence[str], quantiles: Sequence[float]
) -> timeseries.Panel:
    """One line per quantile (and per value of `labels`) of a histogram; `buckets` is the selector of its
    `_bucket` series."""
    group = ", ".join(["le", *labels])
    legend_suffix = "".join(f" {{{{{label}}}}}" for label in labels)
    targets: list[cogbuilder.Builder[variants.Dataquery]] = [
        prom(
            f"histogram_quantile({q}, sum by ({group}) (rate({buckets}[$__rate_interval])))",
            legend=f"p{round(q * 100)}{legend_suffix}",
            ref=chr(ord("A") + i),
        )
        for i, q in enumerate(quantiles)
    ]
    return timeseries.Panel().title(title).targets(targets).unit("s").min(0).line_width(2)


def builtin_annotation() -> dash.AnnotationQuery:
    """Grafana's own annotations (hidden toggle), as every dashboard has."""
    return (
        dash.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(common.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )


def alerts_annotation(expr: str) -> dash.AnnotationQuery:
    """Firing alerts (`expr` selects Prometheus' ALERTS series) as red marks over every panel."""
    return (
        dash.AnnotationQuery()
        .name("MT5 alerts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .expr(expr)
        .step("60s")
        .title_format("{{alertname}}")
        .text_format("{{severity}} {{account}} {{instance}}")
        .tag_keys("alertname,severity")
    )


def base_dashboard(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[cogbuilder.Builder[model.VariableModel]],
    annotations: Sequence[cogbuilder.Builder[model.AnnotationQuery]],
) -> dash.Dashboard:
    """Tags, time, refresh, crosshair and the "MT5 dashboards" drop-down every MT5 dashboard shares."""
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .variables(list(variables))
        .annotations(list(annotations))
        .link(
            dash.DashboardLink("MT5 dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["mt5"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def tile(title: str) -> stat.Panel:
    """A single value on a background coloured by its thresholds, with no sparkline: every status tile."""
    return (
        stat.Panel()
        .title(title)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )
