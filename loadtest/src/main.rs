//! vato-load: goose load test for Vato.
//!
//! goose's own command line (`--host`, `--users`, `--increase-rate` or
//! `--hatch-rate`, `--run-time`, `--report-file`, `--threshold`, ...) plus Vato's
//! options (`--msg-rate`, `--weights`, `--deliver-timeout-ms`, ...; see `--help`).
//! Exit status: 0 when every threshold passes, 1 when one fails, 2 on a setup error.

mod idle;
mod opts;
mod pacing;
mod pairing;
mod scenarios;
mod thresholds;
mod tracker;
mod ws;

use clap::Parser;
use goose::prelude::*;
use pairing::Kind;
use scenarios::{
    chat, connect, connect_start, login, login_start, messaging_start, messaging_stop, rest,
    rest_start, setup, setup_start,
};
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// The default load, which the checked-in thresholds are set for.
const DEFAULT_USERS: usize = 240;
const DEFAULT_INCREASE_RATE: &str = "25";
const DEFAULT_RUN_TIME_S: usize = 30;

fn default_weight(kind: Kind) -> usize {
    match kind {
        Kind::Messaging => 20,
        _ => 1,
    }
}

fn parse_weights(text: Option<&str>) -> Result<HashMap<Kind, usize>, String> {
    let mut w: HashMap<Kind, usize> = Kind::ALL.iter().map(|k| (*k, default_weight(*k))).collect();
    let Some(text) = text else {
        return Ok(w);
    };
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("--weights: {part:?} is not NAME=WEIGHT"))?;
        let kind = Kind::ALL
            .iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| {
                format!(
                    "--weights: unknown scenario {name:?} (login, setup, connect, messaging, rest)"
                )
            })?;
        let value: usize = value
            .trim()
            .parse()
            .map_err(|_| format!("--weights: {value:?} is not a whole number"))?;
        w.insert(*kind, value);
    }
    if w.values().all(|v| *v == 0) {
        return Err("--weights: every scenario has weight 0".into());
    }
    Ok(w)
}

/// Raises the soft open-files limit to the hard one.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn random_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mix = (nanos ^ ((std::process::id() as u64) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("vl{:08x}", mix >> 32)
}

fn arg_given(name: &str) -> bool {
    std::env::args().any(|a| a == name || a.starts_with(&format!("{name}=")))
}

