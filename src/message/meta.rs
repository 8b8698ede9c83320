//! Typed per-channel metadata: what each kind of door writes under
//! `metadata.<kind>`, one struct per kind in the door's own module (its
//! [`crate::channels::Door::Meta`]), serialised to the same JSON the doors
//! wrote as free maps before (schema v1 is unchanged). The schema's
//! `metadata` property describes each kind's object from [`crate::channels::KINDS`].
//!
//! Reading is tolerant: every field has a default, and keys a struct does
//! not name (the engine's `malware` and `follow_up_of`, keys of later
//! versions) are kept in its `other` map and written back as they were.
//! [`Shared`] reads the keys any door's object may carry, whatever its kind.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ChannelKind, FollowUp};

/// The metadata object of one or more kinds (`metadata.<kind>`).
pub trait KindMetadata: Serialize + DeserializeOwned + JsonSchema {
    /// The kinds whose object this is.
    const KINDS: &'static [ChannelKind];
}

/// The JSON Schema of `M` as a root schema (its definitions inside).
pub fn schema_of<M: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(M)).unwrap_or_default()
}

/// Keys a struct does not name, kept as they came.
pub type Other = Map<String, Value>;

/// A blob the item arrived as (`original`): the raw mail, the scanned file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StoredOriginal {
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
}

/// The engine's malware note (`metadata.<kind>.malware`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct MalwareNote<'a> {
    /// `clean`, `infected`, `pending`, `not_scanned`, `unscannable`.
    #[serde(borrow, default)]
    pub state: Option<&'a str>,
}

/// The keys any door's object may carry, whatever its kind, read in
/// place: where to answer (`reply_to`, or why not: `no_reply`), the
/// service chosen at the desk, and what the engine added (`malware`,
/// `follow_up_of`). Each key is read on its own: one of another shape
/// leaves the others readable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shared<'a> {
    pub reply_to: Option<&'a str>,
    pub no_reply: Option<&'a str>,
    pub chosen_service: Option<&'a str>,
    pub malware: Option<MalwareNote<'a>>,
    pub follow_up_of: Option<FollowUp>,
}

impl<'a> Shared<'a> {
    /// The shared keys of `object` (a door's metadata object).
    pub fn of(object: Option<&'a Value>) -> Self {
        let get = |key: &str| object.and_then(|o| o.get(key));
        let text = |key: &str| get(key).and_then(Value::as_str);
        Shared {
            reply_to: text("reply_to"),
            no_reply: text("no_reply"),
            chosen_service: text("chosen_service"),
            malware: get("malware").and_then(|m| MalwareNote::deserialize(m).ok()),
            follow_up_of: get("follow_up_of").and_then(|f| FollowUp::deserialize(f).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_reads_and_writes_back_the_same_with_unknown_keys_kept() {
        let old = serde_json::json!({
            "gateway": "kannel", "gateway_id": "g-1", "from": "+37129123456",
            "to": null, "answer_by_sms": true,
            "malware": {"state": "clean"}, "later_key": [1, 2],
        });
        let typed: crate::channels::sms::SmsMeta =
            serde_json::from_value(old.clone()).expect("reads");
        assert_eq!(typed.to, None);
        assert!(typed.answer_by_sms);
        assert_eq!(typed.other["later_key"], serde_json::json!([1, 2]));
        assert_eq!(serde_json::to_value(&typed).expect("writes"), old);
        let shared = Shared::of(Some(&old));
        assert_eq!(shared.malware.and_then(|m| m.state), Some("clean"));
        // An object missing keys (an older message) still reads.
        let typed: crate::channels::email::EmailMeta =
            serde_json::from_value(serde_json::json!({"message_id": "<a@b>"})).expect("reads");
        assert!(!typed.acknowledge);
    }
}
