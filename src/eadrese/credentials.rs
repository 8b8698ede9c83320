//! The institution's client certificate and private key: the one identity
//! used for mutual TLS, the WS-Security signature, the XAdES signature and
//! the unwrapping of inbound content keys. Read once from PEM (files or
//! environment, resolved by the channel's configuration).

use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use sha2::Digest;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the client certificate is not a PEM X.509 certificate: {0}")]
    Certificate(String),
    #[error("the private key is neither PKCS#8 nor PKCS#1 RSA PEM")]
    Key,
    #[error("the private key does not belong to the client certificate")]
    Mismatch,
}

/// What signing and TLS need of the institution's certificate.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) private: RsaPrivateKey,
    /// The certificate (DER) as sent in BinarySecurityToken and KeyInfo.
    pub(crate) cert_der: Vec<u8>,
    /// Issuer DN (RFC 4514) and decimal serial, for XAdES IssuerSerial.
    pub(crate) issuer: String,
    pub(crate) serial: String,
    /// Certificate and key PEM, concatenated: the TLS client identity.
    pub(crate) identity_pem: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("issuer", &self.issuer)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads a PEM certificate and its PEM private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CredentialsError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| CredentialsError::Certificate(e.to_string()))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| CredentialsError::Certificate(e.to_string()))?;
        let private = RsaPrivateKey::from_pkcs8_pem(key_pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(key_pem))
            .map_err(|_| CredentialsError::Key)?;
        let public = rsa::RsaPublicKey::from(&private);
        let spki = cert.public_key().raw;
        let ours = rsa::pkcs8::EncodePublicKey::to_public_key_der(&public)
            .map_err(|_| CredentialsError::Key)?;
        if ours.as_bytes() != spki {
            return Err(CredentialsError::Mismatch);
        }
        let issuer = cert.issuer().to_string();
        let serial = cert.serial.to_str_radix(10);
        let mut identity_pem = cert_pem.trim().as_bytes().to_vec();
        identity_pem.push(b'\n');
        identity_pem.extend_from_slice(key_pem.trim().as_bytes());
        identity_pem.push(b'\n');
        Ok(Self {
            private,
            cert_der: pem.contents.clone(),
            issuer,
            serial,
            identity_pem,
        })
    }

    /// SHA-1 thumbprint of the certificate, as `EncryptionInfo` names it.
    pub fn thumbprint_sha1(&self) -> Vec<u8> {
        sha1::Sha1::digest(&self.cert_der).to_vec()
    }
}
