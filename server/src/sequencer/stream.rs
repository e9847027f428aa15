//! The JetStream stream of cluster mode: created if missing, and waited on
//! until it takes writes, before a node starts its applier.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::Config;

/// Makes sure the stream exists and takes writes, and returns it with its
/// last sequence. Retried for a while: nodes starting together on a fresh
/// replicated stream find it created but leaderless for a moment, and its
/// info request then times out (a node used to exit on that).
pub(super) async fn open_stream(
    jetstream: &jetstream::Context,
    config: &Config,
) -> Result<(stream::Stream, u64), Box<dyn std::error::Error + Send + Sync>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Bounded: a request about a leaderless stream is never answered.
        let bound = Duration::from_millis(config.nats_timeout_ms).max(Duration::from_secs(3));
        let attempt = tokio::time::timeout(bound, async {
            let stream = jetstream
                .get_or_create_stream(stream::Config {
                    name: config.stream_name.clone(),
                    subjects: vec!["vato.conv.*".into(), "vato.users".into(), "vato.dir".into()],
                    storage: if config.stream_storage == "memory" {
                        stream::StorageType::Memory
                    } else {
                        stream::StorageType::File
                    },
                    num_replicas: config.stream_replicas,
                    max_age: Duration::from_secs(config.stream_max_age_secs),
                    ..Default::default()
                })
                .await?;
            wait_writable(jetstream, Duration::from_secs(10)).await?;
            let target = stream.get_info().await?.state.last_sequence;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((stream, target))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match attempt {
            Ok(opened) => return Ok(opened),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!("the stream is not ready yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until a publish on each of the stream's subjects reaches the
/// stream from this connection. Right after a replicated stream is created
/// (or elects a leader), the leader's interest may not have reached the
/// server this node is connected to yet, and a publish gets "no responders"
/// (`StreamNotFound`); a node seeding the demo accounts then failed its
/// start. The probe names another stream as the expected one, so JetStream
/// answers it with an error and stores nothing.
async fn wait_writable(
    jetstream: &jetstream::Context,
    timeout: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let deadline = tokio::time::Instant::now() + timeout;
    for subject in ["vato.users", "vato.dir", "vato.conv.0"] {
        loop {
            let probe = jetstream::message::PublishMessage::build()
                .expected_stream("vato-writable-probe")
                .payload(bytes::Bytes::new());
            let answer = jetstream.send_publish(subject, probe).await?.await;
            match answer {
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {}
                // Any answer from JetStream (the expected "wrong stream"
                // error) means the stream takes writes on this subject.
                _ => break,
            }
            if tokio::time::Instant::now() > deadline {
                return Err(
                    format!("the stream takes no writes on {subject} (no responders)").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
