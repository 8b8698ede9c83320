//! Units at the desk and their answers (issue 20), on both registries: a
//! unit's member sees and works only their units' items (another unit's is
//! not found, the records office's pages are refused), every action is on
//! the item's audit log with the account; answers are outgoing documents
//! numbered in their own gap-free series, apart from the incoming numbers;
//! a letter answer prints the address block, the number and the Latvian
//! text; an e-mail answer arrives at the relay with its PDF and the status
//! page says the item was answered. The browser flow is in tests/browser.rs.

#[path = "support/clamd.rs"]
mod clamd;
mod support;

use chrono::Datelike;
use support::desk::{DeskClient, hidden};
use support::smtp::SmtpServer;
use support::{Backend, Options, TestEnv};

const BUILDING: (&str, &str) = (
    "Būvatļauja",
    "Lūdzu izsniegt būvatļauju šķūņa būvniecībai Bebrenes pagastā.",
);
const SOCIAL: (&str, &str) = (
    "Pabalsts",
    "Lūdzu piešķirt pabalsts trūcīgas ģimenes statusam, jo esmu bez darba.",
);
const PASSWORD: &str = "buvvaldes-parole-2026";

/// A member of `units` (role `unit`), as `pietura user add --role unit --unit …` makes one.
async fn unit_member(env: &TestEnv, username: &str, name: &str, units: &[&str]) {
    let registry = &env.daemon.registry;
    pietura::desk::auth::add_or_update_user(registry, username, name, "unit", PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("account {username}: {e}"));
    let known: Vec<String> = env.daemon.rules.load().units.keys().cloned().collect();
    let units: Vec<String> = units.iter().map(|u| u.to_string()).collect();
    pietura::desk::auth::set_user_units(registry, username, &units, &known, "tests")
        .await
        .expect("units of the account");
}

async fn signed_in(env: &TestEnv, username: &str) -> (DeskClient, String) {
    let desk = DeskClient::new(env);
    assert_eq!(desk.sign_in(username, PASSWORD).await, 303);
    let (status, page) = desk.page("/desk/unit").await;
    assert_eq!(status, 200, "{page}");
    let csrf = hidden(&page, "csrf");
    (desk, csrf)
}

async fn actions_of(env: &TestEnv, item: &str) -> Vec<(String, String)> {
    env.daemon
        .registry
        .audit_of(item)
        .await
        .expect("audit log")
        .into_iter()
        .map(|(_, actor, action, _)| (actor, action))
        .collect()
}

