//! The Paperless-ngx and CMIS connectors against local stand-ins that
//! implement the request and answer shapes of those products' published
//! API documents (`support/standins.rs`). Not the real products: they could
//! not be run here. What is checked is our side of the contract: files and
//! fields sent, a retry that finds what an earlier attempt left, and every
//! kind of bad answer turned into an error on the item, not a crash.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pietura::dms::{Connector, DmsDocument, DmsError, DmsFile, DmsSettings, FIELDS, FileBody};
use support::standins::{self, Cmis, Paperless};
use support::{Backend, Options, TestEnv, wait_until};

fn connector(toml_text: &str) -> Arc<dyn Connector> {
    let settings: DmsSettings = toml::from_str(toml_text).expect("settings");
    assert!(settings.validate().is_empty(), "{:?}", settings.validate());
    settings.build().expect("connector")
}

/// An item with the original and two attachments.
fn document(unit: &str) -> DmsDocument {
    let item_id = uuid::Uuid::now_v7().to_string();
    let number = "BV/2026/7".to_string();
    let values = [
        item_id.clone(),
        number.clone(),
        "2026-11-23T08:00:00.000000Z".into(),
        "email".into(),
        "Anna Bērziņa <anna@example.lv>".into(),
        "Būvatļaujas pieprasījums".into(),
        unit.to_string(),
        String::new(),
        "2026-12-22".into(),
        "routed".into(),
    ];
    let fields = FIELDS
        .iter()
        .zip(values)
        .map(|((k, _), v)| (*k, v))
        .collect();
    let file = |name: &str, content_type: &str, bytes: &[u8]| DmsFile {
        name: name.into(),
        content_type: content_type.into(),
        body: FileBody::Inline(bytes.to_vec()),
    };
    DmsDocument {
        item_id,
        registration_number: number.clone(),
        title: format!("{number} Būvatļaujas pieprasījums"),
        received_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
        fields,
        files: vec![
            file(
                "BV-2026-7.eml",
                "message/rfc822",
                b"From: anna@example.lv\r\n\r\nLudzu.\r\n",
            ),
            file("plāns.pdf", "application/pdf", b"%PDF-1.4 plan"),
            file(
                "apraksts.txt",
                "text/plain; charset=utf-8",
                "Šķūnis".as_bytes(),
            ),
        ],
    }
}

#[tokio::test]
async fn paperless_gets_one_document_per_file_with_the_fields_and_a_retry_uploads_nothing() {
    let paperless = Paperless::start().await;
    let dms = connector(&paperless.settings_toml(standins::PAPERLESS_TOKEN));
    dms.health().await.expect("healthy");
    let doc = document("Būvvalde (buvvalde)");

    let record = dms.register(&doc, None).await.expect("registered");
    let stored = paperless.documents();
    assert_eq!(stored.len(), 3);
    let main = stored
        .iter()
        .find(|d| d.id.to_string() == record.id)
        .expect("main document");
    assert_eq!(main.file_name, "BV-2026-7.eml");
    assert_eq!(main.title, doc.title);
    assert_eq!(main.created, "2026-11-23");
    assert_eq!(
        record.url.as_deref(),
        Some(format!("{}/documents/{}/details", paperless.url, record.id).as_str())
    );
    for d in &stored {
        let fields = paperless.fields_of(d);
        assert_eq!(fields["pietura_item_id"], doc.item_id);
        assert_eq!(fields["pietura_registration_number"], "BV/2026/7");
        assert_eq!(fields["pietura_unit"], "Būvvalde (buvvalde)");
        assert_eq!(fields["pietura_file"], d.file_name);
    }
    let attachment = stored
        .iter()
        .find(|d| d.file_name == "plāns.pdf")
        .expect("attachment");
    assert_eq!(attachment.title, "BV/2026/7 pielikums: plāns.pdf");
    assert_eq!(attachment.content, b"%PDF-1.4 plan");

    // A retry (the answer was lost after everything was stored) finds it all.
    let again = dms.register(&doc, None).await.expect("registered again");
    assert_eq!(again.id, record.id);
    assert_eq!(paperless.uploads(), 3, "nothing uploaded twice");

    // Re-routed: the fields follow.
    let mut moved = doc.clone();
    moved
        .fields
        .iter_mut()
        .filter(|(k, _)| *k == "unit")
        .for_each(|(_, v)| *v = "Sociālais dienests (soc)".into());
    dms.update(&moved, &record.id).await.expect("updated");
    for d in paperless.documents() {
        assert_eq!(
            paperless.fields_of(&d)["pietura_unit"],
            "Sociālais dienests (soc)"
        );
    }
}

