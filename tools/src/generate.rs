//! `vato-admin generate`: fills an empty data directory with users, group
//! conversations and messages written through the real store (the same
//! writer, group commit, WAL and projection the server uses), fast enough to
//! make millions of messages in minutes. It exists for the memory and
//! start-up benchmarks (BENCHMARKS.md, issue #12) and their CI test.
//!
//! The shape is fixed so that runs compare: user `gen0` is a member of the
//! first `--busy-conversations` conversations (the "user in 500
//! conversations" of the list benchmark); every conversation is a group of
//! `--members` users; message `m` goes to conversation `m % conversations`,
//! sent by one of its members in turn, with the idempotency key `g<m>` a
//! real client would send. Every user's password is `--password`.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use vato_eventlog::log::Log;
use vato_eventlog::{Answer, Command, ConvId, Micros, Reply, Store, StoreConfig, UserId};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Plan {
    pub users: u64,
    pub conversations: u64,
    pub messages: u64,
    /// Members of each conversation, its creator included.
    pub members: u64,
    /// Conversations `gen0` belongs to (the first ones).
    pub busy_conversations: u64,
    pub content_bytes: usize,
    pub password: String,
}

/// Commands in flight at once: enough to fill the writer's group commits.
const WINDOW: usize = 8192;

pub type BoxError = Box<dyn std::error::Error>;

impl Plan {
    fn check(&self) -> Result<(), BoxError> {
        if self.users < 2 || self.conversations == 0 {
            return Err("--users must be at least 2 and --conversations at least 1".into());
        }
        if self.members < 2 || self.members > self.users {
            return Err("--members must be between 2 and --users".into());
        }
        if self.busy_conversations > self.conversations {
            return Err("--busy-conversations cannot exceed --conversations".into());
        }
        if self.password.len() < 8 {
            return Err("--password must have at least 8 characters".into());
        }
        Ok(())
    }

    /// The members of conversation `c`, creator first, as indexes of users
    /// (`gen<i>` has id `ids[i]`): spread over all users, distinct.
    fn members_of(&self, c: u64) -> Vec<u64> {
        let mut members = Vec::with_capacity(self.members as usize + 1);
        let stride = (self.users / self.members).max(1);
        let mut i = 0;
        while members.len() < self.members as usize {
            let user = (c + i * stride + i / self.members) % self.users;
            if !members.contains(&user) {
                members.push(user);
            }
            i += 1;
        }
        if c < self.busy_conversations && !members.contains(&0) {
            members.push(0);
        }
        members
    }
}

/// Generates `plan` into `dir`, which must not hold a log yet; prints
/// progress to stderr and a summary line to stdout.
pub fn run(dir: &Path, plan: &Plan) -> Result<(), BoxError> {
    plan.check()?;
    if Log::exists_in(dir) {
        return Err(format!(
            "{} already holds a Vato log: generate writes into a new directory",
            dir.display()
        )
        .into());
    }
    private_dir(dir)?;
    let hash = Argon2::default()
        .hash_password(plan.password.as_bytes(), &SaltString::generate(&mut OsRng))
        .map_err(|e| format!("argon2: {e}"))?
        .to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // The server's variables for the two store settings that shape a
    // generated directory's cost: snapshots and sled's page cache.
    let mut config = StoreConfig::new(dir);
    if let Ok(every) = std::env::var("VATO_SNAPSHOT_EVERY") {
        config.snapshot_every = every.parse()?;
    }
    if let Ok(mib) = std::env::var("VATO_CACHE_MIB") {
        config.cache_bytes = mib.parse::<u64>()? << 20;
    }
    let (store, committed) = Store::open(config)?;
    // Nobody fans out here: drop the durable batches as they come.
    drop(committed);
    let started = Instant::now();
    let result = runtime.block_on(fill(&store, plan, &hash));
    store.close()?;
    result?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generated {} users, {} conversations, {} messages in {:.1} s ({:.0} messages/s) into {}",
        plan.users,
        plan.conversations,
        plan.messages,
        seconds,
        plan.messages as f64 / seconds.max(1e-9),
        dir.display()
    );
    Ok(())
}

