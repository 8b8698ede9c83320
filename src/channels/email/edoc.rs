//! Signed containers (Latvian `.edoc`, `.asice`, Estonian `.bdoc`: all
//! ASiC-E, a ZIP with `mimetype`, `META-INF/manifest.xml` and one
//! `META-INF/*signatures*.xml` per signer). The container is the original
//! and is registered as it came; this module only lists what it holds and
//! who signed it, for the records officer and the rules. The signatures are
//! not validated (that is a qualified validator's job, e.g. SiVa).

use std::io::{Cursor, Read};

use base64::Engine as _;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// The media type an ASiC-E container's `mimetype` entry holds.
const ASIC_E: &str = "application/vnd.etsi.asic-e+zip";
/// Caps against ZIP bombs: the signature files are small.
const MAX_ENTRIES: usize = 1000;
const MAX_SIGNATURE_XML: u64 = 2 * 1024 * 1024;

/// What a signed container holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedContainer {
    /// `asic-e`, or `legacy-edoc` for the pre-2010 E-ME layout (flagged, not read).
    pub format: String,
    /// The signed data files (names inside the container).
    pub files: Vec<String>,
    pub signers: Vec<Signer>,
    /// Always false here: nothing was verified cryptographically.
    pub verified: bool,
}

/// One signature: the signer's name from the certificate's subject and the
/// claimed signing time. The personal code in the certificate's serial
/// number is personal data and is not copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<String>,
}

/// A signed container as an item's message lists it
/// (`metadata.email.signed_containers`): what it holds and who signed it,
/// or why it could not be read. Shown on the desk's item page and by the
/// item API, always as not verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedContainer {
    /// The attachment's display name.
    pub attachment: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<SignedContainer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The signed containers a stored message lists (none for other channels).
pub fn listed_in(msg: &crate::message::IntakeMessage) -> Vec<ListedContainer> {
    msg.metadata
        .get("email")
        .and_then(|m| m.get("signed_containers"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// Whether the bytes look like a ZIP and the name or `mimetype` like ASiC-E.
pub fn looks_signed(filename: &str, bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"PK\x03\x04") {
        return false;
    }
    let lower = filename.to_lowercase();
    [".edoc", ".asice", ".sce", ".bdoc"]
        .iter()
        .any(|e| lower.ends_with(e))
        || bytes.get(30..38) == Some(b"mimetype") && bytes[38..].starts_with(ASIC_E.as_bytes())
}

/// Lists a container's files and signers; the error says what is wrong with it.
pub fn inspect(bytes: &[u8]) -> Result<SignedContainer, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable ZIP container: {e}"))?;
    if zip.len() > MAX_ENTRIES {
        return Err(format!(
            "{} entries; more than {MAX_ENTRIES} is not a document",
            zip.len()
        ));
    }
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    if names.iter().any(|n| n.starts_with("EDoc/")) {
        return Ok(SignedContainer {
            format: "legacy-edoc".into(),
            files: names
                .iter()
                .filter_map(|n| n.strip_prefix("EDoc/Documents/"))
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
            signers: Vec::new(),
            verified: false,
        });
    }
    let mut mimetype = String::new();
    if let Ok(mut f) = zip.by_name("mimetype") {
        let _ = f.by_ref().take(200).read_to_string(&mut mimetype);
    }
    if mimetype.trim() != ASIC_E {
        return Err(format!(
            "the mimetype entry is {:?}, not {ASIC_E}",
            mimetype.trim()
        ));
    }
    let files: Vec<String> = names
        .iter()
        .filter(|n| *n != "mimetype" && !n.starts_with("META-INF/") && !n.ends_with('/'))
        .cloned()
        .collect();
    let mut signers = Vec::new();
    for name in names
        .iter()
        .filter(|n| n.starts_with("META-INF/") && n.contains("signatures") && n.ends_with(".xml"))
    {
        let mut xml = String::new();
        zip.by_name(name)
            .map_err(|e| format!("{name}: {e}"))?
            .take(MAX_SIGNATURE_XML)
            .read_to_string(&mut xml)
            .map_err(|e| format!("{name}: {e}"))?;
        signers.extend(signers_in(&xml).map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(SignedContainer {
        format: "asic-e".into(),
        files,
        signers,
        verified: false,
    })
}

/// The signers of one `signatures*.xml` (one `ds:Signature` each).
fn signers_in(xml: &str) -> Result<Vec<Signer>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut signers = Vec::new();
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let mut field: Option<&'static str> = None;
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Err(e) => return Err(format!("XML: {e}")),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => match e.local_name().as_ref() {
                "Signature" => current = Some((None, None)),
                "X509Certificate" => {
                    field = Some("cert");
                    text.clear();
                }
                "SigningTime" => {
                    field = Some("time");
                    text.clear();
                }
                _ => {}
            },
            Ok(Event::Text(t)) if field.is_some() => {
                text.push_str(&t);
            }
            Ok(Event::End(e)) => match (e.local_name().as_ref(), current.as_mut()) {
                ("X509Certificate", Some(c)) if c.0.is_none() => {
                    c.0 = Some(std::mem::take(&mut text));
                    field = None;
                }
                ("SigningTime", Some(c)) => {
                    c.1 = Some(std::mem::take(&mut text).trim().to_string());
                    field = None;
                }
                ("Signature", Some(_)) => {
                    if let Some((cert, time)) = current.take() {
                        let name = cert
                            .as_deref()
                            .map(subject_name)
                            .transpose()?
                            .unwrap_or_else(|| "(no certificate in the signature)".into());
                        signers.push(Signer {
                            name,
                            signing_time: time,
                        });
                    }
                }
                _ => field = None,
            },
            Ok(_) => {}
        }
    }
    Ok(signers)
}

/// The signer's name from a base64 DER certificate: CN, else given name and surname.
fn subject_name(b64: &str) -> Result<String, String> {
    let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("certificate is not base64: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("certificate cannot be read: {e}"))?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    if let Some(cn) = first(&mut subject.iter_common_name()) {
        return Ok(cn);
    }
    let given = first(&mut subject.iter_by_oid(&x509_parser::oid_registry::OID_X509_GIVEN_NAME))
        .unwrap_or_default();
    let surname = first(&mut subject.iter_by_oid(&x509_parser::oid_registry::OID_X509_SURNAME))
        .unwrap_or_default();
    Ok(format!("{given} {surname}").trim().to_string())
}
