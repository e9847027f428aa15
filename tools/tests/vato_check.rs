//! vato-check against a fake server: it passes when the server is right, and
//! fails the right checks when the server is wrong.

mod support;

use serde_json::Value;
use support::{start, start_cluster, Fault};

/// What one vato-check run printed and returned.
struct Run {
    code: Option<i32>,
    stdout: String,
}

impl Run {
    fn line(&self, name: &str) -> Option<&str> {
        self.stdout.lines().find(|line| {
            let rest = line
                .strip_prefix("PASS ")
                .or_else(|| line.strip_prefix("FAIL "));
            rest.is_some_and(|r| {
                r == name
                    || r.starts_with(&format!("{name} "))
                    || r.starts_with(&format!("{name}:"))
            })
        })
    }

    fn passed(&self, name: &str) -> bool {
        self.line(name).is_some_and(|l| l.starts_with("PASS "))
    }

    fn failed(&self, name: &str) -> bool {
        self.line(name).is_some_and(|l| l.starts_with("FAIL "))
    }

    fn summary(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }

    #[track_caller]
    fn assert_all_pass(&self, total: usize) {
        assert_eq!(
            self.summary(),
            format!("{total} passed, 0 failed"),
            "\n{}",
            self.stdout
        );
        assert_eq!(self.code, Some(0), "\n{}", self.stdout);
        let lines = self.stdout.lines().count();
        assert_eq!(
            lines,
            total + 1,
            "one line per check plus the summary:\n{}",
            self.stdout
        );
    }

    #[track_caller]
    fn assert_fails(&self, names: &[&str]) {
        assert_eq!(self.code, Some(1), "\n{}", self.stdout);
        for name in names {
            assert!(self.failed(name), "{name} should fail:\n{}", self.stdout);
        }
    }

    #[track_caller]
    fn assert_passes(&self, names: &[&str]) {
        for name in names {
            assert!(self.passed(name), "{name} should pass:\n{}", self.stdout);
        }
    }
}

