//! [`MetricStore`]: the operations of CloudWatch metrics and metric alarms
//! over the durable store, one method per API operation.
//!
//! Writes (PutMetricData, every alarm change) are `async` and resolve only
//! once durable; they never block a runtime thread (the writer thread does
//! the I/O). Reads are synchronous, bounded SQLite queries (at most 1,440
//! datapoints for GetMetricStatistics, 100,800 for GetMetricData); a caller
//! that wants them off its runtime threads wraps them in `spawn_blocking`.
//!
//! Alarm changes are serialized by one async lock, held from the moment a
//! change is computed until it is durable *and* applied to memory (the guard
//! travels with the write and is released on the writer thread after the
//! commit), so a change is always computed from the latest state and is
//! visible only once it is on disk, even if the caller stops waiting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use flotilla_model::arn::Scope;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::alarm::evaluate::{evaluate, Evaluation, Slot, EXTRA_PERIODS};
use crate::alarm::schedule::{boundary, cadence_secs, AlarmKey, Schedule};
use crate::alarm::{
    self, action_item, compiled_metrics, configuration_item, name_from_arn, state_item,
    ActionOutcome, AlarmFilter, AlarmHistoryItem, AlarmTransition, DescribeAlarmHistoryInput,
    DescribeAlarmHistoryOutput, DescribeAlarmsForMetricInput, DescribeAlarmsInput,
    DescribeAlarmsOutput, MetricAlarm, PutMetricAlarmInput, SetAlarmStateInput,
};
use crate::db::{AlarmOp, Db, HistoryRecord, MaintenanceStep, Snapshot};
use crate::error::{check_count, check_len, MetricsError, Result};
use crate::ingest::{self, Caller, PutMetricDataInput};
use crate::query::{
    self, bucketize, Buckets, GetMetricDataInput, GetMetricDataOutput, GetMetricStatisticsInput,
    GetMetricStatisticsOutput, ListMetricsInput, ListMetricsOutput,
};
use crate::series::MetricId;
use crate::types::{AlarmType, HistoryItemType, ScanBy, Tag, Timestamp};

/// Limits of a store.
#[derive(Debug, Clone)]
pub struct MetricStoreOptions {
    /// Alarms one account may have in one region (`LimitExceeded` beyond).
    pub max_alarms_per_scope: usize,
}

impl Default for MetricStoreOptions {
    fn default() -> Self {
        MetricStoreOptions {
            max_alarms_per_scope: 10_000,
        }
    }
}

/// What [`MetricStore::maintain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub rows_rolled: usize,
    pub tables_dropped: usize,
    pub expired: usize,
    pub steps: usize,
}

type AlarmTable = BTreeMap<Scope, BTreeMap<String, MetricAlarm>>;

struct Inner {
    db: Db,
    alarms: Arc<RwLock<AlarmTable>>,
    schedule: Arc<Mutex<Schedule>>,
    /// Serializes alarm changes (see the module docs).
    alarm_lock: Arc<tokio::sync::Mutex<()>>,
    schedule_changed: Arc<Notify>,
    /// When each alarm last handed out actions (a transition or a repeat of
    /// its Auto Scaling actions). Memory only: after a restart an alarm
    /// that stays in ALARM repeats its Auto Scaling actions at once, which
    /// also covers a transition whose delivery the crash interrupted.
    invoked: Mutex<HashMap<AlarmKey, Timestamp>>,
    options: MetricStoreOptions,
}

/// The CloudWatch metric store and alarm engine. Cheap to clone (one shared
/// instance).
#[derive(Clone)]
pub struct MetricStore {
    inner: Arc<Inner>,
}

/// A change to one alarm, ready to write.
struct Change {
    key: AlarmKey,
    alarm: MetricAlarm,
    ops: Vec<AlarmOp>,
    transition: Option<AlarmTransition>,
}

