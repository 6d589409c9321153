//! The `checkpoints:` and `restart:` sections of a spec.

use crate::restart::RestartStrategy;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The `checkpoints:` section: how often the job's state is snapshotted,
/// where, and with which guarantee. Without it a job takes no
/// checkpoints, and a failure fails it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckpointSpec {
    /// Milliseconds from one checkpoint's start to the next one's.
    pub interval_ms: u64,
    /// Folder of the checkpoints: each job writes `<dir>/<job>/chk-N/`.
    /// Relative to the spec's folder; default `checkpoints`. Or a prefix
    /// in S3-compatible object storage, `s3://bucket/prefix`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// `exactly-once` (multi-input tasks align barriers; the file sink
    /// commits by two-phase commit) or `at-least-once` (no alignment; the
    /// file sink writes straight through).
    #[serde(default)]
    pub mode: CheckpointMode,
    /// Unaligned checkpoints (exactly-once only): barriers overtake queued
    /// data, which goes into the checkpoint, so a back-pressured job
    /// checkpoints as fast as barriers travel. Savepoints stay aligned.
    #[serde(default)]
    pub unaligned: bool,
    /// Incremental checkpoints: with the `lsm` state backend, a
    /// checkpoint writes only the state changed since the last completed
    /// one, and shares the older files (the memory backend always writes
    /// all of it). Default true.
    #[serde(default = "yes")]
    pub incremental: bool,
    /// A checkpoint not complete after this long is aborted. Default
    /// 10 minutes, Flink's.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The least time from one checkpoint's end to the next one's start.
    #[serde(default)]
    pub min_pause_ms: u64,
    /// Completed checkpoints kept; older ones are deleted. Default 1,
    /// Flink's.
    #[serde(default = "one")]
    pub retain: u32,
    /// Checkpoints in progress at once. Default 1, Flink's.
    #[serde(default = "one")]
    pub max_concurrent: u32,
}

fn default_dir() -> PathBuf {
    PathBuf::from("checkpoints")
}

fn default_timeout_ms() -> u64 {
    600_000
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// The guarantee checkpoints give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointMode {
    /// Every record affects state and output exactly once.
    #[default]
    ExactlyOnce,
    /// Every record affects state and output at least once.
    AtLeastOnce,
}

impl CheckpointSpec {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.interval_ms < 10 {
            return Err("checkpoints: interval-ms must be at least 10".into());
        }
        if self.timeout_ms < 10 {
            return Err("checkpoints: timeout-ms must be at least 10".into());
        }
        if self.retain == 0 {
            return Err("checkpoints: retain must be at least 1 (the latest checkpoint is what recovery uses)".into());
        }
        if self.max_concurrent == 0 {
            return Err("checkpoints: max-concurrent must be at least 1".into());
        }
        if self.unaligned && self.mode == CheckpointMode::AtLeastOnce {
            return Err("checkpoints: `unaligned: true` goes with `mode: exactly-once` (at-least-once aligns \
                        nothing already); remove one of them"
                .into());
        }
        if self.dir.as_os_str().is_empty() {
            return Err("checkpoints: dir must not be empty".into());
        }
        if self.is_object_storage() {
            let text = self.dir.to_string_lossy();
            let rest = text.strip_prefix("s3://").ok_or_else(|| {
                format!(
                    "checkpoints: dir `{text}` is a URL of another kind than `s3://bucket/prefix`; checkpoints go on \
                     the local file system or on S3-compatible object storage"
                )
            })?;
            if rest.split('/').next().is_none_or(str::is_empty) {
                return Err(format!("checkpoints: dir `{text}` names no bucket; write `s3://bucket/prefix`"));
            }
        }
        Ok(())
    }

    /// Whether `dir` is in object storage (a URL) rather than a local folder.
    pub fn is_object_storage(&self) -> bool {
        self.dir.to_str().is_some_and(|s| s.contains("://"))
    }
}

/// The `restart:` section: what the job does when a task fails, after
/// Flink's restart strategies. Default: `exponential-delay` with Flink's
/// settings when the job takes checkpoints, `none` when it does not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "type")]
pub enum RestartSpec {
    /// Fail at the first failure.
    None,
    /// Restart up to `attempts` times, `delay-ms` after each failure.
    FixedDelay {
        /// Restarts before the job fails.
        attempts: u32,
        /// Wait before each restart (default 1 s).
        #[serde(default = "default_delay_ms")]
        delay_ms: u64,
    },
    /// Restart after a delay growing from `initial-delay-ms` by
    /// `multiplier` up to `max-delay-ms`.
    ExponentialDelay {
        /// The first delay (default 1 s).
        #[serde(default = "default_delay_ms")]
        initial_delay_ms: u64,
        /// The longest delay (default 1 min).
        #[serde(default = "default_max_delay_ms")]
        max_delay_ms: u64,
        /// Growth per failure, in hundredths (default 150: × 1.5).
        #[serde(default = "default_multiplier")]
        multiplier_percent: u32,
        /// Restarts before the job fails (default: no end).
        #[serde(default)]
        attempts: Option<u32>,
    },
    /// Restart `delay-ms` after a failure, unless more than
    /// `max-failures` fell within the last `interval-ms`.
    FailureRate {
        /// Failures tolerated within one interval.
        max_failures: u32,
        /// The interval (default 1 min).
        #[serde(default = "default_max_delay_ms")]
        interval_ms: u64,
        /// Wait before each restart (default 1 s).
        #[serde(default = "default_delay_ms")]
        delay_ms: u64,
    },
}

fn default_delay_ms() -> u64 {
    1000
}

fn default_max_delay_ms() -> u64 {
    60_000
}

fn default_multiplier() -> u32 {
    150
}

impl RestartSpec {
    pub(super) fn validate(&self) -> Result<(), String> {
        match self {
            RestartSpec::ExponentialDelay { initial_delay_ms, max_delay_ms, multiplier_percent, .. } => {
                if initial_delay_ms > max_delay_ms {
                    return Err("restart: initial-delay-ms must not exceed max-delay-ms".into());
                }
                if *multiplier_percent < 100 {
                    return Err("restart: multiplier-percent must be at least 100 (delays never shrink)".into());
                }
            }
            RestartSpec::FailureRate { interval_ms: 0, .. } => {
                return Err("restart: interval-ms must be at least 1".into());
            }
            _ => {}
        }
        Ok(())
    }

    /// The strategy this section asks for.
    pub fn strategy(&self) -> RestartStrategy {
        let ms = Duration::from_millis;
        match self {
            RestartSpec::None => RestartStrategy::None,
            RestartSpec::FixedDelay { attempts, delay_ms } => {
                RestartStrategy::FixedDelay { attempts: *attempts, delay: ms(*delay_ms) }
            }
            RestartSpec::ExponentialDelay { initial_delay_ms, max_delay_ms, multiplier_percent, attempts } => {
                let RestartStrategy::ExponentialDelay { reset_after, jitter, .. } = RestartStrategy::default() else {
                    unreachable!("invariant: the default strategy is exponential-delay")
                };
                RestartStrategy::ExponentialDelay {
                    initial: ms(*initial_delay_ms),
                    max: ms(*max_delay_ms),
                    multiplier: f64::from(*multiplier_percent) / 100.0,
                    reset_after,
                    jitter,
                    attempts: attempts.unwrap_or(u32::MAX),
                }
            }
            RestartSpec::FailureRate { max_failures, interval_ms, delay_ms } => RestartStrategy::FailureRate {
                max_failures: *max_failures,
                interval: ms(*interval_ms),
                delay: ms(*delay_ms),
            },
        }
    }
}