async fn only_their_units_items(backend: Backend) {
    let env = TestEnv::start(Options::new(backend)).await;
    unit_member(&env, "janis", "Jānis Būvnieks", &["buvvalde"]).await;
    let ours = env.submit_item(BUILDING.0, BUILDING.1).await;
    let theirs = env.submit_item(SOCIAL.0, SOCIAL.1).await;
    assert_eq!(ours.unit_id.as_deref(), Some("buvvalde"));
    assert_eq!(theirs.unit_id.as_deref(), Some("socialais"));
    let (desk, csrf) = signed_in(&env, "janis").await;
    let me = "Jānis Būvnieks (janis)".to_string();

    // The review queue sends a unit's member to their page; the records
    // office's item page refuses them.
    let r = desk.get("/desk").await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/desk/unit");
    let (status, _) = desk.page(&format!("/desk/items/{}", ours.id)).await;
    assert_eq!(status, 403);

    // Their unit's item is listed and opens; the other unit's is neither.
    let (_, page) = desk.page("/desk/unit").await;
    assert!(page.contains(&ours.registration_number), "{page}");
    assert!(!page.contains(&theirs.registration_number), "{page}");
    let (status, _) = desk.page(&format!("/desk/unit/items/{}", ours.id)).await;
    assert_eq!(status, 200);
    for path in [
        format!("/desk/unit/items/{}", theirs.id),
        format!("/desk/unit/items/{}", theirs.registration_number),
    ] {
        let (status, _) = desk.page(&path).await;
        assert_eq!(status, 404, "{path}");
    }
    // Acting on it is refused the same way, and nothing is recorded.
    let (status, _, _) = desk
        .post(
            &format!("/desk/unit/items/{}/act", theirs.id),
            &[
                ("csrf", &csrf),
                ("action", "extend"),
                ("reason", "nav mūsu"),
            ],
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        !actions_of(&env, &theirs.id)
            .await
            .iter()
            .any(|(actor, _)| *actor == me)
    );
    // Without the session's token nothing happens either.
    let (status, _, _) = desk
        .post(
            &format!("/desk/unit/items/{}/act", ours.id),
            &[("csrf", "wrong"), ("action", "pause"), ("reason", "x")],
        )
        .await;
    assert_eq!(status, 403);

    // Extend, pause, resume, comment: the recorded actions, with the account.
    let before = ours.reply_due.clone().expect("a reply deadline");
    let act = |fields: Vec<(&'static str, String)>| {
        let mut form = vec![("csrf", csrf.clone())];
        form.extend(fields);
        let desk = &desk;
        let path = format!("/desk/unit/items/{}/act", ours.id);
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            desk.post(&path, &form).await
        }
    };
    let (status, body, location) = act(vec![
        ("action", "extend".into()),
        ("reason", "Jāpieprasa informācija citai iestādei".into()),
    ])
    .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        location.as_deref(),
        Some(format!("/desk/unit/items/{}", ours.id).as_str())
    );
    let after = env
        .daemon
        .registry
        .find(&ours.id)
        .await
        .expect("find")
        .expect("item");
    assert!(
        after.reply_due.clone().expect("deadline") > before,
        "{after:?}"
    );
    for fields in [
        vec![
            ("action", "pause".to_string()),
            ("reason", "Gaidām iesniedzēja papildinājumu".into()),
        ],
        vec![("action", "resume".into())],
        vec![
            ("action", "comment".into()),
            ("text", "Jāpārbauda zemesgrāmata".into()),
        ],
    ] {
        let (status, body, _) = act(fields).await;
        assert_eq!(status, 303, "{body}");
    }
    let recorded = actions_of(&env, &ours.id).await;
    for action in [
        "deadline_extended",
        "deadline_paused",
        "deadline_resumed",
        "commented",
    ] {
        assert!(
            recorded.contains(&(me.clone(), action.to_string())),
            "{action} by {me}: {recorded:?}"
        );
    }

    // Assigned to a colleague of the unit (not to anyone else).
    unit_member(&env, "ilze", "Ilze Kolēģe", &["buvvalde"]).await;
    let ilze = env
        .daemon
        .registry
        .user("ilze")
        .await
        .expect("user")
        .expect("ilze");
    let (status, body, _) = act(vec![("action", "assign".into()), ("assignee", ilze.id)]).await;
    assert_eq!(status, 303, "{body}");
    let (_, page) = desk.page("/desk/unit").await;
    assert!(page.contains("Ilze Kolēģe"), "{page}");
    assert!(
        actions_of(&env, &ours.id)
            .await
            .contains(&(me.clone(), "assigned_to".into()))
    );

    // Returned to the records office with a reason: back in review, no
    // longer the unit's.
    let (status, body, _) = act(vec![("action", "return".into()), ("reason", String::new())]).await;
    assert_eq!(status, 409, "a return needs its reason: {body}");
    let (status, body, _) = act(vec![
        ("action", "return".into()),
        ("reason", "Tas ir komunālās nodaļas jautājums".into()),
    ])
    .await;
    assert_eq!(status, 303, "{body}");
    let returned = env
        .daemon
        .registry
        .find(&ours.id)
        .await
        .expect("find")
        .expect("item");
    assert_eq!(returned.state, "review");
    assert!(
        actions_of(&env, &ours.id)
            .await
            .contains(&(me.clone(), "returned".into()))
    );
    let (status, _) = desk.page(&format!("/desk/unit/items/{}", ours.id)).await;
    assert_eq!(status, 404);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_member_works_only_their_units_items_sqlite() {
    only_their_units_items(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_member_works_only_their_units_items_postgres() {
    only_their_units_items(Backend::Amqp).await;
}

/// Answers an item on the desk (multipart, as the browser sends the form).
async fn answer(desk: &DeskClient, csrf: &str, item: &str, text: &str) -> (u16, String) {
    answer_with(desk, csrf, item, text, None).await
}

/// An answer with the signed document uploaded: (file name, content).
async fn answer_with(
    desk: &DeskClient,
    csrf: &str,
    item: &str,
    text: &str,
    document: Option<(&str, &[u8])>,
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_string())
        .text("body", text.to_string());
    if let Some((name, bytes)) = document {
        form = form.part(
            "document",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string()),
        );
    }
    let r = desk
        .http
        .post(format!("{}/desk/unit/items/{item}/answer", desk.base))
        .multipart(form)
        .send()
        .await
        .expect("POST answer");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// A form submission without an e-mail address, with a postal one: its
/// answer goes by post.
async fn submit_by_post(env: &TestEnv) -> pietura::registry::ItemSummary {
    let token = env.form_token().await;
    let resp = env
        .http
        .post(format!("{}/forms/iesniegums", env.base))
        .header("accept", "application/json")
        .form(&[
            ("form_token", token.as_str()),
            ("vards", "Ēriks Šķērslis"),
            ("adrese", "Dārza iela 7-12, Ērgļi, LV-4840"),
            ("temats", BUILDING.0),
            ("teksts", BUILDING.1),
        ])
        .send()
        .await
        .expect("POST form");
    let receipt: serde_json::Value = resp.json().await.expect("receipt");
    env.registered(receipt["tracking_id"].as_str().expect("tracking id"))
        .await
}

fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("letter.pdf");
    std::fs::write(&path, pdf).expect("write pdf");
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext: install poppler-utils (scripts/test.sh does)");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn answers_numbered_letters_and_mail(backend: Backend) {
    let mail = tempfile::tempdir().expect("mail folder");
    // aiosmtpd makes its Maildir when the folder does not exist yet.
    let maildir = mail.path().join("maildir");
    let smtp = SmtpServer::start(&maildir);
    let mut options = Options::new(backend);
    let port = smtp.port;
    options.tweak = Some(Box::new(move |s| {
        s.answers.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
        s.answers.from = "Pašvaldība <dokumenti@novads.example.lv>".into();
        s.print.header = vec![
            "Ērgļu novada pašvaldība".into(),
            "Rīgas iela 5, Ērgļi, LV-4840".into(),
        ];
        s.print.return_address = "Ērgļu novada pašvaldība, Rīgas iela 5, Ērgļi".into();
        s.http.public_url = "https://iesniegumi.novads.example.lv".into();
    }));
    let env = TestEnv::start(options).await;
    unit_member(&env, "janis", "Jānis Būvnieks", &["buvvalde"]).await;
    let (desk, csrf) = signed_in(&env, "janis").await;
    let year = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Riga)
        .year();

    // Three answers: IZ-<year>/1, /2, /3 — a refused one takes no number.
    let first = env.submit_item(BUILDING.0, BUILDING.1).await;
    let second = env.submit_item(BUILDING.0, BUILDING.1).await;
    let by_post = submit_by_post(&env).await;
    let (status, body) = answer(&desk, &csrf, &first.id, "Būvatļauja izsniegta.").await;
    assert_eq!(status, 303, "{body}");
    let (status, _) = answer(&desk, &csrf, &first.id, "Vēlreiz?").await;
    assert_eq!(status, 409, "a closed item takes no second answer");
    let (status, _) = answer(&desk, &csrf, &second.id, "   ").await;
    assert_eq!(status, 409, "an empty answer is refused");
    let signed: &[u8] = b"PK\x03\x04 parakstits atbildes dokuments (edoc)";
    let (status, body) = answer_with(
        &desk,
        &csrf,
        &second.id,
        "Atteikts: trūkst skices.",
        Some(("atbilde.edoc", signed)),
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let letter_text = "Jūsu iesniegums par šķūņa būvniecību ir izskatīts; būvatļauja tiks izsniegta pēc nodevas samaksas.";
    let (status, body) = answer(&desk, &csrf, &by_post.id, letter_text).await;
    assert_eq!(status, 303, "{body}");
    let registry = &env.daemon.registry;
    let mut numbers = Vec::new();
    for item in [&first, &second, &by_post] {
        let answers = registry.answers_of(&item.id).await.expect("answers");
        assert_eq!(answers.len(), 1, "{answers:?}");
        numbers.push(answers[0].number.clone());
        // Closed with the answer's number, on time.
        let closed = registry.find(&item.id).await.expect("find").expect("item");
        assert!(closed.closed_at.is_some(), "{closed:?}");
        let audit = registry.audit_of(&item.id).await.expect("audit");
        let close = audit
            .iter()
            .find(|(_, _, action, _)| action == "closed")
            .expect("closed on the audit log");
        assert_eq!(close.1, "Jānis Būvnieks (janis)");
        assert!(close.3.contains(&answers[0].number), "{close:?}");
        assert!(close.3.contains("\"on_time\":true"), "{close:?}");
    }
    assert_eq!(
        numbers,
        (1..=3)
            .map(|n| format!("IZ-{year}/{n}"))
            .collect::<Vec<_>>()
    );
    // The incoming series goes on where it was: outgoing numbers are apart.
    let next = env.submit_item(BUILDING.0, BUILDING.1).await;
    let seq = |n: &str| {
        n.rsplit('/')
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .expect("a sequence")
    };
    assert_eq!(
        seq(&next.registration_number),
        seq(&by_post.registration_number) + 1,
        "{} after {}",
        next.registration_number,
        by_post.registration_number
    );

    // The letter: address block, number, date and the Latvian text.
    let letter = registry.answers_of(&by_post.id).await.expect("answers");
    assert_eq!(letter[0].delivery, "letter");
    let pdf = desk
        .get(&format!("/desk/unit/answers/{}/letter.pdf", letter[0].id))
        .await;
    assert_eq!(pdf.status().as_u16(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let text = pdftotext(&pdf.bytes().await.expect("pdf"));
    for needle in [
        "Ērgļu novada pašvaldība",
        "Ēriks Šķērslis",
        "Dārza iela 7-12",
        "Ērgļi",
        "LV-4840",
        letter[0].number.as_str(),
        by_post.registration_number.as_str(),
        "šķūņa būvniecību ir izskatīts",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} missing from the letter:\n{text}"
        );
    }
    // Printed and posted by the member, once.
    let posted = format!("/desk/unit/answers/{}/posted", letter[0].id);
    let (status, _, _) = desk.post(&posted, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let (status, _, _) = desk.post(&posted, &[("csrf", &csrf)]).await;
    assert_eq!(status, 409);
    let audit = registry.audit_of(&by_post.id).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|(_, actor, action, _)| action == "answer_posted"
                && actor == "Jānis Būvnieks (janis)"),
        "{audit:?}"
    );

    // The e-mail answers reach the relay with their PDF; the status page
    // says answered.
    support::wait_until(
        std::time::Duration::from_secs(30),
        "two answers at the SMTP relay",
        || async { SmtpServer::messages(&maildir).len() >= 2 },
    )
    .await;
    let mails = SmtpServer::messages(&maildir);
    let mail = mails
        .iter()
        .find(|m| m.contains(&numbers[0]))
        .unwrap_or_else(|| panic!("the first answer's mail: {mails:?}"));
    assert!(mail.contains("anna.kalnina@example.lv"), "{mail}");
    use mail_parser::MimeHeaders as _;
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .expect("a readable mail");
    let body = parsed.body_text(0).expect("a text part");
    assert!(
        body.contains(&format!(
            "https://iesniegumi.novads.example.lv/status/{}",
            first.id
        )),
        "{body}"
    );
    assert!(body.contains("Būvatļauja izsniegta."), "{body}");
    let pdf = parsed
        .attachments()
        .find(|a| {
            a.content_type()
                .is_some_and(|c| c.ctype() == "application" && c.subtype() == Some("pdf"))
        })
        .expect("the answer's PDF attached");
    let attached = pdftotext(pdf.contents());
    assert!(attached.contains(&numbers[0]), "{attached}");
    assert!(attached.contains("Būvatļauja izsniegta."), "{attached}");
    // The signed document uploaded goes as it is, instead of the letter.
    let mail = mails
        .iter()
        .find(|m| m.contains(&numbers[1]))
        .unwrap_or_else(|| panic!("the second answer's mail: {mails:?}"));
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .expect("a readable mail");
    let document = parsed
        .attachments()
        .find(|a| a.attachment_name() == Some("atbilde.edoc"))
        .expect("the signed document attached");
    assert_eq!(document.contents(), signed);
    let audit = registry.audit_of(&first.id).await.expect("audit");
    support::wait_until(
        std::time::Duration::from_secs(10),
        "the answer recorded as sent",
        || async {
            registry
                .audit_of(&first.id)
                .await
                .expect("audit")
                .iter()
                .any(|(_, _, action, _)| action == "replied")
        },
    )
    .await;
    assert!(!audit.is_empty());
    let status = env
        .http
        .get(format!("{}/status/{}", env.base, first.id))
        .send()
        .await
        .expect("status page")
        .text()
        .await
        .expect("status text");
    assert!(status.contains("Atbildēts"), "{status}");
    assert!(status.contains(&numbers[0]), "{status}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_numbered_apart_printed_and_mailed_sqlite() {
    answers_numbered_letters_and_mail(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_numbered_apart_printed_and_mailed_postgres() {
    answers_numbered_letters_and_mail(Backend::Amqp).await;
}

/// A signed answer document is scanned by clamd like every file that comes
/// in: one with malware is refused and takes no number; a clean one is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_document_with_malware_is_refused() {
    let clamd = clamd::Clamd::start();
    let mut options = Options::new(Backend::Embedded);
    options.malware.clamd = Some(clamd.address());
    let env = TestEnv::start(options).await;
    unit_member(&env, "janis", "Jānis Būvnieks", &["buvvalde"]).await;
    let (desk, csrf) = signed_in(&env, "janis").await;
    let item = env.submit_item(BUILDING.0, BUILDING.1).await;
    let (status, body) = answer_with(
        &desk,
        &csrf,
        &item.id,
        "Atbilde pielikumā.",
        Some(("atbilde.pdf", clamd::EICAR)),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains(clamd::SIGNATURE), "{body}");
    let registry = &env.daemon.registry;
    assert!(
        registry
            .answers_of(&item.id)
            .await
            .expect("answers")
            .is_empty()
    );
    let open = registry.find(&item.id).await.expect("find").expect("item");
    assert!(open.closed_at.is_none());
    let (status, body) = answer_with(
        &desk,
        &csrf,
        &item.id,
        "Atbilde pielikumā.",
        Some(("atbilde.pdf", b"%PDF-1.4 tirs dokuments")),
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let answers = registry.answers_of(&item.id).await.expect("answers");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].document_name.as_deref(), Some("atbilde.pdf"));
    env.stop().await;
}

