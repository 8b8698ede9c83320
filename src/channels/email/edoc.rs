//! Signed containers (Latvian `.edoc`, `.asice`, Estonian `.bdoc`: all
//! ASiC-E, a ZIP with `mimetype`, `META-INF/manifest.xml` and one
//! `META-INF/*signatures*.xml` per signer). The container is the original
//! and is registered as it came; this module only lists what it holds and
//! who signed it, for the records officer and the rules, and checks each
//! signature ([`verify`], with [`crate::xmldsig`]): the signature value, the
//! digests of the signed files and of the XAdES `SignedProperties`, and the
//! signer's certificate path to the configured trust list at the claimed
//! signing time. Revocation (OCSP, CRL) and timestamp tokens are not
//! checked: that, and qualified status, remains a qualified validator's job
//! (e.g. SiVa).

use std::io::{Cursor, Read};

use std::collections::HashMap;

use base64::Engine as _;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use crate::xmldsig::{TrustList, Verdict};

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
    /// True when every signature was verified (see `verification`).
    pub verified: bool,
    /// The container's verdict: verified when every signature is; else the
    /// first failure, else why it could not be checked. Absent on
    /// containers listed before verification existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verdict>,
}

/// One signature: the signer's name from the certificate's subject and the
/// claimed signing time. The personal code in the certificate's serial
/// number is personal data and is not copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<String>,
    /// This signature's verdict (absent before verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verdict>,
}

/// A signed container as an item's message lists it
/// (`metadata.email.signed_containers`): what it holds and who signed it,
/// or why it could not be read. Shown on the desk's item page and by the
/// item API with each signature's verdict.
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
    let Some(meta) = msg.meta::<super::EmailMeta>() else {
        return Vec::new();
    };
    meta.signed_containers
        .iter()
        .filter_map(|v| ListedContainer::deserialize(v).ok())
        .collect()
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

/// The signature file `name` of a container, at most `MAX_SIGNATURE_XML`.
fn signature_xml(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<String, String> {
    let mut xml = String::new();
    zip.by_name(name)
        .map_err(|e| format!("{name}: {e}"))?
        .take(MAX_SIGNATURE_XML)
        .read_to_string(&mut xml)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(xml)
}

/// The `META-INF/*signatures*.xml` entries, in the order [`inspect`] reads them.
fn signature_entries(names: &[String]) -> impl Iterator<Item = &String> {
    names
        .iter()
        .filter(|n| n.starts_with("META-INF/") && n.contains("signatures") && n.ends_with(".xml"))
}

/// Checks every signature of a container [`inspect`] listed (from the same
/// bytes) and records the verdicts on its signers and on the container.
pub fn verify(bytes: &[u8], container: &mut SignedContainer, trust: &TrustList) {
    let summary = if container.format == "legacy-edoc" {
        Verdict::NotCheckable("legacy E-ME .edoc format (before 2010): not verified".into())
    } else {
        match signature_verdicts(bytes, trust) {
            Err(why) => Verdict::NotCheckable(why),
            Ok(verdicts) => {
                for (signer, verdict) in container.signers.iter_mut().zip(verdicts) {
                    signer.verification = Some(verdict);
                }
                summarise(&container.signers)
            }
        }
    };
    container.verified = summary == Verdict::Verified;
    container.verification = Some(summary);
}

fn summarise(signers: &[Signer]) -> Verdict {
    if signers.is_empty() {
        return Verdict::NotCheckable("the container holds no signature".into());
    }
    let verdicts = signers.iter().map(|s| (&s.name, s.verification.as_ref()));
    let mut not_checkable = None;
    for (name, v) in verdicts {
        match v {
            Some(Verdict::Verified) => {}
            Some(Verdict::Failed(why)) => return Verdict::Failed(format!("{name}: {why}")),
            Some(Verdict::NotCheckable(why)) => {
                not_checkable.get_or_insert_with(|| format!("{name}: {why}"));
            }
            None => {
                not_checkable.get_or_insert_with(|| format!("{name}: not checked"));
            }
        }
    }
    not_checkable.map_or(Verdict::Verified, Verdict::NotCheckable)
}

/// One verdict per `ds:Signature`, in the order [`signers_in`] lists them.
fn signature_verdicts(bytes: &[u8], trust: &TrustList) -> Result<Vec<Verdict>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable ZIP container: {e}"))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut files = HashMap::new();
    let mut total: u64 = 0;
    for name in names
        .iter()
        .filter(|n| *n != "mimetype" && !n.starts_with("META-INF/") && !n.ends_with('/'))
    {
        let mut data = Vec::new();
        let mut f = zip.by_name(name).map_err(|e| format!("{name}: {e}"))?;
        // The container itself was already accepted at its size; this only
        // bounds what a compressed entry may expand to.
        f.by_ref()
            .take(MAX_UNPACKED.saturating_sub(total) + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("{name}: {e}"))?;
        total += data.len() as u64;
        if total > MAX_UNPACKED {
            return Err(format!(
                "the signed files unpack to more than {} MiB",
                MAX_UNPACKED >> 20
            ));
        }
        let encoded = percent_encoding::utf8_percent_encode(name, URI_PATH).to_string();
        if encoded != *name {
            files.insert(encoded, data.clone());
        }
        files.insert(name.clone(), data);
    }
    let mut verdicts = Vec::new();
    for name in signature_entries(&names) {
        let xml = signature_xml(&mut zip, name)?;
        let signers = signers_in(&xml).map_err(|e| format!("{name}: {e}"))?;
        match signers.as_slice() {
            [] => {}
            [one] => {
                let at = one
                    .signing_time
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(std::time::SystemTime::from);
                verdicts.push(crate::xmldsig::verify_detached(&xml, &files, trust, at));
            }
            several => verdicts.extend(several.iter().map(|_| {
                Verdict::NotCheckable(format!(
                    "{name} holds {} signatures; only one a file is checked",
                    several.len()
                ))
            })),
        }
    }
    Ok(verdicts)
}

/// What a file name keeps unescaped in a reference URI (RFC 3986 path characters).
const URI_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// The most the signed files of one container may unpack to for checking.
const MAX_UNPACKED: u64 = 256 * 1024 * 1024;

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
            verification: None,
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
    for name in signature_entries(&names) {
        let xml = signature_xml(&mut zip, name)?;
        signers.extend(signers_in(&xml).map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(SignedContainer {
        format: "asic-e".into(),
        files,
        signers,
        verified: false,
        verification: None,
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
                            verification: None,
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
