#!/usr/bin/python3
"""A stand-in for the e-adrese DIV "UnifiedService", for Pietura's tests.

It enforces the protocol as the public description gives it, with code
independent of Pietura's:
- mutual TLS: only client certificates of the test CA get a connection, and
  only the institution's registered certificate is served (others get a fault);
- every request's WS-Security header: a Timestamp still valid, a
  BinarySecurityToken that is the TLS client certificate, and an XML-DSig
  signature over the Timestamp and wsa:To verified by xmlsec (libxmlsec1);
- SendMessage: the SenderDocument's XAdES-BES signature verified by xmlsec
  (references to the SenderDocument and the SignedProperties, the
  SigningCertificate digest of the client certificate);
- messages served with their attachments encrypted as described: an AES key
  and IV wrapped with RSA-OAEP (SHA-1) for the recipient's certificate,
  contents AES-CBC (PKCS#7), optionally gzipped first; contents longer than
  the section size are fetched with GetAttachmentSection;
- confirm semantics: a message not confirmed is listed and served again;
- SendMessage's files: each PayloadReference/File's SHA-512 digest and Size
  checked against the bytes sent in AttachmentsInput (by ContentId), the
  bytes kept for the tests to compare.

Tests drive it through a plain-HTTP control port on 127.0.0.1:
POST /messages (add a message), POST /addressees (directory changes),
POST /faults (also {"revoke_tokens": true}), GET /state (served, confirmed,
sent with their files, refusals, tokens issued, calls without a valid token).

With --oauth-client-id/--oauth-secret-file it also requires an OAuth2 bearer
token on every SOAP call (HTTP 401 otherwise) and serves the token endpoint
(client credentials, the secret checked) at /oauth2/token on the same port.

Run: div_standin.py --port P --control-port C --ca ca.pem --cert server.pem
     --key server.key --institution-cert client.pem --institution _DEFAULT@90000000001
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import http.server
import json
import os
import socketserver
import ssl
import sys
import threading
import urllib.parse
import uuid

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization, padding as sympad
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
UUI = "http://vraa.gov.lv/xmlschemas/div/uui/2011/11"
DIV = "http://ivis.eps.gov.lv/XMLSchemas/100001/DIV/v1-0"
ACTION = "http://vraa.gov.lv/div/uui/2011/11/UnifiedServiceInterface/"
# The OAuth2 token endpoint, on the service's own (TLS) port.
TOKEN_PATH = "/oauth2/token"
DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": hashlib.sha1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}


class Refused(Exception):
    """A request the service refuses, with the fault text."""


class Unavailable(Exception):
    """A failure served on purpose: HTTP 503 without a SOAP fault."""


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.institution = args.institution
        with open(args.institution_cert, "rb") as f:
            pem = f.read()
        self.client_cert = x509.load_pem_x509_certificate(pem)
        self.client_der = self.client_cert.public_bytes(serialization.Encoding.DER)
        self.client_pem = pem
        self.messages = {}  # id -> dict(xml, attachments, confirmed, served)
        self.order = []
        self.sent = []
        self.refusals = []
        self.addressees = []  # list of (seq, record)
        self.section_size = args.section_size
        self.faults = {"unavailable": 0, "fail_confirm": 0}
        self.requests = 0
        # OAuth2 client credentials, when started with a token requirement.
        self.oauth = None
        if args.oauth_client_id:
            with open(args.oauth_secret_file, encoding="utf-8") as f:
                self.oauth = (args.oauth_client_id, f.read().strip())
        self.tokens = {}  # token -> expiry (datetime)
        self.tokens_issued = 0
        self.token_refusals = 0
        self.unauthorized = 0

    def bearer_ok(self, header):
        """A SOAP call's Authorization: a Bearer token we issued, not expired."""
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        now = datetime.datetime.now(datetime.timezone.utc)
        with self.lock:
            expiry = self.tokens.get(token.strip())
        return expiry is not None and now < expiry

    def snapshot(self):
        with self.lock:
            return {
                "served": {i: m["served"] for i, m in self.messages.items()},
                "confirmed": [i for i in self.order if self.messages[i]["confirmed"]],
                "unconfirmed": [i for i in self.order if not self.messages[i]["confirmed"]],
                "sent": self.sent,
                "refusals": self.refusals,
                "requests": self.requests,
                "tokens_issued": self.tokens_issued,
                "token_refusals": self.token_refusals,
                "unauthorized": self.unauthorized,
            }