/// The accounts' units from the command line, as the README gives them:
/// `pietura user add --role unit --unit …`, `pietura user units`, and
/// `pietura user list` showing them; unknown units and accounts refused.
#[tokio::test]
async fn the_user_commands_set_and_list_units() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    let password = [("PIETURA_USER_PASSWORD", "buvvaldes-parole-2026")];
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let listed = |env: &TestEnv| {
        let out = env.cli(&["user", "list"], &[]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("janis"))
            .unwrap_or_default()
            .to_string()
    };

    let out = env.cli(
        &[
            "user",
            "add",
            "janis",
            "--role",
            "unit",
            "--unit",
            "buvvalde",
            "--unit",
            "nosuchunit",
        ],
        &password,
    );
    assert!(!out.status.success(), "an unknown unit: {}", text(&out));
    assert!(text(&out).contains("nosuchunit"), "{}", text(&out));

    let out = env.cli(
        &[
            "user", "add", "janis", "--role", "unit", "--unit", "buvvalde",
        ],
        &password,
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = listed(&env);
    assert!(line.contains("unit") && line.contains("buvvalde"), "{line}");
    assert!(!line.contains("socialais"), "{line}");

    let out = env.cli(&["user", "units", "janis", "socialais", "buvvalde"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let line = listed(&env);
    assert!(
        line.contains("socialais") && line.contains("buvvalde"),
        "{line}"
    );

    let out = env.cli(&["user", "units", "janis", "nosuchunit"], &[]);
    assert!(!out.status.success(), "an unknown unit: {}", text(&out));
    let out = env.cli(&["user", "units", "nobody", "buvvalde"], &[]);
    assert!(!out.status.success(), "an unknown account: {}", text(&out));

    let out = env.cli(&["user", "units", "janis"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let line = listed(&env);
    assert!(
        !line.contains("buvvalde") && !line.contains("socialais"),
        "{line}"
    );
    env.stop().await;
}
