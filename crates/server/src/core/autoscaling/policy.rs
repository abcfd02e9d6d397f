//! What a scaling policy decides when one of its alarms fires: pure
//! functions from the policy, the alarm's numbers, the capacity, the
//! policy's cooldowns and the time to a [`Decision`].
//!
//! **Target tracking** (Application Auto Scaling User Guide, "How target
//! tracking works"): scale out proportionally and fast, scale in gradually.
//! - Out (the AlarmHigh alarm): desired = ceil(base × metric / target), at
//!   least one more than `base`. Outside a scale-out cooldown `base` is the
//!   current capacity. During one, `base` is the capacity the cooldown's
//!   scale-out started from: the capacity that scale-out already added
//!   counts toward this one (the metric has not yet seen it), so a second
//!   alarm adds only what the first did not.
//! - In (the AlarmLow alarm): desired = ceil(current × metric / target),
//!   removing at most a tenth of the current capacity (at least one task)
//!   per activity; if that removes nothing, removing a task would push the
//!   metric over the target again ("AutoScalingAnticipatedFlapping"). Not
//!   while `DisableScaleIn`, and not during the policy's scale-in cooldown
//!   or its scale-out cooldown. A scale-in cooldown never holds back a
//!   scale-out.
//!
//! **Step scaling** (User Guide, "Step adjustments"): the breach is the
//! aggregated metric (`MetricAggregationType`, default Average) minus the
//! alarm's threshold; the step whose interval holds it gives the
//! adjustment (above the threshold lower bounds are inclusive, below it
//! upper bounds are). `ChangeInCapacity` adds it, `ExactCapacity` sets it,
//! `PercentChangeInCapacity` adds that percentage (fractions rounded
//! toward zero, but never below one task; `MinAdjustmentMagnitude` is the
//! least it changes by). One `Cooldown` (default 300 s): during it a
//! scale-out counts what the previous scale-out added, and a scale-in
//! waits.
//!
//! Both are clamped to the target's min and max; suspended directions do
//! nothing.

use flotilla_model::wire::autoscaling as wire;
use serde::{Deserialize, Serialize};

/// ECS's default cooldowns, in seconds.
pub const DEFAULT_COOLDOWN: i32 = 300;

/// Scale-in removes at most this share of the capacity per activity.
const SCALE_IN_STEP: f64 = 0.1;

/// The capacity a decision works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub current: i32,
    pub min: i32,
    pub max: i32,
}

/// When a policy last scaled, for its cooldowns. Stored with the policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cooldowns {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_out: Option<f64>,
    /// The capacity the last scale-out started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out_from: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_in: Option<f64>,
}

impl Cooldowns {
    /// Notes a scaling the policy made from capacity `from`. A scale-out
    /// inside the scale-out cooldown keeps the capacity the chain started
    /// from: the metric still measures that one.
    pub fn scaled(&mut self, direction: Direction, from: i32, out_cooldown: i32, now: f64) {
        match direction {
            Direction::Out => {
                if !within(self.last_scale_out, out_cooldown, now) {
                    self.scale_out_from = Some(from);
                }
                self.last_scale_out = Some(now);
            }
            Direction::In => self.last_scale_in = Some(now),
        }
    }
}

/// Which directions a target's `SuspendedState` holds back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspended {
    #[serde(default)]
    pub dynamic_in: bool,
    #[serde(default)]
    pub dynamic_out: bool,
    #[serde(default)]
    pub scheduled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
}

/// Why a policy that fired did not scale (`NotScaledReason.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotScaledCode {
    AlreadyAtMaxCapacity,
    AlreadyAtMinCapacity,
    AlreadyAtDesiredCapacity,
    AutoScalingAnticipatedFlapping,
}

