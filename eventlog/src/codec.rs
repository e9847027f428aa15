//! How events (and snapshots) are encoded on disk.
//!
//! An entry is `[format version: u8][crc32 of payload: u32 LE][payload]`,
//! the payload being rmp-serde (MessagePack). The version byte lets a later
//! encoding live beside old entries without rewriting the log: the decoder
//! dispatches on it. The CRC catches a torn or flipped entry, which then
//! surfaces as [`CodecError`] naming its offset instead of a panic.

use serde::{de::DeserializeOwned, Serialize};

/// The encoding written today: MessagePack of the serde types in this crate.
pub const FORMAT_V1: u8 = 1;
const HEADER: usize = 5;
/// An entry's header before its payload's checksum is known.
const UNSEALED: [u8; HEADER] = [FORMAT_V1, 0, 0, 0, 0];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("entry is {0} bytes, shorter than its 5-byte header")]
    Truncated(usize),
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("undecodable payload: {0}")]
    Payload(String),
    #[error("unencodable value: {0}")]
    Encode(String),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(&mut out, value)?;
    Ok(out)
}

/// [`encode`], appended to `out`: a batch's entries go into one buffer
/// (the WAL record) without a buffer of their own each.
pub fn encode_into<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&UNSEALED);
    if let Err(e) = rmp_serde::encode::write(out, value) {
        out.truncate(start);
        return Err(CodecError::Encode(e.to_string()));
    }
    frame_finish(&mut out[start..]);
    Ok(())
}

/// An entry whose payload, MessagePack, the caller appends itself, then
/// seals with [`frame_finish`]: for a payload assembled from parts
/// encoded once (a snapshot's layer).
pub fn frame_start() -> Vec<u8> {
    UNSEALED.to_vec()
}

/// Writes the checksum of `entry`'s payload into its header.
pub fn frame_finish(entry: &mut [u8]) {
    let crc = crc32fast::hash(&entry[HEADER..]);
    entry[1..HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Appends to `out` the entry of `payload`, MessagePack encoded already:
/// what [`encode`] gives for the value `payload` encodes.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&UNSEALED);
    out.extend_from_slice(payload);
    frame_finish(&mut out[start..]);
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < HEADER {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let payload = &bytes[HEADER..];
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    match bytes[0] {
        FORMAT_V1 => rmp_serde::from_slice(payload).map_err(|e| CodecError::Payload(e.to_string())),
        other => Err(CodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Envelope, Event};

    fn sample() -> Envelope {
        Envelope {
            offset: 7,
            event: Event::UserSeen { user_id: 3, at: 42 },
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode::<Envelope>(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_truncation_and_flip_is_an_error_not_a_panic() {
        let bytes = encode(&sample()).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode::<Envelope>(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert!(decode::<Envelope>(&flipped).is_err(), "flipped byte {i}");
        }
    }
}
