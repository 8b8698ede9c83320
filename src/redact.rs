//! Personal data out of the logs: one redaction step every log line passes
//! through, whichever module (ours or a library's, at any level) wrote it.
//!
//! Masked: e-mail addresses, phone numbers (E.164 and Latvian local
//! numbers), personas kodi, and the values of fields that name a person
//! (`sender`, `username`, `name`, `phone`, `email`, …). Our own code does
//! not log these on purpose; this step is what keeps a library's trace, an
//! error text quoting its input or a future `tracing::debug!` from putting a
//! citizen's data into a journal that is kept for months.
//!
//! Protocol libraries trace whole frames (an AMQP body, an IMAP `FETCH`,
//! an SMTP `DATA`, an HTTP body): names in free text no pattern recognises.
//! Their wire-level levels are capped ([`cap_wire_traces`]) whatever the
//! log filter asks for, and a byte list that slips through is shown by its
//! length only.
//!
//! The daemon's subscriber writes through [`Redacting`] with its filter
//! capped (see `main.rs`), and the binary's last error line goes through
//! [`redact`] too.

use std::borrow::Cow;
use std::io::Write;
use std::sync::LazyLock;

use regex::Regex;
use tracing_subscriber::fmt::MakeWriter;

/// What each kind of personal data becomes in a log line.
const EMAIL: &str = "<e-mail>";
const PHONE: &str = "<phone>";
const PERSONAS_KODS: &str = "<personas kods>";
const FIELD: &str = "<redacted>";

/// Fields whose value is a person's, whatever it looks like.
const PERSONAL_FIELDS: &str = "sender|sender_name|sender_address|username|user_name|name|full_name|phone|phone_number|email|e_mail|recipient|personas_kods|personal_code";

/// Libraries that trace what goes over the wire (message bodies, mails,
/// requests) at TRACE or DEBUG: never more verbose than INFO.
const WIRE_LEVEL_CRATES: &[&str] = &[
    "lapin",
    "amq_protocol",
    "amq_protocol_types",
    "amq_protocol_tcp",
    "async_imap",
    "imap_proto",
    "lettre",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "tower_http",
    "ldap3",
    "lber",
];

/// `filter` with the wire-level crates ([`WIRE_LEVEL_CRATES`]) at most at INFO.
pub fn cap_wire_traces(mut filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    for krate in WIRE_LEVEL_CRATES {
        if let Ok(directive) = format!("{krate}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// A buffer printed by `{:?}` (`[123, 34, 115, …]`), 8 bytes or more.
static BYTE_LIST_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[(?:\d{1,3}, ){7,}\d{1,3}\]").expect("byte list pattern"));

static EMAIL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+").expect("e-mail pattern"));

/// A personas kods, old (DDMMYY-NNNNN) and new (32NNNN-NNNNN), with or
/// without its dash.
static PERSONAS_KODS_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d{6}-?\d{5}\b").expect("personas kods pattern"));

/// An international number (`+` and 8–15 digits, maybe spaced), a Latvian
/// one with its country code but no `+`, or a local 8-digit number (mobile
/// 2…, landline 6…).
static PHONE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+\d(?:[ \-]?\d){7,14}\b|\b(?:00)?371[ \-]?\d{8}\b|\b[26]\d{3}[ \-]?\d{4}\b")
        .expect("phone pattern")
});

/// `field=value` or `field: value` for a personal field, the value quoted
/// or up to the next space; the field starts the line or follows a space,
/// `{`, `(` or `,` (never `::`, so a log target such as
/// `pietura::channels::email: …` is not taken for a field).
static FIELD_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(^|[\s{{(,])({PERSONAL_FIELDS})(=|: )("(?:[^"\\]|\\.)*"|\S+)"#
    ))
    .expect("field pattern")
});

/// `text` with every e-mail address, phone number, personas kods and
/// personal field value masked; borrowed when there was nothing to mask.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    // Fields first: a whole quoted value goes, whatever it holds.
    if let Cow::Owned(s) = FIELD_RE.replace_all(&out, |c: &regex::Captures<'_>| {
        format!("{}{}{}{FIELD}", &c[1], &c[2], &c[3])
    }) {
        out = Cow::Owned(s);
    }
    if let Cow::Owned(s) = BYTE_LIST_RE.replace_all(&out, |c: &regex::Captures<'_>| {
        format!("<{} bytes>", c[0].matches(',').count() + 1)
    }) {
        out = Cow::Owned(s);
    }
    if let Cow::Owned(s) = EMAIL_RE.replace_all(&out, EMAIL) {
        out = Cow::Owned(s);
    }
    // Phones before personas kodi: `+371` and eight digits is a phone.
    if let Cow::Owned(s) = PHONE_RE.replace_all(&out, PHONE) {
        out = Cow::Owned(s);
    }
    if let Cow::Owned(s) = PERSONAS_KODS_RE.replace_all(&out, PERSONAS_KODS) {
        out = Cow::Owned(s);
    }
    out
}

