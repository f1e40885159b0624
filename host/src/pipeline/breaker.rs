//! A mapping's circuit breaker: plugin failures counted in a sliding window; `failures` of them
//! within `window_secs` trip it. While it is open the mapping either pauses (its messages wait,
//! unacknowledged and uncommitted) or dead-letters without calling the plugins, by policy.
//! After `cool_down_secs` one message is let through (half-open): a success closes the breaker,
//! a failure opens it again. A plugin reload closes it at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{BreakerAction, BreakerConfig};

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages go through the plugins.
    Closed,
    /// Tripped: messages do not reach the plugins until the cool-down ends.
    Open {
        /// When one message may try again.
        until: Instant,
    },
    /// The cool-down ended: one message is trying.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Run the plugins.
    Pass,
    /// Pause: try this message again after the delay.
    Wait(Duration),
    /// Dead-letter it without running the plugins.
    DeadLetter,
}

/// A mapping's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    failures: VecDeque<Instant>,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            failures: VecDeque::new(),
            state: State::Closed,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a message may run the plugins at `now`; moves an open breaker whose cool-down
    /// ended to half-open.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed | State::HalfOpen => Admit::Pass,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Admit::Pass
            }
            State::Open { until } => match self.config.action {
                BreakerAction::Pause => Admit::Wait(until - now),
                BreakerAction::DeadLetter => Admit::DeadLetter,
            },
        }
    }

    /// Records a plugin failure at `now`; returns the new state if it changed.
    pub fn failed(&mut self, now: Instant) -> Option<State> {
        let window = Duration::from_secs(self.config.window_secs);
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        let trip = match self.state {
            State::HalfOpen => true,
            State::Closed => self.failures.len() >= self.config.failures as usize,
            State::Open { .. } => false,
        };
        trip.then(|| {
            self.state = State::Open {
                until: now + Duration::from_secs(self.config.cool_down_secs),
            };
            self.failures.clear();
            self.state
        })
    }

    /// Records a message the plugins handled; closes a half-open breaker.
    pub fn succeeded(&mut self) -> Option<State> {
        (self.state == State::HalfOpen).then(|| {
            self.state = State::Closed;
            self.state
        })
    }

    /// Closes the breaker (a plugin was reloaded); returns the new state if it changed.
    pub fn reset(&mut self) -> Option<State> {
        self.failures.clear();
        (self.state != State::Closed).then(|| {
            self.state = State::Closed;
            self.state
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(action: BreakerAction) -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            window_secs: 10,
            cool_down_secs: 5,
            action,
        })
    }

    #[test]
    fn trips_after_n_failures_in_the_window_only() {
        let t0 = Instant::now();
        let mut b = breaker(BreakerAction::Pause);
        assert_eq!(b.failed(t0), None);
        assert_eq!(b.failed(t0 + Duration::from_secs(5)), None);
        // The first failure left the window: still two.
        assert_eq!(b.failed(t0 + Duration::from_secs(11)), None);
        let opened = b.failed(t0 + Duration::from_secs(12));
        assert!(matches!(opened, Some(State::Open { .. })));
        assert_eq!(
            b.admit(t0 + Duration::from_secs(13)),
            Admit::Wait(Duration::from_secs(4))
        );
    }

    #[test]
    fn half_open_after_the_cool_down_then_closes_or_reopens() {
        let t0 = Instant::now();
        let mut b = breaker(BreakerAction::DeadLetter);
        for _ in 0..3 {
            b.failed(t0);
        }
        assert_eq!(b.admit(t0 + Duration::from_secs(1)), Admit::DeadLetter);
        assert_eq!(b.admit(t0 + Duration::from_secs(5)), Admit::Pass);
        assert_eq!(b.state(), State::HalfOpen);
        assert!(matches!(
            b.failed(t0 + Duration::from_secs(5)),
            Some(State::Open { .. })
        ));
        assert_eq!(b.admit(t0 + Duration::from_secs(10)), Admit::Pass);
        assert_eq!(b.succeeded(), Some(State::Closed));
        assert_eq!(b.succeeded(), None);
    }

    #[test]
    fn a_reload_closes_it() {
        let t0 = Instant::now();
        let mut b = breaker(BreakerAction::Pause);
        for _ in 0..3 {
            b.failed(t0);
        }
        assert_eq!(b.reset(), Some(State::Closed));
        assert_eq!(b.admit(t0), Admit::Pass);
    }
}
