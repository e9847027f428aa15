//! The outcome of each check: printed as it is recorded, summed up at the end,
//! optionally written as JSON.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::Config;

/// What a passing check has to say: a measured latency and/or a short note.
#[derive(Debug, Default, Clone)]
pub struct Pass {
    latency_ms: Option<f64>,
    detail: Option<String>,
}

impl Pass {
    pub fn plain() -> Self {
        Self::default()
    }

    /// A pass whose note is the latency itself, e.g. `(3.1 ms)`.
    pub fn latency(latency: Duration) -> Self {
        Self {
            latency_ms: Some(ms(latency)),
            detail: Some(fmt_ms(latency)),
        }
    }

    pub fn detail(detail: impl Into<String>) -> Self {
        Self {
            latency_ms: None,
            detail: Some(detail.into()),
        }
    }

    pub fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// Keeps the latency for JSON but replaces the printed note.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The result of one check: `Ok` with its note, `Err` with the reason.
pub type CheckResult = Result<Pass, String>;

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// Delivery (or round-trip) latency where the check measures one.
    pub latency_ms: Option<f64>,
    pub detail: Option<String>,
    /// Why the check failed; `None` when it passed.
    pub reason: Option<String>,
}

impl Outcome {
    fn line(&self) -> String {
        match (&self.reason, &self.detail) {
            (Some(reason), _) => format!("FAIL {}: {reason}", self.name),
            (None, Some(detail)) => format!("PASS {} ({detail})", self.name),
            (None, None) => format!("PASS {}", self.name),
        }
    }
}

/// Every check of a run, in the order they were recorded.
///
/// The plan (all the names this run must report) makes sure a check that
/// could not run still shows up as a failure instead of vanishing.
pub struct Report {
    plan: Vec<&'static str>,
    outcomes: Vec<Outcome>,
    echo: bool,
}

impl Report {
    /// `echo` prints each line as it is recorded (the binary); tests keep quiet.
    pub fn new(plan: Vec<&'static str>, echo: bool) -> Self {
        Self {
            plan,
            outcomes: Vec::new(),
            echo,
        }
    }

    pub fn record(&mut self, name: &str, result: CheckResult) {
        let outcome = match result {
            Ok(pass) => Outcome {
                name: name.to_owned(),
                ok: true,
                latency_ms: pass.latency_ms,
                detail: pass.detail,
                reason: None,
            },
            Err(reason) => Outcome {
                name: name.to_owned(),
                ok: false,
                latency_ms: None,
                detail: None,
                reason: Some(one_line(&reason)),
            },
        };
        if self.echo {
            println!("{}", outcome.line());
            // A line per check is the progress display: don't let it sit in a buffer.
            let _ = std::io::stdout().flush();
        }
        self.outcomes.push(outcome);
    }

    /// Records `names` as failed because `dependency` failed.
    pub fn skip(&mut self, names: &[&str], dependency: &str) {
        for name in names {
            self.record(name, Err(format!("skipped: {dependency} failed")));
        }
    }

    /// Records every planned check not reported yet as skipped.
    pub fn skip_rest(&mut self, dependency: &str) {
        let missing = self.unreported();
        self.skip(&missing, dependency);
    }

    /// Safety net: a planned check that no code path reported is a failure.
    pub fn finish(&mut self) {
        for name in self.unreported() {
            self.record(name, Err("not run (bug in vato-check)".into()));
        }
    }

    fn unreported(&self) -> Vec<&'static str> {
        let reported = |name: &str| self.outcomes.iter().any(|o| o.name == name);
        self.plan
            .iter()
            .copied()
            .filter(|name| !reported(name))
            .collect()
    }

    /// Did the check `name` run and fail?
    pub fn has_failed(&self, name: &str) -> bool {
        self.outcomes.iter().any(|o| o.name == name && !o.ok)
    }

    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.ok).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }

    /// The last line of the output, exactly `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    pub fn write_json(&self, path: &Path, config: &Config) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Json<'a> {
            base: &'a str,
            ws_path: &'a str,
            extended: bool,
            passed: usize,
            failed: usize,
            checks: &'a [Outcome],
        }
        let json = Json {
            base: &config.base,
            ws_path: &config.ws_path,
            extended: config.extended,
            passed: self.passed(),
            failed: self.failed(),
            checks: &self.outcomes,
        };
        let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

pub fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

pub fn fmt_ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Keeps one check on one line, however long the server's answer was.
fn one_line(reason: &str) -> String {
    let flat: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&flat, 400)
}

pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max_chars).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let mut report = Report::new(vec!["a", "b", "c"], false);
        report.record("a", Ok(Pass::latency(Duration::from_micros(3140))));
        report.record("b", Err("no\nframe".into()));
        report.finish();
        let lines: Vec<String> = report.outcomes().iter().map(Outcome::line).collect();
        assert_eq!(
            lines,
            [
                "PASS a (3.1 ms)",
                "FAIL b: no frame",
                "FAIL c: not run (bug in vato-check)"
            ]
        );
        assert_eq!(report.summary(), "1 passed, 2 failed");
    }
}
