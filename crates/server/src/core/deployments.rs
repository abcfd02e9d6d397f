//! Service deployment history: ECS's `ServiceDeployment` and
//! `ServiceRevision` records (ListServiceDeployments,
//! DescribeServiceDeployments, DescribeServiceRevisions), kept for every
//! deployment of a service, rolling ones included, and the decisions that
//! end a deployment early: alarm-based rollback and StopServiceDeployment.
//!
//! A service deployment follows one `ecs::Deployment` (the `ecs-svc/…`
//! entry of DescribeServices' `deployments`, which the service controller
//! moves along): it shares its 19 digits as its id, and so does the service
//! revision it deploys. Its status follows that deployment's rollout:
//! - IN_PROGRESS while it rolls out, then (after `bakeTimeInMinutes` when
//!   alarms watch it) SUCCESSFUL;
//! - the circuit breaker or an alarm with rollback, or StopServiceDeployment
//!   (ROLLBACK): ROLLBACK_IN_PROGRESS while a new `ecs::Deployment` of the
//!   source revision rolls out, then ROLLBACK_SUCCESSFUL (or
//!   ROLLBACK_FAILED if that one fails too);
//! - failed without rollback, or superseded by a newer deployment: STOPPED.
//!
//! The history lives in the service's [`super::state::ServiceMeta`], in the
//! cluster store beside the service; the newest [`MAX_RECORDS`] are kept.
//! Task counts of a deployment still under way are read from the live
//! `ecs::Deployment`s when described ([`History::view`]), so that a task
//! turning RUNNING never rewrites the history; they are frozen when the
//! deployment ends.

use flotilla_model::arn::Scope;
use flotilla_model::ecs;
use serde::{Deserialize, Serialize};

use super::lb::{put_rule, LbAccount};
use super::services::{new_deployment, start_deployment};
use super::state::Tx;
use super::strategies::{advance, weights, Observed, Progress, Shift, Stage};
use flotilla_model::wire::elbv2;

use ecs::ServiceDeploymentRollbackMonitorsStatus as Monitor;
use ecs::ServiceDeploymentStatus as Status;

/// Service deployments kept per service (older finished ones are dropped,
/// with the revisions no kept deployment names).
pub const MAX_RECORDS: usize = 100;

/// A service's deployments (oldest first) and the revisions they name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Record>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<ecs::ServiceRevision>,
}

/// One service deployment: its wire shape and what links it to the
/// service's `ecs::Deployment`s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub view: ecs::ServiceDeployment,
    /// The `ecs-svc/…` deployment that rolls out the target revision.
    #[serde(rename = "deploymentId")]
    pub deployment_id: String,
    /// The `ecs-svc/…` deployment that rolls back to the source revision.
    #[serde(
        rename = "rollbackDeploymentId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rollback_deployment_id: Option<String>,
    /// When the bake (alarms still watching after the rollout completed)
    /// ends.
    #[serde(rename = "bakeUntil", default, skip_serializing_if = "Option::is_none")]
    pub bake_until: Option<f64>,
    /// BLUE_GREEN, CANARY and LINEAR: where the deployment is.
    #[serde(rename = "progress", default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// PAUSE hooks resolved (continued or timed out with CONTINUE), as
    /// `INDEX:STAGE` (the hook's position in lifecycleHooks, the stage).
    #[serde(rename = "released", default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    /// The key (as in `released`) of each hook detail shown, by hookId.
    #[serde(rename = "hookKeys", default, skip_serializing_if = "Vec::is_empty")]
    pub hook_keys: Vec<(String, String)>,
}

/// The `ecs-svc/…` deployment whose tasks belong in the alternate target
/// groups: the new revision of a traffic-shifting deployment not finished
/// (rolling back included, until its tasks are gone).
pub fn green_deployment(h: &History) -> Option<&str> {
    h.deployments
        .iter()
        .rev()
        .find(|r| r.progress.is_some() && r.view.status.is_some_and(|s| !is_finished(s)))
        .map(|r| r.deployment_id.as_str())
}

/// Whether a traffic-shifting deployment keeps the old revision's tasks:
/// under way and not yet at its clean-up.
pub fn holds_previous(h: &History) -> bool {
    h.deployments.iter().any(|r| {
        r.view.status == Some(Status::InProgress)
            && r.progress.is_some_and(|p| p.stage < Stage::CleanUp)
    })
}

/// Whether a service deployment has reached a status it never leaves.
pub fn is_finished(status: Status) -> bool {
    matches!(
        status,
        Status::Successful | Status::Stopped | Status::RollbackSuccessful | Status::RollbackFailed
    )
}

/// The id a deployment's records share: the digits of `ecs-svc/…`.
pub fn short_id(deployment_id: &str) -> &str {
    deployment_id
        .strip_prefix("ecs-svc/")
        .unwrap_or(deployment_id)
}

pub fn deployment_arn(scope: &Scope, cluster: &str, service: &str, id: &str) -> String {
    scope.arn(format_args!("service-deployment/{cluster}/{service}/{id}"))
}

pub fn revision_arn(scope: &Scope, cluster: &str, service: &str, id: &str) -> String {
    scope.arn(format_args!("service-revision/{cluster}/{service}/{id}"))
}

/// (cluster, service, id) of a `service-deployment/…` or
/// `service-revision/…` ARN of this scope.
pub fn parse_arn<'a>(
    scope: &Scope,
    kind: &str,
    arn: &'a str,
) -> Option<(&'a str, &'a str, &'a str)> {
    let a = flotilla_model::arn::Arn::parse(arn)?;
    if a.account != scope.account || a.region != scope.region || a.kind != kind {
        return None;
    }
    let mut parts = a.rest.split('/');
    let (c, s, id) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !c.is_empty() && !s.is_empty() && !id.is_empty())
        .then_some((c, s, id))
}

/// The alarms a deployment configuration watches, if enabled: (names,
/// rollback).
pub fn watched_alarms(dc: Option<&ecs::DeploymentConfiguration>) -> Option<(&[String], bool)> {
    let a = dc?.alarms.as_ref()?;
    (a.enable == Some(true)).then(|| {
        (
            a.alarm_names.as_deref().unwrap_or_default(),
            a.rollback == Some(true),
        )
    })
}

fn breaker(dc: Option<&ecs::DeploymentConfiguration>) -> Option<bool> {
    let b = dc?.deployment_circuit_breaker.as_ref()?;
    (b.enable == Some(true)).then_some(b.rollback == Some(true))
}

fn summary(arn: String, d: Option<&ecs::Deployment>) -> ecs::ServiceRevisionSummary {
    ecs::ServiceRevisionSummary {
        arn: Some(arn),
        requested_task_count: Some(d.and_then(|d| d.desired_count).unwrap_or(0)),
        running_task_count: Some(d.and_then(|d| d.running_count).unwrap_or(0)),
        pending_task_count: Some(d.and_then(|d| d.pending_count).unwrap_or(0)),
        ..Default::default()
    }
}

impl History {
    pub fn find(&self, id: &str) -> Option<&Record> {
        self.deployments
            .iter()
            .find(|r| short_id(&r.deployment_id) == id)
    }

    pub fn revision(&self, arn: &str) -> Option<&ecs::ServiceRevision> {
        self.revisions
            .iter()
            .find(|r| r.service_revision_arn.as_deref() == Some(arn))
    }

    /// The revision an `ecs-svc/…` deployment runs: the target of the
    /// service deployment it rolls out, or the source revision it rolls
    /// back to.
    pub fn revision_of(&self, deployment_id: &str) -> Option<String> {
        self.deployments.iter().rev().find_map(|r| {
            if r.deployment_id == deployment_id {
                r.view
                    .target_service_revision
                    .as_ref()
                    .and_then(|t| t.arn.clone())
            } else if r.rollback_deployment_id.as_deref() == Some(deployment_id) {
                r.view
                    .rollback
                    .as_ref()
                    .and_then(|b| b.service_revision_arn.clone())
            } else {
                None
            }
        })
    }