impl NotScaledCode {
    pub fn as_str(self) -> &'static str {
        match self {
            NotScaledCode::AlreadyAtMaxCapacity => "AlreadyAtMaxCapacity",
            NotScaledCode::AlreadyAtMinCapacity => "AlreadyAtMinCapacity",
            NotScaledCode::AlreadyAtDesiredCapacity => "AlreadyAtDesiredCapacity",
            NotScaledCode::AutoScalingAnticipatedFlapping => "AutoScalingAnticipatedFlapping",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Set the desired count to this.
    Scale { to: i32, direction: Direction },
    /// The policy would scale but cannot: a not-scaled activity.
    NotScaled { wanted: i32, code: NotScaledCode },
    /// Nothing to do and nothing to record (cooldown, suspended, disabled,
    /// or what is wanted is already there).
    Hold(&'static str),
}

/// Which of a target tracking policy's alarms fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    High,
    Low,
}

fn within(t: Option<f64>, cooldown: i32, now: f64) -> bool {
    t.is_some_and(|t| now < t + f64::from(cooldown.max(0)))
}

fn clamp(n: i64, cap: Capacity) -> i32 {
    n.clamp(i64::from(cap.min), i64::from(cap.max)) as i32
}

/// The decision once the wanted capacity is known.
fn settle(wanted: i64, direction: Direction, cap: Capacity) -> Decision {
    let to = clamp(wanted, cap);
    match direction {
        Direction::Out if to > cap.current => Decision::Scale { to, direction },
        Direction::In if to < cap.current => Decision::Scale { to, direction },
        Direction::Out if cap.current >= cap.max => Decision::NotScaled {
            wanted: wanted.min(i64::from(i32::MAX)) as i32,
            code: NotScaledCode::AlreadyAtMaxCapacity,
        },
        Direction::In if cap.current <= cap.min => Decision::NotScaled {
            wanted: wanted.max(0) as i32,
            code: NotScaledCode::AlreadyAtMinCapacity,
        },
        _ => Decision::Hold("already at the wanted capacity"),
    }
}

/// Target tracking: what the policy does when its `side` alarm is in ALARM
/// with `metric` the latest value it evaluated (if known).
pub fn target_tracking(
    cfg: &wire::TargetTrackingScalingPolicyConfiguration,
    side: Side,
    metric: Option<f64>,
    cap: Capacity,
    cooldowns: &Cooldowns,
    suspended: Suspended,
    now: f64,
) -> Decision {
    let target = cfg.target_value.unwrap_or(0.0);
    let out_cooldown = cfg.scale_out_cooldown.unwrap_or(DEFAULT_COOLDOWN);
    let in_cooldown = cfg.scale_in_cooldown.unwrap_or(DEFAULT_COOLDOWN);
    let in_out_cooldown = within(cooldowns.last_scale_out, out_cooldown, now);
    match side {
        Side::High => {
            if suspended.dynamic_out {
                return Decision::Hold("dynamic scale-out is suspended");
            }
            let base = if in_out_cooldown {
                cooldowns.scale_out_from.unwrap_or(cap.current)
            } else {
                cap.current
            };
            let proportional = match metric {
                Some(m) if target > 0.0 && m.is_finite() => {
                    (f64::from(base) * m / target).ceil().min(1e9) as i64
                }
                _ => i64::from(base) + 1,
            };
            let wanted = proportional.max(i64::from(base) + 1);
            if in_out_cooldown && clamp(wanted, cap) <= cap.current && cap.current < cap.max {
                return Decision::Hold("the scale-out cooldown's capacity covers it");
            }
            settle(wanted, Direction::Out, cap)
        }
        Side::Low => {
            if cfg.disable_scale_in.unwrap_or(false) {
                return Decision::Hold("scale-in is disabled");
            }
            if suspended.dynamic_in {
                return Decision::Hold("dynamic scale-in is suspended");
            }
            if in_out_cooldown || within(cooldowns.last_scale_in, in_cooldown, now) {
                return Decision::Hold("in cooldown");
            }
            let current = i64::from(cap.current);
            let proportional = match metric {
                Some(m) if target > 0.0 && m.is_finite() => {
                    (current as f64 * m.max(0.0) / target).ceil() as i64
                }
                _ => current - 1,
            };
            let step = ((current as f64 * SCALE_IN_STEP).floor() as i64).max(1);
            let wanted = proportional.max(current - step);
            if wanted >= current && cap.current > cap.min {
                return Decision::NotScaled {
                    wanted: cap.current,
                    code: NotScaledCode::AutoScalingAnticipatedFlapping,
                };
            }
            settle(wanted, Direction::In, cap)
        }
    }
}

/// The adjustment of the step whose interval holds `breach`.
fn step_for(steps: &[wire::StepAdjustment], breach: f64) -> Option<i32> {
    let holds = |s: &wire::StepAdjustment, above: bool| {
        let lo = s.metric_interval_lower_bound.unwrap_or(f64::NEG_INFINITY);
        let hi = s.metric_interval_upper_bound.unwrap_or(f64::INFINITY);
        if above {
            breach >= lo && breach < hi
        } else {
            breach > lo && breach <= hi
        }
    };
    let above = breach >= 0.0;
    steps
        .iter()
        .find(|s| holds(s, above))
        // Exactly at the threshold (an alarm set by hand has no data):
        // either reading of the bounds.
        .or_else(|| {
            (breach == 0.0)
                .then(|| steps.iter().find(|s| holds(s, !above)))
                .flatten()
        })
        .and_then(|s| s.scaling_adjustment)
}

/// The metric value a step policy measures the breach with.
pub fn aggregate(kind: Option<wire::MetricAggregationType>, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match kind.unwrap_or(wire::MetricAggregationType::Average) {
        wire::MetricAggregationType::Average => values.iter().sum::<f64>() / values.len() as f64,
        wire::MetricAggregationType::Minimum => {
            values.iter().copied().fold(f64::INFINITY, f64::min)
        }
        wire::MetricAggregationType::Maximum => {
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        }
    })
}

