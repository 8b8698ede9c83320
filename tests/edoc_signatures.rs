//! Signature verification of signed containers (.edoc / .asice / .bdoc):
//! containers signed here under a test CA with a real XAdES signature
//! (xmlsec1), checked by `edoc::inspect` + `edoc::verify`.

mod support;

use pietura::channels::email::edoc;
use pietura::xmldsig::{TrustList, Verdict};
use support::edoc::{Pki, container, pki, xades};

const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
/// Signed now: the test certificates are issued just before.
fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn trust(pki: &Pki) -> TrustList {
    TrustList::load(std::slice::from_ref(&pki.ca)).expect("trust list")
}

fn checked(bytes: &[u8], trust: &TrustList) -> edoc::SignedContainer {
    let mut c = edoc::inspect(bytes).expect("container lists");
    edoc::verify(bytes, &mut c, trust);
    c
}

const FILES: &[(&str, &[u8])] = &[
    ("iesniegums.txt", "Lūdzu izsniegt būvatļauju.".as_bytes()),
    ("pielikums.pdf", b"%PDF-1.4 test attachment"),
];

#[test]
fn a_good_container_verifies() {
    let ca = pki("Pietura test CA", "ANNA PARAUGA");
    let sig = xades(&ca, FILES, &now(), ECDSA_SHA256);
    let c = checked(&container(FILES, &sig), &trust(&ca));
    assert_eq!(c.signers.len(), 1, "{c:?}");
    assert_eq!(c.signers[0].name, "ANNA PARAUGA");
    assert_eq!(c.signers[0].verification, Some(Verdict::Verified), "{c:?}");
    assert_eq!(c.verification, Some(Verdict::Verified), "{c:?}");
    assert!(c.verified);
}

#[test]
fn a_tampered_data_file_fails_naming_the_file() {
    let ca = pki("Pietura test CA", "ANNA PARAUGA");
    let sig = xades(&ca, FILES, &now(), ECDSA_SHA256);
    let tampered: &[(&str, &[u8])] = &[FILES[0], ("pielikums.pdf", b"%PDF-1.4 changed later")];
    let c = checked(&container(tampered, &sig), &trust(&ca));
    match &c.signers[0].verification {
        Some(Verdict::Failed(why)) => {
            assert!(why.contains("digest of pielikums.pdf differs"), "{why}")
        }
        other => panic!("expected a failure naming the file, got {other:?}"),
    }
    assert!(!c.verified);
    assert!(matches!(c.verification, Some(Verdict::Failed(_))), "{c:?}");
}

#[test]
fn a_changed_signed_property_fails() {
    let ca = pki("Pietura test CA", "ANNA PARAUGA");
    let at = now();
    let sig = String::from_utf8(xades(&ca, FILES, &at, ECDSA_SHA256)).expect("utf-8");
    let forged = sig.replace(&at, "2099-01-01T10:00:00Z");
    assert_ne!(sig, forged);
    let c = checked(&container(FILES, forged.as_bytes()), &trust(&ca));
    match &c.signers[0].verification {
        Some(Verdict::Failed(why)) => assert!(why.contains("#S0-SignedProperties"), "{why}"),
        other => panic!("expected a failed SignedProperties digest, got {other:?}"),
    }
}

/// The `ds:SignatureValue` element of a signature file.
fn signature_value(xml: &str) -> &str {
    let start = xml.find("<ds:SignatureValue").expect("SignatureValue");
    let end = xml
        .find("</ds:SignatureValue>")
        .expect("end of SignatureValue");
    &xml[start..end]
}

#[test]
fn a_signature_value_over_other_signed_info_is_a_bad_signature_value() {
    let ca = pki("Pietura test CA", "ANNA PARAUGA");
    let a = String::from_utf8(xades(&ca, FILES, &now(), ECDSA_SHA256)).expect("utf-8");
    let b =
        String::from_utf8(xades(&ca, FILES, "2026-12-01T00:00:01Z", ECDSA_SHA256)).expect("utf-8");
    let swapped = a.replace(signature_value(&a), signature_value(&b));
    assert_ne!(a, swapped);
    let c = checked(&container(FILES, swapped.as_bytes()), &trust(&ca));
    assert_eq!(
        c.signers[0].verification,
        Some(Verdict::Failed("bad signature value".into())),
        "{c:?}"
    );
}

#[test]
fn a_signer_under_a_foreign_ca_is_not_trusted() {
    let ours = pki("Pietura test CA", "ANNA PARAUGA");
    let foreign = pki("Foreign CA", "JĀNIS SVEŠAIS");
    let sig = xades(&foreign, FILES, &now(), ECDSA_SHA256);
    let c = checked(&container(FILES, &sig), &trust(&ours));
    match &c.signers[0].verification {
        Some(Verdict::Failed(why)) => assert!(why.contains("certificate not trusted"), "{why}"),
        other => panic!("expected not trusted, got {other:?}"),
    }
    // The same container is fine for whoever trusts that CA.
    assert!(checked(&container(FILES, &sig), &trust(&foreign)).verified);
}

#[test]
fn a_signing_time_outside_the_certificate_validity_fails_saying_so() {
    let ca = pki("Pietura test CA", "ANNA PARAUGA");
    for (at, said) in [
        ("2020-01-01T10:00:00Z", "not yet valid at signing time"),
        ("2099-01-01T10:00:00Z", "expired at signing time"),
    ] {
        let sig = xades(&ca, FILES, at, ECDSA_SHA256);
        let c = checked(&container(FILES, &sig), &trust(&ca));
        match &c.signers[0].verification {
            Some(Verdict::Failed(why)) => assert!(why.contains(said), "{at}: {why}"),
            other => panic!("{at}: expected {said:?}, got {other:?}"),
        }
    }
}

#[test]
fn a_legacy_e_me_container_is_not_checkable() {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in [
        ("EDoc/Documents/iesniegums.doc", &b"old"[..]),
        ("EDoc/Signatures/signature1.xml", &b"<x/>"[..]),
    ] {
        zip.start_file(name, opts).expect("zip");
        std::io::Write::write_all(&mut zip, data).expect("zip");
    }
    let bytes = zip.finish().expect("zip").into_inner();
    let ca = pki("Pietura test CA", "ANNA PARAUGA");
    let c = checked(&bytes, &trust(&ca));
    match &c.verification {
        Some(Verdict::NotCheckable(why)) => assert!(why.contains("legacy"), "{why}"),
        other => panic!("expected not checkable, got {other:?}"),
    }
    assert!(!c.verified);
}

#[test]
fn an_unsupported_signature_algorithm_is_not_checkable() {
    let ca = pki("Pietura test CA", "ANNA PARAUGA");
    let sig = String::from_utf8(xades(&ca, FILES, &now(), ECDSA_SHA256)).expect("utf-8");
    let unknown = sig.replace(ECDSA_SHA256, "http://example.org/xmldsig#gost-unknown");
    let c = checked(&container(FILES, unknown.as_bytes()), &trust(&ca));
    match &c.signers[0].verification {
        Some(Verdict::NotCheckable(why)) => assert!(!why.is_empty()),
        other => panic!("expected not checkable, got {other:?}"),
    }
}

#[test]
fn a_trust_list_that_is_not_pem_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    let err = TrustList::load(std::slice::from_ref(&bad)).expect_err("refused");
    assert!(err.to_string().contains("bad.pem"), "{err}");
}