    /// The newest revision of `task_definition`, preferring `among`.
    fn revision_for_task_definition(
        &self,
        task_definition: &str,
        among: &[String],
    ) -> Option<String> {
        let of_td =
            |r: &&ecs::ServiceRevision| r.task_definition.as_deref() == Some(task_definition);
        self.revisions
            .iter()
            .rev()
            .filter(of_td)
            .find(|r| {
                among
                    .iter()
                    .any(|a| r.service_revision_arn.as_ref() == Some(a))
            })
            .or_else(|| self.revisions.iter().rev().find(of_td))
            .and_then(|r| r.service_revision_arn.clone())
    }

    /// A record as DescribeServiceDeployments shows it: while it is under
    /// way, the task counts are the live ones of `svc`'s deployments.
    pub fn view(&self, r: &Record, svc: &ecs::Service) -> ecs::ServiceDeployment {
        let mut v = r.view.clone();
        if v.status.is_some_and(is_finished) {
            return v;
        }
        fill_counts(self, r, &mut v, svc);
        v
    }

    /// Drops the oldest finished records beyond [`MAX_RECORDS`] and the
    /// revisions no remaining record names.
    fn trim(&mut self) {
        while self.deployments.len() > MAX_RECORDS {
            let Some(i) = self
                .deployments
                .iter()
                .position(|r| r.view.status.is_some_and(is_finished))
            else {
                break;
            };
            self.deployments.remove(i);
        }
        let named: Vec<String> = self
            .deployments
            .iter()
            .flat_map(|r| {
                let v = &r.view;
                v.source_service_revisions
                    .iter()
                    .flatten()
                    .filter_map(|s| s.arn.clone())
                    .chain(
                        v.target_service_revision
                            .as_ref()
                            .and_then(|t| t.arn.clone()),
                    )
                    .chain(
                        v.rollback
                            .as_ref()
                            .and_then(|b| b.service_revision_arn.clone()),
                    )
            })
            .collect();
        self.revisions.retain(|rev| {
            rev.service_revision_arn
                .as_ref()
                .is_some_and(|a| named.contains(a))
        });
    }
}

/// The target's, the rollback's and the sources' task counts from `svc`'s
/// live deployments (a revision no deployment runs any more has none).
fn fill_counts(h: &History, r: &Record, v: &mut ecs::ServiceDeployment, svc: &ecs::Service) {
    let deployments = svc.deployments.as_deref().unwrap_or_default();
    let by_revision = |arn: &str| {
        deployments
            .iter()
            .find(|d| d.id.as_deref().and_then(|id| h.revision_of(id)).as_deref() == Some(arn))
    };
    let counts = |s: &mut ecs::ServiceRevisionSummary, d: Option<&ecs::Deployment>| {
        let fresh = summary(String::new(), d);
        s.requested_task_count = fresh.requested_task_count;
        s.running_task_count = fresh.running_task_count;
        s.pending_task_count = fresh.pending_task_count;
    };
    let own = |id: &str| deployments.iter().find(|d| d.id.as_deref() == Some(id));
    if let Some(t) = v.target_service_revision.as_mut() {
        counts(t, own(&r.deployment_id));
    }
    for s in v.source_service_revisions.iter_mut().flatten() {
        let arn = s.arn.clone().unwrap_or_default();
        let d = match &r.rollback_deployment_id {
            Some(rb)
                if v.rollback
                    .as_ref()
                    .and_then(|b| b.service_revision_arn.as_ref())
                    == Some(&arn) =>
            {
                own(rb)
            }
            _ => by_revision(&arn).filter(|d| d.id.as_deref() != Some(r.deployment_id.as_str())),
        };
        counts(s, d);
    }
}

