//! What the areas' unit tests build their scenes from.

use super::*;

/// Users 1 (ana), 2 (bo), 3 (cy) and a group of all three
/// (conversation 1) made by ana; nobody online.
pub fn three_in_a_group() -> State {
    let mut state = State::default();
    let mut out = Vec::new();
    for name in ["ana", "bo", "cy"] {
        let command = Command::Register {
            username: name.into(),
            password_hash: "x".into(),
            email: String::new(),
            display_name: String::new(),
            phone_number: None,
            at: 0,
        };
        state.execute(&command, &mut out).expect("register");
    }
    let group = Command::CreateGroup {
        by: 1,
        title: "g".into(),
        description: String::new(),
        is_public: false,
        member_ids: vec![2, 3],
        at: 0,
    };
    state.execute(&group, &mut out).expect("group");
    assert_eq!(state.conversation(1).expect("group").kind, ConvKind::Group);
    state
}
