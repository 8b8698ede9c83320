//! The answer SMS with the registration number: a template per language,
//! measured in parts (GSM-7 or UCS-2) and kept within `max_segments` (folded
//! to GSM-7 first, then shortened), never sent to short codes or names, at
//! most `max_per_number_per_day` to one number, and sent through the gateway
//! the item came by.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::segments::{Encoding, Segments, fold_to_gsm7, measure};
use super::{GatewayConfig, SmsConfig, body_signature};
use crate::channels::SinkContext;
use crate::phone::SmsAddress;
use crate::registry::Registry;
use crate::registry::replies::PendingReply;
use crate::replies::{DailyLimit, Replier, ReplyError, ReplyOutcome};

/// Twilio's REST API, unless a compatible provider is named.
pub(super) fn twilio_api_base() -> String {
    "https://api.twilio.com".into()
}

/// `[reply]` of an SMS channel file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplySettings {
    pub enabled: bool,
    /// `lv` or `en`: which template answers.
    pub language: String,
    /// Placeholders: {number}, {due}, {status_url}.
    pub template_lv: String,
    pub template_en: String,
    /// The notice that the item was answered (the answer is on the status
    /// page): placeholders {number} (the answer's number), {status_url}.
    pub answer_template_lv: String,
    pub answer_template_en: String,
    pub max_segments: usize,
    pub max_per_number_per_day: i64,
    /// The sender shown on the answer (our number); the gateway's default if unset.
    pub from: Option<String>,
}

impl Default for ReplySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            language: "lv".into(),
            // Two UCS-2 parts hold 134 characters: enough for a number of
            // ~10 characters and a public URL of ~25 with the diacritics kept.
            template_lv: "Reģistrēts Nr. {number}, atbilde līdz {due}. Statuss: {status_url}"
                .into(),
            template_en: "Registered No. {number}, answer by {due}. Status: {status_url}".into(),
            answer_template_lv: "Jūsu iesniegumam sagatavota atbilde Nr. {number}: {status_url}"
                .into(),
            answer_template_en: "Your submission was answered, No. {number}: {status_url}".into(),
            max_segments: 2,
            max_per_number_per_day: 5,
            from: None,
        }
    }
}

impl ReplySettings {
    /// Problems with `[reply]` and the gateway's sending keys.
    pub(super) fn validate(&self, gateway: &GatewayConfig) -> Vec<String> {
        let mut issues = Vec::new();
        if !self.enabled {
            return issues;
        }
        if !matches!(self.language.as_str(), "lv" | "en") {
            issues.push(format!(
                "reply.language {:?} must be \"lv\" or \"en\"",
                self.language
            ));
        }
        if self.max_segments == 0 || self.max_segments > 10 {
            issues.push("reply.max_segments must be 1 to 10".into());
        }
        let missing = match gateway {
            GatewayConfig::Kannel {
                send_url,
                send_username,
                send_password,
                send_password_env,
                ..
            } => {
                send_url.is_none()
                    || send_username.is_none()
                    || (send_password.is_none() && send_password_env.is_none())
            }
            GatewayConfig::Twilio { account_sid, .. } => account_sid.is_none(),
            GatewayConfig::JsonHmac { send_url, .. } => send_url.is_none(),
        };
        if missing {
            issues.push(
                "reply.enabled needs the gateway's sending keys (kannel: send_url, send_username, send_password[_env]; twilio: account_sid; json_hmac: send_url), or set reply.enabled = false".into(),
            );
        }
        issues
    }

    /// The answer's text within the part limit, and its measure.
    pub fn render(&self, number: &str, due: &str, status_url: &str) -> (String, Segments) {
        let template = if self.language == "en" {
            &self.template_en
        } else {
            &self.template_lv
        };
        self.fit(template, number, due, status_url)
    }

    /// The notice of an item's answer, within the part limit.
    pub fn render_answer(&self, number: &str, status_url: &str) -> (String, Segments) {
        let template = if self.language == "en" {
            &self.answer_template_en
        } else {
            &self.answer_template_lv
        };
        self.fit(template, number, "", status_url)
    }

    fn fit(&self, template: &str, number: &str, due: &str, status_url: &str) -> (String, Segments) {
        let text = template
            .replace("{number}", number)
            .replace("{due}", due)
            .replace("{status_url}", status_url);
        let m = measure(&text);
        if m.parts <= self.max_segments {
            return (text, m);
        }
        let folded = fold_to_gsm7(&text);
        let m = measure(&folded);
        if m.parts <= self.max_segments {
            return (folded, m);
        }
        // Still too long: cut to what the parts hold.
        let (single, part) = match m.encoding {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        };
        let budget = if self.max_segments == 1 {
            single
        } else {
            part * self.max_segments
        };
        let mut cut = String::new();
        for c in folded.chars() {
            let mut next = cut.clone();
            next.push(c);
            if measure(&next).units > budget {
                break;
            }
            cut = next;
        }
        let m = measure(&cut);
        (cut, m)
    }
}