/// A [`MakeWriter`] whose writers mask personal data (see [`redact`]) in
/// what they write. The formatter writes each event as one buffer; the
/// writer holds it and writes it, masked, when it is dropped (at the end of
/// the event), so a value split across two writes is still seen whole.
#[derive(Debug, Clone)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.0.make_writer(),
            buf: Vec::new(),
        }
    }
}

/// One event's writer (see [`Redacting`]).
pub struct RedactingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn write_out(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let masked = redact(&text);
        self.inner.write_all(masked.as_bytes())?;
        self.buf.clear();
        self.inner.flush()
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write but the log itself.
        let _ = self.write_out();
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn addresses_numbers_and_codes_are_masked() {
        let line = "sent to jānis.bērziņš@pasts.example.lv and +371 2000 1234, \
                    also 29123456 and 37129123456; pk 150385-12346 and 32123412345";
        let out = redact(line);
        for personal in [
            "jānis",
            "pasts.example.lv",
            "2000 1234",
            "29123456",
            "37129123456",
            "150385",
            "32123412345",
        ] {
            assert!(!out.contains(personal), "{personal} left in {out}");
        }
        assert!(out.contains("<e-mail>") && out.contains("<phone>"), "{out}");
        assert!(out.contains("<personas kods>"), "{out}");
    }

    #[test]
    fn a_buffer_printed_as_bytes_is_shown_by_its_length() {
        let line = "frame=Body(18, [123, 34, 115, 99, 104, 101, 109, 97, 95]) and [1, 2]";
        assert_eq!(redact(line), "frame=Body(18, <9 bytes>) and [1, 2]");
    }

    #[test]
    fn wire_level_crates_stay_at_info_under_a_trace_filter() {
        use tracing_subscriber::layer::SubscriberExt;
        let filter = super::cap_wire_traces(tracing_subscriber::EnvFilter::new("trace"));
        let text = filter.to_string();
        assert!(
            text.contains("lapin=info") && text.contains("async_imap=info"),
            "{text}"
        );
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(target: "pietura::engine", tracing::Level::TRACE));
            assert!(!tracing::enabled!(target: "lapin::channels", tracing::Level::DEBUG));
            assert!(tracing::enabled!(target: "lapin::channels", tracing::Level::INFO));
        });
    }

    #[test]
    fn personal_fields_lose_their_values_and_other_fields_keep_theirs() {
        let line = r#"INFO sign-in failed username="Anna Kalniņa" name=Anna sender: Pēteris from=v12 to=v13 item=019ad2f4-abcd"#;
        let out = redact(line);
        assert!(!out.contains("Kalniņa") && !out.contains("Anna"), "{out}");
        assert!(!out.contains("Pēteris"), "{out}");
        assert!(out.contains("username=<redacted>"), "{out}");
        assert!(out.contains("from=v12 to=v13 item=019ad2f4-abcd"), "{out}");
    }

    #[test]
    fn what_is_not_personal_is_left_as_it_was() {
        for line in [
            "2026-11-30T22:04:16.123456Z  INFO registered number=1-2/2026/123 in 12 ms",
            "deadline 2026-12-30, +02:00, 3000 items, port 5672",
            "WARN pietura::channels::email: e-mail channel waits: the variable is not set",
        ] {
            assert_eq!(redact(line), line);
            assert!(matches!(redact(line), std::borrow::Cow::Borrowed(_)));
        }
    }

    #[test]
    fn the_writer_masks_an_event_written_in_pieces() {
        use std::io::Write;
        use tracing_subscriber::fmt::MakeWriter;
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("sink").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Sink {
            type Writer = Sink;
            fn make_writer(&'a self) -> Sink {
                self.clone()
            }
        }
        let sink = Sink::default();
        let make = super::Redacting(sink.clone());
        {
            let mut w = make.make_writer();
            w.write_all(b"to anna.kal").expect("write");
            w.write_all("niņa@example.lv\n".as_bytes()).expect("write");
        }
        let written = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        assert_eq!(written, "to <e-mail>\n");
    }
}
