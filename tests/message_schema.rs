//! The published JSON Schema of message v1 (`docs/message-v1.schema.json`)
//! is the one the code generates, and the messages the code produces validate.

mod support;

use pietura::message::{AttachmentRef, ChannelKind, ChannelRef, IntakeMessage};
use support::published_schema;

#[test]
fn published_schema_is_current() {
    assert_eq!(
        published_schema(),
        pietura::message::json_schema(),
        "docs/message-v1.schema.json is stale: run `cargo run -- schema > docs/message-v1.schema.json`"
    );
}

fn full_message() -> IntakeMessage {
    let mut m = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "iesniegums".into(),
        },
        "web_form:iesniegums:01a2080f-5597-73e0-8dcb-3805a348a422".into(),
        "Lūdzu izsniegt būvatļauju.".into(),
    );
    m.subject = Some("Būvatļauja".into());
    m.language = Some("lv".into());
    m.sender.name = Some("Jānis Bērziņš".into());
    m.sender.email = Some("janis@example.lv".into());
    m.sender.phone = Some("+37120000000".into());
    m.sender.postal_address = Some("Brīvības iela 1, Ilūkste".into());
    m.attachments.push(AttachmentRef {
        sha256: "a".repeat(64),
        filename: "plāns.pdf".into(),
        content_type: "application/pdf".into(),
        size: 1234,
    });
    m.metadata.insert(
        "web_form".into(),
        serde_json::json!({"form_id": "iesniegums", "fields": {"vards": "Jānis Bērziņš"}}),
    );
    m
}

#[test]
fn produced_messages_validate_and_broken_ones_do_not() {
    let schema = published_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let minimal = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::Sms,
            instance: "sms".into(),
        },
        "sms:1".into(),
        String::new(),
    );
    for m in [full_message(), minimal] {
        let json: serde_json::Value = serde_json::from_slice(&m.encode()).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{json}\n{errors:?}");
    }
    let mut broken: serde_json::Value =
        serde_json::from_slice(&full_message().encode()).expect("JSON");
    broken.as_object_mut().expect("object").remove("id");
    assert!(
        !validator.is_valid(&broken),
        "a message without id must not validate"
    );
    broken["id"] = serde_json::json!("x");
    broken["attachments"][0]["bytes"] = serde_json::json!("AAAA");
    assert!(
        !validator.is_valid(&broken),
        "file bytes inside a message must not validate"
    );
}
