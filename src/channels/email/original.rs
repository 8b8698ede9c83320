//! How the desk shows a mail: its HTML part sanitised by ammonia (no
//! scripts, no styles, no images or other remote fetches; links kept,
//! opened without referrer) beside the text the rules read.

use std::collections::HashSet;

use crate::blobs::BlobStore;
use crate::channels::original::Original;
use crate::message::IntakeMessage;

/// The sanitiser for e-mail HTML: text, structure and links only.
pub fn sanitise_email_html(html: &str) -> String {
    let mut tags: HashSet<&str> = ammonia::Builder::default().clone_tags();
    for remote in [
        "img", "picture", "source", "video", "audio", "track", "area", "map",
    ] {
        tags.remove(remote);
    }
    ammonia::Builder::default()
        .tags(tags)
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}

/// The mail of `msg`, read from its raw `.eml` blob (`metadata.email.original`).
pub async fn of(msg: &IntakeMessage, blobs: &BlobStore) -> Original {
    let sha = msg
        .meta::<super::EmailMeta>()
        .map(|m| m.original.sha256)
        .unwrap_or_default();
    let html = match blobs.get(&sha).await {
        Ok(raw) => mail_parser::MessageParser::default()
            .parse(&raw)
            .and_then(|m| {
                (m.html_body_count() > 0 && m.text_body_count() <= m.html_body_count())
                    .then(|| m.body_html(0).map(|h| sanitise_email_html(&h)))
                    .flatten()
            }),
        Err(e) => {
            tracing::warn!(item = %msg.id, "e-mail original not readable: {e}");
            None
        }
    };
    Original::Email {
        html,
        text: msg.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_html_loses_scripts_handlers_styles_and_remote_fetches() {
        let hostile = r#"<p onclick="steal()">Labdien, <b>pašvaldība</b>!</p>
            <script>alert(1)</script><style>body{background:url(http://x/y)}</style>
            <img src="http://tracker.example/p.gif"><iframe src="http://evil"></iframe>
            <a href="javascript:alert(2)">spied</a> <a href="https://example.lv/info">info</a>
            <form action="http://evil"><input name=q></form>"#;
        let clean = sanitise_email_html(hostile);
        for gone in [
            "<script",
            "onclick",
            "<style",
            "<img",
            "tracker",
            "<iframe",
            "javascript:",
            "<form",
            "<input",
        ] {
            assert!(!clean.contains(gone), "{gone} survived: {clean}");
        }
        assert!(clean.contains("<b>pašvaldība</b>"), "{clean}");
        assert!(
            clean.contains("href=\"https://example.lv/info\""),
            "{clean}"
        );
        assert!(clean.contains("noreferrer"), "{clean}");
    }
}
