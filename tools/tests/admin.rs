//! vato-admin against a real log written by the store.

use std::process::Command as Process;

use vato_eventlog::{Command, Store, StoreConfig};

fn admin(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Process::new(env!("CARGO_BIN_EXE_vato-admin"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run vato-admin")
}

/// Two users, a direct conversation and `messages` messages; closed cleanly.
fn write_log(dir: &std::path::Path, messages: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (store, _committed) = Store::open(StoreConfig::new(dir)).unwrap();
        for name in ["ana", "bo"] {
            store
                .submit(Command::Register {
                    username: name.into(),
                    password_hash: "x".into(),
                    email: String::new(),
                    display_name: String::new(),
                    phone_number: None,
                    at: 1,
                })
                .await
                .unwrap()
                .unwrap();
        }
        store
            .submit(Command::CreateDirect {
                by: 1,
                other: 2,
                at: 2,
            })
            .await
            .unwrap()
            .unwrap();
        for i in 0..messages {
            store
                .submit(Command::PostMessage {
                    sender: 1 + (i as u64 % 2),
                    conv_id: 1,
                    content: format!("m{i}"),
                    message_type: "text".into(),
                    reply_to: None,
                    forwarded_from: None,
                    client_id: None,
                    at: 3 + i as i64,
                })
                .await
                .unwrap()
                .unwrap();
        }
        store.close().unwrap();
    });
}

#[test]
fn verify_passes_on_a_healthy_log_and_stats_count_it() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 25);
    let out = admin(dir.path(), &["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3 to set up, then each post and the other member's notification.
    assert!(stdout.contains("OK: 53 events"), "{stdout}");

    let out = admin(dir.path(), &["stats"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("messages       25"), "{stdout}");

    let out = admin(dir.path(), &["dump", "--from", "3", "--limit", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.lines().next().unwrap().contains("\"offset\":3"),
        "{stdout}"
    );
}

#[test]
fn verify_reports_a_corrupt_entry_by_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 5);
    {
        let log = vato_eventlog::log::Log::open(dir.path()).unwrap();
        log.put_raw(4, b"\x01garbage").unwrap();
    }
    let out = admin(dir.path(), &["verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("offset 4"), "{stderr}");
}

#[test]
fn rebuild_writes_a_snapshot_that_verify_accepts() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3);
    // The store just closed may hold sled's lock a moment longer.
    for attempt in 0.. {
        match vato_eventlog::snapshot::discard(dir.path()) {
            Err(e) if attempt < 500 && e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            result => {
                result.unwrap();
                break;
            }
        }
    }
    let out = admin(dir.path(), &["rebuild"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshot = vato_eventlog::snapshot::stored_offset(dir.path()).unwrap();
    assert!(snapshot.is_some(), "rebuild wrote no snapshot");
    assert!(admin(dir.path(), &["verify"]).status.success());
}

#[test]
fn generate_fills_a_new_directory_that_verify_accepts_and_refuses_an_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "generate",
        "--messages",
        "3000",
        "--conversations",
        "40",
        "--users",
        "60",
        "--members",
        "5",
        "--busy-conversations",
        "30",
        "--password",
        "generated-password",
    ];
    let out = admin(&data, &args);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("generated 60 users, 40 conversations, 3000 messages"),
        "{stdout}"
    );
    let verify = admin(&data, &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
    let stats = String::from_utf8_lossy(&admin(&data, &["stats"]).stdout).into_owned();
    for line in [
        "users          60",
        "conversations  40",
        "messages       3000",
    ] {
        assert!(stats.contains(line), "{line} in {stats}");
    }
    // gen0 is in the first 30 conversations; every user can log in with
    // the password (one argon2 hash, checked here as the server would).
    let log = vato_eventlog::log::Log::open(&data).unwrap();
    let state = vato_eventlog::store::recover(&log).unwrap();
    let gen0 = state.user_by_name("gen0").unwrap();
    assert!(state.conversations_of(gen0.id).count() >= 30);
    use argon2::PasswordVerifier;
    let hash = argon2::PasswordHash::new(&gen0.password_hash).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"generated-password", &hash)
        .is_ok());
    drop(state);
    log.close().unwrap();
    drop(log);
    // Private files, as the server's.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "data directory mode {mode:o}");
    // A directory that already holds a log is refused and left unchanged.
    let again = admin(&data, &args);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a Vato log"));
    let stats_after = String::from_utf8_lossy(&admin(&data, &["stats"]).stdout).into_owned();
    assert!(stats_after.contains("messages       3000"), "{stats_after}");
}