async fn vato_check(args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vato-check"));
    command.args(args);
    // The caller's VATO_CHECK_* variables must not change what is tested.
    for (key, _) in std::env::vars() {
        if key.starts_with("VATO_CHECK_") {
            command.env_remove(key);
        }
    }
    let output = command.output().await.expect("run vato-check");
    // Shown by the test harness when the test fails (or with --nocapture).
    eprintln!(
        "$ vato-check {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout)
    );
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

const BASIC: usize = 20;
const EXTENDED: usize = 38;

const SETUP: &[&str] = &[
    "auth.login_a",
    "auth.login_b",
    "auth.wrong_password",
    "conv.create_direct",
    "conv.listed_a",
    "conv.listed_b",
    "ws.connect_a",
    "ws.connect_b",
    "ws.ping_pong",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_server_passes_every_check_and_repeats() {
    let node = start(Fault::None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("check.json");
    let json_arg = json.to_str().expect("utf-8 temp path");
    let run = vato_check(&["--base", &node.base, "--extended", "--json", json_arg]).await;
    run.assert_all_pass(EXTENDED);
    assert!(
        run.line("realtime.a_to_b")
            .is_some_and(|l| l.ends_with(" ms)")),
        "latency shown:\n{}",
        run.stdout
    );

    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let report: Value = serde_json::from_str(&text).expect("JSON report parses");
    assert_eq!(report["passed"], EXTENDED);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["checks"].as_array().map(Vec::len), Some(EXTENDED));
    assert_eq!(report["checks"][0]["name"], "auth.login_a");
    assert!(report["checks"][12]["latency_ms"].is_number(), "{text}");

    // Same demo users, same server: create-direct finds the conversation
    // (200) and the second run must pass as well.
    let again = vato_check(&["--base", &node.base, "--extended"]).await;
    again.assert_all_pass(EXTENDED);
    assert!(
        again.stdout.contains("PASS conv.create_direct (HTTP 200"),
        "\n{}",
        again.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_path_with_fresh_users_passes() {
    let node = start(Fault::None).await;
    let run = vato_check(&[
        "--base",
        &node.base,
        "--ws-path",
        "/ws/chat/",
        "--fresh-users",
        "--extended",
    ])
    .await;
    run.assert_all_pass(EXTENDED);
    assert!(
        !run.stdout.contains("lalo"),
        "fresh users, not the demo ones:\n{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_puts_b_on_the_second_node() {
    let (one, two) = start_cluster(Fault::None).await;
    let ws_two = two.base.replace("http://", "ws://");
    let run = vato_check(&[
        "--base",
        &one.base,
        "--base-b",
        &two.base,
        "--ws-base",
        &ws_two,
        "--extended",
        "--fresh-users",
    ])
    .await;
    run.assert_all_pass(EXTENDED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_echo_fails_the_echo_check() {
    let node = start(Fault::DropEcho).await;
    let run = vato_check(&["--base", &node.base, "--timeout-ms", "1000"]).await;
    run.assert_fails(&["realtime.echo", "realtime.burst_order"]);
    run.assert_passes(SETUP);
    run.assert_passes(&[
        "realtime.a_to_b",
        "realtime.b_to_a",
        "rest.send_201",
        "rest.history",
    ]);
    let echo = run.line("realtime.echo").unwrap_or_default();
    assert!(
        echo.contains("A did not get message.new for the echo"),
        "{echo}"
    );
    assert_eq!(
        run.summary(),
        format!("{} passed, 2 failed", BASIC - 2),
        "\n{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_messages_fail_the_once_checks() {
    let node = start(Fault::Duplicate).await;
    let run = vato_check(&["--base", &node.base, "--extended", "--timeout-ms", "1000"]).await;
    run.assert_fails(&[
        "realtime.a_to_b",
        "realtime.b_to_a",
        "realtime.echo",
        "realtime.burst_order",
        "realtime.seq_increasing",
        "rest.live_delivery",
        "ext.client_id_once",
    ]);
    run.assert_passes(SETUP);
    run.assert_passes(&["rest.send_201", "rest.history", "ext.typing"]);
    let line = run.line("realtime.a_to_b").unwrap_or_default();
    assert!(
        line.contains("B got A's message 2 times (duplicate delivery)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_anyone_fails_the_refusal_checks() {
    let node = start(Fault::AcceptAnyone).await;
    let run = vato_check(&["--base", &node.base]).await;
    run.assert_fails(&[
        "ws.refuse_no_token",
        "ws.refuse_bad_token",
        "ws.refuse_non_member",
    ]);
    run.assert_passes(SETUP);
    assert_eq!(
        run.summary(),
        format!("{} passed, 3 failed", BASIC - 3),
        "\n{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_resume_fails_the_resume_check() {
    let node = start(Fault::LossyResume).await;
    let run = vato_check(&["--base", &node.base, "--extended", "--timeout-ms", "1000"]).await;
    run.assert_fails(&["ext.resume_since"]);
    run.assert_passes(&[
        "ext.client_id_once",
        "ext.typing",
        "ext.edit",
        "ext.delete",
        "ext.read",
    ]);
    assert_eq!(
        run.summary(),
        format!("{} passed, 1 failed", EXTENDED - 1),
        "\n{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_that_revokes_nothing_fails_the_logout_check() {
    let node = start(Fault::IgnoreLogout).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.logout"]);
    run.assert_passes(&["ext.profile", "ext.settings", "ext.resume_since"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_changes_nothing_fails_the_contact_block_check() {
    let node = start(Fault::IgnoreBlock).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.contact_block"]);
    assert_eq!(
        run.summary(),
        format!("{} passed, 1 failed", EXTENDED - 1),
        "\n{}",
        run.stdout
    );
    let line = run.line("ext.contact_block").unwrap_or_default();
    assert!(line.contains("expected 403"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changes_and_pins_by_non_admins_fail_their_checks() {
    let node = start(Fault::NoAdminCheck).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.group_admin", "ext.pin"]);
    run.assert_passes(&["ext.forward", "ext.presence"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_retry_that_posts_again_fails_the_forward_check() {
    let node = start(Fault::ForwardTwice).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.forward"]);
    run.assert_passes(&["ext.group_admin", "ext.pin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_missing_from_message_new_fail_the_attachment_check() {
    let node = start(Fault::AttachmentsNotLive).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.attachment"]);
    run.assert_passes(&["ext.forward", "ext.pin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avatars_that_are_not_served_fail_the_avatar_check() {
    let node = start(Fault::AvatarNotServed).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.avatar"]);
    run.assert_passes(&["ext.profile", "ext.attachment"]);
    let line = run.line("ext.avatar").unwrap_or_default();
    assert!(line.contains("HTTP 404"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_frames_echoed_to_their_sender_fail_the_call_check() {
    let node = start(Fault::WebrtcEchoed).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.call"]);
    run.assert_passes(&["ext.typing", "ext.avatar"]);
    let line = run.line("ext.call").unwrap_or_default();
    assert!(line.contains("came back to their sender"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_mark_that_does_not_stick_fails_the_notification_check() {
    let node = start(Fault::NotificationReadLost).await;
    let run = vato_check(&["--base", &node.base, "--extended"]).await;
    run.assert_fails(&["ext.notification"]);
    run.assert_passes(&["ext.call", "ext.avatar"]);
    let line = run.line("ext.notification").unwrap_or_default();
    assert!(line.contains("after read/"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_every_check_without_omitting_any() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let run = vato_check(&["--base", &base, "--timeout-ms", "500"]).await;
    assert_eq!(run.code, Some(1), "\n{}", run.stdout);
    assert_eq!(
        run.summary(),
        format!("0 passed, {BASIC} failed"),
        "\n{}",
        run.stdout
    );
    assert!(
        run.line("auth.login_a")
            .is_some_and(|l| l.contains("request to")),
        "\n{}",
        run.stdout
    );
    let skipped = run.line("ws.ping_pong").unwrap_or_default();
    assert_eq!(skipped, "FAIL ws.ping_pong: skipped: auth.login_a failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ws_path_fails_connect_and_skips_what_needs_sockets() {
    let node = start(Fault::None).await;
    let run = vato_check(&[
        "--base",
        &node.base,
        "--ws-path",
        "/ws/nope/",
        "--timeout-ms",
        "500",
    ])
    .await;
    run.assert_fails(&["ws.connect_a", "ws.connect_b"]);
    run.assert_passes(&["conv.listed_b", "rest.send_201", "rest.history"]);
    // A 404 for a wrong path must not count as a refusal.
    for name in [
        "ws.refuse_no_token",
        "realtime.a_to_b",
        "rest.live_delivery",
    ] {
        let line = run.line(name).unwrap_or_default();
        assert_eq!(line, format!("FAIL {name}: skipped: ws.connect_a failed"));
    }
    let connect = run.line("ws.connect_a").unwrap_or_default();
    assert!(connect.contains("HTTP 404"), "{connect}");
}
