//! XAdES-BES (1.3.2) signing of a DIV envelope's `SenderDocument`: an
//! enveloping XML-DSig signature in the envelope's `Signatures`, RSA-SHA512
//! over SHA-512 digests of the SenderDocument and of the signature's
//! `SignedProperties` (signing time, signing certificate digest and
//! issuer/serial), exclusive C14N throughout, the certificate in `KeyInfo`.
//!
//! The profile's names (namespaces, reference type, ids) are kept here so
//! that verifying XAdES (of `.edoc` containers, for instance) can live next
//! to signing and check the same shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};

use super::credentials::Credentials;
use super::dsig::{self, Algorithm, NS_DS, SignError, Signed, esc};

pub(crate) const NS_XADES: &str = "http://uri.etsi.org/01903/v1.3.2#";
/// `Type` of the reference to the SignedProperties.
pub(crate) const SIGNED_PROPERTIES_TYPE: &str = "http://uri.etsi.org/01903#SignedProperties";
/// The `Id` our SenderDocument carries (the signature refers to it).
pub(crate) const SENDER_DOCUMENT_ID: &str = "SenderSection";
const SIGNATURE_ID: &str = "SenderSignature";
const SIGNED_PROPERTIES_ID: &str = "SenderSignature-SignedProperties";

/// The `Signatures` element's content for a SenderDocument whose exclusive
/// canonical form is `sender_document` (its `Id` is [`SENDER_DOCUMENT_ID`]).
pub(crate) fn sign_sender_document(
    creds: &Credentials,
    sender_document: &str,
    now: DateTime<Utc>,
) -> Result<String, SignError> {
    let alg = Algorithm::RsaSha512;
    let properties = dsig::exc_c14n(&format!(
        "<xades:SignedProperties xmlns:ds=\"{NS_DS}\" xmlns:xades=\"{NS_XADES}\" \
         Id=\"{SIGNED_PROPERTIES_ID}\"><xades:SignedSignatureProperties>\
         <xades:SigningTime>{}</xades:SigningTime><xades:SigningCertificate><xades:Cert>\
         <xades:CertDigest><ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue>\
         </xades:CertDigest><xades:IssuerSerial><ds:X509IssuerName>{}</ds:X509IssuerName>\
         <ds:X509SerialNumber>{}</ds:X509SerialNumber></xades:IssuerSerial></xades:Cert>\
         </xades:SigningCertificate></xades:SignedSignatureProperties></xades:SignedProperties>",
        now.format("%Y-%m-%dT%H:%M:%SZ"),
        alg.digest_uri(),
        B64.encode(alg.digest(&creds.cert_der)),
        esc(&creds.issuer),
        esc(&creds.serial),
    ))?;
    let (signed_info, value) = dsig::sign(
        creds,
        alg,
        &[
            Signed {
                id: SENDER_DOCUMENT_ID,
                canonical: sender_document,
                kind: None,
            },
            Signed {
                id: SIGNED_PROPERTIES_ID,
                canonical: &properties,
                kind: Some(SIGNED_PROPERTIES_TYPE),
            },
        ],
    )?;
    Ok(format!(
        "<ds:Signature xmlns:ds=\"{NS_DS}\" Id=\"{SIGNATURE_ID}\">{signed_info}\
         <ds:SignatureValue>{}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>\
         <ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
         <ds:Object><xades:QualifyingProperties xmlns:xades=\"{NS_XADES}\" Target=\"#{SIGNATURE_ID}\">\
         {properties}</xades:QualifyingProperties></ds:Object></ds:Signature>",
        B64.encode(&value),
        B64.encode(&creds.cert_der),
    ))
}
