//! The web desk over HTTP: sign-in, roles, CSRF, sign-in throttling and security
//! headers; officers' decisions with their audit lines, a conflict when two
//! decide at once (one notice, never two), a unit's "not ours", forwarding,
//! and the rules editor's save and roll-back writing back to `rules/`.
//! The browser-level flows are in tests/browser.rs.

mod support;

use std::time::Duration;

use pietura::registry::deadlines::ActionError;
use pietura::registry::desk::Decision;
use serde_json::json;
use support::desk::{
    ADMIN, COFFEE_RULE, DeskClient, OFFICER, READER, add_accounts, hidden, hostile_email_item,
};
use support::{Backend, Options, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_roles_csrf_rate_limit_and_headers() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    let item = env.submit_item("Sveiki", "Vai jums garšo kafija?").await;
    assert_eq!(item.state, "review");

    let anonymous = DeskClient::new(&env);
    let r = anonymous.get("/desk").await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let login = anonymous.get("/login").await;
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .expect("CSP");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(login.headers()["x-content-type-options"], "nosniff");
    assert_eq!(login.headers()["x-frame-options"], "DENY");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // A wrong password, then the right one.
    let officer = DeskClient::new(&env);
    assert_eq!(officer.sign_in(OFFICER.0, "nepareiza-parole").await, 401);
    assert_eq!(officer.sign_in(OFFICER.0, OFFICER.1).await, 303);
    let (status, queue) = officer.page("/desk").await;
    assert_eq!(status, 200);
    assert!(queue.contains(&item.registration_number), "{queue}");
    assert!(queue.contains("Līga Ozola"));

    // The officer cannot open the administrators' pages.
    for page in ["/admin/rules", "/admin/channels"] {
        let (status, body) = officer.page(page).await;
        assert_eq!(status, 403, "{page}: {body}");
    }

    // A decision without the session's CSRF token is refused and changes nothing.
    let revision = item.revision.to_string();
    let decide = format!("/desk/items/{}/decide", item.id);
    let forged = [
        ("csrf", "0000"),
        ("revision", revision.as_str()),
        ("action", "assign"),
        ("unit", "buvvalde"),
    ];
    let (status, _, _) = officer.post(&decide, &forged).await;
    assert_eq!(status, 403);
    let same = env
        .daemon
        .registry
        .find(&item.id)
        .await
        .expect("find")
        .expect("item");
    assert_eq!(
        (same.state.as_str(), same.revision),
        ("review", item.revision)
    );

    // A read-only account sees the item but may not decide.
    let reader = DeskClient::new(&env);
    assert_eq!(reader.sign_in(READER.0, READER.1).await, 303);
    let (status, page) = reader.page(&format!("/desk/items/{}", item.id)).await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("id=\"assign-form\""),
        "no decision forms for read-only"
    );
    let csrf = reader.csrf().await;
    let (status, _, _) = reader
        .post(
            &decide,
            &[
                ("csrf", csrf.as_str()),
                ("revision", revision.as_str()),
                ("action", "spam"),
            ],
        )
        .await;
    assert_eq!(status, 403);

    // Wrong passwords slow further attempts (tests/identity.rs) but never
    // lock the account: the right password still signs in.
    let guesser = DeskClient::new(&env);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(guesser.sign_in(ADMIN.0, "minējums-123").await);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401]);
    assert_eq!(
        guesser.sign_in(ADMIN.0, ADMIN.1).await,
        303,
        "no lockout for the right password"
    );

    // Sign-out ends the session.
    let csrf = officer.csrf().await;
    let (status, _, location) = officer.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login")));
    assert_eq!(officer.get("/desk").await.status().as_u16(), 303);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_officers_deciding_at_once_give_one_routing_and_a_conflict() {
    let env = TestEnv::start(Options::new(Backend::Amqp)).await;
    add_accounts(&env).await;
    let item = env.submit_item("Sveiki", "Vai jums garšo kafija?").await;
    env.wait_routed("review", 1).await;
    let rules = env.daemon.rules.load_full();
    let registry = env.daemon.registry.clone();
    let decide = |actor: &'static str, unit: &'static str| {
        let (registry, rules, id) = (registry.clone(), rules.clone(), item.id.clone());
        async move {
            registry
                .decide(
                    &id,
                    item.revision,
                    actor,
                    &Decision::Assign {
                        unit: unit.into(),
                        service: None,
                    },
                    &rules,
                )
                .await
        }
    };
    let (a, b) = tokio::join!(decide("Līga", "buvvalde"), decide("Jānis", "kanceleja"));
    let (won, lost) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("exactly one decision must win: {other:?}"),
    };
    assert!(matches!(lost, ActionError::Conflict { .. }), "{lost}");
    assert_eq!(won.state, "routed");
    let unit = won.unit_id.clone().expect("unit");
    let notices = env.wait_routed(&format!("unit.{unit}"), 1).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].item_id, item.id);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for u in ["buvvalde", "kanceleja"] {
        assert!(
            env.drain_routed(&format!("unit.{u}")).await.is_empty(),
            "a second notice for {u}"
        );
    }

    // Over HTTP: the losing officer's page still has the old revision.
    let officer = DeskClient::new(&env);
    assert_eq!(officer.sign_in(OFFICER.0, OFFICER.1).await, 303);
    let (status, page, _) = officer
        .decide(
            &item.id,
            item.revision,
            &[("action", "assign"), ("unit", "finanses")],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("Konflikts"), "{page}");
    let now = env
        .daemon
        .registry
        .find(&item.id)
        .await
        .expect("find")
        .expect("item");
    assert_eq!(
        now.unit_id.as_deref(),
        Some(unit.as_str()),
        "the first decision stands"
    );
    let assigned = env
        .daemon
        .registry
        .audit_of(&item.id)
        .await
        .expect("audit")
        .into_iter()
        .filter(|(_, _, action, _)| action == "assigned")
        .count();
    assert_eq!(assigned, 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_returns_an_item_then_the_officer_forwards_corrects_links_and_discards() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    let routed = env
        .submit_item("Būvatļauja", "Lūdzu izsniegt būvatļauju šķūnim.")
        .await;
    assert_eq!(routed.unit_id.as_deref(), Some("buvvalde"));

    // The unit says "not ours" through the item API.
    let (status, body) = env
        .post_json(
            &format!("/api/v1/items/{}/return", routed.id),
            json!({ "actor": "buvvalde: Pēteris", "unit": "buvvalde", "reason": "šķūnis ir kaimiņu novadā" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "review");
    assert_eq!(
        body["review_reason"],
        "returned by buvvalde: šķūnis ir kaimiņu novadā"
    );
    let officer = DeskClient::new(&env);
    assert_eq!(officer.sign_in(OFFICER.0, OFFICER.1).await, 303);
    let (_, queue) = officer.page("/desk?reason=returned%20by%20buvvalde").await;
    assert!(queue.contains(&routed.registration_number), "{queue}");
    let (_, other) = officer
        .page("/desk?reason=no%20routing%20rule%20matched")
        .await;
    assert!(!other.contains(&routed.registration_number), "filtered out");

    // Forwarded to an external institution: the forwarding term replaces the reply term.
    let rules = env.daemon.rules.load_full();
    let external = rules
        .units
        .values()
        .find(|u| u.external)
        .expect("an external institution in units.toml")
        .id
        .clone();
    let after_return = env
        .daemon
        .registry
        .find(&routed.id)
        .await
        .expect("find")
        .expect("item");
    let (status, _, location) = officer
        .decide(
            &routed.id,
            after_return.revision,
            &[
                ("action", "forward"),
                ("institution", external.as_str()),
                ("note", "pēc piekritības"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert!(
        location
            .expect("back to the queue")
            .starts_with("/desk?done=forwarded")
    );
    let forwarded = env
        .daemon
        .registry
        .find(&routed.id)
        .await
        .expect("find")
        .expect("item");
    assert_eq!(forwarded.state, "forwarding");
    assert_eq!(forwarded.unit_id.as_deref(), Some(external.as_str()));
    assert!(forwarded.forward_due.is_some() && forwarded.reply_due.is_none());
    assert_eq!(forwarded.routed_by.as_deref(), Some("Līga Ozola (liga)"));

    // Corrections, a link and a discard on another item, each in the audit log.
    let mail = hostile_email_item(&env).await;
    let mut rev = mail.revision;
    for decision in [
        Decision::Correct {
            sender_name: Some("Ļ. Sūtītājs".into()),
            subject: None,
        },
        Decision::Link {
            other: routed.registration_number.clone(),
        },
        Decision::Discard {
            spam: true,
            note: String::new(),
        },
    ] {
        let after = env
            .daemon
            .registry
            .decide(&mail.id, rev, "Līga Ozola (liga)", &decision, &rules)
            .await
            .unwrap_or_else(|e| panic!("{decision:?}: {e}"));
        rev = after.revision;
    }
    let done = env
        .daemon
        .registry
        .find(&mail.id)
        .await
        .expect("find")
        .expect("item");
    assert_eq!(done.state, "discarded");
    assert_eq!(done.sender_name.as_deref(), Some("Ļ. Sūtītājs"));
    assert_eq!(done.linked_item_id.as_deref(), Some(routed.id.as_str()));
    assert!(done.closed_at.is_some(), "kept and closed, not deleted");
    let actions: Vec<String> = env
        .daemon
        .registry
        .audit_of(&mail.id)
        .await
        .expect("audit")
        .into_iter()
        .map(|(_, _, a, _)| a)
        .collect();
    for a in ["corrected", "linked", "marked_spam"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    let back: Vec<String> = env
        .daemon
        .registry
        .audit_of(&routed.id)
        .await
        .expect("audit")
        .into_iter()
        .map(|(_, _, a, _)| a)
        .collect();
    assert!(back.iter().any(|a| a == "linked_from"), "{back:?}");
    let refused = env
        .daemon
        .registry
        .decide(
            &mail.id,
            rev,
            "Līga",
            &Decision::Assign {
                unit: "buvvalde".into(),
                service: None,
            },
            &rules,
        )
        .await;
    assert!(
        matches!(refused, Err(ActionError::Conflict { .. })),
        "a discarded item stays closed"
    );

    // The attachment downloads, never renders; the page lists it.
    let (_, page) = officer.page(&format!("/desk/items/{}", mail.id)).await;
    assert!(
        page.contains("iesniegums &lt;script&gt;.pdf")
            || page.contains("iesniegums &#60;script&#62;.pdf"),
        "{page}"
    );
    let r = officer
        .get(&format!("/desk/items/{}/attachments/0", mail.id))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .expect("header")
        .to_string();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.bytes().await.expect("bytes").starts_with(b"%PDF"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_edits_are_stored_versioned_and_rolled_back() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    let admin = DeskClient::new(&env);
    assert_eq!(admin.sign_in(ADMIN.0, ADMIN.1).await, 303);
    let before = env.daemon.rules.load_full();
    let file = "routing/90-kanceleja.toml";
    let (status, page) = admin
        .page(&format!("/admin/rules?file={}", file.replace('/', "%2F")))
        .await;
    assert_eq!(status, 200);
    let csrf = hidden(&page, "csrf");
    let original = std::fs::read_to_string(env.rules_dir.join(file)).expect("rules file");
    let edited = format!("{original}{COFFEE_RULE}");
    let save = |text: String| {
        let (admin, csrf, base) = (&admin, csrf.clone(), before.version.clone());
        async move {
            admin
                .post(
                    "/admin/rules/save",
                    &[
                        ("csrf", csrf.as_str()),
                        ("file", file),
                        ("text", text.as_str()),
                        ("base_version", base.as_str()),
                    ],
                )
                .await
        }
    };
    let (status, _, location) = save(edited.clone()).await;
    assert_eq!(status, 303);
    let saved = env.daemon.rules.load_full();
    assert_ne!(saved.version, before.version);
    assert!(location.expect("redirect").contains(&saved.version));
    // In force for every daemon: the registry's active set, not the folder.
    let active = env.daemon.registry.active_ruleset().await.expect("active");
    assert_eq!(active.map(|a| a.version), Some(saved.version.clone()));
    assert_eq!(saved.sources.files.get(file), Some(&edited));
    assert_eq!(
        std::fs::read_to_string(env.rules_dir.join(file)).expect("file"),
        original,
        "the editor does not write the folder (`pietura rules export` does)"
    );
    let item = env
        .submit_item("Kafija", "Vai varu pasūtīt kafiju apmeklētājiem?")
        .await;
    assert_eq!(item.rule_id.as_deref(), Some("kanceleja-kafija"));

    // A stale draft (written against the old version) is refused.
    let (status, page, _) = save(original.clone()).await;
    assert_eq!(status, 422, "{page}");
    assert_eq!(env.daemon.rules.load().version, saved.version);

    // Roll back to the first version: files and routing as before.
    let (_, page) = admin.page("/admin/rules").await;
    assert!(
        page.contains("Admins Kārlis (admins)"),
        "history names who: {page}"
    );
    let (status, _, _) = admin
        .post(
            "/admin/rules/rollback",
            &[
                ("csrf", csrf.as_str()),
                ("version", before.version.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(env.daemon.rules.load().version, before.version);
    let active = env.daemon.registry.active_ruleset().await.expect("active");
    assert_eq!(active.map(|a| a.version), Some(before.version.clone()));
    let changes = env
        .daemon
        .registry
        .rules_changes(10)
        .await
        .expect("history");
    let actions: Vec<&str> = changes.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["rollback", "edit", "bootstrap"]);
    env.stop().await;
}

/// A page's visible text: the markup (tags and their attributes) left out.
fn visible(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut in_tag = false;
    for c in page.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The part of `page` from the element with `id` to the next `end`.
fn section<'a>(page: &'a str, id: &str, end: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}:\n{page}"));
    let rest = &page[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latvian_desk_shows_reasons_channels_and_rule_sets_in_words() {
    let env = TestEnv::start(Options::new(Backend::Embedded)).await;
    add_accounts(&env).await;
    let item = env.submit_item("Sveiki", "Vai jums garšo kafija?").await;
    assert_eq!(item.state, "review");
    let officer = DeskClient::new(&env);
    assert_eq!(officer.sign_in(OFFICER.0, OFFICER.1).await, 303);

    let (status, queue) = officer.page("/desk?lang=lv").await;
    assert_eq!(status, 200);
    let words = visible(&queue);
    for latvian in [
        "tīmekļa veidlapa",
        "Neviens maršrutēšanas noteikums neatbilst",
    ] {
        assert!(words.contains(latvian), "{latvian} missing: {words}");
    }
    for machine in ["no routing rule matched", "web_form"] {
        assert!(!words.contains(machine), "{machine} shown: {words}");
    }

    let (status, page) = officer
        .page(&format!("/desk/items/{}?lang=lv", item.id))
        .await;
    assert_eq!(status, 200);
    let facts = visible(section(&page, "item-facts", "</table>"));
    let summary = visible(section(&page, "explain-h", "</p>"));
    assert!(
        facts.contains("tīmekļa veidlapa")
            && facts.contains("Neviens maršrutēšanas noteikums neatbilst"),
        "{facts}"
    );
    assert!(summary.contains("Noteikumu versija"), "{summary}");
    for machine in ["no routing rule matched", "web_form"] {
        assert!(!facts.contains(machine), "{machine} shown: {facts}");
    }
    assert!(
        !summary.contains("rule set") && !summary.contains("no routing rule matched"),
        "{summary}"
    );

    // English from the other catalog.
    let (_, queue) = officer.page("/desk?lang=en").await;
    let words = visible(&queue);
    assert!(
        words.contains("web form") && words.contains("No routing rule matched"),
        "{words}"
    );

    // The API keeps the machine words.
    let api = env.get_json(&format!("/api/v1/items/{}", item.id)).await;
    assert_eq!(
        api["item"]["review_reason"], "no routing rule matched",
        "{api}"
    );
    assert_eq!(api["item"]["channel_kind"], "web_form", "{api}");
    env.stop().await;
}
