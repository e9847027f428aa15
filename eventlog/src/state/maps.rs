//! What the state's persistent maps (imbl) lack.

use imbl::OrdMap;

/// `retain` for the state's persistent maps, which have none: `change`
/// edits each entry `touched` picks, and the entry goes when `change`
/// returns false. Only the picked entries are changed, so a map shared
/// with a snapshot's copy copies no more of its nodes than that.
pub(super) fn retain_touched<K: Ord + Clone, V: Clone>(
    map: &mut OrdMap<K, V>,
    touched: impl Fn(&V) -> bool,
    mut change: impl FnMut(&mut V) -> bool,
) {
    let picked: Vec<K> = map
        .iter()
        .filter(|(_, value)| touched(value))
        .map(|(key, _)| key.clone())
        .collect();
    for key in picked {
        if let Some(value) = map.get_mut(&key) {
            if !change(value) {
                map.remove(&key);
            }
        }
    }
}