impl MetricStore {
    /// Opens (or creates) the store in the SQLite file at `path`. Every
    /// stored alarm is due at once: the first [`MetricStore::evaluate_due`]
    /// evaluates them all.
    pub fn open(path: &Path, options: MetricStoreOptions) -> Result<MetricStore> {
        let db = Db::open(path)?;
        let mut table = AlarmTable::new();
        let mut schedule = Schedule::default();
        for (scope, name, body) in db.load_alarms()? {
            match serde_json::from_str::<MetricAlarm>(&body) {
                Ok(alarm) => {
                    schedule.set((scope.clone(), name.clone()), Timestamp(0));
                    table.entry(scope).or_default().insert(name, alarm);
                }
                Err(e) => warn!(alarm = name, error = %e, "stored alarm unreadable; skipped"),
            }
        }
        debug!(alarms = schedule.len(), "alarms loaded");
        Ok(MetricStore {
            inner: Arc::new(Inner {
                db,
                alarms: Arc::new(RwLock::new(table)),
                schedule: Arc::new(Mutex::new(schedule)),
                alarm_lock: Arc::new(tokio::sync::Mutex::new(())),
                schedule_changed: Arc::new(Notify::new()),
                invoked: Mutex::new(HashMap::new()),
                options,
            }),
        })
    }

    /// Stops the writer once what is queued is written. Later writes fail.
    pub fn close(&self) {
        self.inner.db.close();
    }

    // ---- metrics ----

    /// PutMetricData from a client: `AWS/` namespaces are refused.
    pub async fn put_metric_data(
        &self,
        scope: &Scope,
        input: &PutMetricDataInput,
        now: Timestamp,
    ) -> Result<()> {
        self.put(scope, input, now, Caller::User).await
    }

    /// The control plane's own metrics (`AWS/ECS`, `AWS/ApplicationELB`):
    /// the same rules, `AWS/` namespaces allowed.
    pub async fn put_internal_metric_data(
        &self,
        scope: &Scope,
        input: &PutMetricDataInput,
        now: Timestamp,
    ) -> Result<()> {
        self.put(scope, input, now, Caller::ControlPlane).await
    }

    async fn put(
        &self,
        scope: &Scope,
        input: &PutMetricDataInput,
        now: Timestamp,
        caller: Caller,
    ) -> Result<()> {
        let samples = ingest::validate(input, now, caller)?;
        if samples.is_empty() {
            return Ok(());
        }
        self.inner.db.write_samples(scope.clone(), samples).await
    }

    pub fn get_metric_statistics(
        &self,
        scope: &Scope,
        input: &GetMetricStatisticsInput,
        now: Timestamp,
    ) -> Result<GetMetricStatisticsOutput> {
        query::get_metric_statistics(&self.inner.db, scope, input, now)
    }

    pub fn get_metric_data(
        &self,
        scope: &Scope,
        input: &GetMetricDataInput,
        now: Timestamp,
    ) -> Result<GetMetricDataOutput> {
        query::get_metric_data(&self.inner.db, scope, input, now)
    }

    pub fn list_metrics(
        &self,
        scope: &Scope,
        input: &ListMetricsInput,
        now: Timestamp,
    ) -> Result<ListMetricsOutput> {
        query::list_metrics(&self.inner.db, scope, input, now)
    }