fn build_attack(
    mut config: goose::config::GooseConfiguration,
    o: &opts::VatoOpts,
    limits: &thresholds::Thresholds,
) -> Result<GooseAttack, String> {
    let weights = parse_weights(o.weights.as_deref())?;
    let (lmin, lmax) = opts::VatoOpts::wait_range(&o.login_wait_ms)?;
    let (wmin, wmax) = opts::VatoOpts::wait_range(&o.wait_ms)?;
    if let Some(rate) = &o.hatch_rate {
        if config.increase_rate.is_some() {
            return Err("give --hatch-rate or --increase-rate, not both".into());
        }
        config.increase_rate = Some(rate.clone());
    }
    if o.no_thresholds {
        config.threshold.clear();
    }
    let test_plan = arg_given("--test-plan");
    let iterations = config.iterations.is_some();
    let total = (!test_plan).then(|| config.users.unwrap_or(DEFAULT_USERS));
    pairing::set_total_users(total);
    if let Some(total) = total {
        // The users each scenario gets, so the odd one out of a scenario knows
        // at once it has no partner.
        let patterns: Vec<String> = config
            .scenarios
            .as_ref()
            .map(|s| s.active.clone())
            .unwrap_or_default();
        let active: Vec<(Kind, usize)> = Kind::ALL
            .iter()
            .map(|k| {
                let on = patterns.is_empty() || patterns.iter().any(|p| wildcard(p, k.name()));
                (*k, if on { weights[k] } else { 0 })
            })
            .collect();
        pairing::set_counts(pairing::expected_counts(total, &active));
    }

    let e = |e: GooseError| e.to_string();
    let mut attack = GooseAttack::initialize_with_config(config).map_err(e)?;
    let ms = Duration::from_millis;
    for kind in Kind::ALL {
        let w = weights[&kind];
        if w == 0 {
            continue;
        }
        let sc = Scenario::new(kind.name()).set_weight(w).map_err(e)?;
        let sc = match kind {
            Kind::Login => sc
                .register_transaction(transaction!(login_start).set_on_start())
                .register_transaction(transaction!(login).set_name("login"))
                .set_wait_time(ms(lmin), ms(lmax))
                .map_err(e)?,
            Kind::Setup => sc
                .register_transaction(transaction!(setup_start).set_on_start())
                .register_transaction(transaction!(setup).set_name("create-direct + list"))
                .set_wait_time(ms(wmin), ms(wmax))
                .map_err(e)?,
            Kind::Connect => sc
                .register_transaction(transaction!(connect_start).set_on_start())
                .register_transaction(transaction!(connect).set_name("connect + ping"))
                .set_wait_time(ms(wmin), ms(wmax))
                .map_err(e)?,
            Kind::Messaging => sc
                .register_transaction(
                    transaction!(messaging_start)
                        .set_on_start()
                        .set_name("pair + connect"),
                )
                .register_transaction(transaction!(chat).set_name("chat"))
                .register_transaction(
                    transaction!(messaging_stop)
                        .set_on_stop()
                        .set_name("drain + close"),
                ),
            Kind::Rest => sc
                .register_transaction(transaction!(rest_start).set_on_start())
                .register_transaction(transaction!(rest).set_name("REST send + history"))
                .set_wait_time(ms(wmin), ms(wmax))
                .map_err(e)?,
        };
        attack = attack.register_scenario(sc);
    }

    // The default load (the thresholds' reference), unless a plan is given.
    if !test_plan {
        attack = *attack
            .set_default(GooseDefault::Users, DEFAULT_USERS)
            .map_err(e)?;
        attack = *attack
            .set_default(GooseDefault::IncreaseRate, DEFAULT_INCREASE_RATE)
            .map_err(e)?;
        if !iterations {
            attack = *attack
                .set_default(GooseDefault::RunTime, DEFAULT_RUN_TIME_S)
                .map_err(e)?;
            // Keep the connect timings made while users start.
            attack = *attack
                .set_default(GooseDefault::NoResetMetrics, true)
                .map_err(e)?;
        }
    }
    // Judge the thresholds on the whole run, at its end: a percentile judged
    // mid-run on the first few seconds of chatting is noise. An explicit
    // --threshold-abort-delay brings goose's mid-run abort back.
    if !o.no_thresholds && !arg_given("--threshold-abort-delay") {
        attack = *attack
            .set_default(GooseDefault::NoThresholdAbort, true)
            .map_err(e)?;
    }
    if !o.no_thresholds {
        for rule in &limits.goose {
            attack = *attack
                .set_default(GooseDefault::Threshold, rule.as_str())
                .map_err(e)?;
        }
    }
    Ok(attack)
}

/// A compact table of goose's request metrics, and its errors, for logs.
fn print_requests(m: &GooseMetrics) {
    let mut rows: Vec<_> = m.requests.iter().collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    println!(
        "vato-load: {:<52} {:>7} {:>5} {:>9} {:>9} {:>9}",
        "request", "count", "fail", "p50 ms", "p99 ms", "max ms"
    );
    for (name, a) in rows {
        let t = &a.raw_data;
        let ms = |us: u64| us as f64 / 1000.0;
        let (p50, p99) = if t.counter > 0 {
            (ms(t.percentile_us(0.5)), ms(t.percentile_us(0.99)))
        } else {
            (0.0, 0.0)
        };
        println!(
            "vato-load: {:<52} {:>7} {:>5} {:>9.2} {:>9.2} {:>9.2}",
            name,
            a.success_count + a.fail_count,
            a.fail_count,
            p50,
            p99,
            ms(t.maximum_time_us)
        );
    }
    let mut errors: Vec<_> = m.errors.values().collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.occurrences));
    for e in errors.iter().take(10) {
        println!(
            "vato-load: error x{} {} {}: {}",
            e.occurrences, e.method, e.name, e.error
        );
    }
}

