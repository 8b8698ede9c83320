//! Cross-channel near-duplicates: the same letter often arrives by e-mail,
//! e-adrese and post. At registration the engine fingerprints each item and
//! links it to the items received within `[duplicates] window_days` that
//! come from the same sender or carry a similar text. A link is a hint for
//! the records officer ("Iespējams dublikāts: Nr. … (e-pasts, 92 %)" on both
//! item pages, a mark in the review queue), audit-logged on both items;
//! nothing is merged, dropped or left unregistered.
//!
//! - **Text**: a MinHash signature ([`Signature`]) over shingles of
//!   [`SHINGLE_WORDS`] words, each word folded and stemmed by
//!   [`crate::rules::text`] as the rules do, so diacritics, Latvian endings
//!   and case do not matter; a scan's OCR errors cost only the shingles of
//!   the words they touch. The estimated Jaccard similarity of two
//!   signatures is the share of equal positions.
//! - **Sender**: the normalised e-mail address, phone number, e-adrese and
//!   name (its folded words in order of the alphabet), stored only as
//!   SHA-256 keys.
//! - **Lookup**: the signature's LSH bands ([`BANDS`] of [`ROWS`]) and the
//!   sender keys are stored per item (`duplicate_keys`); a new item asks for
//!   the items sharing a key within the window, then compares signatures.
//!   No stored message is read again.
//!
//! Linked when the similarity reaches `threshold`, or `same_sender_threshold`
//! for the same sender (0 links every item from the same sender). The item a
//! follow-up continues is not its duplicate.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher13;

use crate::message::IntakeMessage;
use crate::registry::duplicates::{DuplicateLink, Fingerprint};
use crate::registry::{ItemSummary, Registry, RegistryError};
use crate::rules::text::{Words, tokens};

/// Permutations in a signature.
pub const PERMUTATIONS: usize = 126;
/// LSH: bands of rows; items sharing one band's values are compared. With
/// 42 bands of 3 a pair at similarity 0.5 is compared with probability
/// 0.996, at 0.2 with 0.29, at 0.1 with 0.04.
pub const BANDS: usize = 42;
pub const ROWS: usize = 3;
/// Words in a shingle.
pub const SHINGLE_WORDS: usize = 2;
/// The Mersenne prime 2^61 − 1 of the permutations `(a·x + b) mod p`.
const PRIME: u64 = (1 << 61) - 1;
/// Fixed keys: stored signatures stay comparable across versions and hosts.
const SHINGLE_KEY: (u64, u64) = (0x7069_6574_7572_6121, 0x6475_706c_6963_6174);
const PERMUTATION_KEY: (u64, u64) = (0x6d69_6e68_6173_6821, 0x7065_726d_7574_6521);

/// `[duplicates]` in the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DuplicateSettings {
    /// Off: no fingerprints, no links.
    pub enabled: bool,
    /// Items received this many days before or after an item are compared with it.
    pub window_days: u32,
    /// Estimated text similarity (0–1) that links two items whoever sent them.
    pub threshold: f64,
    /// The similarity that links two items from the same sender (0: the
    /// same sender within the window is enough).
    pub same_sender_threshold: f64,
    /// Texts with fewer words get no signature (an SMS "paldies" is no letter).
    pub min_words: usize,
}

impl Default for DuplicateSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            window_days: 30,
            threshold: 0.5,
            same_sender_threshold: 0.3,
            min_words: 12,
        }
    }
}

impl DuplicateSettings {
    /// Problems as (key, message), for the configuration check.
    pub fn issues(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(1..=366).contains(&self.window_days) {
            out.push(("duplicates.window_days".into(), "must be 1 to 366".into()));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            out.push((
                "duplicates.threshold".into(),
                "must be above 0 and at most 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.same_sender_threshold) {
            out.push((
                "duplicates.same_sender_threshold".into(),
                "must be 0 to 1".into(),
            ));
        }
        if self.min_words < SHINGLE_WORDS {
            out.push((
                "duplicates.min_words".into(),
                format!("must be at least {SHINGLE_WORDS}"),
            ));
        }
        out
    }
}

/// A text's MinHash signature: for each permutation, the least permuted
/// shingle hash (its low 32 bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature(Vec<u32>);

fn permutations() -> &'static [(u64, u64)] {
    static P: std::sync::OnceLock<Vec<(u64, u64)>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let h = SipHasher13::new_with_keys(PERMUTATION_KEY.0, PERMUTATION_KEY.1);
        (0..PERMUTATIONS as u64)
            .map(|i| {
                let a = h.hash(&(2 * i).to_le_bytes()) % (PRIME - 1) + 1;
                let b = h.hash(&(2 * i + 1).to_le_bytes()) % PRIME;
                (a, b)
            })
            .collect()
    })
}