#[tokio::test]
async fn paperless_upload_whose_answer_was_lost_is_found_by_its_duplicate_refusal() {
    let paperless = Paperless::start().await;
    let dms = connector(&paperless.settings_toml(standins::PAPERLESS_TOKEN));
    let doc = document("Būvvalde (buvvalde)");
    paperless
        .faults
        .lock()
        .expect("faults")
        .lose_next_upload_answer = true;
    let first = dms.register(&doc, None).await;
    assert!(
        matches!(first, Err(DmsError::Unavailable(ref e)) if e.contains("502")),
        "{first:?}"
    );
    let record = dms.register(&doc, None).await.expect("registered on retry");
    let stored = paperless.documents();
    assert_eq!(
        stored.len(),
        3,
        "the file stored by the lost attempt is not stored again"
    );
    assert_eq!(paperless.uploads(), 4, "one upload refused as a duplicate");
    let main = stored
        .iter()
        .find(|d| d.id.to_string() == record.id)
        .expect("main");
    assert_eq!(paperless.fields_of(main)["pietura_item_id"], doc.item_id);
}

#[tokio::test]
async fn paperless_bad_answers_become_errors_that_say_what_to_check() {
    let paperless = Paperless::start().await;
    let doc = document("x");
    let wrong = connector(&paperless.settings_toml("not-the-token"));
    let refused = wrong.register(&doc, None).await;
    assert!(matches!(refused, Err(DmsError::Auth(_))), "{refused:?}");
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("401") && message.contains("credentials"),
        "{message}"
    );
    assert!(matches!(wrong.health().await, Err(DmsError::Auth(_))));

    let dms = connector(&paperless.settings_toml(standins::PAPERLESS_TOKEN));
    paperless.faults.lock().expect("faults").unavailable = 1;
    assert!(
        matches!(dms.register(&doc, None).await, Err(DmsError::Unavailable(ref e)) if e.contains("503"))
    );
    paperless.faults.lock().expect("faults").not_json = true;
    let malformed = dms.register(&doc, None).await;
    assert!(
        matches!(malformed, Err(DmsError::Malformed(ref e)) if e.contains("<html>")),
        "{malformed:?}"
    );
    paperless.faults.lock().expect("faults").not_json = false;
    dms.register(&doc, None).await.expect("fine again");
    assert_eq!(paperless.documents().len(), 3);
}

