"""Log Analytics, Application Insights (Entra ID ingestion only), and the archival alerts.

Unattended means watched. The archival timer logs, once per run, a trace whose message is
``archive_run `` followed by a one-line JSON summary (logger ``parley.archive``), e.g.
``archive_run {"archived": 3, "skipped": 0, "failed": 0, "orphansRemoved": 0, ...}``.
Two scheduled query rules on the Application Insights component (its ``traces`` table) read it:
one fires when a run reports failures, one when no run has completed for too long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import applicationinsights, authorization, monitor, operationalinsights

from infra.identity import ROLE_MONITORING_METRICS_PUBLISHER, grant_role
from infra.stack_config import StackConfig

ARCHIVE_RUN_PREFIX = "archive_run "

# Log alert operators as the scheduledQueryRules API spells them. Not monitor.ConditionOperator:
# in pulumi-azure-native 3.29.0 that enum belongs to another API and holds "gt"/"lt".
LOG_ALERT_GREATER_THAN = "GreaterThan"
LOG_ALERT_LESS_THAN = "LessThan"

# A run that reported failed > 0 items, in the last evaluation window.
ARCHIVE_FAILURES_QUERY = f"""traces
| where message startswith "{ARCHIVE_RUN_PREFIX}"
| extend run = parse_json(substring(message, strlen("{ARCHIVE_RUN_PREFIX}")))
| where toint(run.failed) > 0
| summarize failedRuns = count(), failedItems = sum(toint(run.failed))"""


def archive_stale_query(hours: int) -> str:
    """Completed archival runs in the last ``hours`` hours (one row, zero when there were none)."""
    return f"""traces
| where timestamp > ago({hours}h)
| where message startswith "{ARCHIVE_RUN_PREFIX}"
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
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    tags: Mapping[str, str],
) -> Observability:
    prefix = cfg.name_prefix
    workspace = operationalinsights.Workspace(
        f"{prefix}-logs",
        workspace_name=f"{prefix}-logs",
        resource_group_name=resource_group_name,
        location=cfg.location,
        sku=operationalinsights.WorkspaceSkuArgs(
            name=operationalinsights.WorkspaceSkuNameEnum.PER_GB2018
        ),
        retention_in_days=cfg.log_retention_days,
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


def create_alerts(
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    component: applicationinsights.Component,
    tags: Mapping[str, str],
) -> Alerts:
    prefix = cfg.name_prefix
    action_group = monitor.ActionGroup(
        f"{prefix}-ops",
        action_group_name=f"{prefix}-ops",
        resource_group_name=resource_group_name,
        location="global",
        group_short_name=f"{prefix}-ops"[:12],
        enabled=True,
        email_receivers=[
            monitor.MicrosoftCommonEmailReceiverArgs(
                name="operators", email_address=cfg.alert_email, use_common_alert_schema=True
            )
        ],
        tags=dict(tags),
    )
    actions = monitor.ActionsArgs(action_groups=[action_group.id])

    failures = monitor.ScheduledQueryRule(
        f"{prefix}-archive-failures",
        rule_name=f"{prefix}-archive-failures",
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind=monitor.Kind.LOG_ALERT,
        display_name="Parley: archival run reported failures",
        description=(
            "An archival run logged failed > 0 in its archive_run summary. The sessions it could "
            "not move stay whole in Conversations and are retried by the next run; look at the "
            "run's exceptions in Application Insights."
        ),
        severity=1,
        enabled=True,
        scopes=[component.id],
        evaluation_frequency="PT1H",
        window_size="PT1H",
        criteria=monitor.ScheduledQueryRuleCriteriaArgs(
            all_of=[
                monitor.ConditionArgs(
                    query=ARCHIVE_FAILURES_QUERY,
                    time_aggregation=monitor.TimeAggregation.TOTAL,
                    metric_measure_column="failedRuns",
                    operator=LOG_ALERT_GREATER_THAN,
                    threshold=0,
                    failing_periods=monitor.ConditionFailingPeriodsArgs(
                        number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                    ),
                )
            ]
        ),
        auto_mitigate=False,
        actions=actions,
        tags=dict(tags),
    )

    hours = cfg.archive_stale_alert_hours
    stale = monitor.ScheduledQueryRule(
        f"{prefix}-archive-stale",
        rule_name=f"{prefix}-archive-stale",
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind=monitor.Kind.LOG_ALERT,
        display_name=f"Parley: no archival run completed in {hours} hours",
        description=(
            f"No archive_run summary was logged in the last {hours} hours: the timer is not "
            "running, the app is down, or runs die before they finish."
        ),
        severity=2,
        enabled=True,
        scopes=[component.id],
        evaluation_frequency="PT1H",
        # The window bounds what the query may read (two days at most); ago() narrows it.
        window_size="P2D",
        criteria=monitor.ScheduledQueryRuleCriteriaArgs(
            all_of=[
                monitor.ConditionArgs(
                    query=archive_stale_query(hours),
                    time_aggregation=monitor.TimeAggregation.TOTAL,
                    metric_measure_column="completedRuns",
                    operator=LOG_ALERT_LESS_THAN,
                    threshold=1,
                    failing_periods=monitor.ConditionFailingPeriodsArgs(
                        number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                    ),
                )
            ]
        ),
        auto_mitigate=True,
        actions=actions,
        tags=dict(tags),
    )
    return Alerts(action_group, failures, stale)