impl Signature {
    /// The signature of `text`; `None` below `min_words` words.
    pub fn of(text: &str, min_words: usize) -> Option<Signature> {
        let words = Words::of(text);
        let stems = words.stems();
        if stems.len() < min_words.max(SHINGLE_WORDS) {
            return None;
        }
        let hasher = SipHasher13::new_with_keys(SHINGLE_KEY.0, SHINGLE_KEY.1);
        let mut shingles: Vec<u64> = stems
            .windows(SHINGLE_WORDS)
            .map(|w| hasher.hash(w.join(" ").as_bytes()) % PRIME)
            .collect();
        shingles.sort_unstable();
        shingles.dedup();
        let mins = permutations()
            .iter()
            .map(|&(a, b)| {
                let least = shingles
                    .iter()
                    .map(|&x| ((a as u128 * x as u128 + b as u128) % PRIME as u128) as u64)
                    .min()
                    .unwrap_or(PRIME);
                least as u32
            })
            .collect();
        Some(Signature(mins))
    }

    /// The estimated Jaccard similarity of the two texts' shingles (0–1).
    pub fn similarity(&self, other: &Signature) -> f64 {
        let same = self.0.iter().zip(&other.0).filter(|(a, b)| a == b).count();
        same as f64 / PERMUTATIONS as f64
    }

    /// Stored form: hex, 8 digits a value.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|v| format!("{v:08x}")).collect()
    }

    /// Reads [`Signature::to_hex`]; `None` if it is not one.
    pub fn from_hex(s: &str) -> Option<Signature> {
        if s.len() != PERMUTATIONS * 8 || !s.is_ascii() {
            return None;
        }
        (0..PERMUTATIONS)
            .map(|i| u32::from_str_radix(&s[i * 8..i * 8 + 8], 16).ok())
            .collect::<Option<Vec<u32>>>()
            .map(Signature)
    }

    /// The LSH band keys (`t<band>:<hash>`).
    pub fn band_keys(&self) -> Vec<String> {
        let hasher = SipHasher13::new_with_keys(SHINGLE_KEY.1, SHINGLE_KEY.0);
        (0..BANDS)
            .map(|band| {
                let bytes: Vec<u8> = self.0[band * ROWS..(band + 1) * ROWS]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                format!("t{band:02}:{:016x}", hasher.hash(&bytes))
            })
            .collect()
    }
}

/// The sender's identities as lookup keys (`s:<SHA-256>`): e-mail, phone,
/// e-adrese and a name of two words or more, normalised.
pub fn sender_keys(msg: &IntakeMessage) -> Vec<String> {
    let s = &msg.sender;
    let mut ids = Vec::new();
    if let Some(e) = s
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| e.contains('@'))
    {
        ids.push(format!("email:{}", e.to_lowercase()));
    }
    if let Some(p) = s.phone.as_deref() {
        let digits: String = p.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 6 {
            let e164 = crate::phone::normalise_phone(p).unwrap_or(digits);
            ids.push(format!("phone:{e164}"));
        }
    }
    if let Some(a) = s
        .e_address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        ids.push(format!("eadr:{}", a.to_lowercase()));
    }
    if let Some(n) = s.name.as_deref() {
        let mut words = tokens(n);
        if words.len() >= 2 {
            words.sort();
            ids.push(format!("name:{}", words.join(" ")));
        }
    }
    ids.into_iter()
        .map(|id| format!("s:{}", hex::encode(Sha256::digest(id.as_bytes()))))
        .collect()
}

/// The text a message is compared by: its subject and body.
fn text_of(msg: &IntakeMessage) -> String {
    format!(
        "{}\n{}",
        msg.subject.as_deref().unwrap_or_default(),
        msg.body
    )
}

/// Why two items were linked.
fn reason(same_sender: bool, text_similar: bool) -> &'static str {
    match (same_sender, text_similar) {
        (true, true) => "sender_text",
        (true, false) => "sender",
        _ => "text",
    }
}