def b64(data):
    return base64.b64encode(data).decode("ascii")


def esc(text):
    return (
        str(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def wrap_key(cert, key, iv):
    """EncryptionInfo.Key: [key length][AES key][IV], RSA-OAEP (SHA-1) for the recipient."""
    return cert.public_key().encrypt(
        bytes([len(key)]) + key + iv,
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )


def encrypt(key, iv, plain, compress):
    """A file's contents: optionally gzipped, then AES-CBC with PKCS#7 padding."""
    data = gzip.compress(plain) if compress else plain
    padder = sympad.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def add_message(state, spec):
    """Builds a stored message from the control request's JSON."""
    message_id = spec.get("id") or str(uuid.uuid4())
    files = []
    attachments = {}
    key, iv = os.urandom(32), os.urandom(16)
    for n, a in enumerate(spec.get("attachments", []), start=1):
        plain = base64.b64decode(a["content_b64"])
        compress = bool(a.get("compress"))
        contents = encrypt(key, iv, plain, compress)
        if a.get("corrupt"):
            # One bit changed in the first block: the file does not match its digest.
            contents = bytes([contents[0] ^ 1]) + contents[1:]
        content_id = f"att{n}"
        attachments[content_id] = contents
        files.append(
            "<File>"
            f"<MimeType>{esc(a.get('mime', 'application/octet-stream'))}</MimeType>"
            f"<Size>{len(plain)}</Size>"
            f"<Name>{esc(a['name'])}</Name>"
            "<DigestMethod>http://www.w3.org/2001/04/xmlenc#sha512</DigestMethod>"
            f"<DigestValue>{b64(hashlib.sha512(plain).digest())}</DigestValue>"
            f"<ContentReference>{content_id}</ContentReference>"
            f"<Compressed>{'true' if compress else 'false'}</Compressed>"
            f"<AppendixNumber>{n}</AppendixNumber>"
            "</File>"
        )
    thumb = b64(hashlib.sha1(state.client_der).digest())
    recipient = spec.get("recipient", state.institution)
    xml = (
        f'<Envelope xmlns="{DIV}">'
        '<SenderDocument Id="SenderSection">'
        "<DocumentMetadata><GeneralMetadata>"
        f"<Authors><AuthorEntry><Institution><Title>{esc(spec.get('author', ''))}</Title></Institution></AuthorEntry></Authors>"
        f"<Date>{esc(spec.get('date', datetime.date.today().isoformat()))}</Date>"
        f"<Title>{esc(spec.get('title', ''))}</Title>"
        f"<Description>{esc(spec.get('description', ''))}</Description>"
        "<DocumentKind><DocumentKindCode>DOC_EMPTY</DocumentKindCode></DocumentKind>"
        "</GeneralMetadata>"
        f"<PayloadReference>{''.join(files)}</PayloadReference>"
        "</DocumentMetadata>"
        "<SenderTransportMetadata>"
        f"<SenderE-Address>{esc(spec['sender'])}</SenderE-Address>"
        f"<SenderRefNumber>{esc(spec.get('sender_ref', ''))}</SenderRefNumber>"
        "<Recipients><RecipientEntry>"
        f"<RecipientE-Address>{esc(recipient)}</RecipientE-Address>"
        f"<EncryptionInfo><Key>{b64(wrap_key(state.client_cert, key, iv))}</Key>"
        f"<CertificateThumbprint>{thumb}</CertificateThumbprint></EncryptionInfo>"
        "</RecipientEntry></Recipients>"
        "</SenderTransportMetadata>"
        "</SenderDocument>"
        "<ServerTransportMetadata>"
        f"<MessageId>{esc(message_id)}</MessageId>"
        f"<Date>{datetime.datetime.now(datetime.timezone.utc).isoformat()}</Date>"
        "<SenderVerified>true</SenderVerified>"
        "</ServerTransportMetadata>"
        "</Envelope>"
    )
    with state.lock:
        state.messages[message_id] = {
            "xml": xml,
            "attachments": attachments,
            "confirmed": False,
            "served": 0,
        }
        state.order.append(message_id)
    return message_id


def fault(text):
    return (
        f'<s:Envelope xmlns:s="{SOAP}"><s:Body><s:Fault>'
        "<s:Code><s:Value>s:Sender</s:Value></s:Code>"
        f'<s:Reason><s:Text xml:lang="en">{esc(text)}</s:Text></s:Reason>'
        "</s:Fault></s:Body></s:Envelope>"
    )


def respond(body):
    return f'<s:Envelope xmlns:s="{SOAP}"><s:Body>{body}</s:Body></s:Envelope>'


def cert_key(state):
    return xmlsec.Key.from_memory(state.client_pem, xmlsec.constants.KeyDataFormatCertPem, None)


def reference_uris(sig):
    return sorted(r.get("URI", "") for r in sig.iterfind(f"{{{DS}}}SignedInfo/{{{DS}}}Reference"))


def check_wssec(state, doc, peer_der):
    header = doc.find(f"{{{SOAP}}}Header")
    if header is None:
        raise Refused("no SOAP header")
    sec = header.find(f"{{{WSSE}}}Security")
    if sec is None:
        raise Refused("no WS-Security header")
    ts = sec.find(f"{{{WSU}}}Timestamp")
    to = header.find(f"{{{WSA}}}To")
    bst = sec.find(f"{{{WSSE}}}BinarySecurityToken")
    sig = sec.find(f"{{{DS}}}Signature")
    if ts is None or to is None or bst is None or sig is None:
        raise Refused("WS-Security needs Timestamp, wsa:To, BinarySecurityToken and Signature")
    if base64.b64decode("".join(bst.text.split())) != peer_der:
        raise Refused("the BinarySecurityToken is not the TLS client certificate")
    now = datetime.datetime.now(datetime.timezone.utc)
    created = datetime.datetime.fromisoformat(ts.findtext(f"{{{WSU}}}Created").replace("Z", "+00:00"))
    expires = datetime.datetime.fromisoformat(ts.findtext(f"{{{WSU}}}Expires").replace("Z", "+00:00"))
    if not (created - datetime.timedelta(minutes=5) <= now <= expires):
        raise Refused("the Timestamp is not valid now")
    ts_id = ts.get(f"{{{WSU}}}Id")
    to_id = to.get(f"{{{WSU}}}Id")
    if reference_uris(sig) != sorted([f"#{ts_id}", f"#{to_id}"]):
        raise Refused("the WS-Security signature must cover exactly the Timestamp and wsa:To")
    ctx = xmlsec.SignatureContext()
    ctx.key = cert_key(state)
    ctx.register_id(ts, "Id", WSU)
    ctx.register_id(to, "Id", WSU)
    try:
        ctx.verify(sig)
    except xmlsec.Error as e:
        raise Refused(f"WS-Security signature does not verify: {e}")


def check_xades(state, envelope):
    doc_el = envelope.find(f"{{{DIV}}}SenderDocument")
    sig = envelope.find(f"{{{DIV}}}Signatures/{{{DS}}}Signature")
    if doc_el is None or sig is None:
        raise Refused("SendMessage needs a SenderDocument and its signature in Signatures")
    props = sig.find(f".//{{{XADES}}}SignedProperties")
    if props is None:
        raise Refused("no XAdES SignedProperties")
    qp = sig.find(f".//{{{XADES}}}QualifyingProperties")
    if qp is None or qp.get("Target") != "#" + (sig.get("Id") or ""):
        raise Refused("QualifyingProperties must target the signature")
    refs = sig.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    uris = {r.get("URI"): r for r in refs}
    if "#" + (doc_el.get("Id") or "") not in uris or "#" + (props.get("Id") or "") not in uris:
        raise Refused("the signature must cover the SenderDocument and the SignedProperties")
    if uris["#" + props.get("Id")].get("Type") != "http://uri.etsi.org/01903#SignedProperties":
        raise Refused("the SignedProperties reference needs its Type")
    method = sig.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod").get("Algorithm")
    if method != "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512":
        raise Refused(f"SenderDocument must be signed with RSA-SHA512, not {method}")
    cert_digest = props.find(f".//{{{XADES}}}SigningCertificate/{{{XADES}}}Cert/{{{XADES}}}CertDigest")
    if cert_digest is None:
        raise Refused("no SigningCertificate in the SignedProperties")
    algo = cert_digest.find(f"{{{DS}}}DigestMethod").get("Algorithm")
    want = DIGESTS[algo](state.client_der).digest()
    if base64.b64decode(cert_digest.findtext(f"{{{DS}}}DigestValue")) != want:
        raise Refused("the SigningCertificate is not the client certificate")
    ctx = xmlsec.SignatureContext()
    ctx.key = cert_key(state)
    ctx.register_id(doc_el, "Id")
    ctx.register_id(props, "Id")
    try:
        ctx.verify(sig)
    except xmlsec.Error as e:
        raise Refused(f"XAdES signature does not verify: {e}")


def check_files(doc_el, body_el):
    """The files of a sent document: every PayloadReference/File of the
    (signed) SenderDocument has its bytes in AttachmentsInput by ContentId,
    their size and SHA-512 digest as the File says; no bytes unannounced.
    Returns them as kept (the bytes base64) for the tests to compare."""
    given = {}
    for a in body_el.iterfind(f"{{{UUI}}}AttachmentsInput/{{{UUI}}}AttachmentInput"):
        cid = a.findtext(f"{{{UUI}}}ContentId") or ""
        if cid in given:
            raise Refused(f"attachment {cid} given twice")
        given[cid] = base64.b64decode("".join((a.findtext(f"{{{UUI}}}Contents") or "").split()))
    kept = []
    for f in doc_el.iterfind(f"{{{DIV}}}DocumentMetadata/{{{DIV}}}PayloadReference/{{{DIV}}}File"):
        name = f.findtext(f"{{{DIV}}}Name") or ""
        cid = f.findtext(f"{{{DIV}}}ContentReference") or ""
        if cid not in given:
            raise Refused(f"file {name}: no attachment {cid} in AttachmentsInput")
        data = given.pop(cid)
        if f.findtext(f"{{{DIV}}}Compressed") == "true":
            data = gzip.decompress(data)
        method = f.findtext(f"{{{DIV}}}DigestMethod") or ""
        if method != "http://www.w3.org/2001/04/xmlenc#sha512":
            raise Refused(f"file {name}: the digest must be SHA-512, not {method!r}")
        if base64.b64decode(f.findtext(f"{{{DIV}}}DigestValue") or "") != hashlib.sha512(data).digest():
            raise Refused(f"file {name}: the SHA-512 digest does not match the attached bytes")
        size = f.findtext(f"{{{DIV}}}Size") or ""
        if size != str(len(data)):
            raise Refused(f"file {name}: Size {size} but {len(data)} bytes attached")
        kept.append(
            {
                "name": name,
                "mime_type": f.findtext(f"{{{DIV}}}MimeType"),
                "size": len(data),
                "appendix": f.findtext(f"{{{DIV}}}AppendixNumber"),
                "digest_checked": True,
                "content_b64": b64(data),
            }
        )
    if given:
        raise Refused(f"attachments no File refers to: {sorted(given)}")
    return kept


def text_of(el, name):
    found = el.find(f".//{{{UUI}}}{name}")
    return found.text if found is not None and found.text else ""


def operate(state, op, body_el):
    if op == "CertValidate":
        return f'<CertValidateOutput xmlns="{UUI}"><Valid>true</Valid></CertValidateOutput>'
    if op == "GetMessageList":
        with state.lock:
            ids = [i for i in state.order if not state.messages[i]["confirmed"]]
        entries = "".join(f"<MessageInfo><MessageId>{esc(i)}</MessageId></MessageInfo>" for i in ids)
        return f'<GetMessageListOutput xmlns="{UUI}"><Messages>{entries}</Messages></GetMessageListOutput>'
    if op == "GetMessage":
        mid = text_of(body_el, "MessageId")
        with state.lock:
            m = state.messages.get(mid)
            if m is None:
                raise Refused(f"no message {mid}")
            m["served"] += 1
            xml, atts = m["xml"], dict(m["attachments"])
        outs = []
        for cid, contents in atts.items():
            if len(contents) > state.section_size:
                count = (len(contents) + state.section_size - 1) // state.section_size
                outs.append(
                    f"<AttachmentOutput><ContentId>{cid}</ContentId>"
                    f"<SectionCount>{count}</SectionCount></AttachmentOutput>"
                )
            else:
                outs.append(
                    f"<AttachmentOutput><ContentId>{cid}</ContentId>"
                    f"<Contents>{b64(contents)}</Contents></AttachmentOutput>"
                )
        return (
            f'<GetMessageOutput xmlns="{UUI}">{xml}'
            f"<AttachmentsOutput>{''.join(outs)}</AttachmentsOutput></GetMessageOutput>"
        )
    if op == "GetAttachmentSection":
        mid = text_of(body_el, "MessageId")
        cid = text_of(body_el, "ContentId")
        index = int(text_of(body_el, "SectionIndex") or "0")
        with state.lock:
            m = state.messages.get(mid)
            if m is None or cid not in m["attachments"]:
                raise Refused(f"no attachment {cid} of message {mid}")
            contents = m["attachments"][cid]
        part = contents[index * state.section_size : (index + 1) * state.section_size]
        return (
            f'<GetAttachmentSectionOutput xmlns="{UUI}">'
            f"<Contents>{b64(part)}</Contents></GetAttachmentSectionOutput>"
        )
    if op == "ConfirmMessage":
        mid = text_of(body_el, "MessageId")
        with state.lock:
            if state.faults["fail_confirm"] > 0:
                state.faults["fail_confirm"] -= 1
                raise Unavailable()
            m = state.messages.get(mid)
            if m is None:
                raise Refused(f"no message {mid}")
            m["confirmed"] = True
        return f'<ConfirmMessageOutput xmlns="{UUI}"/>'
    if op == "SendMessage":
        envelope = body_el.find(f".//{{{DIV}}}Envelope")
        if envelope is None:
            raise Refused("SendMessage without an Envelope")
        check_xades(state, envelope)
        doc_el = envelope.find(f"{{{DIV}}}SenderDocument")
        mid = str(uuid.uuid4())
        recipients = [r.text for r in doc_el.iter(f"{{{DIV}}}RecipientE-Address")]
        sender = doc_el.findtext(f".//{{{DIV}}}SenderE-Address")
        if sender != state.institution:
            raise Refused(f"the sender e-address is not this institution's ({sender})")
        files = check_files(doc_el, body_el)
        record = {
            "message_id": mid,
            "files": files,
            "sender": sender,
            "recipients": recipients,
            # The document's title (GeneralMetadata/Title), not the author's.
            "title": doc_el.findtext(f".//{{{DIV}}}GeneralMetadata/{{{DIV}}}Title"),
            "description": doc_el.findtext(f".//{{{DIV}}}Description"),
            "signature_ok": True,
            "sent_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        with state.lock:
            state.sent.append(record)
        return f'<SendMessageOutput xmlns="{UUI}"><MessageId>{mid}</MessageId></SendMessageOutput>'
    if op == "GetMessageServerConfirmation":
        mid = text_of(body_el, "MessageId")
        with state.lock:
            sent = next((s for s in state.sent if s["message_id"] == mid), None)
        if sent is None:
            raise Refused(f"no sent message {mid}")
        return (
            f'<GetMessageServerConfirmationOutput xmlns="{UUI}"><ServerConfirmation>'
            f"<MessageId>{mid}</MessageId><Status>Delivered</Status>"
            f"<DeliveryDate>{esc(sent['sent_at'])}</DeliveryDate>"
            "</ServerConfirmation></GetMessageServerConfirmationOutput>"
        )
    if op in ("GetInitialAddresseeRecordList", "GetChangedAddresseeRecordList"):
        since = 0 if op.startswith("GetInitial") else int(text_of(body_el, "Token") or "0")
        with state.lock:
            records = [r for seq, r in state.addressees if seq > since]
            if op.startswith("GetInitial"):
                latest = {}
                for r in records:
                    latest[r["e_address"]] = r
                records = list(latest.values())
            token = state.addressees[-1][0] if state.addressees else 0
        rows = "".join(
            "<AddresseeRecord>"
            f"<E-Address>{esc(r['e_address'])}</E-Address>"
            f"<Active>{'true' if r['active'] else 'false'}</Active>"
            "</AddresseeRecord>"
            for r in records
        )
        return (
            f'<{op}Output xmlns="{UUI}"><Records>{rows}</Records>'
            f"<Token>{token}</Token></{op}Output>"
        )
    raise Refused(f"unknown operation {op}")


class SoapHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, text, content_type="application/soap+xml; charset=utf-8"):
        data = text.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def token(self, state, raw):
        """The OAuth2 token endpoint (RFC 6749 s.4.4, client credentials):
        the client in the form or in HTTP Basic."""
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8")).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            client_id = urllib.parse.unquote_plus(user)
            secret = urllib.parse.unquote_plus(password)
        if form.get("grant_type") != "client_credentials":
            body, code = {"error": "unsupported_grant_type"}, 400
        elif state.oauth is None or (client_id, secret) != state.oauth:
            with state.lock:
                state.token_refusals += 1
            body, code = {"error": "invalid_client"}, 401
        else:
            token = uuid.uuid4().hex
            expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                seconds=state.args.oauth_token_seconds
            )
            with state.lock:
                state.tokens[token] = expiry
                state.tokens_issued += 1
            body, code = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": state.args.oauth_token_seconds,
            }, 200
        data = json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.path.split("?")[0] == TOKEN_PATH:
            self.token(state, raw)
            return
        if state.oauth is not None and not state.bearer_ok(self.headers.get("Authorization")):
            with state.lock:
                state.unauthorized += 1
            data = b"a valid bearer token is required"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        with state.lock:
            state.requests += 1
            if state.faults["unavailable"] > 0:
                state.faults["unavailable"] -= 1
                self.send(503, "maintenance", "text/plain")
                return
        op = "?"
        try:
            peer = self.connection.getpeercert(binary_form=True)
            if peer != state.client_der:
                raise Refused("this client certificate is not registered for the institution")
            ctype = self.headers.get("Content-Type", "")
            action = ""
            for part in ctype.split(";"):
                part = part.strip()
                if part.startswith("action="):
                    action = part[len("action=") :].strip('"')
            if not action.startswith(ACTION):
                raise Refused(f"no SOAP 1.2 action of the UnifiedServiceInterface: {action!r}")
            op = action[len(ACTION) :]
            parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
            doc = etree.fromstring(raw, parser)
            check_wssec(state, doc, peer)
            action_el = doc.find(f"{{{SOAP}}}Header/{{{WSA}}}Action")
            if action_el is None or action_el.text != action:
                raise Refused("wsa:Action does not match the SOAP action")
            body = doc.find(f"{{{SOAP}}}Body")
            body_el = body[0] if body is not None and len(body) else None
            if body_el is None or body_el.tag != f"{{{UUI}}}{op}Input":
                raise Refused(f"the body must be {op}Input")
            out = operate(state, op, body_el)
            self.send(200, respond(out))
        except Unavailable:
            self.send(503, "maintenance", "text/plain")
        except Refused as e:
            with state.lock:
                state.refusals.append({"operation": op, "reason": str(e)})
            self.send(500, fault(str(e)))
        except Exception as e:  # a bug here must show in the test's output
            print(f"div stand-in: {op}: {e!r}", file=sys.stderr)
            with state.lock:
                state.refusals.append({"operation": op, "reason": f"error: {e!r}"})
            self.send(500, fault(f"internal error: {e!r}"))


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, value):
        data = json.dumps(value).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/state":
            self.reply(self.server.state.snapshot())
        else:
            self.send_error(404)

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        spec = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/messages":
            self.reply({"id": add_message(state, spec)})
        elif self.path == "/addressees":
            with state.lock:
                for r in spec["records"]:
                    seq = (state.addressees[-1][0] if state.addressees else 0) + 1
                    state.addressees.append((seq, r))
            self.reply({"ok": True})
        elif self.path == "/faults":
            with state.lock:
                if spec.pop("revoke_tokens", False):
                    state.tokens.clear()
                state.faults.update(spec)
            self.reply({"ok": True})
        else:
            self.send_error(404)


class Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--institution-cert", required=True)
    p.add_argument("--institution", required=True)
    p.add_argument("--section-size", type=int, default=64 * 1024)
    p.add_argument("--oauth-client-id", help="require OAuth2 bearer tokens of this client")
    p.add_argument("--oauth-secret-file", help="the client's secret")
    p.add_argument("--oauth-token-seconds", type=int, default=3600)
    args = p.parse_args()
    state = State(args)

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    tls.load_verify_locations(args.ca)
    tls.verify_mode = ssl.CERT_REQUIRED
    soap = Threaded(("127.0.0.1", args.port), SoapHandler)
    soap.socket = tls.wrap_socket(soap.socket, server_side=True)
    soap.state = state
    control = Threaded(("127.0.0.1", args.control_port), ControlHandler)
    control.state = state
    threading.Thread(target=soap.serve_forever, daemon=True).start()
    print("div stand-in ready", flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