#[tokio::test]
async fn cmis_gets_a_folder_per_item_with_its_documents_and_properties_and_a_retry_creates_nothing()
{
    let cmis = Cmis::start().await;
    let dms = connector(&cmis.settings_toml(standins::CMIS_PASSWORD));
    dms.health().await.expect("healthy");
    let doc = document("Būvvalde (buvvalde)");
    cmis.faults.lock().expect("faults").lose_next_upload_answer = true;
    let lost = dms.register(&doc, None).await;
    assert!(matches!(lost, Err(DmsError::Unavailable(_))), "{lost:?}");
    let record = dms.register(&doc, None).await.expect("registered");

    let stored = cmis.objects_under("/Pietura");
    let folder = &stored["/Pietura/BV-2026-7"];
    assert!(folder.folder);
    assert_eq!(record.id, folder.id);
    assert_eq!(
        record.url.as_deref(),
        Some(
            format!(
                "https://dms.example.lv/share/page/folder-details?nodeRef={}",
                folder.id
            )
            .as_str()
        )
    );
    assert!(
        folder.properties["cmis:description"]
            .starts_with(&format!("pietura-item:{}\n", doc.item_id))
    );
    assert_eq!(folder.properties["pietura:registrationNumber"], "BV/2026/7");
    assert_eq!(folder.properties["pietura:unit"], "Būvvalde (buvvalde)");
    let names: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "/Pietura",
            "/Pietura/BV-2026-7",
            "/Pietura/BV-2026-7/BV-2026-7.eml",
            "/Pietura/BV-2026-7/apraksts.txt",
            "/Pietura/BV-2026-7/plāns.pdf"
        ]
    );
    assert_eq!(
        stored["/Pietura/BV-2026-7/plāns.pdf"].content,
        b"%PDF-1.4 plan"
    );
    let creates = cmis.creates();
    assert_eq!(
        creates, 5,
        "parent, item folder, three documents: the lost one not again"
    );
    assert_eq!(dms.register(&doc, None).await.expect("again").id, record.id);
    assert_eq!(cmis.creates(), creates);

    let mut moved = doc.clone();
    moved
        .fields
        .iter_mut()
        .filter(|(k, _)| *k == "deadline")
        .for_each(|(_, v)| *v = "2027-01-05".into());
    dms.update(&moved, &record.id).await.expect("updated");
    assert_eq!(
        cmis.objects_under("/Pietura/BV-2026-7")["/Pietura/BV-2026-7"].properties["pietura:deadline"],
        "2027-01-05"
    );

    // Another item whose number maps to the same folder name is refused, not mixed in.
    let stranger = DmsDocument {
        item_id: uuid::Uuid::now_v7().to_string(),
        ..doc.clone()
    };
    let refused = dms.register(&stranger, None).await;
    assert!(
        matches!(refused, Err(DmsError::Rejected(ref e)) if e.contains("not this item's")),
        "{refused:?}"
    );

    let wrong = connector(&cmis.settings_toml("nope"));
    assert!(matches!(wrong.health().await, Err(DmsError::Auth(_))));
}

/// The daemon on its embedded defaults (SQLite, embedded bus) with each
/// stand-in: the form item reaches it and the item shows the DMS's id.
#[tokio::test]
async fn the_daemon_registers_form_items_through_paperless_and_cmis() {
    let paperless = Paperless::start().await;
    let cmis = Cmis::start().await;
    for (toml_text, kind) in [
        (
            paperless.settings_toml(standins::PAPERLESS_TOKEN),
            "paperless",
        ),
        (cmis.settings_toml(standins::CMIS_PASSWORD), "cmis"),
    ] {
        let mut opts = Options::new(Backend::Embedded);
        opts.dms = Some(toml::from_str(&toml_text).expect("settings"));
        let env = TestEnv::start(opts).await;
        let item = env
            .submit_item("Par koku zāģēšanu", "Lūdzu atļauju nozāģēt bērzu.")
            .await;
        let registry = env.daemon.registry.clone();
        wait_until(
            Duration::from_secs(60),
            &format!("the item in {kind}"),
            || async {
                registry
                    .dms_state(&item.id)
                    .await
                    .expect("state")
                    .is_some_and(|s| s.state == "registered")
            },
        )
        .await;
        let state = registry
            .dms_state(&item.id)
            .await
            .expect("state")
            .expect("record");
        assert_eq!(state.connector, kind);
        assert!(state.external_id.is_some());
        env.stop().await;
    }
    let stored = paperless.documents();
    assert_eq!(stored.len(), 1);
    assert!(String::from_utf8_lossy(&stored[0].content).contains("nozāģēt bērzu"));
    let folders: Vec<String> = cmis.objects_under("/Pietura/").keys().cloned().collect();
    assert_eq!(folders.len(), 2, "{folders:?}");
}
