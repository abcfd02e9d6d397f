//! BLUE_GREEN, CANARY and LINEAR deployments as a pure state machine:
//! [`advance`] takes where a deployment is ([`Progress`]), what the
//! service controller observes ([`Observed`]) and the time, and answers
//! where it is now and when to look again. No I/O and no clock of its own:
//! the caller applies the weights and scales, and tests drive it with any
//! times they like.
//!
//! The stages are ECS's, in ECS's order (RECONCILE_SERVICE, PRE_SCALE_UP,
//! SCALE_UP, POST_SCALE_UP, TEST_TRAFFIC_SHIFT, POST_TEST_TRAFFIC_SHIFT,
//! PRODUCTION_TRAFFIC_SHIFT, POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME,
//! CLEAN_UP):
//! - SCALE_UP waits until the new (green) revision has `desired` healthy
//!   tasks — with a load balancer, healthy targets in the alternate target
//!   group — so that no traffic is shifted to targets that cannot serve it;
//! - TEST_TRAFFIC_SHIFT sends all test traffic to green;
//! - PRODUCTION_TRAFFIC_SHIFT shifts production traffic: all at once
//!   (BLUE_GREEN); `canaryPercent`, then the rest after
//!   `canaryBakeTimeInMinutes` (CANARY); `stepPercent` at a time with
//!   `stepBakeTimeInMinutes` after each step but the last (LINEAR);
//! - BAKE_TIME waits `bakeTimeInMinutes` with both revisions running;
//! - CLEAN_UP waits until the old (blue) revision has no task left (the
//!   caller lets the service controller stop them once the stage is
//!   reached), then the deployment is [`Stage::Done`].
//!
//! A lifecycle hook holds a stage once its work is done: the deployment
//! moves past a stage only when `Observed::held` says no hook holds it.

use serde::{Deserialize, Serialize};

/// Seconds since the epoch.
pub type Time = f64;

/// How production traffic moves to the new revision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shift {
    /// BLUE_GREEN: all at once.
    AllAtOnce,
    /// CANARY: `percent` first, the rest `bake` seconds later.
    Canary { percent: f64, bake: Time },
    /// LINEAR: `step` percent at a time, `bake` seconds after each step
    /// but the last.
    Linear { step: f64, bake: Time },
}

/// ECS's lifecycle stages, and the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    ReconcileService,
    PreScaleUp,
    ScaleUp,
    PostScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    ProductionTrafficShift,
    PostProductionTrafficShift,
    BakeTime,
    CleanUp,
    Done,
}

impl Stage {
    fn next(self) -> Stage {
        use Stage::*;
        match self {
            ReconcileService => PreScaleUp,
            PreScaleUp => ScaleUp,
            ScaleUp => PostScaleUp,
            PostScaleUp => TestTrafficShift,
            TestTrafficShift => PostTestTrafficShift,
            PostTestTrafficShift => ProductionTrafficShift,
            ProductionTrafficShift => PostProductionTrafficShift,
            PostProductionTrafficShift => BakeTime,
            BakeTime => CleanUp,
            CleanUp | Done => Done,
        }
    }
}

/// Where a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: Stage,
    /// When the stage began (for PRODUCTION_TRAFFIC_SHIFT: when the latest
    /// step was taken).
    pub since: Time,
    /// The new revision's share of production traffic, in percent.
    pub production: f64,
    /// The new revision's share of test traffic, in percent.
    pub test: f64,
}

impl Progress {
    pub fn start(now: Time) -> Progress {
        Progress {
            stage: Stage::ReconcileService,
            since: now,
            production: 0.0,
            test: 0.0,
        }
    }
}

/// What the service controller sees.
pub struct Observed<'a> {
    pub desired: u32,
    /// Healthy tasks of the new revision.
    pub green_healthy: u32,
    /// Tasks of other revisions not yet STOPPED.
    pub blue_left: u32,
    /// Whether a lifecycle hook holds this stage (its work done).
    pub held: &'a dyn Fn(Stage) -> bool,
}

/// Moves a deployment as far as it can go now. Returns its new progress,
/// when to look again if it waits for time (a bake), and whether a hook
/// holds it (its stage's work done).
pub fn advance(
    shift: Shift,
    bake: Time,
    p: Progress,
    o: &Observed<'_>,
    now: Time,
) -> (Progress, Option<Time>, bool) {
    let mut p = p;
    loop {
        // The stage's own work; `None` when it waits.
        let done = match p.stage {
            Stage::ScaleUp => o.green_healthy >= o.desired,
            Stage::TestTrafficShift => {
                p.test = 100.0;
                true
            }
            Stage::ProductionTrafficShift => {
                let (first, step, wait) = match shift {
                    Shift::AllAtOnce => (100.0, 100.0, 0.0),
                    Shift::Canary { percent, bake } => (percent, 100.0, bake),
                    Shift::Linear { step, bake } => (step, step, bake),
                };
                if p.production <= 0.0 {
                    p.production = first.min(100.0);
                    p.since = now;
                }
                while p.production < 100.0 {
                    let due = p.since + wait;
                    if now < due {
                        return (p, Some(due), false);
                    }
                    // Steps are taken at their due time, so that a late
                    // look does not stretch the next bake.
                    p.production = round1(p.production + step).min(100.0);
                    p.since = due;
                }
                true
            }
            Stage::BakeTime => {
                let due = p.since + bake;
                if now < due {
                    return (p, Some(due), false);
                }
                true
            }
            Stage::CleanUp => o.blue_left == 0,
            Stage::Done => return (p, None, false),
            _ => true,
        };
        if !done {
            return (p, None, false);
        }
        if (o.held)(p.stage) {
            return (p, None, true);
        }
        p.stage = p.stage.next();
        p.since = now;
    }
}