/// Step scaling: what the policy does when an alarm naming it fires with
/// `threshold` and the `datapoints` it evaluated.
pub fn step(
    cfg: &wire::StepScalingPolicyConfiguration,
    threshold: f64,
    datapoints: &[f64],
    cap: Capacity,
    cooldowns: &Cooldowns,
    suspended: Suspended,
    now: f64,
) -> Decision {
    let value = aggregate(cfg.metric_aggregation_type, datapoints).unwrap_or(threshold);
    let Some(adjustment) = step_for(
        cfg.step_adjustments.as_deref().unwrap_or_default(),
        value - threshold,
    ) else {
        return Decision::Hold("no step adjustment covers the breach");
    };
    let kind = cfg
        .adjustment_type
        .unwrap_or(wire::AdjustmentType::ChangeInCapacity);
    let direction = match kind {
        wire::AdjustmentType::ExactCapacity if adjustment >= cap.current => Direction::Out,
        wire::AdjustmentType::ExactCapacity => Direction::In,
        _ if adjustment >= 0 => Direction::Out,
        _ => Direction::In,
    };
    let cooldown = cfg.cooldown.unwrap_or(DEFAULT_COOLDOWN);
    let base = match direction {
        Direction::Out => {
            if suspended.dynamic_out {
                return Decision::Hold("dynamic scale-out is suspended");
            }
            if within(cooldowns.last_scale_out, cooldown, now) {
                cooldowns.scale_out_from.unwrap_or(cap.current)
            } else {
                cap.current
            }
        }
        Direction::In => {
            if suspended.dynamic_in {
                return Decision::Hold("dynamic scale-in is suspended");
            }
            if within(cooldowns.last_scale_in, cooldown, now)
                || within(cooldowns.last_scale_out, cooldown, now)
            {
                return Decision::Hold("in cooldown");
            }
            cap.current
        }
    };
    let base = i64::from(base);
    let adj = i64::from(adjustment);
    let wanted = match kind {
        wire::AdjustmentType::ChangeInCapacity => base + adj,
        wire::AdjustmentType::ExactCapacity => adj,
        wire::AdjustmentType::PercentChangeInCapacity => {
            let raw = base as f64 * adj as f64 / 100.0;
            let mut change = if raw > 0.0 {
                (raw.floor() as i64).max(1)
            } else if raw < 0.0 {
                (raw.ceil() as i64).min(-1)
            } else {
                0
            };
            if let Some(min) = cfg.min_adjustment_magnitude.filter(|m| *m > 0) {
                if change.abs() < i64::from(min) {
                    change = i64::from(min) * change.signum();
                }
            }
            base + change
        }
    };
    settle(wanted, direction, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tt(target: f64) -> wire::TargetTrackingScalingPolicyConfiguration {
        wire::TargetTrackingScalingPolicyConfiguration {
            target_value: Some(target),
            scale_out_cooldown: Some(60),
            scale_in_cooldown: Some(120),
            ..Default::default()
        }
    }

    fn cap(current: i32, min: i32, max: i32) -> Capacity {
        Capacity { current, min, max }
    }

    const NONE: Suspended = Suspended {
        dynamic_in: false,
        dynamic_out: false,
        scheduled: false,
    };

    #[test]
    fn target_tracking_scales_out_in_proportion() {
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(90.0),
            cap(2, 1, 10),
            &Cooldowns::default(),
            NONE,
            0.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 4,
                direction: Direction::Out
            }
        );
        // Capped at max, then at max it says so.
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(400.0),
            cap(2, 1, 5),
            &Cooldowns::default(),
            NONE,
            0.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 5,
                direction: Direction::Out
            }
        );
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(400.0),
            cap(5, 1, 5),
            &Cooldowns::default(),
            NONE,
            0.0,
        );
        assert!(matches!(
            d,
            Decision::NotScaled {
                code: NotScaledCode::AlreadyAtMaxCapacity,
                ..
            }
        ));
        // Barely above the target still adds one.
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(50.1),
            cap(10, 1, 20),
            &Cooldowns::default(),
            NONE,
            0.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 11,
                direction: Direction::Out
            }
        );
    }

    #[test]
    fn a_scale_out_during_its_cooldown_counts_what_was_added() {
        // 2 → 4 at t=0 (metric 90 for target 50). Still 90 at t=30: the
        // metric has not seen the new tasks; 2 × 90 / 50 = 4 is there already.
        let cd = Cooldowns {
            last_scale_out: Some(0.0),
            scale_out_from: Some(2),
            last_scale_in: None,
        };
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(90.0),
            cap(4, 1, 10),
            &cd,
            NONE,
            30.0,
        );
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
        // The load grew further: only the difference is added.
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(150.0),
            cap(4, 1, 10),
            &cd,
            NONE,
            30.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 6,
                direction: Direction::Out
            }
        );
        // After the cooldown the current capacity is the base again.
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(90.0),
            cap(4, 1, 10),
            &cd,
            NONE,
            61.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 8,
                direction: Direction::Out
            }
        );
    }

    #[test]
    fn target_tracking_scales_in_gradually_and_never_below_min() {
        let none = Cooldowns::default();
        let d = target_tracking(
            &tt(50.0),
            Side::Low,
            Some(10.0),
            cap(20, 1, 30),
            &none,
            NONE,
            0.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 18,
                direction: Direction::In
            },
            "a tenth at a time"
        );
        let d = target_tracking(
            &tt(50.0),
            Side::Low,
            Some(10.0),
            cap(3, 1, 30),
            &none,
            NONE,
            0.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 2,
                direction: Direction::In
            }
        );
        let d = target_tracking(
            &tt(50.0),
            Side::Low,
            Some(10.0),
            cap(2, 2, 30),
            &none,
            NONE,
            0.0,
        );
        assert!(matches!(
            d,
            Decision::NotScaled {
                code: NotScaledCode::AlreadyAtMinCapacity,
                ..
            }
        ));
        // 2 tasks at 40 %: one task would run at 80 %, over the target.
        let d = target_tracking(
            &tt(50.0),
            Side::Low,
            Some(40.0),
            cap(2, 1, 30),
            &none,
            NONE,
            0.0,
        );
        assert!(matches!(
            d,
            Decision::NotScaled {
                code: NotScaledCode::AutoScalingAnticipatedFlapping,
                ..
            }
        ));
        // Disabled, suspended, in cooldown.
        let mut cfg = tt(50.0);
        cfg.disable_scale_in = Some(true);
        assert!(matches!(
            target_tracking(&cfg, Side::Low, Some(1.0), cap(5, 1, 9), &none, NONE, 0.0),
            Decision::Hold(_)
        ));
        let held = Suspended {
            dynamic_in: true,
            ..NONE
        };
        assert!(matches!(
            target_tracking(
                &tt(50.0),
                Side::Low,
                Some(1.0),
                cap(5, 1, 9),
                &none,
                held,
                0.0
            ),
            Decision::Hold(_)
        ));
        let recent = Cooldowns {
            last_scale_in: Some(0.0),
            ..Default::default()
        };
        assert!(matches!(
            target_tracking(
                &tt(50.0),
                Side::Low,
                Some(1.0),
                cap(5, 1, 9),
                &recent,
                NONE,
                100.0
            ),
            Decision::Hold(_)
        ));
        assert!(matches!(
            target_tracking(
                &tt(50.0),
                Side::Low,
                Some(1.0),
                cap(5, 1, 9),
                &recent,
                NONE,
                121.0
            ),
            Decision::Scale { .. }
        ));
    }

    #[test]
    fn a_scale_in_cooldown_never_holds_back_a_scale_out() {
        let recent = Cooldowns {
            last_scale_in: Some(0.0),
            ..Default::default()
        };
        let d = target_tracking(
            &tt(50.0),
            Side::High,
            Some(100.0),
            cap(2, 1, 9),
            &recent,
            NONE,
            1.0,
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 4,
                direction: Direction::Out
            }
        );
        let held = Suspended {
            dynamic_out: true,
            ..NONE
        };
        assert!(matches!(
            target_tracking(
                &tt(50.0),
                Side::High,
                Some(100.0),
                cap(2, 1, 9),
                &recent,
                held,
                1.0
            ),
            Decision::Hold(_)
        ));
    }

    fn steps(
        kind: wire::AdjustmentType,
        steps: &[(Option<f64>, Option<f64>, i32)],
    ) -> wire::StepScalingPolicyConfiguration {
        wire::StepScalingPolicyConfiguration {
            adjustment_type: Some(kind),
            step_adjustments: Some(
                steps
                    .iter()
                    .map(|(lo, hi, n)| wire::StepAdjustment {
                        metric_interval_lower_bound: *lo,
                        metric_interval_upper_bound: *hi,
                        scaling_adjustment: Some(*n),
                    })
                    .collect(),
            ),
            cooldown: Some(60),
            ..Default::default()
        }
    }

    #[test]
    fn step_adjustments_by_breach() {
        use wire::AdjustmentType::*;
        let cfg = steps(
            ChangeInCapacity,
            &[(Some(0.0), Some(10.0), 1), (Some(10.0), None, 3)],
        );
        let none = Cooldowns::default();
        let s = |v: &[f64], current| step(&cfg, 50.0, v, cap(current, 1, 10), &none, NONE, 0.0);
        assert_eq!(
            s(&[55.0], 2),
            Decision::Scale {
                to: 3,
                direction: Direction::Out
            }
        );
        assert_eq!(
            s(&[60.0], 2),
            Decision::Scale {
                to: 5,
                direction: Direction::Out
            },
            "lower bound inclusive above"
        );
        assert_eq!(
            s(&[50.0, 80.0], 2),
            Decision::Scale {
                to: 5,
                direction: Direction::Out
            },
            "average 65"
        );
        assert_eq!(
            s(&[], 2),
            Decision::Scale {
                to: 3,
                direction: Direction::Out
            },
            "no data: at the threshold"
        );
        assert!(matches!(
            s(&[55.0], 10),
            Decision::NotScaled {
                code: NotScaledCode::AlreadyAtMaxCapacity,
                ..
            }
        ));

        let cfg = steps(ChangeInCapacity, &[(None, Some(0.0), -1)]);
        let d = step(&cfg, 20.0, &[5.0], cap(3, 1, 10), &none, NONE, 0.0);
        assert_eq!(
            d,
            Decision::Scale {
                to: 2,
                direction: Direction::In
            }
        );
        let d = step(&cfg, 20.0, &[], cap(3, 1, 10), &none, NONE, 0.0);
        assert_eq!(
            d,
            Decision::Scale {
                to: 2,
                direction: Direction::In
            },
            "no data: the step at zero"
        );

        let cfg = steps(ExactCapacity, &[(Some(0.0), None, 7)]);
        assert_eq!(
            step(&cfg, 1.0, &[2.0], cap(3, 1, 10), &none, NONE, 0.0),
            Decision::Scale {
                to: 7,
                direction: Direction::Out
            }
        );

        let mut cfg = steps(PercentChangeInCapacity, &[(Some(0.0), None, 25)]);
        assert_eq!(
            step(&cfg, 1.0, &[2.0], cap(4, 1, 10), &none, NONE, 0.0),
            Decision::Scale {
                to: 5,
                direction: Direction::Out
            }
        );
        assert_eq!(
            step(&cfg, 1.0, &[2.0], cap(2, 1, 10), &none, NONE, 0.0),
            Decision::Scale {
                to: 3,
                direction: Direction::Out
            },
            "0.5 rounds to one task"
        );
        cfg.min_adjustment_magnitude = Some(2);
        assert_eq!(
            step(&cfg, 1.0, &[2.0], cap(4, 1, 10), &none, NONE, 0.0),
            Decision::Scale {
                to: 6,
                direction: Direction::Out
            }
        );
    }

    #[test]
    fn step_cooldowns() {
        use wire::AdjustmentType::*;
        let out = steps(ChangeInCapacity, &[(Some(0.0), None, 2)]);
        let cd = Cooldowns {
            last_scale_out: Some(0.0),
            scale_out_from: Some(2),
            last_scale_in: None,
        };
        // During the cooldown, the 2 already added count: 2 + 2 = 4 is there.
        assert!(matches!(
            step(&out, 1.0, &[2.0], cap(4, 1, 10), &cd, NONE, 10.0),
            Decision::Hold(_)
        ));
        assert_eq!(
            step(&out, 1.0, &[2.0], cap(4, 1, 10), &cd, NONE, 61.0),
            Decision::Scale {
                to: 6,
                direction: Direction::Out
            }
        );
        let inn = steps(ChangeInCapacity, &[(None, Some(0.0), -1)]);
        assert!(matches!(
            step(&inn, 1.0, &[0.0], cap(4, 1, 10), &cd, NONE, 10.0),
            Decision::Hold(_)
        ));
        let cd = Cooldowns {
            last_scale_in: Some(0.0),
            ..Default::default()
        };
        assert!(matches!(
            step(&out, 1.0, &[2.0], cap(4, 1, 10), &cd, NONE, 10.0),
            Decision::Scale { .. }
        ));
    }
}
