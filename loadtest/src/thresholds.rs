//! The checked-in targets (`loadtest/thresholds.json`): goose threshold rules,
//! judged by goose (a failing one makes `execute()` return `ThresholdsFailed`), and
//! Vato's message-accounting limits, judged here on the tracker's counts.

use crate::tracker::Summary;
use serde::Deserialize;
use std::path::Path;

/// The checked-in file, built in so the binary carries its defaults.
const BUILTIN: &str = include_str!("../thresholds.json");

#[derive(Debug, Deserialize)]
pub struct Thresholds {
    #[serde(default)]
    pub goose: Vec<String>,
    #[serde(default)]
    pub max_lost: Option<u64>,
    #[serde(default)]
    pub max_duplicated: Option<u64>,
    #[serde(default)]
    pub max_out_of_order: Option<u64>,
    #[serde(default)]
    pub max_unacked: Option<u64>,
    /// At least this many deliveries, when any message was sent.
    #[serde(default)]
    pub min_delivered: Option<u64>,
}

pub fn load(path: Option<&Path>) -> Result<Thresholds, String> {
    let (text, name) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => (BUILTIN.to_string(), "built-in thresholds.json".to_string()),
    };
    let t: Thresholds = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    for rule in &t.goose {
        rule.parse::<goose::threshold::Threshold>()
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(t)
}

impl Thresholds {
    /// The Vato limits that `s` breaks, in words.
    pub fn judge(&self, s: &Summary) -> Vec<String> {
        let mut out = Vec::new();
        let mut max = |what: &str, limit: Option<u64>, got: u64| {
            if let Some(l) = limit {
                if got > l {
                    out.push(format!("{what}={got} (at most {l})"));
                }
            }
        };
        max("lost", self.max_lost, s.lost);
        max("dup", self.max_duplicated, s.duplicated);
        max("out_of_order", self.max_out_of_order, s.out_of_order);
        max("unacked", self.max_unacked, s.unacked);
        if let Some(min) = self.min_delivered {
            if s.sent > 0 && s.delivered < min {
                out.push(format!("delivered={} (at least {min})", s.delivered));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses() {
        let t = load(None).unwrap();
        assert!(t.goose.iter().any(|r| r.contains("WS deliver")));
        assert_eq!(t.max_lost, Some(0));
    }
}
