//! Pietura: one intake for every door of a municipality's records office.
//!
//! Layout (sources → transform → sinks, as in vector):
//!
//! ```text
//! channels/ (sources)      bus/ (durable hand-off)     engine (transform)           sinks
//! ┌──────────────┐ publish ┌──────────────┐ consume ┌────────────────────┐ register ┌──────────┐
//! │ web_form     │────────▶│ amqp | embed │────────▶│ rules::Engine       │─────────▶│ registry │
//! │ (imap, scan, │ confirm │  intake queue│  ack    │ classify + route    │ outbox   │ unit     │
//! │  sms …)      │         └──────────────┘ after   └────────────────────┘────────▶│ queues   │
//! └──────────────┘                          commit                                  └──────────┘
//! ```
//!
//! - [`message`]: the one message format every channel produces (schema v1).
//! - [`channels`]: the [`channels::Channel`] and [`channels::Door`] traits, the
//!   one list of kinds ([`channels::KINDS`]) and one module per kind
//!   (`web_form`; `email`: IMAP intake with a mailbox lease, MIME normalisation,
//!   SMTP acknowledgements; `scan`; `sms` with its Kannel, Twilio and
//!   signed-JSON gateways; `counter`: counter and phone submissions an officer
//!   types in at the desk; `eadrese`: the official electronic address); `channels::original`: how the desk shows an original.
//! - [`replies`]: answers on the channel an item came by (the SMS with its number,
//!   the e-mail acknowledgement), written at registration and sent by the
//!   channel's [`replies::Replier`].
//! - [`answers`]: an item's answer back through the citizen's channel: the
//!   delivery kind from the channel, the letter PDF, the e-mail answer replier
//!   (outgoing numbers in `registry::answers`, the unit's desk in `desk::unit`).
//! - [`personal_code`]: the personas kods checked (both formats), masked, as an e-adrese.
//! - [`phone`]: phone numbers made E.164, SMS senders told apart.
//! - [`eadrese`]: the e-adrese protocol (DIV UnifiedService: SOAP 1.2, mutual
//!   TLS, WS-Security, XAdES-BES, encrypted files, addressee directory), used
//!   by the thin `channels::eadrese` door; storage in `registry::eadrese`.
//! - [`bus`]: publish-with-confirm and consume-with-ack, on RabbitMQ (one node or a
//!   cluster, moving to another node when its node goes) or the embedded SQL queue.
//! - [`rules`]: text folding and stemming, rule files, evaluation with explanations, hot reload;
//!   `rules::catalogue`: the service catalogue (`services.toml`), public at `/services`
//!   and searched on the desk.
//! - [`active_rules`]: the one rule set in force for every daemon, versioned in the
//!   registry, followed within seconds; `rules/` as bootstrap and import/export.
//! - [`catalog`]: Latvian and English texts from TOML catalogs (desk, form pages).
//! - [`tomlfile`]: TOML files with `file:line` problems, shared by rules and deadlines.
//! - [`registry`]: items, registration numbers, audit log and outbox in PostgreSQL or SQLite;
//!   `registry::listing`: the register on the desk (every item filtered,
//!   full-text searched with the rules' folding, paged);
//!   `registry::lease`: the one leased-work primitive (database clock, fencing tokens)
//!   for queue rows and named work (scan files, SMS flushes, keeper passes, mailboxes).
//! - [`enrich`]: the engine's enrichment step: follow-ups linked to their item
//!   and bounces recorded on it, from what the doors describe (`refers_to`).
//! - [`engine`]: consumes intake, registers, routes; [`dispatch`] drains the outbox to unit queues;
//!   [`parked`]: every dead letter kept as a parked item, retried or shown to the office;
//!   [`janitor`]: one daemon at a time prunes delivered notices, old door claims and orphan blobs.
//! - [`dms`]: registration in an external document-management system (Mayan
//!   EDMS, Paperless-ngx, CMIS) behind one connector trait, queued with each
//!   item and retried until the DMS has it.
//! - [`ocr`]: Tesseract OCR of scanned pages in a bounded pool of
//!   single-threaded engines (orientation, deskew, blank pages, limits).
//! - [`malware`]: every attachment and original scanned by clamd before
//!   routing; malware quarantined and sent to review, items waiting unrouted
//!   while clamd is away.
//! - [`backoff`]: the one doubling backoff and retry pause every retrying task uses.
//! - [`blobs`]: content-addressed attachment store written before any message is published.
//! - [`http`]: the daemon's HTTP server (channels' routes, JSON API, deadline
//!   actions, dashboard and reports, health and metrics); `http::client`: the
//!   one client address of a request (trusted proxies' forwarded headers).
//! - [`api_clients`]: the item API's clients, their hashed tokens and scopes
//!   (units, actions); the actor of every API action.
//! - [`desk`]: the records office's web desk: review queue and item page
//!   with the officer's decisions, rules editor with dry run and versions,
//!   channels overview, accounts (argon2), sessions and CSRF.
//! - [`xmldsig`]: XML-DSig verification (signature value, detached and same-document
//!   references, certificate path to a trust list) for signed containers.
//! - [`tls`]: TLS to PostgreSQL and RabbitMQ (`sslmode=verify-full`, `amqps://`
//!   with `bus.tls`), checked before anything connects; plaintext to another
//!   host only when allowed.
//! - [`config`]: the daemon's typed configuration; [`daemon`] wires everything and shuts it down.
//! - [`supervise`]: every long-running task restarted with backoff, component states
//!   for `/readyz`, `/metrics` and the desk; parsers of outside data contained.
//! - [`redact`]: personal data (e-mail addresses, phones, personas kodi, sender
//!   fields) masked in every log line, whoever wrote it.
//! - [`explain`]: an item's routing explained again from its stored rule-set version.
//! - [`deadline`]: the working-day calendar and legal terms (`rules/calendar.toml`,
//!   `rules/deadlines.toml`) and the deadlines computed from them; [`keeper`]:
//!   recomputes open deadlines when they change and sends the units' daily digest.
//! - [`print`]: PDF printing in one place (answer letters with the address in the
//!   envelope window, counter receipts): one embedded font, header, wrapped text, footer.
//! - [`stats`]: quarterly service-delivery figures (dashboard, report, CSV), with
//!   consultations (`registry::consultations`) and client opinions (`registry::opinions`,
//!   asked on the status page once an item is closed).
//! - [`archive`]: the archival handover: a period's items as a package (originals,
//!   attachments, PDF/A renditions with OCR text, register XML/CSV, SHA-256
//!   manifest), its re-check, and the items past retention for a destruction review.
//! - [`bench`](mod@bench): the pipeline, SMS webhook and IMAP → registered benchmarks.

pub mod active_rules;
pub mod answers;
pub mod api_clients;
pub mod archive;
pub mod backoff;
pub mod bench;
pub mod blobs;
pub mod bus;
pub mod catalog;
pub mod channels;
pub mod config;
pub mod daemon;
pub mod deadline;
pub mod desk;
pub mod dispatch;
pub mod dms;
pub mod eadrese;
pub mod engine;
pub mod enrich;
pub mod explain;
pub mod http;
pub mod janitor;
pub mod keeper;
pub mod malware;
pub mod message;
pub mod metrics;
pub mod ocr;
pub mod parked;
pub mod personal_code;
pub mod phone;
pub mod print;
pub mod redact;
pub mod registry;
pub mod replies;
pub mod rules;
pub mod stats;
pub mod supervise;
pub mod tls;
pub mod tomlfile;
pub mod xmldsig;
