//! XML-DSig *verification*: one `ds:Signature` whose references point at
//! detached files (an ASiC-E container's data files) and at elements of the
//! same document (XAdES `SignedProperties`), its signature value, and the
//! signer's certificate path to a configured trust list.
//!
//! The XML-DSig processing (canonicalisation, transforms, digests, RSA and
//! ECDSA signature values, X.509 path validation) is the `xml-sec` crate's;
//! this module only feeds it the files and the trust anchors and turns its
//! answer into a verdict a records officer can read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use xml_sec::xmldsig::verify::{DsigError, DsigStatus, FailureReason, UriTypeSet};
use xml_sec::xmldsig::{DefaultKeyResolver, KeyTrustEvidence, VerifyContext};

/// The outcome for one signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// Signature value, every reference's digest and the certificate path
    /// to a trust anchor (at the signing time) check out.
    Verified,
    /// Checked and wrong: the reason says what.
    Failed(String),
    /// Could not be checked (unsupported algorithm, legacy format …).
    NotCheckable(String),
}

impl Verdict {
    /// `verified`, `failed` or `not_checkable` (also the desk's CSS class).
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Verified => "verified",
            Verdict::Failed(_) => "failed",
            Verdict::NotCheckable(_) => "not_checkable",
        }
    }

    /// The desk catalog's key for [`Self::kind`].
    pub fn label_key(&self) -> &'static str {
        match self {
            Verdict::Verified => "signed.verified",
            Verdict::Failed(_) => "signed.failed",
            Verdict::NotCheckable(_) => "signed.not_checkable",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Verified => None,
            Verdict::Failed(r) | Verdict::NotCheckable(r) => Some(r),
        }
    }
}

/// Why a trust list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustListError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate file: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: holds no certificate")]
    Empty { path: PathBuf },
}

/// The certificates accepted as trust anchors (DER).
#[derive(Debug, Clone, Default)]
pub struct TrustList {
    anchors: Vec<Vec<u8>>,
}

impl TrustList {
    /// Reads PEM files; a directory contributes its `*.pem` and `*.crt` files.
    pub fn load(paths: &[PathBuf]) -> Result<Self, TrustListError> {
        let mut anchors = Vec::new();
        for path in paths {
            if path.is_dir() {
                let read = |source| TrustListError::Read {
                    path: path.clone(),
                    source,
                };
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(read)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "pem" || e == "crt"))
                    .collect();
                files.sort();
                for file in files {
                    anchors.extend(pem_certificates(&file)?);
                }
            } else {
                anchors.extend(pem_certificates(path)?);
            }
        }
        Ok(TrustList { anchors })
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

