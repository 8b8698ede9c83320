//! Signed containers (ASiC-E, as `.edoc`/`.asice`) the tests make
//! themselves: a test CA and a signer with ECDSA P-256 keys made with the
//! openssl command, a real XAdES signature made by xmlsec1 over the data
//! files (detached references) and the `SignedProperties`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// A CA and one signer certified by it.
pub struct Pki {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub signer_key: PathBuf,
    pub signer_cert: PathBuf,
}

/// A fresh CA `CN={ca_name}` and a signer `CN={signer}` (no extended key usage).
pub fn pki(ca_name: &str, signer: &str) -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let run = |args: &[&str]| super::openssl(root, args);
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca.key",
    ]);
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-days",
        "3650",
        "-subj",
        &format!("/CN={ca_name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "signer.ec",
    ]);
    run(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "signer.ec",
        "-out",
        "signer.key",
    ]);
    run(&[
        "req",
        "-new",
        "-key",
        "signer.key",
        "-utf8",
        "-subj",
        &format!("/CN={signer}"),
        "-out",
        "signer.csr",
    ]);
    std::fs::write(
        root.join("signer.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "signer.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "365",
        "-extfile",
        "signer.ext",
        "-out",
        "signer.pem",
    ]);
    Pki {
        ca: root.join("ca.pem"),
        signer_key: root.join("signer.key"),
        signer_cert: root.join("signer.pem"),
        dir,
    }
}

/// The ETSI namespaces of an ASiC-E signature file.
const TEMPLATE_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?><asic:XAdESSignatures xmlns:asic="http://uri.etsi.org/02918/v1.2.1#" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xades="http://uri.etsi.org/01903/v1.3.2#"><ds:Signature Id="S0"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/><ds:SignatureMethod Algorithm="SIGNATURE_METHOD"/>"#;

/// A XAdES signature (xmlsec1) over `files` and the SignedProperties with
/// `signing_time`; `method` is the SignatureMethod URI.
pub fn xades(pki: &Pki, files: &[(&str, &[u8])], signing_time: &str, method: &str) -> Vec<u8> {
    let root = pki.dir.path();
    let mut xml = TEMPLATE_HEAD.replace("SIGNATURE_METHOD", method);
    for (i, (name, _)) in files.iter().enumerate() {
        xml.push_str(&format!(
            r#"<ds:Reference Id="R{i}" URI="{name}"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference>"#
        ));
    }
    xml.push_str(&format!(
        r##"<ds:Reference Type="http://uri.etsi.org/01903#SignedProperties" URI="#S0-SignedProperties"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2006/12/xml-c14n11"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data></ds:X509Data></ds:KeyInfo><ds:Object><xades:QualifyingProperties Target="#S0"><xades:SignedProperties Id="S0-SignedProperties"><xades:SignedSignatureProperties><xades:SigningTime>{signing_time}</xades:SigningTime></xades:SignedSignatureProperties></xades:SignedProperties></xades:QualifyingProperties></ds:Object></ds:Signature></asic:XAdESSignatures>"##
    ));
    std::fs::write(root.join("template.xml"), xml).expect("template");
    let mut cmd = Command::new("xmlsec1");
    cmd.current_dir(root)
        .arg("sign")
        .arg("--privkey-pem")
        .arg(format!(
            "{},{}",
            pki.signer_key.display(),
            pki.signer_cert.display()
        ));
    cmd.args([
        "--id-attr:Id",
        "http://uri.etsi.org/01903/v1.3.2#:SignedProperties",
    ]);
    for (i, (name, data)) in files.iter().enumerate() {
        let path = root.join(format!("data{i}"));
        std::fs::write(&path, data).expect("data file");
        cmd.arg(format!("--url-map:{name}")).arg(&path);
    }
    cmd.args(["--output", "signed.xml", "template.xml"]);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("xmlsec1 (apt-get install xmlsec1)");
    assert!(
        out.status.success(),
        "xmlsec1 sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(root.join("signed.xml")).expect("signed.xml")
}

/// An ASiC-E ZIP: `mimetype` first and stored, the files, the manifest and
/// the signature file.
pub fn container(files: &[(&str, &[u8])], signature: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = zip::write::SimpleFileOptions::default();
    zip.start_file("mimetype", stored).expect("zip");
    zip.write_all(b"application/vnd.etsi.asic-e+zip")
        .expect("zip");
    let mut manifest = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.etsi.asic-e+zip"/>"#,
    );
    for (name, data) in files {
        zip.start_file(*name, deflated).expect("zip");
        zip.write_all(data).expect("zip");
        manifest.push_str(&format!(
            r#"<manifest:file-entry manifest:full-path="{name}" manifest:media-type="application/octet-stream"/>"#
        ));
    }
    manifest.push_str("</manifest:manifest>");
    zip.start_file("META-INF/manifest.xml", deflated)
        .expect("zip");
    zip.write_all(manifest.as_bytes()).expect("zip");
    zip.start_file("META-INF/signatures0.xml", deflated)
        .expect("zip");
    zip.write_all(signature).expect("zip");
    zip.finish().expect("zip").into_inner()
}

/// A citizen's mail (raw RFC 5322) with `attachments` (name, bytes) in
/// base64, as signed containers arrive.
pub fn mail_with(subject: &str, attachments: &[(&str, &[u8])]) -> Vec<u8> {
    use base64::Engine as _;
    let mut raw = format!(
        "From: Anna Parauga <anna@example.com>\r\nTo: dokumenti@example.lv\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0200\r\nMessage-ID: <{}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nIesniegums pielikumā.\r\n",
        uuid::Uuid::now_v7()
    );
    for (name, bytes) in attachments {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        raw.push_str(&format!(
            "--b\r\nContent-Type: application/vnd.etsi.asic-e+zip; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        for line in b64.as_bytes().chunks(76) {
            raw.push_str(std::str::from_utf8(line).expect("base64"));
            raw.push_str("\r\n");
        }
    }
    raw.push_str("--b--\r\n");
    raw.into_bytes()
}
