#!/usr/bin/env python3
"""Writes the e-mail golden inputs (*.eml) beside this script.

The .eml files are committed; this script documents how they were made and
remakes them byte for byte (fixed dates, boundaries and Message-IDs), except
edoc.eml, whose signer certificate is made with openssl when the file is
missing (delete it to make a new one).

    python3 tests/golden/email/make_fixtures.py
"""
import base64
import io
import os
import quopri
import subprocess
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def qp(text, charset):
    return quopri.encodestring(text.encode(charset)).decode("ascii")


def b64(data):
    return base64.encodebytes(data).decode("ascii")


def write(name, text, raw_extra=b""):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(text.replace("\n", "\r\n").encode("utf-8") + raw_extra)


def header_words(text, charset):
    return "=?%s?B?%s?=" % (charset, base64.b64encode(text.encode(charset)).decode())


LETTER = (
    "Labdien!\n\nLūdzu izsniegt būvatļauju dārza mājas būvniecībai zemes gabalā "
    "Ozolu ielā 7, Ļaudonā.\nPielikumā skice.\n\nAr cieņu,\nJānis Bērziņš\n"
)

# 1. Plain text in windows-1257, quoted-printable, RFC 2047 subject.
write(
    "plain-windows-1257.eml",
    f"""Return-Path: <janis.berzins@example.com>
From: {header_words("Jānis Bērziņš", "windows-1257")} <Janis.Berzins@Example.com>
To: dokumenti@example.lv
Subject: {header_words("Iesniegums par būvatļauju", "windows-1257")}
Date: Mon, 16 Nov 2026 09:15:00 +0200
Message-ID: <plain-1257@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=windows-1257
Content-Transfer-Encoding: quoted-printable

{qp(LETTER, "cp1257")}""",
)

# 2. HTML only, with a script, a style, a remote image and an inline picture.
html = """<html><head><style>p{color:red}</style><script>alert('x')</script></head>
<body><p>Labdien!</p><p>Lūdzu <b>pieņemt</b> iesniegumu par <a href="https://evil.example/x">nekustamā
īpašuma nodokļa</a> atvieglojumu.</p><img src="https://tracker.example/p.gif"><img src="cid:logo@x">
<p>Ilze Kalniņa</p><script>document.write('hidden')</script></body></html>"""
png = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
write(
    "html-only.eml",
    f"""From: Ilze Kalnina <ilze@example.com>
To: dokumenti@example.lv
Subject: =?utf-8?Q?Nodok=C4=BCa_atvieglojums?=
Date: Tue, 17 Nov 2026 10:00:00 +0200
Message-ID: <html-only@example.com>
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

{b64(html.encode("utf-8"))}
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

{b64(png)}
--rel--
""",
)

# 3. Several attachments: RFC 2231 name, a path as a name, ISO-8859-13 text.
pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64)) + b"\xff\xd9"
koks = qp("Sveiki!\nNosūtām parakstīto atkritumu izvešanas līgumu un fotoattēlu.\nSIA Koks\n", "iso8859_13")
write(
    "multi-attachment.eml",
    f"""From: "SIA Koks" <birojs@koks.example>
To: dokumenti@example.lv
Subject: =?iso-8859-13?Q?Atkritumu_izve=F0anas_l=EEgums?=
Date: Wed, 18 Nov 2026 14:30:00 +0200
Message-ID: <multi@koks.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: text/plain; charset=iso-8859-13
Content-Transfer-Encoding: quoted-printable

{koks}
--mix
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''L%C4%ABgums%20Nr.%2012.pdf
Content-Transfer-Encoding: base64

{b64(pdf)}
--mix
Content-Type: image/jpeg; name="foto.jpg"
Content-Disposition: attachment; filename="../../etc/foto.jpg"
Content-Transfer-Encoding: base64

{b64(jpeg)}
--mix
Content-Type: application/octet-stream
Content-Disposition: attachment
Content-Transfer-Encoding: base64

{b64(b"no name given")}
--mix--
""",
)