fn pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, TrustListError> {
    let bytes = std::fs::read(path).map_err(|source| TrustListError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut ders = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem = pem.map_err(|e| TrustListError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if pem.label == "CERTIFICATE" {
            pem.parse_x509().map_err(|e| TrustListError::Pem {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            ders.push(pem.contents);
        }
    }
    if ders.is_empty() {
        return Err(TrustListError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(ders)
}

/// Verifies the one `ds:Signature` in `xml`. `files` are the detached data
/// the references name (by their URI, as in an ASiC-E container); `signed_at`
/// is the time the certificate path is judged at (the claimed signing time).
pub fn verify_detached(
    xml: &str,
    files: &HashMap<String, Vec<u8>>,
    trust: &TrustList,
    signed_at: Option<SystemTime>,
) -> Verdict {
    match check(xml, files, trust, signed_at, true) {
        Ok(v) => v,
        Err(e) if is_unsupported(&e) => Verdict::NotCheckable(e.to_string()),
        Err(DsigError::KeyResolution(e)) => {
            // The path to an anchor failed: say whether the signature itself
            // holds (then it is the certificate that is the problem).
            match check(xml, files, trust, signed_at, false) {
                Ok(Verdict::Verified) => Verdict::Failed(certificate_problem(xml, signed_at, &e)),
                Ok(other) => other,
                Err(e) => Verdict::Failed(e.to_string()),
            }
        }
        Err(e) => Verdict::Failed(e.to_string()),
    }
}

fn check(
    xml: &str,
    files: &HashMap<String, Vec<u8>>,
    trust: &TrustList,
    signed_at: Option<SystemTime>,
    chain: bool,
) -> Result<Verdict, DsigError> {
    let mut policy = xml_sec::policy::VerificationPolicy::default();
    policy.key_trust.verification_time = signed_at;
    let resolver = if chain {
        policy.key_trust.verify_x509_chains = true;
        DefaultKeyResolver::new(xml_sec::xmldsig::keys::KeyResolverConfig {
            trusted_certs: trust.anchors.clone(),
            ..Default::default()
        })
    } else {
        policy.key_trust.mode = xml_sec::policy::VerificationTrustMode::CryptographicOnly;
        DefaultKeyResolver::default()
    };
    let result = VerifyContext::new()
        .policy(policy)
        .allowed_uri_types(UriTypeSet::ALL)
        .external_resources(files)
        .key_resolver(&resolver)
        .verify(xml)?;
    let uri_of = |i: usize| {
        result
            .signed_info_references
            .get(i)
            .map(|r| r.uri.clone())
            .unwrap_or_else(|| format!("reference {}", i + 1))
    };
    Ok(match result.status {
        DsigStatus::Valid => match result.key_trust {
            KeyTrustEvidence::ValidatedX509(_) => Verdict::Verified,
            _ if !chain => Verdict::Verified,
            _ => Verdict::Failed("certificate not trusted".into()),
        },
        DsigStatus::Invalid(FailureReason::ReferenceDigestMismatch { ref_index }) => {
            Verdict::Failed(format!("digest of {} differs", uri_of(ref_index)))
        }
        DsigStatus::Invalid(FailureReason::ReferenceProcessingFailure { ref_index }) => {
            Verdict::Failed(format!("{} cannot be read", uri_of(ref_index)))
        }
        DsigStatus::Invalid(FailureReason::ReferencePolicyViolation { ref_index }) => {
            Verdict::NotCheckable(format!(
                "{} is referenced in a way not checked",
                uri_of(ref_index)
            ))
        }
        DsigStatus::Invalid(FailureReason::SignatureMismatch) => {
            Verdict::Failed("bad signature value".into())
        }
        DsigStatus::Invalid(FailureReason::KeyNotFound) => {
            Verdict::Failed("certificate not trusted".into())
        }
        other => Verdict::Failed(format!("{other:?}")),
    })
}

/// An algorithm this verifier does not implement, or one the crate's
/// secure defaults refuse (SHA-1 and other legacy methods): not checkable
/// here rather than wrong.
fn is_unsupported(e: &DsigError) -> bool {
    use xml_sec::xmldsig::parse::ParseError;
    matches!(
        e,
        DsigError::ParseSignedInfo(
            ParseError::UnsupportedAlgorithm { .. }
                | ParseError::AccountedUnsupportedAlgorithm { .. }
        ) | DsigError::Policy(_)
    )
}

/// Why the signer's certificate did not chain: expired or not yet valid
/// at the signing time, else not trusted.
fn certificate_problem(
    xml: &str,
    signed_at: Option<SystemTime>,
    e: &xml_sec::xmldsig::keys::KeyResolutionError,
) -> String {
    let at = signed_at.unwrap_or_else(SystemTime::now);
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if let Some(der) = first_certificate(xml)
        && let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der)
        && let Ok(t) = x509_parser::time::ASN1Time::from_timestamp(secs)
    {
        if t > cert.validity().not_after {
            return "certificate expired at signing time".into();
        }
        if t < cert.validity().not_before {
            return "certificate not yet valid at signing time".into();
        }
    }
    format!("certificate not trusted ({e})")
}

/// The first `X509Certificate` of the signature's `KeyInfo` (DER).
fn first_certificate(xml: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let doc = roxmltree::Document::parse(xml).ok()?;
    let node = doc
        .descendants()
        .find(|n| n.tag_name().name() == "X509Certificate")?;
    let clean: String = node
        .text()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}
