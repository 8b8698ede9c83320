//! Whether a mail's `From:` is proven: SPF, DKIM and DMARC evaluated here
//! (the `mail-auth` crate, DNS through its hickory resolver), or taken from
//! the top-most `Authentication-Results` of our own relay. The e-mail
//! channel threads a mail into an existing case, records a delivery report
//! and acknowledges a mail only when it passes (`require_for`); a failing
//! mail is registered all the same, with its verdict on the item.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfResult,
    dmarc::verify::DmarcParameters, spf::verify::SpfParameters,
};
use serde::Deserialize;

use crate::message::{AuthenticityVerdict, SenderAuthenticity};

/// Where the verdict comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// SPF, DKIM and DMARC checked by Pietura (DNS needed).
    #[default]
    Evaluate,
    /// The top-most `Authentication-Results` whose authserv-id is ours.
    TrustedRelay,
    /// Nothing checked: every mail is threaded, recorded and acknowledged
    /// on its `From:` alone (the behaviour before issue 17).
    Off,
}

/// What only a passing mail gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Linked into the case its subject number or In-Reply-To names.
    Threading,
    /// A delivery report recorded as a bounce of our answer.
    Bounces,
    /// The acknowledgement with the registration number.
    Acknowledgement,
}

fn all_requirements() -> Vec<Requirement> {
    vec![
        Requirement::Threading,
        Requirement::Bounces,
        Requirement::Acknowledgement,
    ]
}

fn default_timeout_seconds() -> u64 {
    10
}

/// `[authenticity]` of an e-mail channel file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticityConfig {
    #[serde(default)]
    pub mode: Mode,
    /// The relay's authserv-id (`mx.novads.lv`), for `mode = "trusted_relay"`.
    #[serde(default)]
    pub authserv_id: Option<String>,
    #[serde(default = "all_requirements")]
    pub require_for: Vec<Requirement>,
    /// DNS servers (`"10.0.0.53"`, `"127.0.0.1:5353"`) for `mode =
    /// "evaluate"`; the system's resolver when empty.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// How long the checks of one mail may take; after that it fails (temperror).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

impl Default for AuthenticityConfig {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            authserv_id: None,
            require_for: all_requirements(),
            nameservers: Vec::new(),
            timeout_seconds: default_timeout_seconds(),
        }
    }
}

fn nameserver(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

impl AuthenticityConfig {
    /// Problems with the table's values, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut issues = Vec::new();
        let relay_id = self.authserv_id.as_deref().map(str::trim);
        if self.mode == Mode::TrustedRelay && relay_id.is_none_or(str::is_empty) {
            issues.push(
                "authenticity.authserv_id: mode = \"trusted_relay\" needs the relay's authserv-id"
                    .into(),
            );
        }
        for (i, n) in self.nameservers.iter().enumerate() {
            if nameserver(n).is_none() {
                issues.push(format!(
                    "authenticity.nameservers[{i}] {n:?} is not an IP address or IP:port"
                ));
            }
        }
        if !(1..=120).contains(&self.timeout_seconds) {
            issues.push("authenticity.timeout_seconds must be 1 to 120".into());
        }
        issues
    }

    /// Whether a mail with this result may have `what`.
    pub fn allows(&self, what: Requirement, result: &SenderAuthenticity) -> bool {
        self.mode == Mode::Off
            || !self.require_for.contains(&what)
            || result.verdict == AuthenticityVerdict::Pass
    }
}

/// Why the checker could not be built.
#[derive(Debug, thiserror::Error)]
#[error("authenticity: the DNS resolver cannot be set up: {0}")]
pub struct CheckerError(String);

/// The configured check, built once per channel.
pub struct Checker {
    cfg: AuthenticityConfig,
    authenticator: Option<MessageAuthenticator>,
}

impl Checker {
    pub fn new(cfg: AuthenticityConfig) -> Result<Self, CheckerError> {
        let authenticator = if cfg.mode == Mode::Evaluate {
            Some(if cfg.nameservers.is_empty() {
                MessageAuthenticator::new_system_conf().map_err(|e| CheckerError(e.to_string()))?
            } else {
                let servers = cfg
                    .nameservers
                    .iter()
                    .filter_map(|n| nameserver(n))
                    .map(|addr| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = addr.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = addr.port();
                        NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                let mut opts = ResolverOpts::default();
                opts.timeout = Duration::from_secs(2);
                opts.attempts = 1;
                MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), opts)
                    .map_err(|e| CheckerError(e.to_string()))?
            })
        } else {
            None
        };
        Ok(Self { cfg, authenticator })
    }

    pub fn config(&self) -> &AuthenticityConfig {
        &self.cfg
    }

    /// The verdict on one raw mail.
    pub async fn check(&self, raw: &[u8]) -> SenderAuthenticity {
        match self.cfg.mode {
            Mode::Off => SenderAuthenticity {
                verdict: AuthenticityVerdict::NotChecked,
                method: "off".into(),
                spf: "none".into(),
                dkim: "none".into(),
                dmarc: "none".into(),
            },
            Mode::TrustedRelay => {
                from_relay(raw, self.cfg.authserv_id.as_deref().unwrap_or_default())
            }
            Mode::Evaluate => {
                let Some(auth) = &self.authenticator else {
                    return failed("evaluated", "temperror");
                };
                let limit = Duration::from_secs(self.cfg.timeout_seconds);
                match tokio::time::timeout(limit, evaluate(auth, raw)).await {
                    Ok(result) => result,
                    Err(_) => failed("evaluated", "temperror"),
                }
            }
        }
    }
}