/// Fingerprints the registered `item` (from `msg`) and links it to its
/// near-duplicates within the window; the links new to the registry (a
/// redelivery links nothing twice). A registry error is returned as it is
/// (the engine retries a transient one in place).
pub async fn link_duplicates(
    registry: &Registry,
    settings: &DuplicateSettings,
    msg: &IntakeMessage,
    item: &ItemSummary,
) -> Result<Vec<DuplicateLink>, RegistryError> {
    if !settings.enabled {
        return Ok(Vec::new());
    }
    let signature = Signature::of(&text_of(msg), settings.min_words);
    let senders = sender_keys(msg);
    let mut lookups = senders.clone();
    if let Some(sig) = &signature {
        lookups.extend(sig.band_keys());
    }
    let window = chrono::Duration::days(i64::from(settings.window_days));
    let fingerprint = Fingerprint {
        item_id: item.id.clone(),
        received_at: msg.received_at,
        channel_kind: msg.channel.kind.as_str().to_string(),
        minhash: signature.as_ref().map(Signature::to_hex),
        lookups,
    };
    let followed = msg.follow_up_of().map(|f| f.item_id);
    let candidates = registry
        .duplicate_candidates(&fingerprint, &senders, window)
        .await?;
    let mut links = Vec::new();
    for c in candidates {
        if followed.as_deref() == Some(c.item_id.as_str()) {
            continue;
        }
        let similarity = match (
            &signature,
            c.minhash.as_deref().and_then(Signature::from_hex),
        ) {
            (Some(a), Some(b)) => a.similarity(&b),
            _ => 0.0,
        };
        let text_similar = similarity >= settings.threshold;
        let linked =
            text_similar || (c.same_sender && similarity >= settings.same_sender_threshold);
        if linked {
            links.push(DuplicateLink {
                other_id: c.item_id,
                other_number: c.registration_number,
                other_channel: c.channel_kind,
                percent: (similarity * 100.0).round() as i64,
                reason: reason(c.same_sender, text_similar).to_string(),
            });
        }
    }
    let new = registry
        .record_duplicates(&fingerprint, &item.registration_number, &links)
        .await?;
    for l in &new {
        crate::metrics::duplicate_linked(msg.channel.kind.as_str(), &l.other_channel);
        tracing::info!(
            other = %l.other_number,
            percent = l.percent,
            reason = %l.reason,
            "possible duplicate linked"
        );
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LETTER: &str = "Lūdzu izsniegt būvatļauju šķūņa būvniecībai manā zemesgabalā \
        Kalnu ielā 12, Ogrē. Pielikumā pievienoju zemes robežu plānu, būvprojektu \
        minimālā sastāvā un īpašuma tiesības apliecinošu dokumentu. Atbildi lūdzu \
        sūtīt uz manu elektroniskā pasta adresi.";
    /// The same letter as OCR might read a scan: no diacritics, a few wrong letters.
    const SCANNED: &str = "Ludzu izsniegt buvatlauju skuna buvniecibai mana zemesgabala \
        Ka1nu iela 12, Ogre. Pielikuma pievienoju zemes robezu pl4nu, buvprojektu \
        minimala sastava un ipasuma tiesibas apliecinosu dokumentu. Atbi1di ludzu \
        sutit uz manu elektroniska pasta adresi.";
    const OTHER: &str = "Lūdzu piešķirt vienreizēju sociālo pabalstu sakarā ar \
        ugunsgrēku mājā, kurā dzīvoju kopā ar ģimeni. Pielikumā pievienoju izziņu \
        no ugunsdzēsības dienesta un ģimenes locekļu sarakstu ar personas datiem.";

    #[test]
    fn the_same_letter_scanned_is_similar_and_another_is_not() {
        let a = Signature::of(LETTER, 12).expect("signature");
        let b = Signature::of(SCANNED, 12).expect("signature");
        let c = Signature::of(OTHER, 12).expect("signature");
        assert!(a.similarity(&b) >= 0.5, "{}", a.similarity(&b));
        assert!(a.similarity(&c) < 0.2, "{}", a.similarity(&c));
        assert_eq!(a.similarity(&a), 1.0);
        assert_eq!(Signature::from_hex(&a.to_hex()), Some(a.clone()));
        let shared = a
            .band_keys()
            .iter()
            .filter(|k| b.band_keys().contains(k))
            .count();
        assert!(shared > 0, "the scan shares no LSH band with the letter");
    }

    #[test]
    fn short_texts_have_no_signature() {
        assert_eq!(Signature::of("Paldies par atbildi", 12), None);
    }
}