/// goose's `--scenarios` matching: `*` matches any run of characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| m(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && m(rest, &t[1..]),
        }
    }
    m(pattern.to_lowercase().as_bytes(), name.as_bytes())
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.2}"),
        None => "n/a".into(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = opts::Cli::parse();
    raise_nofile();
    let o = cli.vato.clone();
    opts::set(cli.vato);
    scenarios::set_run_id(o.run_id.clone().unwrap_or_else(random_run_id));

    if let Some(n) = o.idle_sockets {
        let host = cli
            .goose
            .host
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8000".into());
        return idle::run(&host, n, &o, &cli.goose).await;
    }

    let limits = match thresholds::load(o.threshold_file.as_deref()) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("vato-load: {msg}");
            return ExitCode::from(2);
        }
    };
    let attack = match build_attack(cli.goose, &o, &limits) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("vato-load: {msg}");
            return ExitCode::from(2);
        }
    };

    let mut failures: Vec<String> = Vec::new();
    let goose_ok = match attack.execute().await {
        Ok(metrics) => {
            print_requests(&metrics);
            true
        }
        Err(GooseError::ThresholdsFailed { failed, metrics }) => {
            print_requests(&metrics);
            for f in failed {
                failures.push(format!(
                    "goose threshold {} (observed {})",
                    f.rule, f.observed
                ));
            }
            false
        }
        Err(other) => {
            eprintln!("vato-load: goose failed: {other}");
            return ExitCode::from(2);
        }
    };

    let s = tracker::get().summary();
    if !o.no_thresholds {
        failures.extend(limits.judge(&s));
    }
    let pass = goose_ok && failures.is_empty();
    println!(
        "vato-load: detail sent={} acked={} unacked={} late={} seq_gaps={} ws_errors={} \
         send_errors={} p90={} ms p99.9={} ms max={} ms send_lag_p50={} ms send_lag_p99={} ms",
        s.sent,
        s.acked,
        s.unacked,
        s.late,
        s.gaps,
        s.ws_errors,
        s.send_errors,
        fmt_ms(s.p90_ms),
        fmt_ms(s.p999_ms),
        fmt_ms(s.max_ms),
        fmt_ms(s.send_lag_p50_ms),
        fmt_ms(s.send_lag_p99_ms)
    );
    for f in &failures {
        println!("vato-load: FAIL {f}");
    }
    let line = format!(
        "vato-load: delivered={} lost={} dup={} out_of_order={} rate={:.1} msg/s p50={} ms p99={} ms thresholds={}",
        s.delivered,
        s.lost,
        s.duplicated,
        s.out_of_order,
        s.rate,
        fmt_ms(s.p50_ms),
        fmt_ms(s.p99_ms),
        if pass { "PASS" } else { "FAIL" }
    );
    println!("{line}");
    if let Some(path) = &o.summary_file {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(mut f) => {
                let _ = writeln!(f, "{line}");
            }
            Err(e) => eprintln!("vato-load: cannot write {}: {e}", path.display()),
        }
    }
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        let w = parse_weights(Some("messaging=4, login=0")).unwrap();
        assert_eq!(w[&Kind::Messaging], 4);
        assert_eq!(w[&Kind::Login], 0);
        assert_eq!(w[&Kind::Rest], 1);
        assert!(parse_weights(Some("nope=1")).is_err());
        assert!(parse_weights(Some("messaging=0,login=0,setup=0,connect=0,rest=0")).is_err());
    }

    #[test]
    fn cli_parses_goose_and_vato_options() {
        let cli = opts::Cli::try_parse_from([
            "vato-load",
            "--host",
            "http://127.0.0.1:1",
            "--users",
            "10",
            "--hatch-rate",
            "5",
            "--run-time",
            "10s",
            "--report-file",
            "r.html",
            "--msg-rate",
            "2.5",
            "--threshold",
            "p99<=50ms for WS deliver",
        ])
        .unwrap();
        assert_eq!(cli.goose.users, Some(10));
        assert_eq!(cli.vato.hatch_rate.as_deref(), Some("5"));
        assert_eq!(cli.vato.msg_rate, 2.5);
        assert_eq!(cli.goose.threshold.len(), 1);
    }
}
