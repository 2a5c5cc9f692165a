//! Which targets run, and when: `--only` selects, groups run one after another in `order`,
//! targets of one group run at most `parallel` at once, and under `on_error = "stop"` a failure
//! lets the running targets finish and skips every other. Pure: the runner
//! (`commands::fleet`) asks [`Rollout::start`] what to start and reports back with
//! [`Rollout::finish`].

use super::{Fleet, OnError};
use crate::error::{Error, Result};

/// One group's targets (indexes into `Fleet::targets`), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    pub group: String,
    pub targets: Vec<usize>,
}

/// The waves `fleet` runs with `--only` applied: each value names a target or a group, and one
/// that names neither is an error (a typo would otherwise run nothing, or everything).
pub fn schedule(fleet: &Fleet, only: &[String]) -> Result<Vec<Wave>> {
    for value in only {
        let known = fleet
            .targets
            .iter()
            .any(|t| &t.name == value || &t.group == value);
        if !known {
            return Err(Error::usage_hint(
                // Escaped: the value is the operator's, and may hold a newline or escape codes.
                format!(
                    "--only {}: no target or group of that name",
                    value.escape_debug()
                ),
                format!(
                    "the fleet's targets: {}; its groups: {}",
                    fleet
                        .targets
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    fleet.order.join(", ")
                ),
            ));
        }
    }
    let selected = |i: usize| {
        let t = &fleet.targets[i];
        only.is_empty() || only.iter().any(|v| v == &t.name || v == &t.group)
    };
    Ok(fleet
        .order
        .iter()
        .map(|group| Wave {
            group: group.clone(),
            targets: (0..fleet.targets.len())
                .filter(|&i| &fleet.targets[i].group == group && selected(i))
                .collect(),
        })
        .filter(|w| !w.targets.is_empty())
        .collect())
}

/// Where one target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Running,
    /// Ran; `failed` when its exit code was not 0.
    Done {
        failed: bool,
    },
    /// Never started: an earlier failure under "stop", or an interrupt.
    Skipped,
}

/// The rollout of a fleet's waves, one decision at a time.
#[derive(Debug)]
pub struct Rollout {
    waves: Vec<Wave>,
    parallel: usize,
    on_error: OnError,
    /// The wave being run, and how many of its targets were started.
    wave: usize,
    started_in_wave: usize,
    running: usize,
    stopped: bool,
    states: Vec<State>,
}

impl Rollout {
    /// `count` is the number of targets in the fleet (those no wave names stay `Waiting` and are
    /// not part of the run).
    pub fn new(waves: Vec<Wave>, count: usize, parallel: usize, on_error: OnError) -> Rollout {
        Rollout {
            waves,
            parallel: parallel.max(1),
            on_error,
            wave: 0,
            started_in_wave: 0,
            running: 0,
            stopped: false,
            states: vec![State::Waiting; count],
        }
    }

    /// A target to start now, if one may start: there is room under `parallel`, and it belongs
    /// to the current wave (the next wave starts only once the current one has finished).
    pub fn start(&mut self) -> Option<usize> {
        if self.stopped || self.running >= self.parallel {
            return None;
        }
        loop {
            let wave = self.waves.get(self.wave)?;
            if let Some(&next) = wave.targets.get(self.started_in_wave) {
                self.started_in_wave += 1;
                self.running += 1;
                self.states[next] = State::Running;
                return Some(next);
            }
            if self.running > 0 {
                return None;
            }
            self.wave += 1;
            self.started_in_wave = 0;
        }
    }

    /// Target `i` ended; a failure under "stop" skips every target not started.
    pub fn finish(&mut self, i: usize, failed: bool) {
        if self.states[i] == State::Running {
            self.running -= 1;
        }
        self.states[i] = State::Done { failed };
        if failed && self.on_error == OnError::Stop {
            self.stop();
        }
    }

    /// Nothing else starts: every waiting target of the run is skipped (a failure under "stop",
    /// or an interrupt).
    pub fn stop(&mut self) {
        self.stopped = true;
        for wave in &self.waves {
            for &i in &wave.targets {
                if self.states[i] == State::Waiting {
                    self.states[i] = State::Skipped;
                }
            }
        }
    }

