//! XML-DSig signing shared by the WS-Security header ([`super::wssec`]) and
//! the XAdES envelope signature ([`super::xades`]).
//!
//! Every signed element is written by us as a self-contained fragment (its
//! namespaces declared on itself), put through exclusive XML
//! canonicalisation by the `xml-sec` crate, digested, and the canonical form
//! is what goes into the document. Exclusive C14N of an element does not
//! depend on its ancestors' namespace declarations, so a verifier that
//! canonicalises the element in place gets the same bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::Pkcs1v15Sign;
use sha2::Digest;

use super::credentials::Credentials;

pub(crate) const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(crate) const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("exclusive canonicalisation failed: {0}")]
    Canonical(String),
    #[error("RSA signing failed: {0}")]
    Rsa(rsa::Error),
}

/// The signature and digest algorithms of one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// WS-Security header: RSA-SHA1 over SHA-1 digests (as the service asks).
    RsaSha1,
    /// XAdES on the SenderDocument: RSA-SHA512 over SHA-512 digests.
    RsaSha512,
}

impl Algorithm {
    fn signature_uri(self) -> &'static str {
        match self {
            Algorithm::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            Algorithm::RsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        }
    }

    pub(crate) fn digest_uri(self) -> &'static str {
        match self {
            Algorithm::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            Algorithm::RsaSha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::RsaSha1 => sha1::Sha1::digest(data).to_vec(),
            Algorithm::RsaSha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// The exclusive canonical form (without comments) of a self-contained fragment.
pub(crate) fn exc_c14n(fragment: &str) -> Result<String, SignError> {
    use xml_sec::c14n::{C14nAlgorithm, C14nMode, canonicalize_xml};
    let algo = C14nAlgorithm::new(C14nMode::Exclusive1_0, false);
    let bytes = canonicalize_xml(fragment.as_bytes(), &algo)
        .map_err(|e| SignError::Canonical(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| SignError::Canonical(e.to_string()))
}

/// One element to sign: its `Id`, its canonical form, and the reference's `Type`.
pub(crate) struct Signed<'a> {
    pub id: &'a str,
    pub canonical: &'a str,
    pub kind: Option<&'a str>,
}

/// `ds:SignedInfo` over `parts` (each with the exclusive C14N transform),
/// canonical, and its signature value.
pub(crate) fn sign(
    creds: &Credentials,
    alg: Algorithm,
    parts: &[Signed<'_>],
) -> Result<(String, Vec<u8>), SignError> {
    let mut info = format!(
        "<ds:SignedInfo xmlns:ds=\"{NS_DS}\"><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
         <ds:SignatureMethod Algorithm=\"{}\"/>",
        alg.signature_uri()
    );
    for p in parts {
        let kind = p.kind.map(|t| format!(" Type=\"{t}\"")).unwrap_or_default();
        info.push_str(&format!(
            "<ds:Reference URI=\"#{}\"{kind}><ds:Transforms><ds:Transform Algorithm=\"{EXC_C14N}\"/>\
             </ds:Transforms><ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue>\
             </ds:Reference>",
            p.id,
            alg.digest_uri(),
            B64.encode(alg.digest(p.canonical.as_bytes()))
        ));
    }
    info.push_str("</ds:SignedInfo>");
    let canonical = exc_c14n(&info)?;
    let hashed = alg.digest(canonical.as_bytes());
    let scheme = match alg {
        Algorithm::RsaSha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        Algorithm::RsaSha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
    };
    let value = creds
        .private
        .sign(scheme, &hashed)
        .map_err(SignError::Rsa)?;
    Ok((canonical, value))
}

/// Text escaped for an XML element or attribute value.
pub(crate) fn esc(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}