# 4. A forwarded letter (message/rfc822) with its own attachment, UTF-7 subject.
pothole = qp("Liela bedre Rīgas ielā pie veikala, lūdzu salabot ceļu.\n", "iso8859_4")
inner = f"""From: =?utf-8?Q?P=C4=93teris_Ozols?= <peteris@example.com>
To: info@example.lv
Subject: =?utf-8?Q?Iel=C4=81_bedre?=
Date: Thu, 19 Nov 2026 08:00:00 +0200
Message-ID: <inner@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="in"

--in
Content-Type: text/plain; charset=iso-8859-4
Content-Transfer-Encoding: quoted-printable

{pothole}
--in
Content-Type: image/jpeg
Content-Disposition: attachment; filename="bedre.jpg"
Content-Transfer-Encoding: base64

{b64(jpeg)}
--in--
"""
# The shift is closed with "-" as most mailers do (mail-parser 0.11 drops
# the character after a shift closed implicitly).
utf7 = "Fwd: Ielā bedre".encode("utf-7").decode("ascii").replace("+AQE ", "+AQE- ")
write(
    "forwarded.eml",
    f"""From: Info <info-forward@example.com>
To: dokumenti@example.lv
Subject: =?utf-7?Q?{utf7.replace(" ", "_")}?=
Date: Thu, 19 Nov 2026 09:00:00 +0200
Message-ID: <fwd@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="out"

--out
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Pārsūtu iedzīvotāja vēstuli.
--out
Content-Type: message/rfc822
Content-Disposition: attachment

{inner}
--out--
""",
)

# 5. An .edoc (ASiC-E) with one signed document and one signer.
edoc_path = os.path.join(HERE, "edoc.eml")
if not os.path.exists(edoc_path):
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-utf8",
             "-keyout", f"{d}/k.pem", "-out", f"{d}/c.pem", "-days", "3650",
             "-subj", "/C=LV/SN=BĒRZIŅA/GN=ANNA/serialNumber=PNOLV-010190-12345/CN=ANNA BĒRZIŅA"],
            check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", f"{d}/c.pem", "-outform", "DER"],
                             check=True, capture_output=True).stdout
    sig = f"""<?xml version="1.0" encoding="UTF-8"?>
<asic:XAdESSignatures xmlns:asic="http://uri.etsi.org/02918/v1.2.1#" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xades="http://uri.etsi.org/01903/v1.3.2#">
<ds:Signature Id="S0"><ds:SignedInfo><ds:Reference URI="iesniegums.pdf"><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo>
<ds:SignatureValue>AAAA</ds:SignatureValue>
<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{base64.b64encode(der).decode()}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
<ds:Object><xades:QualifyingProperties><xades:SignedProperties><xades:SignedSignatureProperties><xades:SigningTime>2026-11-20T08:00:00Z</xades:SigningTime></xades:SignedSignatureProperties></xades:SignedProperties></xades:QualifyingProperties></ds:Object>
</ds:Signature></asic:XAdESSignatures>
"""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype", (2026, 11, 20, 8, 0, 0)), "application/vnd.etsi.asic-e+zip",
                   compress_type=zipfile.ZIP_STORED)
        z.writestr(zipfile.ZipInfo("iesniegums.pdf", (2026, 11, 20, 8, 0, 0)), pdf)
        z.writestr(zipfile.ZipInfo("META-INF/manifest.xml", (2026, 11, 20, 8, 0, 0)),
                   '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                   '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.etsi.asic-e+zip"/>'
                   '<manifest:file-entry manifest:full-path="iesniegums.pdf" manifest:media-type="application/pdf"/>'
                   '</manifest:manifest>')
        z.writestr(zipfile.ZipInfo("META-INF/signatures0.xml", (2026, 11, 20, 8, 0, 0)), sig.encode("utf-8"))
    write(
        "edoc.eml",
        f"""From: Anna =?utf-8?Q?B=C4=93rzi=C5=86a?= <anna@example.com>
To: dokumenti@example.lv
Subject: =?utf-8?Q?Iesniegums_par_deklar=C4=93=C5=A1anos?=
Date: Fri, 20 Nov 2026 08:05:00 +0200
Message-ID: <edoc@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="e"

--e
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Pielikumā ar drošu elektronisko parakstu parakstīts iesniegums par dzīvesvietas deklarēšanu.
--e
Content-Type: application/vnd.etsi.asic-e+zip
Content-Disposition: attachment; filename="iesniegums.edoc"
Content-Transfer-Encoding: base64

{b64(buf.getvalue())}
--e--
""",
    )