    /// Rolls closed partitions into coarser tiers and deletes what is past
    /// retention (data, 30-day alarm history, series with no data left), in
    /// bounded steps that let other writes through between them. Call it
    /// every minute or so.
    pub async fn maintain(&self, now: Timestamp) -> Result<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        loop {
            let MaintenanceStep {
                rows_rolled,
                tables_dropped,
                expired,
                done,
            } = self.inner.db.maintain_step(now).await?;
            report.rows_rolled += rows_rolled;
            report.tables_dropped += tables_dropped;
            report.expired += expired;
            report.steps += 1;
            if done {
                return Ok(report);
            }
        }
    }

    // ---- alarms ----

    fn alarm(&self, scope: &Scope, name: &str) -> Option<MetricAlarm> {
        self.inner.alarms.read().get(scope)?.get(name).cloned()
    }

    /// Writes `changes` and then, on the writer thread, applies them to
    /// memory and releases the alarm lock.
    async fn commit(
        &self,
        guard: tokio::sync::OwnedMutexGuard<()>,
        changes: Vec<Change>,
        removed: Vec<AlarmKey>,
        extra: Vec<AlarmOp>,
        reschedule: Vec<(AlarmKey, Timestamp)>,
    ) -> Result<Vec<AlarmTransition>> {
        let mut ops: Vec<AlarmOp> = changes.iter().flat_map(|c| c.ops.iter().cloned()).collect();
        ops.extend(extra);
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let transitions: Vec<AlarmTransition> = changes
            .iter()
            .filter_map(|c| c.transition.clone())
            .collect();
        let alarms = Arc::clone(&self.inner.alarms);
        let schedule = Arc::clone(&self.inner.schedule);
        let notify = !reschedule.is_empty() || !removed.is_empty();
        let then = Box::new(move || {
            {
                let mut table = alarms.write();
                for change in changes {
                    table
                        .entry(change.key.0)
                        .or_default()
                        .insert(change.key.1, change.alarm);
                }
                for (scope, name) in &removed {
                    if let Some(by_name) = table.get_mut(scope) {
                        by_name.remove(name);
                    }
                }
            }
            let mut schedule = schedule.lock();
            for key in &removed {
                schedule.remove(key);
            }
            for (key, at) in reschedule {
                schedule.set(key, at);
            }
            drop(guard);
        });
        self.inner.db.write_alarms(ops, Some(then)).await?;
        if notify {
            self.inner.schedule_changed.notify_waiters();
        }
        if !transitions.is_empty() {
            let mut invoked = self.inner.invoked.lock();
            for t in &transitions {
                invoked.insert((t.scope.clone(), t.alarm_name.clone()), t.at);
            }
        }
        Ok(transitions)
    }

    /// PutMetricAlarm: creates or replaces an alarm, and evaluates it at
    /// once. A new alarm starts in INSUFFICIENT_DATA ("Unchecked: Initial
    /// alarm creation"); an updated one keeps its state (the model: "When
    /// you update an existing alarm, its state is left unchanged") and its
    /// tags. Returns the transition the first evaluation caused, if any.
    pub async fn put_metric_alarm(
        &self,
        scope: &Scope,
        input: &PutMetricAlarmInput,
        now: Timestamp,
    ) -> Result<Option<AlarmTransition>> {
        let mut alarm = alarm::validate_put(scope, input, now)?;
        let guard = Arc::clone(&self.inner.alarm_lock).lock_owned().await;
        let existing = self.alarm(scope, &alarm.alarm_name);
        match &existing {
            Some(old) => {
                alarm.state_value = old.state_value;
                alarm.state_reason = old.state_reason.clone();
                alarm.state_reason_data = old.state_reason_data.clone();
                alarm.state_updated_timestamp = old.state_updated_timestamp;
                alarm.state_transitioned_timestamp = old.state_transitioned_timestamp;
                alarm.tags = old.tags.clone();
            }
            None => {
                let count = self.inner.alarms.read().get(scope).map_or(0, BTreeMap::len);
                if count >= self.inner.options.max_alarms_per_scope {
                    return Err(MetricsError::LimitExceeded(format!(
                        "The maximum number of alarms ({}) for this account and region has been reached.",
                        self.inner.options.max_alarms_per_scope
                    )));
                }
            }
        }
        let key: AlarmKey = (scope.clone(), alarm.alarm_name.clone());
        let (summary, data) = configuration_item(existing.as_ref(), Some(&alarm));
        let mut ops = vec![history(
            scope,
            &alarm.alarm_name,
            now,
            HistoryItemType::ConfigurationUpdate,
            summary,
            data,
        )];
        let cadence = cadence_secs(alarm.period_secs());
        let at = boundary(now, cadence);
        let slots = self
            .inner
            .db
            .read(|snap| self.slots(snap, scope, &alarm, at, now));
        let evaluation = match slots {
            Ok(slots) => evaluate(&alarm, &slots, now),
            Err(e) => {
                warn!(alarm = alarm.alarm_name, error = %e, "first evaluation failed; the alarm is evaluated again when due");
                Evaluation::Keep
            }
        };
        let mut transition = None;
        if let Some((evaluated, state_ops, t)) = apply_evaluation(scope, &alarm, evaluation, now) {
            alarm = evaluated;
            ops.extend(state_ops);
            transition = t;
        }
        ops.insert(0, put_op(scope, &alarm)?);
        let change = Change {
            key: key.clone(),
            alarm,
            ops,
            transition,
        };
        let mut transitions = self
            .commit(
                guard,
                vec![change],
                Vec::new(),
                Vec::new(),
                vec![(key, at.plus_secs(cadence))],
            )
            .await?;
        Ok(transitions.pop())
    }

    /// DescribeAlarms, in alarm name order.
    pub fn describe_alarms(
        &self,
        scope: &Scope,
        input: &DescribeAlarmsInput,
    ) -> Result<DescribeAlarmsOutput> {
        let filter = AlarmFilter::new(input)?;
        let table = self.inner.alarms.read();
        let mut metric_alarms: Vec<MetricAlarm> = Vec::new();
        let mut next_token = None;
        if let Some(by_name) = table.get(scope) {
            use std::ops::Bound;
            let lower = match &filter.after {
                Some(name) => Bound::Excluded(name.clone()),
                None => Bound::Unbounded,
            };
            for (_, alarm) in by_name.range::<String, _>((lower, Bound::Unbounded)) {
                if !filter.matches(alarm) {
                    continue;
                }
                if metric_alarms.len() == filter.limit {
                    // The page is full and another alarm matches.
                    next_token = Some(AlarmFilter::token_after(
                        &metric_alarms[filter.limit - 1].alarm_name,
                    ));
                    break;
                }
                metric_alarms.push(alarm.clone());
            }
        }
        Ok(DescribeAlarmsOutput {
            metric_alarms,
            next_token,
        })
    }

    /// DescribeAlarmsForMetric: single-metric alarms on the metric.
    pub fn describe_alarms_for_metric(
        &self,
        scope: &Scope,
        input: &DescribeAlarmsForMetricInput,
    ) -> Result<Vec<MetricAlarm>> {
        let matches = alarm::for_metric_filter(input)?;
        let table = self.inner.alarms.read();
        Ok(table
            .get(scope)
            .map(|by_name| by_name.values().filter(|a| matches(a)).cloned().collect())
            .unwrap_or_default())
    }

    /// DeleteAlarms. Names that name no alarm are skipped (the others are
    /// still deleted), as CloudWatch documents. History stays.
    pub async fn delete_alarms(
        &self,
        scope: &Scope,
        names: &[String],
        now: Timestamp,
    ) -> Result<()> {
        check_names(names)?;
        let guard = Arc::clone(&self.inner.alarm_lock).lock_owned().await;
        let mut ops = Vec::new();
        let mut removed = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            if !seen.insert(name) {
                continue;
            }
            if let Some(old) = self.alarm(scope, name) {
                ops.push(AlarmOp::Delete {
                    scope: scope.clone(),
                    name: name.clone(),
                });
                let (summary, data) = configuration_item(Some(&old), None);
                ops.push(history(
                    scope,
                    name,
                    now,
                    HistoryItemType::ConfigurationUpdate,
                    summary,
                    data,
                ));
                removed.push((scope.clone(), name.clone()));
            }
        }
        self.commit(guard, Vec::new(), removed, ops, Vec::new())
            .await?;
        Ok(())
    }

    /// SetAlarmState: the state holds until the next evaluation, which
    /// changes it back if the data says otherwise (and then records its own
    /// reason even if it agrees). Actions run when the state changes.
    pub async fn set_alarm_state(
        &self,
        scope: &Scope,
        input: &SetAlarmStateInput,
        now: Timestamp,
    ) -> Result<Option<AlarmTransition>> {
        alarm::check_alarm_name(&input.alarm_name, "AlarmName")?;
        check_len(&input.state_reason, "StateReason", 0, 1023)?;
        if let Some(data) = &input.state_reason_data {
            check_len(data, "StateReasonData", 0, 4000)?;
            if serde_json::from_str::<serde_json::Value>(data).is_err() {
                return Err(MetricsError::InvalidFormat(
                    "StateReasonData was not syntactically valid JSON.".into(),
                ));
            }
        }
        let guard = Arc::clone(&self.inner.alarm_lock).lock_owned().await;
        let old = self
            .alarm(scope, &input.alarm_name)
            .ok_or_else(|| MetricsError::alarm_not_found(&input.alarm_name))?;
        let mut new = old.clone();
        new.state_value = input.state_value;
        new.state_reason = input.state_reason.clone();
        new.state_reason_data = input.state_reason_data.clone();
        new.state_updated_timestamp = now;
        new.state_set_manually = true;
        let mut ops = Vec::new();
        let mut transition = None;
        if new.state_value != old.state_value {
            new.state_transitioned_timestamp = now;
            let (summary, data) = state_item(&old, &new);
            ops.push(history(
                scope,
                &new.alarm_name,
                now,
                HistoryItemType::StateUpdate,
                summary,
                data,
            ));
            transition = Some(AlarmTransition::new(scope, &old, &new, Vec::new(), now));
        }
        ops.insert(0, put_op(scope, &new)?);
        let change = Change {
            key: (scope.clone(), new.alarm_name.clone()),
            alarm: new,
            ops,
            transition,
        };
        let mut transitions = self
            .commit(guard, vec![change], Vec::new(), Vec::new(), Vec::new())
            .await?;
        Ok(transitions.pop())
    }

    /// EnableAlarmActions (`enabled`) / DisableAlarmActions. Unknown names
    /// are skipped.
    pub async fn set_alarm_actions_enabled(
        &self,
        scope: &Scope,
        names: &[String],
        enabled: bool,
    ) -> Result<()> {
        check_names(names)?;
        let guard = Arc::clone(&self.inner.alarm_lock).lock_owned().await;
        let mut changes = Vec::new();
        for name in names.iter().collect::<HashSet<_>>() {
            if let Some(mut alarm) = self.alarm(scope, name) {
                if alarm.actions_enabled != enabled {
                    alarm.actions_enabled = enabled;
                    let ops = vec![put_op(scope, &alarm)?];
                    changes.push(Change {
                        key: (scope.clone(), name.clone()),
                        alarm,
                        ops,
                        transition: None,
                    });
                }
            }
        }
        self.commit(guard, changes, Vec::new(), Vec::new(), Vec::new())
            .await?;
        Ok(())
    }

    /// DescribeAlarmHistory. History outlives deleted alarms (30 days).
    pub fn describe_alarm_history(
        &self,
        scope: &Scope,
        input: &DescribeAlarmHistoryInput,
    ) -> Result<DescribeAlarmHistoryOutput> {
        if let Some(name) = &input.alarm_name {
            alarm::check_alarm_name(name, "AlarmName")?;
        }
        let limit = match input.max_records {
            None => 100,
            Some(n @ 1..=100) => n as usize,
            Some(n) => {
                return Err(MetricsError::invalid(format!(
                "The value {n} for parameter MaxRecords is invalid. It must be between 1 and 100."
            )))
            }
        };
        let after = match &input.next_token {
            None => None,
            Some(token) => {
                let text = query::decode_token(token)?;
                let rest = text
                    .strip_prefix("ah:")
                    .ok_or_else(MetricsError::bad_token)?;
                let (ts, id) = rest.split_once(':').ok_or_else(MetricsError::bad_token)?;
                Some((
                    ts.parse().map_err(|_| MetricsError::bad_token())?,
                    id.parse().map_err(|_| MetricsError::bad_token())?,
                ))
            }
        };
        if !input.alarm_types.is_empty() && !input.alarm_types.contains(&AlarmType::MetricAlarm) {
            return Ok(DescribeAlarmHistoryOutput {
                alarm_history_items: Vec::new(),
                next_token: None,
            });
        }
        let ascending = input.scan_by == Some(ScanBy::TimestampAscending);
        let mut records = self.inner.db.read(|snap| {
            snap.history(
                scope,
                input.alarm_name.as_deref(),
                input.history_item_type,
                input.start_date,
                input.end_date,
                ascending,
                after,
                limit + 1,
            )
        })?;
        let next_token = (records.len() > limit).then(|| {
            records.truncate(limit);
            let last = &records[limit - 1];
            query::encode_token(&format!("ah:{}:{}", last.ts.millis(), last.id))
        });
        let alarm_history_items = records
            .into_iter()
            .map(|r| AlarmHistoryItem {
                alarm_name: r.alarm_name,
                alarm_type: r.alarm_type,
                timestamp: r.ts,
                history_item_type: r.kind,
                history_summary: r.summary,
                history_data: r.data,
            })
            .collect();
        Ok(DescribeAlarmHistoryOutput {
            alarm_history_items,
            next_token,
        })
    }

    /// Records how the delivery of one of a transition's actions went, as an
    /// `Action` history item.
    pub async fn record_action(
        &self,
        scope: &Scope,
        alarm_name: &str,
        action: &str,
        outcome: &ActionOutcome,
        at: Timestamp,
    ) -> Result<()> {
        let (summary, data) = action_item(action, outcome, at);
        let op = history(
            scope,
            alarm_name,
            at,
            HistoryItemType::Action,
            summary,
            data,
        );
        self.inner.db.write_alarms(vec![op], None).await
    }

    fn alarm_for_arn(&self, scope: &Scope, arn: &str) -> Result<MetricAlarm> {
        check_len(arn, "ResourceARN", 1, 1024)?;
        let not_found = || MetricsError::ResourceNotFoundException {
            resource_type: "alarm".into(),
            resource_id: arn.to_string(),
            message: format!("The resource {arn} does not exist."),
        };
        if !arn.starts_with("arn:") {
            return Err(MetricsError::invalid(format!(
                "The value {arn} for parameter ResourceARN is invalid. It must be an alarm ARN (arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME)."
            )));
        }
        let name = name_from_arn(scope, arn).ok_or_else(not_found)?;
        self.alarm(scope, name).ok_or_else(not_found)
    }

    /// TagResource: adds or replaces tags (at most 50 per alarm).
    pub async fn tag_resource(&self, scope: &Scope, arn: &str, tags: &[Tag]) -> Result<()> {
        alarm::check_tags(tags, "Tags")?;
        let guard = Arc::clone(&self.inner.alarm_lock).lock_owned().await;
        let mut alarm = self.alarm_for_arn(scope, arn)?;
        for tag in tags {
            match alarm.tags.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value.clone(),
                None => alarm.tags.push(tag.clone()),
            }
        }
        check_count(&alarm.tags, "Tags", alarm::MAX_TAGS)?;
        let ops = vec![put_op(scope, &alarm)?];
        let change = Change {
            key: (scope.clone(), alarm.alarm_name.clone()),
            alarm,
            ops,
            transition: None,
        };
        self.commit(guard, vec![change], Vec::new(), Vec::new(), Vec::new())
            .await?;
        Ok(())
    }

    /// UntagResource.
    pub async fn untag_resource(&self, scope: &Scope, arn: &str, keys: &[String]) -> Result<()> {
        for (i, key) in keys.iter().enumerate() {
            check_len(key, &format!("TagKeys.member.{}", i + 1), 1, 128)?;
        }
        let guard = Arc::clone(&self.inner.alarm_lock).lock_owned().await;
        let mut alarm = self.alarm_for_arn(scope, arn)?;
        alarm.tags.retain(|t| !keys.contains(&t.key));
        let ops = vec![put_op(scope, &alarm)?];
        let change = Change {
            key: (scope.clone(), alarm.alarm_name.clone()),
            alarm,
            ops,
            transition: None,
        };
        self.commit(guard, vec![change], Vec::new(), Vec::new(), Vec::new())
            .await?;
        Ok(())
    }

    /// ListTagsForResource.
    pub fn list_tags_for_resource(&self, scope: &Scope, arn: &str) -> Result<Vec<Tag>> {
        Ok(self.alarm_for_arn(scope, arn)?.tags)
    }

    // ---- evaluation ----

    /// When the next alarm evaluation is due (`None`: no alarms). The
    /// server's controller sleeps until then, or until
    /// [`MetricStore::schedule_changed`] fires.
    pub fn next_evaluation(&self) -> Option<Timestamp> {
        self.inner.schedule.lock().next_due()
    }

    /// Notified when alarms are created, updated or deleted: the next due
    /// evaluation may have moved.
    pub fn schedule_changed(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.schedule_changed)
    }

    /// Evaluates every alarm due at `now` (as of its latest evaluation
    /// boundary), persists the state changes with their history, and returns
    /// the transitions for the server to deliver. The reads run on tokio's
    /// blocking pool; an alarm changed meanwhile by an API call is left for
    /// its next evaluation.
    pub async fn evaluate_due(&self, now: Timestamp) -> Result<Vec<AlarmTransition>> {
        let due = self.inner.schedule.lock().take_due(now);
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut work = Vec::with_capacity(due.len());
        {
            let table = self.inner.alarms.read();
            let mut schedule = self.inner.schedule.lock();
            for (key, _) in due {
                if let Some(alarm) = table.get(&key.0).and_then(|m| m.get(&key.1)) {
                    let cadence = cadence_secs(alarm.period_secs());
                    let at = boundary(now, cadence);
                    schedule.set(key.clone(), at.plus_secs(cadence));
                    work.push((key, alarm.clone(), at));
                }
            }
        }
        let store = self.clone();
        // One read snapshot for every due alarm: they all see the same data.
        let results = tokio::task::spawn_blocking(move || {
            store.inner.db.read(|snap| {
                Ok(work
                    .into_iter()
                    .map(|(key, alarm, at)| {
                        let evaluation = store
                            .slots(snap, &key.0, &alarm, at, now)
                            .map(|slots| evaluate(&alarm, &slots, now));
                        (key, alarm, evaluation)
                    })
                    .collect::<Vec<_>>())
            })
        })
        .await
        .map_err(|e| MetricsError::Internal(format!("alarm evaluation task failed: {e}")))??;

        let guard = Arc::clone(&self.inner.alarm_lock).lock_owned().await;
        let mut changes = Vec::new();
        let mut repeats = Vec::new();
        {
            let table = self.inner.alarms.read();
            for (key, snapshot, evaluation) in results {
                let evaluation = match evaluation {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(alarm = key.1, error = %e, "alarm evaluation failed");
                        continue;
                    }
                };
                // Changed by an API call since: its next evaluation decides.
                if table.get(&key.0).and_then(|m| m.get(&key.1)) != Some(&snapshot) {
                    continue;
                }
                // What this evaluation saw, for a repeat of the actions.
                let fresh = match &evaluation {
                    Evaluation::Set(o) => Some(o.clone()),
                    Evaluation::Keep => None,
                };
                match apply_evaluation(&key.0, &snapshot, evaluation, now) {
                    Some((alarm, mut ops, transition)) => {
                        if transition.is_none() {
                            repeats.extend(self.repeat(&key, &alarm, fresh, now));
                        }
                        ops.insert(0, put_op(&key.0, &alarm)?);
                        changes.push(Change {
                            key,
                            alarm,
                            ops,
                            transition,
                        });
                    }
                    None => repeats.extend(self.repeat(&key, &snapshot, fresh, now)),
                }
            }
        }
        let mut transitions = self
            .commit(guard, changes, Vec::new(), Vec::new(), Vec::new())
            .await?;
        transitions.extend(repeats);
        Ok(transitions)
    }

    /// The Auto Scaling actions of an alarm that stays in its state, if a
    /// minute has passed since it last handed out actions, with the values
    /// of the evaluation that just ran (step scaling measures the breach
    /// from them).
    fn repeat(
        &self,
        key: &AlarmKey,
        alarm: &MetricAlarm,
        fresh: Option<crate::alarm::evaluate::Outcome>,
        now: Timestamp,
    ) -> Option<AlarmTransition> {
        if !alarm.actions_enabled {
            return None;
        }
        let actions: Vec<String> = alarm
            .actions_for(alarm.state_value)
            .iter()
            .filter(|a| alarm::is_auto_scaling_action(a))
            .cloned()
            .collect();
        if actions.is_empty() {
            return None;
        }
        let mut invoked = self.inner.invoked.lock();
        if invoked
            .get(key)
            .is_some_and(|last| now < last.plus_secs(60))
        {
            return None;
        }
        invoked.insert(key.clone(), now);
        Some(AlarmTransition {
            scope: key.0.clone(),
            alarm_name: alarm.alarm_name.clone(),
            alarm_arn: alarm.alarm_arn.clone(),
            old_state: alarm.state_value,
            new_state: alarm.state_value,
            reason: alarm.state_reason.clone(),
            reason_data: fresh
                .as_ref()
                .map(|o| o.reason_data.clone())
                .or_else(|| alarm.state_reason_data.clone()),
            threshold: alarm.threshold,
            recent_datapoints: fresh.map(|o| o.recent).unwrap_or_default(),
            actions,
            at: now,
            repeat: true,
        })
    }

    /// The evaluation range of `alarm` as of the boundary `at`: N + 2
    /// periods ending at `at`, oldest first.
    fn slots(
        &self,
        snap: &Snapshot<'_>,
        scope: &Scope,
        alarm: &MetricAlarm,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Slot>> {
        let period = alarm.period_secs();
        let range = alarm.evaluation_periods + EXTRA_PERIODS;
        let buckets = Buckets {
            start: at.minus_secs(period * range).millis(),
            period_ms: period * 1000,
            count: range,
        };
        if alarm.metrics.is_empty() {
            let metric = MetricId {
                namespace: alarm.namespace.clone().unwrap_or_default(),
                metric_name: alarm.metric_name.clone().unwrap_or_default(),
                dimensions: alarm.dimensions.clone(),
            };
            let id = self.inner.db.shared.catalog.read().get(scope, &metric);
            let rows = match id {
                Some(id) => snap.rows(id, buckets.start, buckets.end())?,
                None => Vec::new(),
            };
            let merged = bucketize(&rows, &buckets, alarm.unit, false, now);
            let stat = alarm.stat();
            Ok((0..range)
                .map(|i| {
                    let aggregate = merged.get(&(i, None));
                    Slot {
                        start: buckets.start_of(i),
                        value: aggregate.and_then(|a| stat.as_ref().and_then(|s| a.stat(s))),
                        sample_count: aggregate.map_or(0.0, |a| a.count),
                    }
                })
                .collect())
        } else {
            let compiled = compiled_metrics(scope, alarm)?;
            let window = query::Window {
                start: Timestamp(buckets.start),
                end: at,
                now,
                round: false,
            };
            let results = query::run_queries_in(
                &self.inner.db,
                snap,
                scope,
                &alarm.metrics,
                &compiled,
                window,
            )?;
            let returned = alarm
                .metrics
                .iter()
                .position(|q| q.return_data.unwrap_or(true))
                .unwrap_or(0);
            let points = results
                .get(returned)
                .and_then(|r| r.first())
                .map(|s| s.points.clone())
                .unwrap_or_default();
            Ok((0..range)
                .map(|i| {
                    let start = buckets.start_of(i);
                    Slot {
                        start,
                        value: points.get(&start.millis()).copied(),
                        sample_count: 0.0,
                    }
                })
                .collect())
        }
    }

    /// Alarms in the store (all scopes).
    pub fn alarm_count(&self) -> usize {
        self.inner.alarms.read().values().map(BTreeMap::len).sum()
    }

    /// Series in the store (all scopes).
    pub fn series_count(&self) -> usize {
        self.inner.db.shared.catalog.read().len()
    }
}

