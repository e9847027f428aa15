//! Test helper for `tests/crash.rs` and `tests/migration.rs`, not a tool:
//! appends to a store from many tasks and reports every acknowledged
//! append, until the test kills it with SIGKILL.
//!
//! Usage: `vato-log-crash-child <data dir> <run tag> [content bytes]`
//!
//! Stdout, one line per durable ack, each written with a single `write`:
//! `ACK <offset> <conv> <seq> <client_id>`. An idempotent retry that does
//! not return the original message prints `BAD ...` and exits non-zero.
//! A message's content is `payload of <client id>`, padded with `x` to
//! `content bytes` if given.
//!
//! `vato-log-crash-child <data dir> --open-only` opens the log (migrating
//! it if it has the per-event layout), prints `OPENED` and exits.

use std::io::Write;
use std::path::PathBuf;

use vato_eventlog::testing::{
    conv_id, crash_content, direct, now, post, register, retry_lock, titled_group, user_id,
};
use vato_eventlog::{ConvId, ConvKind, Event, Reply, Store, StoreConfig, UserId};

const USERS: [&str; 4] = ["crash-a", "crash-b", "crash-c", "crash-d"];
const APPENDERS: usize = 16;

/// A rejection is an error here too: every command this child sends is valid.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(tag)) = (args.next(), args.next()) else {
        return Err("usage: vato-log-crash-child <data dir> <run tag> [content bytes]".into());
    };
    if tag == "--open-only" {
        retry_lock(|| vato_eventlog::log::Log::open(dir.as_ref()))?;
        emit("OPENED\n")?;
        return Ok(());
    }
    let content_bytes = match args.next() {
        Some(n) => n.parse()?,
        None => 0,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(PathBuf::from(dir), tag, content_bytes))
}

async fn run(dir: PathBuf, tag: String, content_bytes: usize) -> Result<(), BoxError> {
    let mut config = StoreConfig::new(dir);
    // Frequent snapshots, so that some kills land in the middle of one.
    config.snapshot_every = 500;
    let (store, _committed) = retry_lock(|| Store::open(config.clone()))?;
    let convs = setup(&store).await?;

    let mut appenders = Vec::new();
    for task in 0..APPENDERS {
        let (store, convs, tag) = (store.clone(), convs.clone(), tag.clone());
        appenders.push(tokio::spawn(async move {
            append_forever(store, convs, tag, task, content_bytes).await
        }));
    }
    for appender in appenders {
        appender.await??;
    }
    Ok(())
}

/// Creates the users and conversations unless a previous (killed) run did:
/// every step is idempotent, so a kill in the middle of setup is fine.
async fn setup(store: &Store) -> Result<Vec<(ConvId, Vec<UserId>)>, BoxError> {
    let mut users = Vec::new();
    for name in USERS {
        let existing = store.state().user_by_name(name).map(|u| u.id);
        let id = match existing {
            Some(id) => id,
            None => user_id(&store.submit(register(name, now())).await??.reply),
        };
        users.push(id);
    }
    let (a, b, c, d) = (users[0], users[1], users[2], users[3]);
    let pair = conv_id(&store.submit(direct(a, b, now())).await??.reply);
    let mut convs = vec![(pair, vec![a, b])];
    for (title, members) in [("crash-all", vec![a, b, c, d]), ("crash-cd", vec![c, d])] {
        let existing = store
            .state()
            .conversations_of(members[0])
            .find(|conv| conv.kind == ConvKind::Group && conv.title == title)
            .map(|conv| conv.id);
        let id = match existing {
            Some(id) => id,
            None => {
                let group = titled_group(members[0], title, &members[1..], now());
                conv_id(&store.submit(group).await??.reply)
            }
        };
        convs.push((id, members));
    }
    Ok(convs)
}

async fn append_forever(
    store: Store,
    convs: Vec<(ConvId, Vec<UserId>)>,
    tag: String,
    task: usize,
    content_bytes: usize,
) -> Result<(), BoxError> {
    for i in 0.. {
        let (conv_id, members) = &convs[(task + i) % convs.len()];
        let sender = members[(task / convs.len() + i) % members.len()];
        let client_id = format!("{tag}-{task}-{i}");
        let content = crash_content(&client_id, content_bytes);
        let command = post(sender, *conv_id, &content, Some(&client_id), now());
        let applied = store.submit(command.clone()).await??;
        let Some(envelope) = applied.events().first() else {
            return Err(format!("a fresh client id {client_id} appended nothing").into());
        };
        let Event::MessagePosted {
            message_id, seq, ..
        } = &envelope.event
        else {
            return Err(format!("unexpected event {envelope:?}").into());
        };
        // One write per line: a kill never leaves half a line mid-stream.
        let line = format!(
            "ACK {} {} {} {}\n",
            envelope.offset, conv_id, seq, client_id
        );
        emit(&line)?;

        // Now and then, a client retry: it must resolve to the same message.
        if i % 5 == 0 {
            let retry = store.submit(command).await?;
            let expected = Reply::Message {
                message_id: *message_id,
                created: false,
            };
            if !matches!(&retry, Ok(a) if a.reply == expected && a.events().is_empty()) {
                emit(&format!("BAD retry of {client_id}: {retry:?}\n"))?;
                std::process::exit(3);
            }
        }
    }
    Ok(())
}

fn emit(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes())?;
    stdout.flush()
}