    /// Whether every target of the run has ended or been skipped.
    pub fn is_over(&self) -> bool {
        self.running == 0
            && (self.stopped
                || self.waves[self.wave.min(self.waves.len())..]
                    .iter()
                    .flat_map(|w| &w.targets)
                    .all(|&i| self.states[i] != State::Waiting))
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn state(&self, i: usize) -> State {
        self.states[i]
    }

    /// The targets of the run, wave by wave.
    pub fn targets(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.waves
            .iter()
            .flat_map(|w| w.targets.iter().map(move |&i| (w.group.as_str(), i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Target;

    fn fleet(groups: &[&str], order: &[&str], on_error: OnError) -> Fleet {
        Fleet {
            parallel: 2,
            on_error,
            order: order.iter().map(|s| s.to_string()).collect(),
            targets: groups
                .iter()
                .enumerate()
                .map(|(i, g)| Target {
                    name: format!("t{i}"),
                    group: g.to_string(),
                    url: String::new(),
                    source: "url".into(),
                })
                .collect(),
        }
    }

    /// Runs the rollout to its end: targets finish in the order they started, `fails` fail.
    /// Returns the batches that ran together.
    fn run(r: &mut Rollout, fails: &[usize]) -> Vec<Vec<usize>> {
        let mut batches = Vec::new();
        while !r.is_over() {
            let mut batch = Vec::new();
            while let Some(i) = r.start() {
                batch.push(i);
            }
            assert!(!batch.is_empty() || r.running() > 0, "stuck: {r:?}");
            for &i in &batch {
                r.finish(i, fails.contains(&i));
            }
            batches.push(batch);
        }
        batches
    }

    #[test]
    fn groups_run_in_order_and_each_at_most_parallel_at_once() {
        let f = fleet(&["b", "a", "b", "b", "a", "b"], &["a", "b"], OnError::Stop);
        let waves = schedule(&f, &[]).unwrap();
        assert_eq!(
            waves,
            vec![
                Wave {
                    group: "a".into(),
                    targets: vec![1, 4]
                },
                Wave {
                    group: "b".into(),
                    targets: vec![0, 2, 3, 5]
                }
            ]
        );
        let mut r = Rollout::new(waves, 6, 2, OnError::Stop);
        assert_eq!(run(&mut r, &[]), vec![vec![1, 4], vec![0, 2], vec![3, 5]]);
    }

    #[test]
    fn the_next_group_waits_for_the_whole_current_one() {
        let f = fleet(&["a", "a", "a", "b"], &["a", "b"], OnError::Stop);
        let mut r = Rollout::new(schedule(&f, &[]).unwrap(), 4, 2, OnError::Stop);
        assert_eq!(r.start(), Some(0));
        assert_eq!(r.start(), Some(1));
        assert_eq!(r.start(), None);
        r.finish(0, false);
        assert_eq!(r.start(), Some(2));
        r.finish(1, false);
        // 3 is in group b: not while 2 runs, though there is room.
        assert_eq!(r.start(), None);
        r.finish(2, false);
        assert_eq!(r.start(), Some(3));
        r.finish(3, false);
        assert!(r.is_over());
    }

    #[test]
    fn a_failure_under_stop_lets_the_running_finish_and_skips_the_rest() {
        let f = fleet(&["c", "d", "d", "d", "d"], &["c", "d"], OnError::Stop);
        let mut r = Rollout::new(schedule(&f, &[]).unwrap(), 5, 2, OnError::Stop);
        assert_eq!(run(&mut r, &[0]), vec![vec![0]]);
        for i in 1..5 {
            assert_eq!(r.state(i), State::Skipped);
        }
        // Within a group: the other running one finishes, the waiting ones are skipped.
        let mut r = Rollout::new(schedule(&f, &[]).unwrap(), 5, 2, OnError::Stop);
        assert_eq!(run(&mut r, &[1]), vec![vec![0], vec![1, 2]]);
        assert_eq!(r.state(2), State::Done { failed: false });
        assert_eq!(r.state(3), State::Skipped);
        assert_eq!(r.state(4), State::Skipped);
    }

    #[test]
    fn under_continue_every_target_runs() {
        let f = fleet(&["c", "d", "d"], &["c", "d"], OnError::Continue);
        let mut r = Rollout::new(schedule(&f, &[]).unwrap(), 3, 1, OnError::Continue);
        assert_eq!(run(&mut r, &[0, 1]), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(r.state(0), State::Done { failed: true });
        assert_eq!(r.state(2), State::Done { failed: false });
    }

    #[test]
    fn only_selects_targets_and_groups_and_refuses_what_matches_nothing() {
        let f = fleet(&["c", "d", "d", "e"], &["c", "d", "e"], OnError::Stop);
        let waves = schedule(&f, &["t1".into(), "e".into()]).unwrap();
        assert_eq!(
            waves,
            vec![
                Wave {
                    group: "d".into(),
                    targets: vec![1]
                },
                Wave {
                    group: "e".into(),
                    targets: vec![3]
                }
            ]
        );
        let err = schedule(&f, &["t9".into()]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--only t9"), "{err}");
        let err = schedule(&f, &["a\nb\x1b[31m".to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("--only a\\nb\\u{1b}[31m:"),
            "{err}"
        );
    }

    #[test]
    fn an_interrupt_skips_what_has_not_started() {
        let f = fleet(&["d", "d", "d"], &["d"], OnError::Continue);
        let mut r = Rollout::new(schedule(&f, &[]).unwrap(), 3, 2, OnError::Continue);
        assert_eq!(r.start(), Some(0));
        r.stop();
        assert_eq!(r.start(), None);
        assert_eq!(r.state(0), State::Running);
        assert_eq!(r.state(1), State::Skipped);
    }
}
