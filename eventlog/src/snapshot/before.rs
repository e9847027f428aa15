//! Reading the snapshot layouts before 2026-12-07 (the module doc of
//! `super`): the state and layer in a snapshot file committed by the sled
//! tree `history-snapshot`, its layer's records finished if a crash left
//! them unwritten; and, before the files, the state (and a pending layer)
//! as values of a sled tree or among the records. Each is read once; the
//! next snapshot commits in the records' file.

use super::{
    decode_generation, file, history_error, layout, SnapshotError, FILE_KEY, LAYER_DONE_KEY,
};
use crate::codec;
use crate::log::LogError;
use crate::state::history::{EncodedLayer, Layer, Trees, PENDING_LAYER, SNAPSHOT_TREE, STATE};
use crate::state::State;

/// The generation of the latest snapshot file the layout before
/// committed in the sled tree `history-snapshot`.
pub(super) fn generation(tree: &sled::Tree) -> Result<Option<u64>, SnapshotError> {
    let Some(bytes) = tree.get(FILE_KEY).map_err(LogError::from)? else {
        return Ok(None);
    };
    decode_generation(&bytes)
        .map(Some)
        .map_err(SnapshotError::Damaged)
}

/// A state kept in the snapshot tree (the layout before the files) is
/// megabytes, read once: sled's page cache would keep it in RAM until its
/// LRU reached it. Dropped from the cache once read; a failure only leaves
/// it cached.
fn drop_from_cache(trees: &Trees) {
    if let Err(e) = trees.snapshot.page_out_leaf_of(STATE) {
        tracing::warn!("could not drop the snapshot's state from the cache: {e}");
    }
}

/// Writes a committed layer's records, then marks them written.
fn finish_layer(trees: &Trees, layer: &EncodedLayer, generation: u64) -> Result<(), LogError> {
    layer.write_records(&trees.records).map_err(history_error)?;
    trees
        .snapshot
        .insert(LAYER_DONE_KEY, &generation.to_be_bytes())?;
    Ok(())
}

fn write_records(trees: &Trees, layer: &Layer) -> Result<(), LogError> {
    layer.write_records(&trees.records).map_err(history_error)
}

/// The state of snapshot file `generation`; its layer's records written
/// first if the process died before it marked them so.
pub(super) fn load_file(trees: &Trees, generation: u64) -> Result<State, SnapshotError> {
    let path = file::path(&trees.files, generation);
    let damaged = |reason: String| SnapshotError::DamagedFile {
        path: path.clone(),
        reason,
    };
    let contents = file::read(&trees.files, generation).map_err(damaged)?;
    let state = codec::decode(contents.state()).map_err(|e| damaged(format!("state: {e}")))?;
    let done = trees.snapshot.get(LAYER_DONE_KEY).map_err(LogError::from)?;
    if done.as_deref() != Some(&generation.to_be_bytes()[..]) {
        if let Some(record) = contents.layer() {
            let layer = Layer::from_record(record).map_err(|e| damaged(format!("layer: {e}")))?;
            let encoded = layer
                .encode()
                .map_err(|e| LogError::Layout(format!("unencodable history: {e}")))?;
            finish_layer(trees, &encoded, generation)?;
            trees.snapshot.flush().map_err(LogError::from)?;
            tracing::info!(
                messages = layer.len(),
                "finished the last snapshot's records"
            );
        }
    }
    Ok(state)
}

/// The layout before the snapshot files: the state and a pending layer as
/// values of the snapshot tree. The next snapshot removes them.
pub(super) fn load_inline(trees: &Trees) -> Result<Option<State>, SnapshotError> {
    let Some(bytes) = trees.snapshot.get(STATE).map_err(LogError::from)? else {
        return Ok(None);
    };
    let state: State = codec::decode(&bytes).map_err(|e| SnapshotError::Damaged(e.to_string()))?;
    // Our handle on the cached value: released before the leaf leaves the
    // cache, or the value would stay alive.
    drop(bytes);
    if let Some(pending) = trees.snapshot.get(PENDING_LAYER).map_err(LogError::from)? {
        let layer = Layer::from_record(&pending)
            .map_err(|e| SnapshotError::Damaged(format!("pending layer: {e}")))?;
        write_records(trees, &layer)?;
        trees
            .snapshot
            .remove(PENDING_LAYER)
            .map_err(LogError::from)?;
        trees.snapshot.flush().map_err(LogError::from)?;
        tracing::info!(
            messages = layer.len(),
            "finished the last snapshot's records"
        );
    }
    drop_from_cache(trees);
    Ok(Some(state))
}

/// The first layout of issue 12 kept the state and the pending layer
/// among the records: they move to the snapshot tree (one batch there,
/// flushed, before they go from the records; a crash in between leaves
/// both copies, equal, and the move is done again).
pub(super) fn move_from_records(trees: &Trees) -> Result<(), LogError> {
    let records = &trees.records;
    let read = |key: &[u8]| records.get(key).map_err(|e| records.error(e));
    let Some(state) = read(STATE).map_err(layout)? else {
        return Ok(());
    };
    let pending = read(PENDING_LAYER).map_err(layout)?;
    let mut moved = sled::Batch::default();
    moved.insert(STATE, state);
    match pending {
        Some(pending) => moved.insert(PENDING_LAYER, pending),
        None => moved.remove(PENDING_LAYER),
    }
    trees.snapshot.apply_batch(moved)?;
    trees.snapshot.flush()?;
    records
        .write(true, |table| {
            for key in [PENDING_LAYER, STATE] {
                table.remove(key).map_err(|e| records.error(e))?;
            }
            Ok(())
        })
        .map_err(layout)?;
    tracing::info!("moved the snapshot to the `{SNAPSHOT_TREE}` tree");
    Ok(())
}