/// To one decimal, as ECS's percentages are.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The weights of the production (or test) listener rule's forward for a
/// share `green` (percent) of the traffic: (blue, green). ELBv2 weights
/// are integers 0–999, so shares are kept to a tenth of a percent.
pub fn weights(green: f64) -> (i32, i32) {
    if green >= 100.0 {
        (0, 1)
    } else if green <= 0.0 {
        (1, 0)
    } else {
        let g = (green * 10.0).round() as i32;
        (1000 - g, g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: Stage) -> bool {
        false
    }

    fn obs(green_healthy: u32, blue_left: u32) -> Observed<'static> {
        Observed {
            desired: 4,
            green_healthy,
            blue_left,
            held: &never,
        }
    }

    #[test]
    fn blue_green_waits_for_healthy_green_then_shifts_all_and_bakes() {
        let (p, wake, _) = advance(
            Shift::AllAtOnce,
            60.0,
            Progress::start(0.0),
            &obs(3, 4),
            1.0,
        );
        assert_eq!((p.stage, p.production, wake), (Stage::ScaleUp, 0.0, None));
        let (p, wake, _) = advance(Shift::AllAtOnce, 60.0, p, &obs(4, 4), 2.0);
        assert_eq!(p.stage, Stage::BakeTime);
        assert_eq!((p.production, p.test), (100.0, 100.0));
        assert_eq!(wake, Some(62.0));
        let (p, _, _) = advance(Shift::AllAtOnce, 60.0, p, &obs(4, 4), 61.9);
        assert_eq!(p.stage, Stage::BakeTime);
        let (p, _, _) = advance(Shift::AllAtOnce, 60.0, p, &obs(4, 4), 62.0);
        assert_eq!(p.stage, Stage::CleanUp, "blue still has tasks");
        let (p, _, _) = advance(Shift::AllAtOnce, 60.0, p, &obs(4, 0), 70.0);
        assert_eq!(p.stage, Stage::Done);
    }

    #[test]
    fn canary_shifts_its_percent_then_the_rest_after_its_bake() {
        let shift = Shift::Canary {
            percent: 25.0,
            bake: 300.0,
        };
        let (p, wake, _) = advance(shift, 0.0, Progress::start(0.0), &obs(4, 4), 10.0);
        assert_eq!(
            (p.stage, p.production),
            (Stage::ProductionTrafficShift, 25.0)
        );
        assert_eq!(wake, Some(310.0));
        let (p, _, _) = advance(shift, 0.0, p, &obs(4, 4), 200.0);
        assert_eq!(p.production, 25.0);
        let (p, _, _) = advance(shift, 0.0, p, &obs(4, 4), 310.0);
        assert_eq!((p.stage, p.production), (Stage::CleanUp, 100.0));
    }

    #[test]
    fn linear_takes_equal_steps_with_a_bake_after_each_but_the_last() {
        let shift = Shift::Linear {
            step: 33.4,
            bake: 60.0,
        };
        let (p, wake, _) = advance(shift, 0.0, Progress::start(0.0), &obs(4, 4), 0.0);
        assert_eq!((p.production, wake), (33.4, Some(60.0)));
        let (p, wake, _) = advance(shift, 0.0, p, &obs(4, 4), 60.5);
        assert_eq!(
            (p.production, wake),
            (66.8, Some(120.0)),
            "the next bake runs from the step's due time"
        );
        let (p, wake, _) = advance(shift, 0.0, p, &obs(4, 4), 120.0);
        assert_eq!((p.stage, p.production, wake), (Stage::CleanUp, 100.0, None));
        // A look long after both bakes takes both steps at once.
        let (p, _, _) = advance(shift, 0.0, Progress::start(0.0), &obs(4, 0), 0.0);
        let (p, _, _) = advance(shift, 0.0, p, &obs(4, 0), 1_000.0);
        assert_eq!((p.stage, p.production), (Stage::Done, 100.0));
    }

    #[test]
    fn a_hook_holds_its_stage_after_the_stage_s_work() {
        let held = |s: Stage| s == Stage::PostScaleUp || s == Stage::TestTrafficShift;
        let o = Observed {
            desired: 2,
            green_healthy: 2,
            blue_left: 2,
            held: &held,
        };
        let (p, _, _) = advance(Shift::AllAtOnce, 0.0, Progress::start(0.0), &o, 0.0);
        assert_eq!(p.stage, Stage::PostScaleUp);
        assert_eq!(p.test, 0.0);
        // Released there, held at the next one once test traffic moved.
        let held2 = |s: Stage| s == Stage::TestTrafficShift;
        let o2 = Observed { held: &held2, ..o };
        let (p, _, _) = advance(Shift::AllAtOnce, 0.0, p, &o2, 1.0);
        assert_eq!(
            (p.stage, p.test, p.production),
            (Stage::TestTrafficShift, 100.0, 0.0)
        );
    }

    #[test]
    fn weights_keep_tenths_of_a_percent_within_elbv2_limits() {
        assert_eq!(weights(0.0), (1, 0));
        assert_eq!(weights(25.0), (750, 250));
        assert_eq!(weights(33.4), (666, 334));
        assert_eq!(weights(100.0), (0, 1));
        assert_eq!(weights(0.1), (999, 1));
    }
}