/// Records a new deployment `deployment` (already the service's PRIMARY)
/// and the revision it deploys: the service's configuration now, with the
/// container images of `definition`. A deployment still under way is
/// superseded (STOPPED).
pub fn begin(
    h: &mut History,
    scope: &Scope,
    cluster: &str,
    svc: &ecs::Service,
    deployment: &ecs::Deployment,
    definition: Option<&ecs::TaskDefinition>,
    now: f64,
) {
    let service = svc.service_name.clone().unwrap_or_default();
    let dep_id = deployment.id.clone().unwrap_or_default();
    let id = short_id(&dep_id).to_string();
    let arn = deployment_arn(scope, cluster, &service, &id);
    let rev_arn = revision_arn(scope, cluster, &service, &id);

    // What runs now: the other deployments' revisions.
    let mut sources: Vec<ecs::ServiceRevisionSummary> = Vec::new();
    for d in svc.deployments.iter().flatten() {
        if d.id == deployment.id {
            continue;
        }
        let Some(rev) = d.id.as_deref().and_then(|i| h.revision_of(i)) else {
            continue;
        };
        if !sources.iter().any(|s| s.arn.as_ref() == Some(&rev)) {
            sources.push(summary(rev, Some(d)));
        }
    }

    for r in h.deployments.iter_mut() {
        if r.view.status.is_some_and(is_finished) {
            continue;
        }
        fill_counts_frozen(r, svc);
        r.view.status = Some(Status::Stopped);
        r.view.status_reason = Some(format!(
            "Service deployment stopped: superseded by service deployment {arn}."
        ));
        r.view.stopped_at = Some(now);
        r.view.updated_at = Some(now);
        r.view.lifecycle_stage = None;
        finish_monitors(&mut r.view);
    }

    let images = definition
        .map(|td| {
            td.container_definitions
                .iter()
                .flatten()
                .map(|c| ecs::ContainerImage {
                    container_name: c.name.clone(),
                    image: c.image.clone(),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default();
    h.revisions.push(ecs::ServiceRevision {
        service_revision_arn: Some(rev_arn.clone()),
        service_arn: svc.service_arn.clone(),
        cluster_arn: svc.cluster_arn.clone(),
        task_definition: deployment.task_definition.clone(),
        launch_type: svc.launch_type,
        load_balancers: svc.load_balancers.clone(),
        network_configuration: svc.network_configuration.clone(),
        service_registries: svc.service_registries.clone(),
        container_images: Some(images),
        guard_duty_enabled: Some(false),
        created_at: Some(now),
        ..Default::default()
    });

    let dc = svc.deployment_configuration.clone();
    let circuit = breaker(dc.as_ref());
    let alarms = dc.as_ref().and_then(|dc| dc.alarms.as_ref());
    let watched = watched_alarms(dc.as_ref()).is_some();
    let desired = svc.desired_count.unwrap_or(0).max(0) as u32;
    let has_source = !sources.is_empty();
    h.deployments.push(Record {
        view: ecs::ServiceDeployment {
            service_deployment_arn: Some(arn),
            service_arn: svc.service_arn.clone(),
            cluster_arn: svc.cluster_arn.clone(),
            created_at: Some(now),
            started_at: Some(now),
            updated_at: Some(now),
            source_service_revisions: Some(sources),
            target_service_revision: Some(summary(rev_arn, Some(deployment))),
            status: Some(Status::InProgress),
            status_reason: Some("ECS deployment in progress.".into()),
            deployment_configuration: dc.clone(),
            deployment_circuit_breaker: Some(ecs::ServiceDeploymentCircuitBreaker {
                status: Some(if circuit.is_some() {
                    Monitor::Monitoring
                } else {
                    Monitor::Disabled
                }),
                failure_count: Some(0),
                threshold: Some(flotilla_reconcile::breaker_threshold(desired) as i32),
            }),
            alarms: Some(ecs::ServiceDeploymentAlarms {
                status: Some(if watched {
                    Monitor::Monitoring
                } else {
                    Monitor::Disabled
                }),
                alarm_names: alarms
                    .and_then(|a| a.alarm_names.clone())
                    .or(Some(Vec::new())),
                triggered_alarm_names: Some(Vec::new()),
            }),
            ..Default::default()
        },
        deployment_id: dep_id,
        rollback_deployment_id: None,
        bake_until: None,
        // A service's first deployment has nothing to shift traffic from:
        // it rolls out like a rolling one.
        progress: shift_of(dc.as_ref())
            .filter(|_| has_source)
            .map(|_| Progress::start(now)),
        released: Vec::new(),
        hook_keys: Vec::new(),
    });
    if let Some(r) = h.deployments.last_mut() {
        show_progress(r);
    }
    h.trim();
}

/// Counts of a record that is about to finish, frozen as they are now.
/// (The sources keep the counts recorded when the deployment began.)
fn fill_counts_frozen(r: &mut Record, svc: &ecs::Service) {
    let deployments = svc.deployments.as_deref().unwrap_or_default();
    let own = |id: &str| deployments.iter().find(|d| d.id.as_deref() == Some(id));
    if let Some(t) = r.view.target_service_revision.as_mut() {
        let d = own(&r.deployment_id);
        let s = summary(String::new(), d);
        t.requested_task_count = s.requested_task_count;
        t.running_task_count = s.running_task_count;
        t.pending_task_count = s.pending_task_count;
    }
}

/// The monitors stop watching when a deployment ends; a triggered one
/// stays TRIGGERED.
fn finish_monitors(v: &mut ecs::ServiceDeployment) {
    for status in [
        v.deployment_circuit_breaker
            .as_mut()
            .and_then(|b| b.status.as_mut()),
        v.alarms.as_mut().and_then(|a| a.status.as_mut()),
    ]
    .into_iter()
    .flatten()
    {
        if *status == Monitor::Monitoring {
            *status = Monitor::MonitoringComplete;
        }
    }
}

/// DeleteService: the service's deployments still under way end with it
/// (nothing would end them any more): IN_PROGRESS ones STOPPED, a
/// rollback under way ROLLBACK_FAILED, each saying why, task counts
/// frozen. Returns whether any ended.
pub fn end_with_service(h: &mut History, svc: &ecs::Service, now: f64) -> bool {
    let mut ended = false;
    for r in h.deployments.iter_mut() {
        let (status, reason) = match r.view.status {
            Some(Status::InProgress) => (
                Status::Stopped,
                "Service deployment stopped: the service was deleted.",
            ),
            Some(Status::RollbackInProgress) => (
                Status::RollbackFailed,
                "The service was deleted during the rollback.",
            ),
            _ => continue,
        };
        fill_counts_frozen(r, svc);
        r.view.status = Some(status);
        r.view.status_reason = Some(reason.into());
        match status {
            Status::Stopped => r.view.stopped_at = Some(now),
            _ => r.view.finished_at = Some(now),
        }
        r.view.updated_at = Some(now);
        finish_monitors(&mut r.view);
        ended = true;
    }
    ended
}

/// Why a deployment rolls back.
#[derive(Debug, Clone, PartialEq)]
pub enum RollbackCause {
    CircuitBreaker,
    Alarms(Vec<String>),
    /// StopServiceDeployment with ROLLBACK.
    Requested,
    /// ContinueServiceDeployment with ROLLBACK.
    Hook,
    /// A PAUSE hook's timeout, with action ROLLBACK.
    HookTimedOut,
}

impl RollbackCause {
    fn reason(&self) -> String {
        match self {
            RollbackCause::CircuitBreaker => {
                "ECS deployment circuit breaker: tasks failed to start.".into()
            }
            RollbackCause::Alarms(names) => format!(
                "ECS deployment alarm(s) in ALARM state: {}.",
                names.join(", ")
            ),
            RollbackCause::Requested => "Rollback requested with StopServiceDeployment.".into(),
            RollbackCause::Hook => {
                "Rollback requested with ContinueServiceDeployment at a lifecycle hook.".into()
            }
            RollbackCause::HookTimedOut => {
                "A lifecycle hook timed out; its timeout action is ROLLBACK.".into()
            }
        }
    }
}

/// Brings the history in line with the service's `ecs::Deployment`s (the
/// service controller calls it after every plan): rollouts that completed
/// (and baked), failed or went away end their service deployments.
/// Returns whether anything changed, and when to look again (a bake ends).
pub fn sync(h: &mut History, svc: &ecs::Service, now: f64) -> (bool, Option<f64>) {
    let mut changed = false;
    let mut wake: Option<f64> = None;
    let deployments = svc.deployments.as_deref().unwrap_or_default();
    let find = |id: &str| deployments.iter().find(|d| d.id.as_deref() == Some(id));
    let snapshot = h.clone();
    for r in h.deployments.iter_mut() {
        let Some(status) = r.view.status else {
            continue;
        };
        // Traffic-shifting deployments end by their own stages ([`drive`]).
        if is_finished(status) || r.progress.is_some() {
            continue;
        }
        let target = find(&r.deployment_id);
        let failures = target.and_then(|d| d.failed_tasks).unwrap_or(0);
        if let Some(b) = r.view.deployment_circuit_breaker.as_mut() {
            if b.failure_count != Some(failures) && target.is_some() {
                b.failure_count = Some(failures);
                changed = true;
            }
        }
        // Ends the record; `changed` is set below once the match is done.
        let mut ended = false;
        let mut end = |r: &mut Record, status: Status, reason: Option<String>| {
            let mut v = r.view.clone();
            fill_counts(&snapshot, r, &mut v, svc);
            r.view = v;
            r.view.status = Some(status);
            if let Some(reason) = reason {
                r.view.status_reason = Some(reason);
            }
            match status {
                Status::Stopped => r.view.stopped_at = Some(now),
                _ => r.view.finished_at = Some(now),
            }
            r.view.updated_at = Some(now);
            if r.view.lifecycle_stage.is_some() {
                r.view.lifecycle_stage = Some(ecs::ServiceDeploymentLifecycleStage::CleanUp);
            }
            finish_monitors(&mut r.view);
            ended = true;
        };
        match status {
            Status::InProgress => match target.and_then(|d| d.rollout_state) {
                Some(ecs::DeploymentRolloutState::Completed) => {
                    let bake = bake_seconds(r.view.deployment_configuration.as_ref());
                    if bake > 0.0 {
                        let until = *r.bake_until.get_or_insert(now + bake);
                        if r.view.lifecycle_stage
                            != Some(ecs::ServiceDeploymentLifecycleStage::BakeTime)
                        {
                            r.view.lifecycle_stage =
                                Some(ecs::ServiceDeploymentLifecycleStage::BakeTime);
                            r.view.updated_at = Some(now);
                            changed = true;
                        }
                        if now < until {
                            wake = Some(wake.map_or(until, |w: f64| w.min(until)));
                            continue;
                        }
                    }
                    end(
                        r,
                        Status::Successful,
                        Some("ECS deployment completed.".into()),
                    );
                }
                Some(ecs::DeploymentRolloutState::Failed) if r.rollback_deployment_id.is_none() => {
                    if let Some(b) = r.view.deployment_circuit_breaker.as_mut() {
                        b.status = Some(Monitor::Triggered);
                    }
                    let reason = target.and_then(|d| d.rollout_state_reason.clone());
                    end(r, Status::Stopped, reason);
                }
                None => end(
                    r,
                    Status::Stopped,
                    Some("Service deployment stopped: its deployment is gone.".into()),
                ),
                _ => {}
            },
            Status::RollbackInProgress => {
                let back = r.rollback_deployment_id.as_deref().and_then(find);
                match back.and_then(|d| d.rollout_state) {
                    Some(ecs::DeploymentRolloutState::Completed) => {
                        end(r, Status::RollbackSuccessful, None)
                    }
                    Some(ecs::DeploymentRolloutState::Failed) => end(
                        r,
                        Status::RollbackFailed,
                        back.and_then(|d| d.rollout_state_reason.clone()),
                    ),
                    None => end(
                        r,
                        Status::RollbackFailed,
                        Some("The rollback's deployment is gone.".into()),
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
        changed |= ended;
    }
    (changed, wake)
}

/// `bakeTimeInMinutes` in seconds, when alarms watch the deployment (with
/// no alarm nothing could fail it in the bake, so there is none).
fn bake_seconds(dc: Option<&ecs::DeploymentConfiguration>) -> f64 {
    match (watched_alarms(dc), dc.and_then(|d| d.bake_time_in_minutes)) {
        (Some(_), Some(m)) if m > 0 => f64::from(m) * 60.0,
        _ => 0.0,
    }
}

/// The circuit breaker rolled `failed` back with `rollback` (a new
/// PRIMARY of the last completed task definition): the service deployment
/// of `failed` is ROLLBACK_IN_PROGRESS, following `rollback`.
pub fn breaker_rolled_back(h: &mut History, failed: &str, rollback: &ecs::Deployment, now: f64) {
    let td = rollback.task_definition.clone().unwrap_or_default();
    let Some(i) = h
        .deployments
        .iter()
        .rposition(|r| r.deployment_id == failed)
    else {
        return;
    };
    let sources: Vec<String> = h.deployments[i]
        .view
        .source_service_revisions
        .iter()
        .flatten()
        .filter_map(|s| s.arn.clone())
        .collect();
    let rev = h.revision_for_task_definition(&td, &sources);
    let r = &mut h.deployments[i];
    if r.view.status.is_some_and(is_finished) {
        return;
    }
    if let Some(b) = r.view.deployment_circuit_breaker.as_mut() {
        b.status = Some(Monitor::Triggered);
    }
    mark_rollback(
        r,
        rollback,
        rev,
        RollbackCause::CircuitBreaker.reason(),
        now,
    );
}

fn mark_rollback(
    r: &mut Record,
    rollback: &ecs::Deployment,
    revision: Option<String>,
    reason: String,
    now: f64,
) {
    r.rollback_deployment_id = rollback.id.clone();
    r.view.status = Some(Status::RollbackInProgress);
    r.view.status_reason = Some(reason.clone());
    r.view.rollback = Some(ecs::Rollback {
        reason: Some(reason),
        started_at: Some(now),
        service_revision_arn: revision,
    });
    r.view.updated_at = Some(now);
}

/// Errors of [`roll_back`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RollbackError {
    #[error("The service deployment is {0}: only a deployment IN_PROGRESS can be stopped.")]
    NotInProgress(Status),
    #[error("The service deployment has no source service revision to roll back to (it is the service's first deployment).")]
    NoSource,
}

/// Rolls service deployment `id` back to its source revision: a new
/// PRIMARY `ecs::Deployment` of that revision's task definition (and its
/// load balancers and network configuration), the failing one FAILED.
/// Returns the new deployment's id.
///
/// A traffic-shifting deployment goes back differently: production and
/// test traffic return to the original target group first (in this same
/// write), then the old revision's deployment, whose tasks still run, is
/// PRIMARY again, and the service controller stops the new revision's
/// tasks (they drain from the alternate group, which no longer gets
/// traffic).
pub fn roll_back(
    h: &mut History,
    svc: &mut ecs::Service,
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    id: &str,
    cause: RollbackCause,
    now: f64,
) -> Result<String, RollbackError> {
    let Some(i) = h
        .deployments
        .iter()
        .position(|r| short_id(&r.deployment_id) == id)
    else {
        return Err(RollbackError::NoSource);
    };
    let status = h.deployments[i].view.status.unwrap_or(Status::InProgress);
    if status != Status::InProgress {
        return Err(RollbackError::NotInProgress(status));
    }
    // The source that runs the most tasks is the one to go back to.
    let source = h.deployments[i]
        .view
        .source_service_revisions
        .iter()
        .flatten()
        .filter_map(|s| s.arn.clone())
        .find_map(|arn| h.revision(&arn).cloned())
        .ok_or(RollbackError::NoSource)?;
    let reason = cause.reason();
    let failed_id = h.deployments[i].deployment_id.clone();
    if h.deployments[i].progress.is_some() {
        return Ok(roll_back_traffic(h, i, svc, lb, tx, source, cause, now));
    }
    for d in svc.deployments.iter_mut().flatten() {
        if d.id.as_deref() == Some(failed_id.as_str()) {
            d.rollout_state = Some(ecs::DeploymentRolloutState::Failed);
            d.rollout_state_reason = Some(reason.clone());
            d.updated_at = Some(now);
        }
    }
    let td = source.task_definition.clone().unwrap_or_default();
    let dep = new_deployment(now, &td, svc.desired_count.unwrap_or(0), svc.launch_type);
    let dep_id = dep.id.clone().unwrap_or_default();
    svc.task_definition = Some(td);
    if source.load_balancers.is_some() {
        svc.load_balancers = source.load_balancers.clone();
    }
    if source.network_configuration.is_some() {
        svc.network_configuration = source.network_configuration.clone();
    }
    let r = &mut h.deployments[i];
    if let RollbackCause::Alarms(names) = &cause {
        if let Some(a) = r.view.alarms.as_mut() {
            a.status = Some(Monitor::Triggered);
            a.triggered_alarm_names = Some(names.clone());
        }
    }
    mark_rollback(r, &dep, source.service_revision_arn.clone(), reason, now);
    start_deployment(svc, now, dep);
    Ok(dep_id)
}

/// [`roll_back`] for a traffic-shifting deployment (record `i`).
#[allow(clippy::too_many_arguments)]
fn roll_back_traffic(
    h: &mut History,
    i: usize,
    svc: &mut ecs::Service,
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    source: ecs::ServiceRevision,
    cause: RollbackCause,
    now: f64,
) -> String {
    let reason = cause.reason();
    let green = h.deployments[i].deployment_id.clone();
    let entries = svc.load_balancers.clone().unwrap_or_default();
    shift_traffic(lb, tx, &entries, 0.0, 0.0);
    // The newest other deployment is the old revision's (it keeps its
    // tasks until the clean-up, which a rollback never reaches).
    let deployments = svc.deployments.get_or_insert_with(Vec::new);
    let blue = deployments
        .iter()
        .find(|d| d.id.as_deref() != Some(green.as_str()))
        .and_then(|d| d.id.clone());
    for d in deployments.iter_mut() {
        if d.id.as_deref() == Some(green.as_str()) {
            d.status = Some(flotilla_model::lifecycle::DeploymentStatus::Active);
            d.rollout_state = Some(ecs::DeploymentRolloutState::Failed);
            d.rollout_state_reason = Some(reason.clone());
            d.updated_at = Some(now);
        } else if d.id == blue {
            d.status = Some(flotilla_model::lifecycle::DeploymentStatus::Primary);
            d.desired_count = svc.desired_count;
            d.updated_at = Some(now);
            if let Some(td) = &d.task_definition {
                svc.task_definition = Some(td.clone());
            }
        }
    }
    // PRIMARY first, as DescribeServices lists them.
    deployments
        .sort_by_key(|d| d.status != Some(flotilla_model::lifecycle::DeploymentStatus::Primary));
    let r = &mut h.deployments[i];
    if let RollbackCause::Alarms(names) = &cause {
        if let Some(a) = r.view.alarms.as_mut() {
            a.status = Some(Monitor::Triggered);
            a.triggered_alarm_names = Some(names.clone());
        }
    }
    if let Some(p) = r.progress.as_mut() {
        p.production = 0.0;
        p.test = 0.0;
    }
    show_progress(r);
    let blue = blue.unwrap_or_default();
    let rollback = ecs::Deployment {
        id: Some(blue.clone()),
        ..Default::default()
    };
    mark_rollback(
        r,
        &rollback,
        source.service_revision_arn.clone(),
        reason,
        now,
    );
    blue
}

/// Alarms in ALARM (`in_alarm`, by name) against the service deployments
/// they watch: a deployment IN_PROGRESS (baking included) whose alarms
/// name one of them fails; with `rollback` it rolls back to its source
/// revision, without it stops (its `ecs::Deployment` FAILED, no more
/// tasks started). Returns whether anything changed.
pub fn on_alarms(
    h: &mut History,
    svc: &mut ecs::Service,
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    in_alarm: &[String],
    now: f64,
) -> bool {
    let mut changed = false;
    let ids: Vec<(String, Vec<String>, bool)> = h
        .deployments
        .iter()
        .filter(|r| r.view.status == Some(Status::InProgress))
        // A traffic-shifting deployment at its clean-up is past rolling
        // back: the old revision's tasks are going.
        .filter(|r| r.progress.is_none_or(|p| p.stage < Stage::CleanUp))
        .filter_map(|r| {
            let (names, rollback) = watched_alarms(r.view.deployment_configuration.as_ref())?;
            let hit: Vec<String> = names
                .iter()
                .filter(|n| in_alarm.contains(n))
                .cloned()
                .collect();
            (!hit.is_empty()).then(|| (short_id(&r.deployment_id).to_string(), hit, rollback))
        })
        .collect();
    for (id, hit, rollback) in ids {
        changed = true;
        let cause = RollbackCause::Alarms(hit.clone());
        if rollback && roll_back(h, svc, lb, tx, &id, cause.clone(), now).is_ok() {
            continue;
        }
        // No rollback (or nothing to go back to): the deployment stops.
        let reason = cause.reason();
        let Some(r) = h
            .deployments
            .iter_mut()
            .find(|r| short_id(&r.deployment_id) == id)
        else {
            continue;
        };
        for d in svc.deployments.iter_mut().flatten() {
            if d.id.as_deref() == Some(r.deployment_id.as_str()) {
                d.rollout_state = Some(ecs::DeploymentRolloutState::Failed);
                d.rollout_state_reason = Some(reason.clone());
                d.updated_at = Some(now);
            }
        }
        if let Some(a) = r.view.alarms.as_mut() {
            a.status = Some(Monitor::Triggered);
            a.triggered_alarm_names = Some(hit);
        }
        fill_counts_frozen(r, svc);
        r.view.status = Some(Status::Stopped);
        r.view.status_reason = Some(reason);
        r.view.stopped_at = Some(now);
        r.view.updated_at = Some(now);
        finish_monitors(&mut r.view);
    }
    changed
}

/// A deploymentConfiguration Flotilla cannot honour, or that breaks one of
/// ECS's rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("deploymentConfiguration.alarms.alarmNames must name at least one alarm when alarms are enabled.")]
    NoAlarmNames,
    #[error("deploymentConfiguration.bakeTimeInMinutes must be between 0 and 1440; got {0}.")]
    BakeTime(i32),
    #[error("deploymentConfiguration.lifecycleHooks[{0}]: targetType AWS_LAMBDA (the default) is not supported: Flotilla has no Lambda. Use targetType PAUSE and ContinueServiceDeployment.")]
    LambdaHook(usize),
    #[error("deploymentConfiguration.lifecycleHooks are only supported with strategy BLUE_GREEN, CANARY or LINEAR.")]
    Hooks,
    #[error("deploymentConfiguration.lifecycleHooks[{0}]: {1}")]
    Hook(usize, String),
}

/// ECS's rules for the deployment fields this module acts on.
pub fn check_configuration(dc: &ecs::DeploymentConfiguration) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let tenths = |x: f64| ((x * 10.0).round() - x * 10.0).abs() < 1e-6;
    if let Some(c) = &dc.canary_configuration {
        if let Some(p) = c
            .canary_percent
            .filter(|p| !(0.1..=100.0).contains(p) || !tenths(*p))
        {
            return invalid(format!("deploymentConfiguration.canaryConfiguration.canaryPercent must be a multiple of 0.1 from 0.1 to 100.0; got {p}."));
        }
        if let Some(m) = c
            .canary_bake_time_in_minutes
            .filter(|m| !(0..=1440).contains(m))
        {
            return invalid(format!("deploymentConfiguration.canaryConfiguration.canaryBakeTimeInMinutes must be between 0 and 1440; got {m}."));
        }
    }
    if let Some(c) = &dc.linear_configuration {
        if let Some(p) = c
            .step_percent
            .filter(|p| !(3.0..=100.0).contains(p) || !tenths(*p))
        {
            return invalid(format!("deploymentConfiguration.linearConfiguration.stepPercent must be a multiple of 0.1 from 3.0 to 100.0; got {p}."));
        }
        if let Some(m) = c
            .step_bake_time_in_minutes
            .filter(|m| !(0..=1440).contains(m))
        {
            return invalid(format!("deploymentConfiguration.linearConfiguration.stepBakeTimeInMinutes must be between 0 and 1440; got {m}."));
        }
    }
    if let Some(a) = &dc.alarms {
        if a.enable == Some(true) && a.alarm_names.as_ref().is_none_or(|n| n.is_empty()) {
            return Err(ConfigError::NoAlarmNames);
        }
    }
    if let Some(m) = dc.bake_time_in_minutes.filter(|m| !(0..=1440).contains(m)) {
        return Err(ConfigError::BakeTime(m));
    }
    for (i, hook) in dc.lifecycle_hooks.iter().flatten().enumerate() {
        if hook.target_type != Some(ecs::DeploymentLifecycleHookTargetType::Pause) {
            return Err(ConfigError::LambdaHook(i));
        }
        if hook.lifecycle_stages.as_ref().is_none_or(|s| s.is_empty()) {
            return Err(ConfigError::Hook(
                i,
                "lifecycleStages must name at least one stage.".into(),
            ));
        }
        if let Some(m) = hook
            .timeout_configuration
            .as_ref()
            .and_then(|t| t.timeout_in_minutes)
            .filter(|m| !(1..=1440).contains(m))
        {
            return Err(ConfigError::Hook(
                i,
                format!(
                    "timeoutConfiguration.timeoutInMinutes must be between 1 and 1440; got {m}."
                ),
            ));
        }
    }
    Ok(())
}

/// The traffic-shifting strategy of a deployment configuration, with
/// ECS's defaults (canary 5 % for 10 minutes, linear 10 % steps 6 minutes
/// apart); `None` for ROLLING.
pub fn shift_of(dc: Option<&ecs::DeploymentConfiguration>) -> Option<Shift> {
    let dc = dc?;
    let minutes = |m: Option<i32>, default: i32| f64::from(m.unwrap_or(default).max(0)) * 60.0;
    match dc.strategy? {
        ecs::DeploymentStrategy::Rolling => None,
        ecs::DeploymentStrategy::BlueGreen => Some(Shift::AllAtOnce),
        ecs::DeploymentStrategy::Canary => {
            let c = dc.canary_configuration.clone().unwrap_or_default();
            Some(Shift::Canary {
                percent: c.canary_percent.unwrap_or(5.0),
                bake: minutes(c.canary_bake_time_in_minutes, 10),
            })
        }
        ecs::DeploymentStrategy::Linear => {
            let c = dc.linear_configuration.clone().unwrap_or_default();
            Some(Shift::Linear {
                step: c.step_percent.unwrap_or(10.0),
                bake: minutes(c.step_bake_time_in_minutes, 6),
            })
        }
    }
}

fn wire_stage(s: Stage) -> ecs::ServiceDeploymentLifecycleStage {
    use ecs::ServiceDeploymentLifecycleStage as W;
    match s {
        Stage::ReconcileService => W::ReconcileService,
        Stage::PreScaleUp => W::PreScaleUp,
        Stage::ScaleUp => W::ScaleUp,
        Stage::PostScaleUp => W::PostScaleUp,
        Stage::TestTrafficShift => W::TestTrafficShift,
        Stage::PostTestTrafficShift => W::PostTestTrafficShift,
        Stage::ProductionTrafficShift => W::ProductionTrafficShift,
        Stage::PostProductionTrafficShift => W::PostProductionTrafficShift,
        Stage::BakeTime => W::BakeTime,
        Stage::CleanUp | Stage::Done => W::CleanUp,
    }
}

/// The record's stage and requested traffic weights, as
/// DescribeServiceDeployments shows them.
fn show_progress(r: &mut Record) {
    let Some(p) = r.progress else { return };
    r.view.lifecycle_stage = Some(wire_stage(p.stage));
    if let Some(t) = r.view.target_service_revision.as_mut() {
        t.requested_production_traffic_weight = Some(p.production);
        t.requested_test_traffic_weight = Some(p.test);
    }
    for s in r.view.source_service_revisions.iter_mut().flatten() {
        s.requested_production_traffic_weight = Some(100.0 - p.production);
        s.requested_test_traffic_weight = Some(100.0 - p.test);
    }
}

/// Sets the forward of listener rule `rule` to send `green` percent of its
/// traffic to `green_tg` and the rest to `blue_tg`. The load-balancer
/// nodes get the new weights with their next configuration.
fn set_weights(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    rule: &str,
    blue_tg: &str,
    green_tg: &str,
    green: f64,
) {
    let Some(r) = lb.rules.get_mut(rule) else {
        tracing::warn!(
            rule,
            "a deployment's listener rule is gone; its weights were not set"
        );
        return;
    };
    let (wb, wg) = weights(green);
    for a in r.rule.actions.iter_mut().flatten() {
        if a.r#type != Some(elbv2::ActionTypeEnum::Forward) {
            continue;
        }
        let fc = a.forward_config.get_or_insert_with(Default::default);
        let mut groups: Vec<elbv2::TargetGroupTuple> = fc
            .target_groups
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| {
                t.target_group_arn.as_deref() != Some(blue_tg)
                    && t.target_group_arn.as_deref() != Some(green_tg)
            })
            .collect();
        groups.insert(
            0,
            elbv2::TargetGroupTuple {
                target_group_arn: Some(blue_tg.to_string()),
                weight: Some(wb),
            },
        );
        groups.insert(
            1,
            elbv2::TargetGroupTuple {
                target_group_arn: Some(green_tg.to_string()),
                weight: Some(wg),
            },
        );
        fc.target_groups = Some(groups);
        a.target_group_arn = None;
    }
    put_rule(tx, r);
}

/// Every traffic-shifting `loadBalancers` entry's rules to `production`
/// and `test` percent on the alternate (green) target group.
fn shift_traffic(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    entries: &[ecs::LoadBalancer],
    production: f64,
    test: f64,
) {
    for e in entries {
        let (Some(a), Some(blue)) = (&e.advanced_configuration, &e.target_group_arn) else {
            continue;
        };
        let Some(green) = &a.alternate_target_group_arn else {
            continue;
        };
        if let Some(rule) = &a.production_listener_rule {
            set_weights(lb, tx, rule, blue, green, production);
        }
        if let Some(rule) = &a.test_listener_rule {
            set_weights(lb, tx, rule, blue, green, test);
        }
    }
}

/// What the service controller sees of a traffic-shifting deployment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// Healthy tasks of the new revision.
    pub green_healthy: u32,
    /// Tasks of the new revision not yet STOPPED.
    pub green_left: u32,
    /// Tasks of other revisions not yet STOPPED.
    pub blue_left: u32,
}

/// Moves the service's traffic-shifting deployment along its stages
/// (`super::strategies::advance`), setting the listener rules' weights as
/// it shifts, and ends it: SUCCESSFUL once the old revision is gone (the
/// target groups then swap roles, as ECS swaps them), ROLLBACK_SUCCESSFUL
/// once a rollback's new tasks are gone. Returns whether anything changed
/// and when to look again.
pub fn drive(
    h: &mut History,
    svc: &mut ecs::Service,
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    seen: Seen,
    now: f64,
) -> (bool, Option<f64>) {
    let Some(r) = h
        .deployments
        .iter_mut()
        .rev()
        .find(|r| r.progress.is_some() && r.view.status.is_some_and(|s| !is_finished(s)))
    else {
        return (false, None);
    };
    let Some(p) = r.progress else {
        return (false, None);
    };
    let entries = svc.load_balancers.clone().unwrap_or_default();
    match r.view.status {
        Some(Status::InProgress) => {
            let dc = r.view.deployment_configuration.clone();
            let Some(shift) = shift_of(dc.as_ref()) else {
                return (false, None);
            };
            let bake =
                f64::from(dc.and_then(|d| d.bake_time_in_minutes).unwrap_or(0).max(0)) * 60.0;
            let desired = svc.desired_count.unwrap_or(0).max(0) as u32;
            let hooks = pending_hooks(r);
            let held = |stage: Stage| hooks.iter().any(|(_, st, _)| *st == stage);
            let observed = Observed {
                desired,
                green_healthy: seen.green_healthy,
                blue_left: seen.blue_left,
                held: &held,
            };
            let (next, wake, held) = advance(shift, bake, p, &observed, now);
            // Held by a PAUSE hook: it waits for ContinueServiceDeployment
            // or its timeout.
            let holding = hooks.iter().find(|(_, st, _)| held && *st == next.stage);
            if let Some((key, _, hook)) = holding {
                let (hook_changed, hook_wake, timed_out) = await_hook(r, key, hook, now);
                match timed_out {
                    Some(ecs::DeploymentLifecycleHookAction::Rollback) => {
                        let id = short_id(&r.deployment_id).to_string();
                        r.progress = Some(next);
                        let _ = roll_back(h, svc, lb, tx, &id, RollbackCause::HookTimedOut, now);
                        return (true, Some(now));
                    }
                    Some(ecs::DeploymentLifecycleHookAction::Continue) => {
                        r.progress = Some(next);
                        show_progress(r);
                        return (true, Some(now));
                    }
                    None => {}
                }
                let changed = hook_changed || next != p;
                if next != p {
                    if next.production != p.production || next.test != p.test {
                        shift_traffic(lb, tx, &entries, next.production, next.test);
                    }
                    r.progress = Some(next);
                    r.view.updated_at = Some(now);
                    show_progress(r);
                }
                return (changed, hook_wake);
            }
            if next == p {
                return (false, wake);
            }
            if next.production != p.production || next.test != p.test {
                shift_traffic(lb, tx, &entries, next.production, next.test);
            }
            r.progress = Some(next);
            r.view.updated_at = Some(now);
            show_progress(r);
            if next.stage == Stage::Done {
                // The new revision's group is now the primary one.
                for e in svc.load_balancers.iter_mut().flatten() {
                    if let Some(a) = e.advanced_configuration.as_mut() {
                        if let Some(alt) = a.alternate_target_group_arn.take() {
                            a.alternate_target_group_arn = e.target_group_arn.replace(alt);
                        }
                    }
                }
                r.view.status = Some(Status::Successful);
                r.view.status_reason = Some("ECS deployment completed.".into());
                r.view.finished_at = Some(now);
                finish_monitors(&mut r.view);
            }
            // Reaching the clean-up lets the old tasks go: reconcile again now.
            let wake = if next.stage >= Stage::CleanUp && p.stage < Stage::CleanUp {
                Some(now)
            } else {
                wake
            };
            (true, wake)
        }
        Some(Status::RollbackInProgress) if seen.green_left == 0 => {
            r.view.status = Some(Status::RollbackSuccessful);
            r.view.finished_at = Some(now);
            r.view.updated_at = Some(now);
            finish_monitors(&mut r.view);
            (true, None)
        }
        _ => (false, None),
    }
}

/// A traffic-shifting strategy's load balancers, checked as ECS checks
/// them: an entry with `advancedConfiguration` names an alternate target
/// group (not its own) and a production listener rule (and optionally a
/// test one) of a listener of the load balancer both groups are attached
/// to, whose forward sends to both groups. `roleArn` is accepted and not
/// used (Flotilla changes the rules itself).
pub fn check_traffic_shifting(
    lb: &LbAccount,
    dc: &ecs::DeploymentConfiguration,
    entries: &[ecs::LoadBalancer],
    daemon: bool,
) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let given = dc.strategy.unwrap_or(ecs::DeploymentStrategy::Rolling);
    if dc.canary_configuration.is_some() && given != ecs::DeploymentStrategy::Canary {
        return invalid(format!("deploymentConfiguration.canaryConfiguration is only valid with strategy CANARY; the strategy is {given}."));
    }
    if dc.linear_configuration.is_some() && given != ecs::DeploymentStrategy::Linear {
        return invalid(format!("deploymentConfiguration.linearConfiguration is only valid with strategy LINEAR; the strategy is {given}."));
    }
    let Some(strategy) = dc
        .strategy
        .filter(|s| *s != ecs::DeploymentStrategy::Rolling)
    else {
        if dc.lifecycle_hooks.as_ref().is_some_and(|h| !h.is_empty()) {
            return Err(ConfigError::Hooks);
        }
        return Ok(());
    };
    if daemon {
        return invalid(format!("deploymentConfiguration.strategy {strategy} is not supported for a DAEMON service: use ROLLING."));
    }
    let advanced: Vec<&ecs::LoadBalancer> = entries
        .iter()
        .filter(|e| e.advanced_configuration.is_some())
        .collect();
    if advanced.is_empty() {
        return invalid(format!("deploymentConfiguration.strategy {strategy} needs a loadBalancers entry with advancedConfiguration (alternateTargetGroupArn and productionListenerRule): Flotilla shifts traffic through listener rules."));
    }
    for (i, e) in entries.iter().enumerate() {
        let Some(a) = &e.advanced_configuration else {
            continue;
        };
        let at = format!("loadBalancers[{i}].advancedConfiguration");
        let primary = e.target_group_arn.as_deref().unwrap_or_default();
        let Some(alt) = a.alternate_target_group_arn.as_deref() else {
            return invalid(format!(
                "{at}.alternateTargetGroupArn is required for strategy {strategy}."
            ));
        };
        if alt == primary {
            return invalid(format!("{at}.alternateTargetGroupArn must differ from the entry's targetGroupArn {primary}."));
        }
        if !lb.target_groups.contains_key(alt) {
            return invalid(format!("Unable to validate {at}.alternateTargetGroupArn: target group {alt} does not exist."));
        }
        let lbs_primary = super::lb::load_balancers_of(lb, primary);
        let lbs_alt = super::lb::load_balancers_of(lb, alt);
        let shared: Vec<&String> = lbs_primary.iter().filter(|l| lbs_alt.contains(l)).collect();
        if shared.is_empty() {
            return invalid(format!("{at}: the target groups {primary} and {alt} must be attached to the same load balancer."));
        }
        let rules = [
            (
                "productionListenerRule",
                a.production_listener_rule.as_deref(),
                true,
            ),
            ("testListenerRule", a.test_listener_rule.as_deref(), false),
        ];
        for (field, rule, required) in rules {
            let Some(rule) = rule else {
                if required {
                    return invalid(format!("{at}.{field} is required for strategy {strategy}."));
                }
                continue;
            };
            let Some(r) = lb.rules.get(rule) else {
                return invalid(format!("Unable to validate {at}.{field}: listener rule {rule} does not exist (a rule ARN is needed; a listener's default rule cannot be used)."));
            };
            let owner = lb
                .listeners
                .get(&r.listener_arn)
                .map(|l| l.load_balancer_arn().to_string())
                .unwrap_or_default();
            if !shared.iter().any(|l| **l == owner) {
                return invalid(format!("{at}.{field}: the rule's listener belongs to load balancer {owner}, not to the load balancer of target groups {primary} and {alt}."));
            }
            let forwards: Vec<String> = r
                .rule
                .actions
                .iter()
                .flatten()
                .flat_map(super::lb::listeners::action_groups)
                .collect();
            for tg in [primary, alt] {
                if !forwards.iter().any(|f| f == tg) {
                    return invalid(format!("{at}.{field}: the rule {rule} must forward to both target groups; it does not forward to {tg}."));
                }
            }
        }
    }
    Ok(())
}

/// The stage at which a hook stage holds a deployment (once that stage's
/// work is done). PRE_PRODUCTION_TRAFFIC_SHIFT, which has no lifecycle
/// stage of its own, holds at the end of POST_TEST_TRAFFIC_SHIFT.
fn hook_stage(s: ecs::DeploymentLifecycleHookStage) -> Stage {
    use ecs::DeploymentLifecycleHookStage as H;
    match s {
        H::ReconcileService => Stage::ReconcileService,
        H::PreScaleUp => Stage::PreScaleUp,
        H::PostScaleUp => Stage::PostScaleUp,
        H::TestTrafficShift => Stage::TestTrafficShift,
        H::PostTestTrafficShift | H::PreProductionTrafficShift => Stage::PostTestTrafficShift,
        H::ProductionTrafficShift => Stage::ProductionTrafficShift,
        H::PostProductionTrafficShift => Stage::PostProductionTrafficShift,
    }
}

/// The PAUSE hooks of a deployment not yet resolved: (key, the stage it
/// holds, the hook), in the order they hold.
fn pending_hooks(r: &Record) -> Vec<(String, Stage, ecs::DeploymentLifecycleHook)> {
    let mut out = Vec::new();
    let hooks = r
        .view
        .deployment_configuration
        .as_ref()
        .and_then(|d| d.lifecycle_hooks.clone())
        .unwrap_or_default();
    for (i, hook) in hooks.into_iter().enumerate() {
        if hook.target_type != Some(ecs::DeploymentLifecycleHookTargetType::Pause) {
            continue;
        }
        for st in hook.lifecycle_stages.iter().flatten() {
            let key = format!("{i}:{st}");
            if !r.released.contains(&key) {
                out.push((key, hook_stage(*st), hook.clone()));
            }
        }
    }
    out.sort_by_key(|(_, st, _)| *st);
    out
}

/// A deployment held by hook `key`: its detail AWAITING_ACTION (made once,
/// with its expiry), or TIMED_OUT once expired. Returns (changed, when it
/// expires, the timeout action if it timed out now).
fn await_hook(
    r: &mut Record,
    key: &str,
    hook: &ecs::DeploymentLifecycleHook,
    now: f64,
) -> (
    bool,
    Option<f64>,
    Option<ecs::DeploymentLifecycleHookAction>,
) {
    let timeout = hook.timeout_configuration.clone().unwrap_or_default();
    let minutes = f64::from(timeout.timeout_in_minutes.unwrap_or(1440));
    let action = timeout
        .action
        .unwrap_or(ecs::DeploymentLifecycleHookAction::Rollback);
    let existing = r
        .hook_keys
        .iter()
        .find(|(_, k)| k == key)
        .map(|(id, _)| id.clone());
    let details = r.view.lifecycle_hook_details.get_or_insert_with(Vec::new);
    let Some(id) = existing else {
        let id = uuid::Uuid::new_v4().to_string();
        details.push(ecs::DeploymentLifecycleHookDetail {
            hook_id: Some(id.clone()),
            target_type: Some(ecs::DeploymentLifecycleHookTargetType::Pause),
            status: Some(ecs::DeploymentLifecycleHookStatus::AwaitingAction),
            expires_at: Some(now + minutes * 60.0),
            timeout_action: Some(action),
            target_arn: None,
        });
        r.hook_keys.push((id, key.to_string()));
        r.view.updated_at = Some(now);
        return (true, Some(now + minutes * 60.0), None);
    };
    let Some(d) = details
        .iter_mut()
        .find(|d| d.hook_id.as_deref() == Some(id.as_str()))
    else {
        return (false, None, None);
    };
    let expires = d.expires_at.unwrap_or(f64::INFINITY);
    if now < expires {
        return (false, Some(expires), None);
    }
    d.status = Some(ecs::DeploymentLifecycleHookStatus::TimedOut);
    r.released.push(key.to_string());
    r.view.updated_at = Some(now);
    (true, None, Some(action))
}

/// Errors of [`continue_deployment`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContinueError {
    #[error("No lifecycle hook {0} awaits an action in this service deployment.")]
    NoSuchHook(String),
    #[error(transparent)]
    Rollback(#[from] RollbackError),
}

/// ContinueServiceDeployment: the PAUSE hook `hook_id` of deployment `id`
/// is resolved; CONTINUE lets the deployment past its stage (the service
/// controller moves it on), ROLLBACK rolls it back.
#[allow(clippy::too_many_arguments)]
pub fn continue_deployment(
    h: &mut History,
    svc: &mut ecs::Service,
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    id: &str,
    hook_id: &str,
    action: ecs::DeploymentLifecycleHookAction,
    now: f64,
) -> Result<(), ContinueError> {
    let no_hook = || ContinueError::NoSuchHook(hook_id.to_string());
    let r = h
        .deployments
        .iter_mut()
        .find(|r| short_id(&r.deployment_id) == id)
        .ok_or_else(no_hook)?;
    let key = r
        .hook_keys
        .iter()
        .find(|(h, _)| h == hook_id)
        .map(|(_, k)| k.clone())
        .ok_or_else(no_hook)?;
    let d = r
        .view
        .lifecycle_hook_details
        .iter_mut()
        .flatten()
        .find(|d| d.hook_id.as_deref() == Some(hook_id))
        .filter(|d| d.status == Some(ecs::DeploymentLifecycleHookStatus::AwaitingAction))
        .ok_or_else(no_hook)?;
    d.status = Some(ecs::DeploymentLifecycleHookStatus::Succeeded);
    r.released.push(key);
    r.view.updated_at = Some(now);
    if action == ecs::DeploymentLifecycleHookAction::Rollback {
        roll_back(h, svc, lb, tx, id, RollbackCause::Hook, now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::services::{new_deployment, start_deployment};

    fn scope() -> Scope {
        Scope::new("111111111111", "us-east-1")
    }

    /// A service `web` whose first deployment (td:1) completed, and the
    /// history of it.
    fn deployed(dc: ecs::DeploymentConfiguration) -> (History, ecs::Service) {
        let mut svc = ecs::Service {
            service_name: Some("web".into()),
            desired_count: Some(2),
            deployment_configuration: Some(dc),
            ..Default::default()
        };
        let mut h = History::default();
        let d = new_deployment(0.0, "td:1", 2, None);
        start_deployment(&mut svc, 0.0, d.clone());
        begin(&mut h, &scope(), "default", &svc, &d, None, 0.0);
        svc.deployments.as_mut().unwrap()[0].rollout_state =
            Some(ecs::DeploymentRolloutState::Completed);
        assert!(sync(&mut h, &svc, 1.0).0);
        (h, svc)
    }

    fn update(h: &mut History, svc: &mut ecs::Service, td: &str, now: f64) -> String {
        let d = new_deployment(now, td, 2, None);
        start_deployment(svc, now, d.clone());
        begin(h, &scope(), "default", svc, &d, None, now);
        short_id(d.id.as_deref().unwrap()).to_string()
    }

    #[test]
    fn deleting_the_service_ends_its_deployments_under_way() {
        let (mut h, mut svc) = deployed(Default::default());
        let second = update(&mut h, &mut svc, "td:2", 2.0);
        // A traffic-shifting one, which `sync` leaves to its stages.
        h.deployments.last_mut().unwrap().progress = Some(Progress::start(2.0));
        assert!(!sync(&mut h, &svc, 3.0).0, "under way, nothing ends it");
        assert!(end_with_service(&mut h, &svc, 4.0));
        let r = h.find(&second).unwrap();
        assert_eq!(r.view.status, Some(Status::Stopped));
        assert_eq!(r.view.stopped_at, Some(4.0));
        assert!(r.view.status_reason.as_deref().unwrap().contains("deleted"));
        assert_eq!(
            h.deployments[0].view.status,
            Some(Status::Successful),
            "a finished one stays as it was"
        );
        assert!(!end_with_service(&mut h, &svc, 5.0), "nothing left to end");
    }

    #[test]
    fn a_rolling_deployment_ends_successful_and_a_superseded_one_stopped() {
        let (mut h, mut svc) = deployed(Default::default());
        assert_eq!(h.deployments[0].view.status, Some(Status::Successful));
        let second = update(&mut h, &mut svc, "td:2", 2.0);
        let _third = update(&mut h, &mut svc, "td:3", 3.0);
        let r = h.find(&second).unwrap();
        assert_eq!(r.view.status, Some(Status::Stopped));
        assert!(r
            .view
            .status_reason
            .as_deref()
            .unwrap()
            .contains("superseded"));
        // Sources: the revisions the other deployments run.
        let third = h.deployments.last().unwrap();
        assert_eq!(
            third.view.source_service_revisions.as_ref().unwrap().len(),
            2
        );
    }

    #[test]
    fn a_rolling_deployment_watched_by_alarms_bakes_then_an_alarm_rolls_it_back() {
        let dc = ecs::DeploymentConfiguration {
            alarms: Some(ecs::DeploymentAlarms {
                alarm_names: Some(vec!["errors".into()]),
                enable: Some(true),
                rollback: Some(true),
            }),
            bake_time_in_minutes: Some(1),
            ..Default::default()
        };
        let (mut h, mut svc) = deployed(dc);
        // The first deployment bakes too (nothing to roll back to).
        assert_eq!(h.deployments[0].view.status, Some(Status::InProgress));
        let id = update(&mut h, &mut svc, "td:2", 10.0);
        svc.deployments.as_mut().unwrap()[0].rollout_state =
            Some(ecs::DeploymentRolloutState::Completed);
        let (_, wake) = sync(&mut h, &svc, 20.0);
        assert_eq!(wake, Some(80.0), "a minute's bake from the completion");
        let r = h.find(&id).unwrap();
        assert_eq!(
            r.view.lifecycle_stage,
            Some(ecs::ServiceDeploymentLifecycleStage::BakeTime)
        );
        // An alarm nobody watches changes nothing.
        let sc = scope();
        let (mut lb, mut tx) = (LbAccount::default(), Tx::for_test(&sc));
        assert!(!on_alarms(
            &mut h,
            &mut svc,
            &mut lb,
            &mut tx,
            &["other".into()],
            30.0
        ));
        assert!(on_alarms(
            &mut h,
            &mut svc,
            &mut lb,
            &mut tx,
            &["errors".into()],
            30.0
        ));
        let r = h.find(&id).unwrap();
        assert_eq!(r.view.status, Some(Status::RollbackInProgress));
        let alarms = r.view.alarms.as_ref().unwrap();
        assert_eq!(alarms.status, Some(Monitor::Triggered));
        assert_eq!(
            alarms.triggered_alarm_names.as_deref(),
            Some(&["errors".to_string()][..])
        );
        assert_eq!(svc.task_definition.as_deref(), Some("td:1"));
        // The rollback's deployment completes: ROLLBACK_SUCCESSFUL.
        svc.deployments.as_mut().unwrap()[0].rollout_state =
            Some(ecs::DeploymentRolloutState::Completed);
        sync(&mut h, &svc, 40.0);
        assert_eq!(
            h.find(&id).unwrap().view.status,
            Some(Status::RollbackSuccessful)
        );
    }

    #[test]
    fn a_pause_hook_awaits_action_then_times_out_with_its_action() {
        let hook = ecs::DeploymentLifecycleHook {
            target_type: Some(ecs::DeploymentLifecycleHookTargetType::Pause),
            lifecycle_stages: Some(vec![
                ecs::DeploymentLifecycleHookStage::PostScaleUp,
                ecs::DeploymentLifecycleHookStage::PreProductionTrafficShift,
            ]),
            timeout_configuration: Some(ecs::DeploymentLifecycleHookTimeoutConfiguration {
                timeout_in_minutes: Some(2),
                action: Some(ecs::DeploymentLifecycleHookAction::Continue),
            }),
            ..Default::default()
        };
        let mut r = Record {
            view: ecs::ServiceDeployment {
                deployment_configuration: Some(ecs::DeploymentConfiguration {
                    lifecycle_hooks: Some(vec![hook.clone()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let pending = pending_hooks(&r);
        assert_eq!(
            pending.iter().map(|(_, s, _)| *s).collect::<Vec<_>>(),
            [Stage::PostScaleUp, Stage::PostTestTrafficShift]
        );
        let key = pending[0].0.clone();
        assert_eq!(
            await_hook(&mut r, &key, &hook, 100.0),
            (true, Some(220.0), None)
        );
        let detail = &r.view.lifecycle_hook_details.as_ref().unwrap()[0];
        assert_eq!(
            detail.status,
            Some(ecs::DeploymentLifecycleHookStatus::AwaitingAction)
        );
        assert_eq!(
            await_hook(&mut r, &key, &hook, 200.0),
            (false, Some(220.0), None)
        );
        let (_, _, action) = await_hook(&mut r, &key, &hook, 220.0);
        assert_eq!(action, Some(ecs::DeploymentLifecycleHookAction::Continue));
        let detail = &r.view.lifecycle_hook_details.as_ref().unwrap()[0];
        assert_eq!(
            detail.status,
            Some(ecs::DeploymentLifecycleHookStatus::TimedOut)
        );
        assert_eq!(pending_hooks(&r).len(), 1, "released");
    }

    #[test]
    fn configurations_ecs_refuses_are_refused_naming_the_field() {
        let lambda = ecs::DeploymentConfiguration {
            lifecycle_hooks: Some(vec![ecs::DeploymentLifecycleHook::default()]),
            ..Default::default()
        };
        assert!(check_configuration(&lambda)
            .unwrap_err()
            .to_string()
            .contains("AWS_LAMBDA"));
        let canary = ecs::DeploymentConfiguration {
            canary_configuration: Some(ecs::CanaryConfiguration {
                canary_percent: Some(0.05),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_configuration(&canary)
            .unwrap_err()
            .to_string()
            .contains("canaryPercent"));
        let no_alarm = ecs::DeploymentConfiguration {
            alarms: Some(ecs::DeploymentAlarms {
                alarm_names: Some(vec![]),
                enable: Some(true),
                rollback: Some(false),
            }),
            ..Default::default()
        };
        assert_eq!(
            check_configuration(&no_alarm),
            Err(ConfigError::NoAlarmNames)
        );
    }
}