fn check_names(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Err(MetricsError::missing("AlarmNames"));
    }
    check_count(names, "AlarmNames", 100)?;
    for (i, name) in names.iter().enumerate() {
        alarm::check_alarm_name(name, &format!("AlarmNames.member.{}", i + 1))?;
    }
    Ok(())
}

fn put_op(scope: &Scope, alarm: &MetricAlarm) -> Result<AlarmOp> {
    let body = serde_json::to_string(alarm)
        .map_err(|e| MetricsError::Internal(format!("alarm encoding: {e}")))?;
    Ok(AlarmOp::Put {
        scope: scope.clone(),
        name: alarm.alarm_name.clone(),
        body,
    })
}

fn history(
    scope: &Scope,
    alarm_name: &str,
    ts: Timestamp,
    kind: HistoryItemType,
    summary: String,
    data: String,
) -> AlarmOp {
    AlarmOp::History(HistoryRecord {
        id: 0,
        scope: scope.clone(),
        alarm_name: alarm_name.to_string(),
        alarm_type: AlarmType::MetricAlarm,
        ts,
        kind,
        summary,
        data,
    })
}

/// What an evaluation changes: the alarm after it, the history it writes,
/// and the transition if the state changed. `None`: nothing changes.
fn apply_evaluation(
    scope: &Scope,
    alarm: &MetricAlarm,
    evaluation: Evaluation,
    now: Timestamp,
) -> Option<(MetricAlarm, Vec<AlarmOp>, Option<AlarmTransition>)> {
    let Evaluation::Set(outcome) = evaluation else {
        return None;
    };
    let changed = outcome.state != alarm.state_value;
    if !changed && !alarm.state_set_manually {
        return None;
    }
    let mut new = alarm.clone();
    new.state_value = outcome.state;
    new.state_reason = outcome.reason;
    new.state_reason_data = Some(outcome.reason_data);
    new.state_updated_timestamp = now;
    new.state_set_manually = false;
    if !changed {
        return Some((new, Vec::new(), None));
    }
    new.state_transitioned_timestamp = now;
    let (summary, data) = state_item(alarm, &new);
    let ops = vec![history(
        scope,
        &new.alarm_name,
        now,
        HistoryItemType::StateUpdate,
        summary,
        data,
    )];
    let transition = AlarmTransition::new(scope, alarm, &new, outcome.recent, now);
    debug!(alarm = new.alarm_name, from = %alarm.state_value, to = %new.state_value, "alarm state changed");
    Some((new, ops, Some(transition)))
}