async fn fill(store: &Store, plan: &Plan, hash: &str) -> Result<(), BoxError> {
    let users: Vec<UserId> = submit_all(
        store,
        (0..plan.users).map(|i| Command::Register {
            username: format!("gen{i}"),
            password_hash: hash.to_string(),
            email: format!("gen{i}@example.invalid"),
            display_name: format!("Generated {i}"),
            phone_number: None,
            at: now(),
        }),
        |reply| match reply {
            Reply::User(id) => Ok(*id),
            other => Err(format!("registering: unexpected reply {other:?}")),
        },
    )
    .await?;
    eprintln!("generate: {} users", users.len());
    let members: Vec<Vec<UserId>> = (0..plan.conversations)
        .map(|c| {
            plan.members_of(c)
                .into_iter()
                .map(|i| users[i as usize])
                .collect()
        })
        .collect();
    let convs: Vec<ConvId> = submit_all(
        store,
        members
            .iter()
            .enumerate()
            .map(|(c, m)| Command::CreateGroup {
                by: m[0],
                title: format!("gen-{c}"),
                description: String::new(),
                is_public: false,
                member_ids: m[1..].to_vec(),
                at: now(),
            }),
        |reply| match reply {
            Reply::Conversation { conv_id, .. } => Ok(*conv_id),
            other => Err(format!("creating a group: unexpected reply {other:?}")),
        },
    )
    .await?;
    eprintln!("generate: {} conversations", convs.len());
    let started = Instant::now();
    let mut done = 0;
    let step = (plan.messages / 10).max(WINDOW as u64);
    while done < plan.messages {
        let end = (done + step).min(plan.messages);
        submit_all(
            store,
            (done..end).map(|m| {
                let c = (m % plan.conversations) as usize;
                let turn = (m / plan.conversations) as usize % members[c].len();
                Command::PostMessage {
                    sender: members[c][turn],
                    conv_id: convs[c],
                    content: content(m, plan.content_bytes),
                    message_type: "text".to_string(),
                    reply_to: None,
                    forwarded_from: None,
                    client_id: Some(format!("g{m}")),
                    at: now(),
                }
            }),
            |reply| match reply {
                Reply::Message { created: true, .. } => Ok(()),
                other => Err(format!("posting: unexpected reply {other:?}")),
            },
        )
        .await?;
        done = end;
        eprintln!(
            "generate: {done} messages ({:.0}/s)",
            done as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

/// Submits every command with up to [`WINDOW`] in flight, in order, and
/// maps each reply; any rejection or store error stops the run.
async fn submit_all<T>(
    store: &Store,
    commands: impl Iterator<Item = Command>,
    mut reply: impl FnMut(&Reply) -> Result<T, String>,
) -> Result<Vec<T>, BoxError> {
    let mut out = Vec::new();
    let mut in_flight: std::collections::VecDeque<Answer> = Default::default();
    let mut commands = commands.peekable();
    while commands.peek().is_some() || !in_flight.is_empty() {
        while in_flight.len() < WINDOW {
            let Some(command) = commands.next() else {
                break;
            };
            in_flight.push_back(store.enqueue(command, None).await?);
        }
        let Some(answer) = in_flight.pop_front() else {
            break;
        };
        let applied = answer
            .await
            .map_err(|_| "the store stopped")??
            .map_err(|rejection| format!("refused: {rejection:?}"))?;
        out.push(reply(&applied.reply)?);
    }
    Ok(out)
}

/// The content of message `m`: its number, padded to `bytes` (never cut
/// shorter than the number).
fn content(m: u64, bytes: usize) -> String {
    let mut text = format!("generated message {m}");
    let keep = text.len().max(bytes);
    while text.len() < keep {
        text.push_str(" lorem ipsum");
    }
    text.truncate(keep);
    text
}

/// As the server does: files private to their owner (umask 077), the
/// directory 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask(2) only sets the process's file mode creation mask.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn now() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(users: u64, conversations: u64, members: u64, busy: u64) -> Plan {
        Plan {
            users,
            conversations,
            messages: 0,
            members,
            busy_conversations: busy,
            content_bytes: 64,
            password: "generated-password".into(),
        }
    }

    #[test]
    fn members_are_distinct_and_the_busy_user_is_in_the_first_conversations() {
        let p = plan(20, 50, 4, 10);
        for c in 0..50 {
            let m = p.members_of(c);
            let mut unique = m.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), m.len(), "conversation {c}: {m:?}");
            assert!(m.len() == 4 || (c < 10 && m.len() == 5), "{c}: {m:?}");
            if c < 10 {
                assert!(m.contains(&0), "{c}: {m:?}");
            }
            assert!(m.iter().all(|&u| u < 20));
        }
    }

    #[test]
    fn two_users_make_two_member_groups() {
        let p = plan(2, 3, 2, 3);
        for c in 0..3 {
            let mut m = p.members_of(c);
            m.sort();
            assert_eq!(m, vec![0, 1]);
        }
    }

    #[test]
    fn bad_plans_are_refused() {
        assert!(plan(1, 1, 2, 0).check().is_err());
        assert!(plan(10, 1, 11, 0).check().is_err());
        assert!(plan(10, 5, 2, 6).check().is_err());
        assert!(plan(10, 5, 2, 5).check().is_ok());
    }

    #[test]
    fn content_has_the_asked_length() {
        assert_eq!(content(7, 100).len(), 100);
        assert!(content(123_456, 4).starts_with("generated"));
    }
}
