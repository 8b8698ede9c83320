//! The e-adrese protocol: a client of the state's DIV "UnifiedService",
//! kept apart from the channel that uses it (`channels::eadrese`) and from
//! storage (`registry::eadrese`). Built from the public description of the
//! interface (see the README): one validation run against the state's test
//! environment (`pietura eadrese check`) must confirm it.
//!
//! - [`soap`]: SOAP 1.2 envelopes, operations and their actions, answers and faults.
//! - [`dsig`]: XML-DSig signing (exclusive C14N by the `xml-sec` crate, RSA).
//! - [`wssec`]: the WS-Security header (Timestamp, BinarySecurityToken, signature).
//! - [`xades`]: XAdES-BES signing of a sent envelope's SenderDocument.
//! - [`crypto`]: inbound RSA-OAEP key unwrap, AES-CBC, gzip, digest check.
//! - [`credentials`]: the institution's certificate and key.
//! - [`oauth`]: the OAuth2 client-credentials token some environments require.
//! - [`client`]: the operations over mutual TLS.
//! - [`directory`]: the addressee directory cache, synced under a lease.

pub mod client;
pub mod credentials;
pub mod crypto;
pub mod directory;
pub mod dsig;
pub mod oauth;
pub mod soap;
pub mod wssec;
pub mod xades;

pub use client::{DivClient, DivEndpoint, DivError, InboundMessage, Outbound, OutboundFile};
pub use credentials::{Credentials, CredentialsError};
pub use oauth::{OauthClient, TokenError};
