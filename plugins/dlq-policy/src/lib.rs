//! `dlq-policy`: the bridge's default dead-letter policy. Retries the failure kinds it is told
//! to retry, with fixed or exponential backoff and a cap, up to a maximum number of attempts;
//! sends everything else, and anything out of attempts, to the dead-letter target.

use bridge_guest_sdk::{
    Config, DeadLetterDecision, Decision, Failure, FailureKind, Message, Policy,
};

/// The configured policy.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqPolicy {
    max_attempts: u32,
    backoff: Backoff,
    initial_delay_ms: u64,
    max_delay_ms: u64,
    multiplier: f64,
    retry_on: Vec<FailureKind>,
    drop_on: Vec<FailureKind>,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backoff {
    Fixed,
    Exponential,
}

/// Failure kinds retried when `retry_on` is not set: the transient ones.
const DEFAULT_RETRY_ON: [FailureKind; 2] =
    [FailureKind::PluginTimeout, FailureKind::TargetRejected];

fn kinds(config: &Config, key: &str, default: &[FailureKind]) -> Result<Vec<FailureKind>, String> {
    if config.get(key).is_none() && config.list(key).is_empty() {
        return Ok(default.to_vec());
    }
    config
        .list(key)
        .into_iter()
        .map(|k| {
            FailureKind::parse(k).ok_or_else(|| {
                format!(
                    "setting `{key}`: unknown failure kind `{k}` (expected one of: {})",
                    FailureKind::ALL.map(FailureKind::as_str).join(", ")
                )
            })
        })
        .collect()
}

impl Policy for DlqPolicy {
    fn init(config: Config) -> Result<Self, String> {
        config.deny_unknown(&[
            "max_attempts",
            "backoff",
            "initial_delay_ms",
            "max_delay_ms",
            "multiplier",
            "retry_on",
            "drop_on",
            "reason",
        ])?;
        let policy = DlqPolicy {
            max_attempts: config.parse_or("max_attempts", 5)?,
            backoff: match config.get("backoff").unwrap_or("exponential") {
                "fixed" => Backoff::Fixed,
                "exponential" => Backoff::Exponential,
                other => {
                    return Err(format!(
                        "setting `backoff` = {other:?} is invalid: expected \"fixed\" or \"exponential\""
                    ));
                }
            },
            initial_delay_ms: config.parse_or("initial_delay_ms", 200)?,
            max_delay_ms: config.parse_or("max_delay_ms", 30_000)?,
            multiplier: config.parse_or("multiplier", 2.0)?,
            retry_on: kinds(&config, "retry_on", &DEFAULT_RETRY_ON)?,
            drop_on: kinds(&config, "drop_on", &[])?,
            reason: config
                .get("reason")
                .unwrap_or("{kind}: {error}")
                .to_string(),
        };
        if policy.max_attempts == 0 {
            return Err("setting `max_attempts` must be at least 1".to_string());
        }
        if !(policy.multiplier >= 1.0 && policy.multiplier.is_finite()) {
            return Err("setting `multiplier` must be a number of at least 1".to_string());
        }
        if policy.max_delay_ms < policy.initial_delay_ms {
            return Err(
                "setting `max_delay_ms` must not be less than `initial_delay_ms`".to_string(),
            );
        }
        Ok(policy)
    }

    fn decide(&mut self, _msg: &Message, failure: &Failure) -> Decision {
        if self.drop_on.contains(&failure.kind) {
            return Decision::Drop;
        }
        if self.retry_on.contains(&failure.kind) && failure.attempt < self.max_attempts {
            return Decision::Retry(self.delay(failure.attempt));
        }
        Decision::DeadLetter(DeadLetterDecision {
            reason: self.reason(failure),
            target: None,
        })
    }
}

impl DlqPolicy {
    /// The delay before attempt `attempt + 1`.
    fn delay(&self, attempt: u32) -> u64 {
        let delay = match self.backoff {
            Backoff::Fixed => self.initial_delay_ms as f64,
            Backoff::Exponential => {
                self.initial_delay_ms as f64
                    * self
                        .multiplier
                        .powi(attempt.saturating_sub(1).min(64) as i32)
            }
        };
        (delay.min(self.max_delay_ms as f64)) as u64
    }

    fn reason(&self, failure: &Failure) -> String {
        self.reason
            .replace("{kind}", failure.kind.as_str())
            .replace("{error}", &failure.message)
            .replace("{attempt}", &failure.attempt.to_string())
            .replace("{plugin}", failure.plugin.as_deref().unwrap_or("-"))
    }
}

bridge_guest_sdk::export_policy!(DlqPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, attempt: u32) -> Failure {
        Failure {
            kind,
            plugin: Some("p".into()),
            message: "boom".into(),
            attempt,
        }
    }

    fn decide(p: &mut DlqPolicy, kind: FailureKind, attempt: u32) -> Decision {
        p.decide(&Message::new(), &failure(kind, attempt))
    }

    #[test]
    fn exponential_backoff_with_cap_then_dead_letter() {
        let mut p = DlqPolicy::init(Config::from_pairs(&[
            ("max_attempts", "5"),
            ("initial_delay_ms", "100"),
            ("max_delay_ms", "300"),
        ]))
        .unwrap();
        let delays: Vec<_> = (1..5)
            .map(|a| match decide(&mut p, FailureKind::TargetRejected, a) {
                Decision::Retry(ms) => ms,
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 300, 300]);
        match decide(&mut p, FailureKind::TargetRejected, 5) {
            Decision::DeadLetter(d) => assert_eq!(d.reason, "target-rejected: boom"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn non_retried_kinds_go_straight_to_dead_letter_and_drop_on_drops() {
        let mut p = DlqPolicy::init(Config::from_pairs(&[
            ("retry_on", "plugin-trap"),
            ("drop_on.0", "hop-limit"),
            ("backoff", "fixed"),
            ("reason", "{plugin} failed on attempt {attempt}"),
        ]))
        .unwrap();
        assert!(matches!(
            decide(&mut p, FailureKind::PluginTrap, 3),
            Decision::Retry(200)
        ));
        assert!(matches!(
            decide(&mut p, FailureKind::HopLimit, 1),
            Decision::Drop
        ));
        match decide(&mut p, FailureKind::Unroutable, 1) {
            Decision::DeadLetter(d) => assert_eq!(d.reason, "p failed on attempt 1"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn config_errors() {
        let err = DlqPolicy::init(Config::from_pairs(&[("retry_on", "plugin-oops")])).unwrap_err();
        assert!(
            err.starts_with("setting `retry_on`: unknown failure kind `plugin-oops`"),
            "{err}"
        );
        let err = DlqPolicy::init(Config::from_pairs(&[("max_attempts", "many")])).unwrap_err();
        assert!(
            err.starts_with("setting `max_attempts` = \"many\" is invalid"),
            "{err}"
        );
        assert!(DlqPolicy::init(Config::from_pairs(&[("max_attempts", "0")])).is_err());
    }
}
