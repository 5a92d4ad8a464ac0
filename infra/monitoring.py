"""Log Analytics, Application Insights (Entra ID ingestion only), and the archival alerts.

Unattended means watched. The archival timer logs, once per run, a trace whose message is its
prefix (``shared.archive.RUN_LOG_PREFIX``, imported here so the two cannot drift) followed by a
one-line JSON summary (logger ``parley.archive``), e.g.
``archive_run {"archived": 3, "skipped": 0, "failed": 0, "resumed": 0, ...}``.
Two scheduled query rules on the Application Insights component (its ``traces`` table) read it,
each declared by ``log_alert_rule``: one fires when a run reports failures, one when no run has
completed for too long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import applicationinsights, authorization, monitor, operationalinsights

from infra.identity import ROLE_MONITORING_METRICS_PUBLISHER, grant_role
from infra.stack_config import StackConfig
from shared.archive import RUN_LOG_PREFIX

# Log alert operators as the scheduledQueryRules API spells them. Not monitor.ConditionOperator:
# in pulumi-azure-native 3.29.0 that enum belongs to another API and holds "gt"/"lt".
LOG_ALERT_GREATER_THAN = "GreaterThan"
LOG_ALERT_LESS_THAN = "LessThan"

# A run that reported failed > 0 items, in the last evaluation window.
ARCHIVE_FAILURES_QUERY = f"""traces
| where message startswith "{RUN_LOG_PREFIX}"
| extend run = parse_json(substring(message, strlen("{RUN_LOG_PREFIX}")))
| where toint(run.failed) > 0
| summarize failedRuns = count(), failedItems = sum(toint(run.failed))"""


def archive_stale_query(hours: int) -> str:
    """Completed archival runs in the last ``hours`` hours (one row, zero when there were none)."""
    return f"""traces
| where timestamp > ago({hours}h)
| where message startswith "{RUN_LOG_PREFIX}"
| summarize completedRuns = count()"""


@dataclass(frozen=True)
class Observability:
    workspace: operationalinsights.Workspace
    component: applicationinsights.Component
    metrics_publisher: authorization.RoleAssignment


@dataclass(frozen=True)
class Alerts:
    action_group: monitor.ActionGroup
    failures: monitor.ScheduledQueryRule
    stale: monitor.ScheduledQueryRule


def create_observability(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    tags: Mapping[str, str],
) -> Observability:
    workspace = operationalinsights.Workspace(
        f"{prefix}-logs",
        workspace_name=f"{prefix}-logs",
        resource_group_name=resource_group_name,
        location=cfg.location,
        sku=operationalinsights.WorkspaceSkuArgs(
            name=operationalinsights.WorkspaceSkuNameEnum.PER_GB2018
        ),
        retention_in_days=cfg.monitoring.log_retention_days,
        features=operationalinsights.WorkspaceFeaturesArgs(disable_local_auth=True),
        tags=dict(tags),
    )
    component = applicationinsights.Component(
        f"{prefix}-appi",
        resource_name_=f"{prefix}-appi",
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind="web",
        application_type=applicationinsights.ApplicationType.WEB,
        ingestion_mode=applicationinsights.IngestionMode.LOG_ANALYTICS,
        workspace_resource_id=workspace.id,
        # Telemetry is accepted only with an Entra ID token (the app's identity), so the
        # connection string's instrumentation key alone cannot be used to send data.
        disable_local_auth=True,
        tags=dict(tags),
    )
    publisher = grant_role(
        f"{prefix}-role-metrics-publisher",
        scope=component.id,
        role_id=ROLE_MONITORING_METRICS_PUBLISHER,
        principal_id=principal_id,
        description="Parley: send telemetry to Application Insights with the app's identity",
    )
    return Observability(workspace, component, publisher)


@dataclass(frozen=True)
class LogAlert:
    """One scheduled query rule: a KQL query over the component's traces and when it fires."""

    name: str  # suffix of the rule's name
    display_name: str
    description: str
    severity: int
    query: str
    measure: str  # the query's column the condition aggregates
    operator: str  # LOG_ALERT_GREATER_THAN or LOG_ALERT_LESS_THAN
    threshold: float
    window: str  # ISO 8601 duration the query may read
    auto_mitigate: bool


