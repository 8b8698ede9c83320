//! The WS-Security header of every request: a Timestamp, the client
//! certificate as BinarySecurityToken, and an RSA-SHA1 signature over the
//! Timestamp and the WS-Addressing `To` (referenced by `wsu:Id`, exclusive
//! C14N, SHA-1 digests), its key named by a SecurityTokenReference.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};

use super::credentials::Credentials;
use super::dsig::{self, Algorithm, NS_DS, SignError, Signed, esc};
use super::soap::{NS_SOAP, NS_WSA};

pub(crate) const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub(crate) const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const X509V3: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
const BASE64: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// How long a request's Timestamp is valid.
const VALID_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The SOAP header's children for `action` sent to `to`, signed now.
pub(crate) fn header(
    creds: &Credentials,
    action: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<String, SignError> {
    let stamp = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let timestamp = dsig::exc_c14n(&format!(
        "<u:Timestamp xmlns:u=\"{NS_WSU}\" u:Id=\"TS-1\"><u:Created>{}</u:Created>\
         <u:Expires>{}</u:Expires></u:Timestamp>",
        stamp(now),
        stamp(now + VALID_FOR)
    ))?;
    let to_el = dsig::exc_c14n(&format!(
        "<a:To xmlns:a=\"{NS_WSA}\" xmlns:s=\"{NS_SOAP}\" xmlns:u=\"{NS_WSU}\" \
         s:mustUnderstand=\"1\" u:Id=\"TO-1\">{}</a:To>",
        esc(to)
    ))?;
    let (signed_info, value) = dsig::sign(
        creds,
        Algorithm::RsaSha1,
        &[
            Signed {
                id: "TS-1",
                canonical: &timestamp,
                kind: None,
            },
            Signed {
                id: "TO-1",
                canonical: &to_el,
                kind: None,
            },
        ],
    )?;
    Ok(format!(
        "<a:Action xmlns:a=\"{NS_WSA}\" s:mustUnderstand=\"1\">{}</a:Action>\
         <a:MessageID xmlns:a=\"{NS_WSA}\">urn:uuid:{}</a:MessageID>{to_el}\
         <o:Security xmlns:o=\"{NS_WSSE}\" xmlns:u=\"{NS_WSU}\" s:mustUnderstand=\"1\">{timestamp}\
         <o:BinarySecurityToken u:Id=\"X509-1\" ValueType=\"{X509V3}\" EncodingType=\"{BASE64}\">{}\
         </o:BinarySecurityToken>\
         <ds:Signature xmlns:ds=\"{NS_DS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue>\
         <ds:KeyInfo><o:SecurityTokenReference><o:Reference URI=\"#X509-1\" ValueType=\"{X509V3}\"/>\
         </o:SecurityTokenReference></ds:KeyInfo></ds:Signature></o:Security>",
        esc(action),
        uuid::Uuid::new_v4(),
        B64.encode(&creds.cert_der),
        B64.encode(&value),
    ))
}