fn transient(e: impl std::fmt::Display) -> ReplyError {
    ReplyError::Transient(e.to_string())
}

/// A gateway's HTTP answer as a reply outcome: 2xx sent (with the number of
/// parts the gateway says it sends, when it says), 400/422 refused for
/// good, anything else worth another try.
async fn outcome(resp: reqwest::Response, what: &str) -> Result<Option<usize>, ReplyError> {
    let status = resp.status();
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    if status.is_success() {
        return Ok(reported_parts(&body));
    }
    let why = format!("{what} answered {status}: {body}");
    match status.as_u16() {
        400 | 422 => Err(ReplyError::Permanent(why)),
        _ => Err(ReplyError::Transient(why)),
    }
}

/// The parts a gateway's answer says it sends: Twilio's `num_segments`
/// (a string in its Message resource) or `parts` from a JSON gateway.
/// Kannel's sendsms answers ("0: Accepted for delivery", "Sent.") do not
/// say: smsbox cuts a long answer to its `max-messages` without telling.
fn reported_parts(body: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let n = v.get("num_segments").or_else(|| v.get("parts"))?;
    match n {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn env_secret(value: &Option<SecretString>, env: &Option<String>) -> Result<String, ReplyError> {
    if let Some(v) = value {
        return Ok(v.expose_secret().to_string());
    }
    let var = env.as_deref().unwrap_or("");
    std::env::var(var).map_err(|_| {
        ReplyError::Transient(format!(
            "the variable {var} with the gateway's sending password is not set"
        ))
    })
}

/// Answers items that came by SMS, through the gateway they came by: a
/// sink beside the SMS door, built from the same channel file.
pub struct SmsReplier {
    cfg: SmsConfig,
    /// The gateway's secret (Twilio's auth token, the HMAC key); None
    /// while it is not configured: answers then wait.
    secret: Option<SecretString>,
    http: reqwest::Client,
    /// The daemon's public address, for the status link.
    public_url: String,
    registry: Registry,
}

impl SmsReplier {
    pub(super) fn new(cfg: SmsConfig, http: reqwest::Client, sinks: &SinkContext) -> Self {
        SmsReplier {
            secret: cfg.gateway.secret().ok(),
            cfg,
            http,
            public_url: sinks
                .settings
                .http
                .public_url
                .trim_end_matches('/')
                .to_string(),
            registry: sinks.registry.clone(),
        }
    }

    async fn send(
        &self,
        to: &str,
        text: &str,
        seg: &Segments,
        item: &str,
    ) -> Result<Option<usize>, ReplyError> {
        let from = self
            .cfg
            .reply
            .from
            .as_deref()
            .or(self.cfg.number.as_deref());
        match &self.cfg.gateway {
            GatewayConfig::Kannel {
                send_url: Some(url),
                send_username: Some(user),
                send_password,
                send_password_env,
                ..
            } => {
                let password = env_secret(send_password, send_password_env)?;
                // Latvian letters survive only as UCS-2 (coding=2).
                let coding = if seg.encoding == Encoding::Ucs2 {
                    "2"
                } else {
                    "0"
                };
                let mut query = vec![
                    ("username", user.as_str()),
                    ("password", password.as_str()),
                    ("to", to),
                    ("text", text),
                    ("coding", coding),
                    ("charset", "UTF-8"),
                ];
                if let Some(f) = from {
                    query.push(("from", f));
                }
                let resp = self
                    .http
                    .get(url)
                    .query(&query)
                    .send()
                    .await
                    .map_err(transient)?;
                outcome(resp, "Kannel sendsms").await
            }
            GatewayConfig::Twilio {
                account_sid: Some(sid),
                api_base,
                ..
            } => {
                let token = self
                    .secret
                    .as_ref()
                    .ok_or_else(|| transient("the gateway's auth token is not configured"))?;
                let url = format!(
                    "{}/2010-04-01/Accounts/{sid}/Messages.json",
                    api_base.trim_end_matches('/')
                );
                let mut form = vec![("To", to), ("Body", text)];
                if let Some(f) = from {
                    form.push(("From", f));
                }
                let resp = self
                    .http
                    .post(url)
                    .basic_auth(sid, Some(token.expose_secret()))
                    .form(&form)
                    .send()
                    .await
                    .map_err(transient)?;
                outcome(resp, "Twilio Messages API").await
            }
            GatewayConfig::JsonHmac {
                send_url: Some(url),
                ..
            } => {
                let secret = self
                    .secret
                    .as_ref()
                    .ok_or_else(|| transient("the gateway secret is not configured"))?;
                let body = serde_json::json!({ "id": item, "to": to, "from": from, "text": text })
                    .to_string();
                let resp = self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header(
                        "X-Signature-256",
                        body_signature(secret.expose_secret(), body.as_bytes()),
                    )
                    .body(body)
                    .send()
                    .await
                    .map_err(transient)?;
                outcome(resp, "the SMS gateway").await
            }
            _ => Err(transient(format!(
                "channel {} has no sending keys for its gateway",
                self.cfg.id
            ))),
        }
    }
}

#[async_trait]
impl Replier for SmsReplier {
    fn daily_limit(&self) -> Option<DailyLimit> {
        Some(DailyLimit {
            per_day: self.cfg.reply.max_per_number_per_day,
            setting: "reply.max_per_number_per_day",
        })
    }

    async fn reply(&self, r: &PendingReply) -> Result<ReplyOutcome, ReplyError> {
        if !SmsAddress::parse(&r.address).is_some_and(|a| a.can_reply()) {
            return Ok(ReplyOutcome::Suppressed(format!(
                "{} cannot receive an SMS (short code or sender name)",
                r.address
            )));
        }
        let status_url = format!("{}/status/{}", self.public_url, r.item_id);
        let answer = match &r.answer_id {
            Some(id) => Some(
                self.registry
                    .answer(id)
                    .await
                    .map_err(|e| ReplyError::Transient(e.to_string()))?
                    .ok_or_else(|| ReplyError::Permanent(format!("answer {id} is gone")))?,
            ),
            None => None,
        };
        let (text, seg) = match &answer {
            Some(a) => self.cfg.reply.render_answer(&a.number, &status_url),
            None => self.cfg.reply.render(
                &r.registration_number,
                r.due.as_deref().unwrap_or("-"),
                &status_url,
            ),
        };
        let reported = self.send(&r.address, &text, &seg, &r.item_id).await?;
        let mut detail = serde_json::json!({
            "to": r.address,
            "text": text,
            "encoding": format!("{:?}", seg.encoding),
            "parts": seg.parts,
        });
        if let Some(n) = reported {
            detail["gateway_parts"] = serde_json::json!(n);
            if n < seg.parts {
                let why = format!(
                    "the gateway sends {n} of the answer's {} parts: the phone gets it cut off (raise the gateway's limit on parts per message)",
                    seg.parts
                );
                tracing::warn!(channel = %self.cfg.id, "{why}");
                detail["cut_off"] = serde_json::json!(why);
            }
        }
        Ok(ReplyOutcome::Sent(detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_say_how_many_parts_they_send() {
        assert_eq!(
            reported_parts(r#"{"sid":"SM1","num_segments":"2","status":"queued"}"#),
            Some(2)
        );
        assert_eq!(
            reported_parts(r#"{"status":"accepted","parts":1}"#),
            Some(1)
        );
        assert_eq!(reported_parts("0: Accepted for delivery"), None);
        assert_eq!(reported_parts(r#"{"sid":"SM1"}"#), None);
    }

    #[test]
    fn an_items_answer_is_a_notice_with_its_number_and_status_link() {
        let s = ReplySettings::default();
        let (text, m) = s.render_answer("IZ-2026/5", "https://pas.lv/status/1");
        assert_eq!(
            text,
            "Jūsu iesniegumam sagatavota atbilde Nr. IZ-2026/5: https://pas.lv/status/1"
        );
        assert!(m.parts <= s.max_segments);
    }

    #[test]
    fn answers_stay_within_their_parts() {
        let s = ReplySettings::default();
        // Fits two UCS-2 parts: the Latvian letters stay.
        let (text, m) = s.render("4/2026/17", "2026-12-07", "https://pas.lv/s/1");
        assert!(
            text.contains("4/2026/17") && text.contains("Reģistrēts"),
            "{text}"
        );
        assert_eq!((m.encoding, m.parts), (Encoding::Ucs2, 2));
        // A long status link does not: folded to GSM-7, one part.
        let long = "https://iesniegumi.augsdaugavas-novads.example.lv/status/0195f3a2-7b1c-7d2e-9f00-1234567890ab";
        let (text, m) = s.render("4/2026/17", "2026-12-07", long);
        assert_eq!((m.encoding, m.parts), (Encoding::Gsm7, 1), "{text}");
        assert!(
            text.starts_with("Registrets Nr. 4/2026/17, atbilde lidz"),
            "{text}"
        );
        // Still too long for one part: cut at 160 septets, the number kept.
        let one = ReplySettings {
            max_segments: 1,
            ..ReplySettings::default()
        };
        let (text, m) = one.render(
            "4/2026/17",
            "2026-12-07",
            &format!("{long}?{}", "x".repeat(100)),
        );
        assert_eq!(
            (m.encoding, m.parts, m.units),
            (Encoding::Gsm7, 1, 160),
            "{text}"
        );
        assert!(text.contains("4/2026/17"));
    }
}