def archive_alerts(hours: int) -> tuple[LogAlert, LogAlert]:
    """The two archival alerts: a run reported failures; no run completed for ``hours``."""
    failures = LogAlert(
        name="archive-failures",
        display_name="Parley: archival run reported failures",
        description=(
            "An archival run logged failed > 0 in its archive_run summary: a session it could "
            "not move, an interrupted move or delete it could not finish, an expiry, or a scan "
            "failed. Nothing is lost (each stays whole where it was) and the next run tries "
            "again; look at the run's archive_*_failed warnings in Application Insights."
        ),
        severity=1,
        query=ARCHIVE_FAILURES_QUERY,
        measure="failedRuns",
        operator=LOG_ALERT_GREATER_THAN,
        threshold=0,
        window="PT1H",
        auto_mitigate=False,
    )
    stale = LogAlert(
        name="archive-stale",
        display_name=f"Parley: no archival run completed in {hours} hours",
        description=(
            f"No archive_run summary was logged in the last {hours} hours: the timer is not "
            "running, the app is down, or runs die before they finish."
        ),
        severity=2,
        query=archive_stale_query(hours),
        measure="completedRuns",
        operator=LOG_ALERT_LESS_THAN,
        threshold=1,
        # The window bounds what the query may read (two days at most); ago() narrows it.
        window="P2D",
        auto_mitigate=True,
    )
    return failures, stale


def log_alert_rule(
    alert: LogAlert,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    component: applicationinsights.Component,
    action_group: monitor.ActionGroup,
    tags: Mapping[str, str],
) -> monitor.ScheduledQueryRule:
    """A log alert on the component, evaluated hourly, that emails through the action group."""
    rule_name = f"{cfg.name_prefix}-{alert.name}"
    return monitor.ScheduledQueryRule(
        rule_name,
        rule_name=rule_name,
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind=monitor.Kind.LOG_ALERT,
        display_name=alert.display_name,
        description=alert.description,
        severity=alert.severity,
        enabled=True,
        scopes=[component.id],
        evaluation_frequency="PT1H",
        window_size=alert.window,
        criteria=monitor.ScheduledQueryRuleCriteriaArgs(
            all_of=[
                monitor.ConditionArgs(
                    query=alert.query,
                    time_aggregation=monitor.TimeAggregation.TOTAL,
                    metric_measure_column=alert.measure,
                    operator=alert.operator,
                    threshold=alert.threshold,
                    failing_periods=monitor.ConditionFailingPeriodsArgs(
                        number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                    ),
                )
            ]
        ),
        auto_mitigate=alert.auto_mitigate,
        actions=monitor.ActionsArgs(action_groups=[action_group.id]),
        tags=dict(tags),
    )


def create_alerts(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    component: applicationinsights.Component,
    tags: Mapping[str, str],
) -> Alerts:
    action_group = monitor.ActionGroup(
        f"{prefix}-ops",
        action_group_name=f"{prefix}-ops",
        resource_group_name=resource_group_name,
        location="global",
        group_short_name=f"{prefix}-ops"[:12],
        enabled=True,
        email_receivers=[
            monitor.MicrosoftCommonEmailReceiverArgs(
                name="operators",
                email_address=cfg.monitoring.alert_email,
                use_common_alert_schema=True,
            )
        ],
        tags=dict(tags),
    )
    failures, stale = (
        log_alert_rule(
            alert,
            cfg,
            resource_group_name=resource_group_name,
            component=component,
            action_group=action_group,
            tags=tags,
        )
        for alert in archive_alerts(cfg.monitoring.archive_stale_alert_hours)
    )
    return Alerts(action_group, failures, stale)