# 6. Outlook's rich-text mail: the attachment inside winmail.dat (TNEF).
def tnef_attr(level, attr_id, data):
    import struct
    return struct.pack("<BII", level, attr_id, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def tnef_with(title, data):
    import struct
    stamp = struct.pack("<7H", 2026, 11, 20, 9, 30, 0, 5)
    out = struct.pack("<IH", 0x223E9F78, 0x0001)
    out += tnef_attr(1, 0x00089006, b"\x00\x00\x01\x00")          # TNEF version
    out += tnef_attr(1, 0x00069007, struct.pack("<II", 1257, 0))     # OEM code page
    out += tnef_attr(2, 0x00069002, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0))
    out += tnef_attr(2, 0x00018010, title.encode("cp1257") + b"\x00")
    out += tnef_attr(2, 0x00038012, stamp)
    out += tnef_attr(2, 0x00038013, stamp)
    out += tnef_attr(2, 0x0006800F, data)
    out += tnef_attr(2, 0x00069005, struct.pack("<I", 0))            # no MAPI properties
    return out


write(
    "tnef.eml",
    f"""From: Dace Liepa <dace@example.com>
To: dokumenti@example.lv
Subject: =?utf-8?Q?B=C5=ABvat=C4=BCaujas_pieteikums?=
Date: Fri, 20 Nov 2026 09:31:00 +0200
Message-ID: <tnef@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="t"

--t
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Labdien! Pielikumā būvatļaujas pieteikums.
--t
Content-Type: application/ms-tnef; name="winmail.dat"
Content-Disposition: attachment; filename="winmail.dat"
Content-Transfer-Encoding: base64

{b64(tnef_with("Būvatļauja.pdf", pdf))}
--t--
""",
)

# 7. An out-of-office auto-reply: registered, never acknowledged.
write(
    "auto-reply.eml",
    """From: Andris Liepa <andris@example.com>
To: dokumenti@example.lv
Subject: Automatic reply: Par iesniegumu
Date: Sat, 21 Nov 2026 12:00:00 +0200
Message-ID: <oof@example.com>
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

I am out of the office until 30 November.
""",
)

# 8. Not an e-mail at all: kept raw for review.
with open(os.path.join(HERE, "malformed.eml"), "wb") as f:
    f.write(b"\x00\x01\x02 this is not a mail \xff\xfe\r\n\r\nno headers here\r\n")

# 9. Cut off mid-stream: a PDF in base64 ends in the middle of a line, no
# closing boundary. The subject would match a rule: it goes to review.
pdf_b64 = b64(b"%PDF-1.4\n" + bytes(range(200)) + b"\n%%EOF\n")
write(
    "truncated-base64.eml",
    f"""From: Jānis Bērziņš <janis.berzins@example.com>
To: dokumenti@example.lv
Subject: Iesniegums par būvatļauju
Date: Mon, 23 Nov 2026 09:00:00 +0200
Message-ID: <truncated-b64@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="cut"

--cut
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Lūdzu izsniegt būvatļauju, pielikumā plāns.
--cut
Content-Type: application/pdf; name="plans.pdf"
Content-Disposition: attachment; filename="plans.pdf"
Content-Transfer-Encoding: base64

{pdf_b64[:150]}""",
)

# 10. An unterminated binary part: 258 bytes that are not UTF-8, no closing
# boundary; the bytes must be stored as they came.
write(
    "unterminated-binary.eml",
    """From: Ilze Kalna <ilze@example.com>
To: dokumenti@example.lv
Subject: Pielikums
Date: Mon, 23 Nov 2026 09:05:00 +0200
Message-ID: <unterminated-bin@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="bin"

--bin
Content-Type: text/plain; charset=utf-8

Pielikumā dati.
--bin
Content-Type: application/octet-stream; name="dati.bin"
Content-Disposition: attachment; filename="dati.bin"
Content-Transfer-Encoding: binary

""",
    bytes(range(256)) + b"\xff\xfe",
)

# 11. Encoded words without their base64 padding, as some mailers send them.
write(
    "unpadded-words.eml",
    """From: =?utf-8?B?QW5uYSBCxJNyemnFhmE?= <anna@example.com>
To: dokumenti@example.lv
Subject: =?utf-8?B?bm90LWJhc2U2NA?=
Date: Mon, 23 Nov 2026 09:10:00 +0200
Message-ID: <unpadded@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Labdien, lūdzu informāciju.
""",
)