fn failed(method: &str, why: &str) -> SenderAuthenticity {
    SenderAuthenticity {
        verdict: AuthenticityVerdict::Fail,
        method: method.into(),
        spf: why.into(),
        dkim: why.into(),
        dmarc: why.into(),
    }
}

/// The headers of a raw mail, unfolded, top first.
fn headers(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\n\n")
        .next()
        .unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

/// The domain of the first address in a header value.
fn domain_of(value: &str) -> Option<String> {
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value,
    };
    let (_, domain) = addr.trim().rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// Relaxed alignment: one domain is the other or below it (the
/// organisational domain, without a public-suffix list: a shared suffix of
/// at least two labels).
fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

/// The client address our receiving MTA wrote in the top-most `Received:`
/// (`from host (host [192.0.2.1])`).
fn client_ip(headers: &[(String, String)]) -> Option<IpAddr> {
    let (_, received) = headers.iter().find(|(n, _)| n == "received")?;
    let start = received.find('[')?;
    let end = received[start..].find(']')? + start;
    let literal = received[start + 1..end].trim_start_matches("IPv6:");
    literal.parse().ok()
}

async fn evaluate(auth: &MessageAuthenticator, raw: &[u8]) -> SenderAuthenticity {
    let Some(msg) = AuthenticatedMessage::parse(raw) else {
        return failed("evaluated", "permerror");
    };
    let hs = headers(raw);
    let from_domain = hs
        .iter()
        .find(|(n, _)| n == "from")
        .and_then(|(_, v)| domain_of(v));
    let mail_from = hs
        .iter()
        .find(|(n, _)| n == "return-path")
        .map(|(_, v)| v.trim_matches(['<', '>', ' ']).to_string())
        .filter(|v| v.contains('@'))
        .unwrap_or_else(|| {
            from_domain
                .as_ref()
                .map(|d| format!("postmaster@{d}"))
                .unwrap_or_default()
        });
    let mail_from_domain = domain_of(&mail_from).unwrap_or_default();
    let dkim = auth.verify_dkim(&msg).await;
    let dkim_pass_domains: BTreeSet<String> = dkim
        .iter()
        .filter(|o| o.result() == &DkimResult::Pass)
        .filter_map(|o| o.signature().map(|s| s.d.to_ascii_lowercase()))
        .collect();
    let dkim_word = if !dkim_pass_domains.is_empty() {
        "pass"
    } else if dkim.is_empty() {
        "none"
    } else {
        dkim_name(dkim[0].result())
    };
    let spf = match client_ip(&hs) {
        Some(ip) => {
            let helo = mail_from_domain.as_str();
            auth.verify_spf(SpfParameters::verify_mail_from(
                ip, helo, "pietura", &mail_from,
            ))
            .await
        }
        None => mail_auth::SpfOutput::default(),
    };
    let spf_word = spf_name(spf.result());
    let dmarc = auth
        .verify_dmarc(DmarcParameters::new(&msg, &dkim, &mail_from_domain, &spf))
        .await;
    // DNS trouble finding the policy is not "no policy": the mail is not proven.
    let dmarc_word = match (dmarc.dkim_result(), dmarc.spf_result()) {
        (DmarcResult::Pass, _) | (_, DmarcResult::Pass) => "pass",
        (DmarcResult::TempError(_), _) | (_, DmarcResult::TempError(_)) => "temperror",
        (DmarcResult::PermError(_), _) | (_, DmarcResult::PermError(_)) => "permerror",
        _ if dmarc.dmarc_record().is_some() => "fail",
        _ => "none",
    };
    let pass = match dmarc_word {
        "pass" => true,
        // No DMARC policy: an aligned DKIM signature or SPF pass proves the domain.
        "none" => from_domain.as_deref().is_some_and(|from| {
            dkim_pass_domains.iter().any(|d| aligned(d, from))
                || (spf.result() == SpfResult::Pass && aligned(&mail_from_domain, from))
        }),
        _ => false,
    };
    SenderAuthenticity {
        verdict: if pass {
            AuthenticityVerdict::Pass
        } else {
            AuthenticityVerdict::Fail
        },
        method: "evaluated".into(),
        spf: spf_word.into(),
        dkim: dkim_word.into(),
        dmarc: dmarc_word.into(),
    }
}

fn dkim_name(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// The verdict of our relay: the top-most `Authentication-Results` only,
/// and only when its authserv-id is the configured one (a sender can add
/// any such header below it).
pub fn from_relay(raw: &[u8], authserv_id: &str) -> SenderAuthenticity {
    let hs = headers(raw);
    let Some((_, ar)) = hs.iter().find(|(n, _)| n == "authentication-results") else {
        return failed("trusted_relay", "none");
    };
    let mut parts = ar.split(';').map(str::trim);
    let id = parts
        .next()
        .and_then(|p| p.split_whitespace().next())
        .unwrap_or_default();
    if !id.eq_ignore_ascii_case(authserv_id.trim()) {
        return failed("trusted_relay", "none");
    }
    let from_domain = hs
        .iter()
        .find(|(n, _)| n == "from")
        .and_then(|(_, v)| domain_of(v));
    let (mut spf, mut dkim, mut dmarc) = ("none", "none", "none");
    let mut aligned_dkim = false;
    for part in parts {
        let Some((method, rest)) = part.split_once('=') else {
            continue;
        };
        let result = rest.split_whitespace().next().unwrap_or_default();
        let result = word(result);
        match method.trim().to_ascii_lowercase().as_str() {
            "spf" => spf = result,
            "dmarc" => dmarc = result,
            "dkim" => {
                if result == "pass" {
                    let d = rest
                        .split_whitespace()
                        .find_map(|p| p.strip_prefix("header.d="))
                        .map(|d| d.trim_end_matches(';').to_ascii_lowercase());
                    if let (Some(d), Some(from)) = (d, from_domain.as_deref()) {
                        aligned_dkim |= aligned(&d, from);
                    }
                    dkim = "pass";
                } else if dkim != "pass" {
                    dkim = result;
                }
            }
            _ => {}
        }
    }
    let pass = dmarc == "pass" || (dmarc == "none" && aligned_dkim);
    SenderAuthenticity {
        verdict: if pass {
            AuthenticityVerdict::Pass
        } else {
            AuthenticityVerdict::Fail
        },
        method: "trusted_relay".into(),
        spf: spf.into(),
        dkim: dkim.into(),
        dmarc: dmarc.into(),
    }
}

/// An RFC 8601 result word, or `permerror` for anything else.
fn word(s: &str) -> &'static str {
    match s.to_ascii_lowercase().as_str() {
        "pass" => "pass",
        "fail" => "fail",
        "softfail" => "softfail",
        "neutral" => "neutral",
        "none" => "none",
        "temperror" => "temperror",
        "policy" => "policy",
        _ => "permerror",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &str = "From: A <a@sender.example>\r\nSubject: x\r\n\r\nbody\r\n";

    #[test]
    fn only_the_top_most_header_of_our_relay_is_believed() {
        let ours = format!(
            "Authentication-Results: mx.novads.lv; spf=fail smtp.mailfrom=sender.example;\r\n dkim=none; dmarc=fail header.from=sender.example\r\nAuthentication-Results: mx.novads.lv; dmarc=pass header.from=sender.example\r\n{MAIL}"
        );
        let r = from_relay(ours.as_bytes(), "mx.novads.lv");
        assert_eq!(r.verdict, AuthenticityVerdict::Fail, "{r:?}");
        assert_eq!(r.dmarc, "fail");
        let forged = format!("Authentication-Results: evil.example; dmarc=pass\r\n{MAIL}");
        let r = from_relay(forged.as_bytes(), "mx.novads.lv");
        assert_eq!(r.verdict, AuthenticityVerdict::Fail, "{r:?}");
        let good = format!(
            "Authentication-Results: mx.novads.lv;\r\n dkim=pass header.d=sender.example header.s=s1;\r\n spf=pass smtp.mailfrom=sender.example\r\n{MAIL}"
        );
        let r = from_relay(good.as_bytes(), "MX.novads.lv");
        assert_eq!(r.verdict, AuthenticityVerdict::Pass, "{r:?}");
        let good = format!("Authentication-Results: mx.novads.lv; dmarc=pass\r\n{MAIL}");
        assert_eq!(
            from_relay(good.as_bytes(), "mx.novads.lv").verdict,
            AuthenticityVerdict::Pass
        );
    }

    #[test]
    fn config_problems_name_their_key() {
        let c: AuthenticityConfig = toml::from_str(
            "mode = \"trusted_relay\"\nnameservers = [\"x\"]\ntimeout_seconds = 0\n",
        )
        .expect("table");
        let issues = c.validate().join("\n");
        assert!(issues.contains("authenticity.authserv_id"), "{issues}");
        assert!(issues.contains("authenticity.nameservers[0]"), "{issues}");
        assert!(issues.contains("authenticity.timeout_seconds"), "{issues}");
        let c = AuthenticityConfig::default();
        assert_eq!(c.mode, Mode::Evaluate);
        assert!(c.validate().is_empty());
    }

    #[test]
    fn client_address_comes_from_the_top_most_received() {
        let hs = headers(
            b"Received: from a.example (a.example\r\n [192.0.2.7]) by mx\r\nReceived: from b ([10.0.0.1])\r\n\r\n",
        );
        assert_eq!(client_ip(&hs), "192.0.2.7".parse().ok());
    }
}
