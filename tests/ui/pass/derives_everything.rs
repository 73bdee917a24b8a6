use std::collections::HashSet;

use factum::prelude::*;
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub id: u64,
    pub display_name: String,
}

#[aggregate]
impl Tag {
    #[event("renamed")]
    pub fn rename(&mut self, display_name: String) {
        self.display_name = display_name;
    }
}

fn main() {
    let mut tag = Tag::create(7, "rust".into());
    tag.rename("Rust".into());
    let json = serde_json::to_string(&tag).unwrap();
    assert_eq!(json, r#"{"id":7,"displayName":"Rust"}"#);
    let back: Tag = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tag);
    assert!(back.pending_events().is_empty());
    let set: HashSet<Tag> = [tag.clone(), back].into_iter().collect();
    assert_eq!(set.len(), 1);
    assert_eq!(tag.clone().cmp(&tag), std::cmp::Ordering::Equal);
}
