//! The SOA serial: which number each published zone gets, so that every agent serves the same
//! serial for the same content and no agent's serial ever goes back, across restarts and
//! failed stores.
//!
//! Three rules, applied by [`Keeper`] (pure: the clock and the store are passed in):
//!
//! 1. **A change takes the clock.** New content gets `max(stored + 1, unix seconds now)` (RFC
//!    1982 order). Agents that see the same change in the same second choose the same number on
//!    their own; the `+ 1` keeps the serial growing when changes come faster than seconds.
//! 2. **The highest serial for the same content wins.** Every agent tells the others (on the
//!    peer API) the fingerprint of the content it serves and its serial; an agent serving the
//!    same fingerprint moves up to the highest serial a fresh peer claims — only ever up, and
//!    never more than [`MAX_AHEAD`] past its own clock (a member cannot push serials into a
//!    far future). Agents that landed a second apart agree within a pull period.
//! 3. **Nothing is served that is not stored.** A serial is stored (with its content's
//!    fingerprint) before it is served; when the store fails the new content is still served
//!    (failover does not wait for a disk) under the last stored serial, the failure is
//!    reported, and the store is retried. So the stored serial is always the highest ever
//!    served, and a restart can never go back. At start, content equal to the stored content
//!    keeps the stored serial (a restart changes nothing a secondary would fetch); other
//!    content takes a new one by rule 1.
//!
//! | event                    | stored content = served | stored serial S, new serial  |
//! |--------------------------|-------------------------|------------------------------|
//! | publish F, F = stored    | yes                     | S (nothing stored)           |
//! | publish F, F ≠ stored    | store ok                | max(S + 1, now)              |
//! | publish F, F ≠ stored    | store fails             | S, retried later             |
//! | peer claims (F, X), X > S, X ≤ now + MAX_AHEAD, F served | store ok | X              |
//! | same, store fails        |                         | S                            |
//! | any other claim          |                         | S                            |
//!
//! The fingerprint covers every record a query can get (SOA without its serial, NS, glue,
//! every name with its addresses, in answer order, and the names that exist without records)
//! in DNSSEC canonical wire form: the same on every agent with the same configuration and
//! decisions, whatever the agent's own listen addresses or node id.

use std::io;

use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use sha2::{Digest, Sha256};

use crate::dns::Zone;
use crate::state_dir::StateDir;

/// How far past its own clock an agent follows a peer's serial (one day): far more than clock
/// skew and bursts of changes, far less than the 2^31 that would wrap serial arithmetic.
pub const MAX_AHEAD: u32 = 86_400;

/// A digest of a zone's content, serial aside: equal for zones that answer every question alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    pub fn of(zone: &Zone) -> Self {
        fn section(hash: &mut Sha256, tag: u8, records: &[Record]) {
            hash.update([tag]);
            hash.update((records.len() as u32).to_be_bytes());
            for record in records {
                let bytes = canonical(record);
                hash.update((bytes.len() as u32).to_be_bytes());
                hash.update(&bytes);
            }
        }
        let mut hash = Sha256::new();
        let soa: Vec<Record> = zone
            .soa
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let RData::SOA(soa) = &mut r.data {
                    soa.serial = 0;
                }
                r
            })
            .collect();
        section(&mut hash, b's', &soa);
        section(&mut hash, b'n', &zone.ns);
        section(&mut hash, b'g', &zone.glue);
        // The names map has no order of its own: sorted by the name's canonical text.
        let mut names: Vec<_> = zone.names.iter().collect();
        names.sort_by_cached_key(|(name, _)| name.to_string().to_ascii_lowercase());
        for (name, records) in names {
            let name = name.to_string().to_ascii_lowercase();
            hash.update([b'N']);
            hash.update((name.len() as u32).to_be_bytes());
            hash.update(name.as_bytes());
            section(&mut hash, b'a', &records.a);
            section(&mut hash, b'A', &records.aaaa);
        }
        let digest = hash.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Fingerprint(out)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Fingerprint::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("not a 32-digit hex fingerprint"))
    }
}

fn canonical(record: &Record) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_canonical_form(true);
    // Records the zone builder made always encode; an error would only shorten the input.
    let _ = record.emit(&mut encoder);
    bytes
}

/// What the state directory keeps: the highest serial ever served, and the content it was
/// stored for (`None`: not known, as in a fresh directory or a file of an older version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub serial: u32,
    pub content: Option<Fingerprint>,
}

/// What an agent tells the others: the content it serves and that content's serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    pub content: Fingerprint,
    pub serial: u32,
}

/// `a` is after `b` in RFC 1982 serial arithmetic.
pub fn after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

/// Rule 1: the serial for new content, after `last`, at `now` (unix seconds).
pub fn for_change(last: u32, now: u64) -> u32 {
    // Unix seconds fit in a u32 until 2106; after that the serial wraps as RFC 1982 allows.
    let clock = now as u32;
    if clock != 0 && after(clock, last) {
        clock
    } else {
        next_serial(last)
    }
}

/// Rule 2: whether a peer's `theirs` may replace `ours` for the same content.
pub fn adoptable(ours: u32, theirs: u32, now: u64) -> bool {
    after(theirs, ours) && !after(theirs, (now as u32).wrapping_add(MAX_AHEAD))
}

/// What a publication or a peer's claim did to the serial.
#[derive(Debug)]
pub enum Outcome {
    /// The serial stays; nothing was stored.
    Unchanged,
    /// Stored, and to be served from now on.
    Moved(u32),
    /// The store failed: the serial stays where it was stored last.
    StoreFailed(io::Error),
}

/// The serial of one agent, by the rules above. The serial served is always `stored.serial`.
#[derive(Debug, Clone)]
pub struct Keeper {
    stored: Stored,
    /// The content being served (`None` before the first round).
    serving: Option<Fingerprint>,
}

impl Keeper {
    /// Starts from what the state directory holds.
    pub fn new(stored: Stored) -> Self {
        Self {
            stored,
            serving: None,
        }
    }

    /// The serial to serve.
    pub fn serial(&self) -> u32 {
        self.stored.serial
    }

    /// True while content is served whose serial could not be stored yet.
    pub fn pending(&self) -> bool {
        self.serving.is_some() && self.serving != self.stored.content
    }

    /// What to tell the other agents: only content whose serial is stored (a pending change
    /// would otherwise lend the old serial to new content on other agents too).
    pub fn claim(&self) -> Option<Claim> {
        match (self.serving, self.stored.content) {
            (Some(serving), Some(stored)) if serving == stored => Some(Claim {
                content: serving,
                serial: self.stored.serial,
            }),
            _ => None,
        }
    }

    /// Rules 1 and 3: `content` is about to be served (or still is, for a retry).
    pub fn publish(
        &mut self,
        content: Fingerprint,
        now: u64,
        store: impl FnOnce(&Stored) -> io::Result<()>,
    ) -> Outcome {
        self.serving = Some(content);
        if self.stored.content == Some(content) {
            return Outcome::Unchanged;
        }
        let next = Stored {
            serial: for_change(self.stored.serial, now),
            content: Some(content),
        };
        self.store(next, store)
    }

    /// Stores the pending change again, if there is one.
    pub fn retry(&mut self, now: u64, store: impl FnOnce(&Stored) -> io::Result<()>) -> Outcome {
        match self.serving {
            Some(content) if self.pending() => self.publish(content, now, store),
            _ => Outcome::Unchanged,
        }
    }

    /// Rule 2: the other agents' claims (fresh ones only; the caller knows which are).
    pub fn adopt(
        &mut self,
        claims: impl IntoIterator<Item = Claim>,
        now: u64,
        store: impl FnOnce(&Stored) -> io::Result<()>,
    ) -> Outcome {
        let Some(serving) = self.serving else {
            return Outcome::Unchanged;
        };
        let mut best = self.stored.serial;
        for claim in claims {
            if claim.content == serving && adoptable(best, claim.serial, now) {
                best = claim.serial;
            }
        }
        if best == self.stored.serial {
            return Outcome::Unchanged;
        }
        self.store(
            Stored {
                serial: best,
                content: Some(serving),
            },
            store,
        )
    }

    fn store(&mut self, next: Stored, store: impl FnOnce(&Stored) -> io::Result<()>) -> Outcome {
        match store(&next) {
            Ok(()) => {
                self.stored = next;
                Outcome::Moved(next.serial)
            }
            Err(e) => Outcome::StoreFailed(e),
        }
    }
}

/// The serial after `current`, in RFC 1982 serial arithmetic (0 is skipped).
pub fn next_serial(current: u32) -> u32 {
    match current.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// Name of the serial file: the serial on the first line (what `cat` shows an operator), the
/// fingerprint of the content it was given on the second.
const SERIAL_FILE: &str = "serial";

/// The serial file in the state directory (the directory itself only knows how to read and
/// write a file safely; what a file holds belongs to its owner).
impl StateDir {
    /// The last serial stored, with the content it was given, if any was stored. A damaged
    /// file is an error, not a reset: starting over at a lower serial is exactly what must
    /// never happen. A file of an older version (the serial alone) has no content.
    pub fn load_serial(&self) -> Result<Option<Stored>, String> {
        let path = self.path().join(SERIAL_FILE);
        let bytes = match self.read(SERIAL_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let text = String::from_utf8_lossy(&bytes);
        let damaged = |what: &str| {
            format!(
                "{}: {what}; fix or remove the file (the serial restarts from the clock)",
                path.display()
            )
        };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").trim();
        let serial = first.parse::<u32>().map_err(|_| {
            // Only a prefix of a bad first line: the file is ours, but its content is not
            // something to copy into logs whole.
            let shown: String = first.chars().take(20).collect();
            damaged(&format!("`{shown}` is not a serial number"))
        })?;
        let mut content = None;
        // Lines a later version may add are ignored.
        for line in lines {
            if let Some(("content", hex)) = line.trim().split_once(' ') {
                content = Some(
                    Fingerprint::from_hex(hex.trim())
                        .ok_or_else(|| damaged("the content line is not a fingerprint"))?,
                );
            }
        }
        Ok(Some(Stored { serial, content }))
    }

    pub fn store_serial(&self, stored: &Stored) -> io::Result<()> {
        let mut text = format!("{}\n", stored.serial);
        if let Some(content) = &stored.content {
            text.push_str(&format!("content {}\n", content.to_hex()));
        }
        self.write(SERIAL_FILE, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const F1: Fingerprint = Fingerprint([1; 16]);
    const F2: Fingerprint = Fingerprint([2; 16]);
    const T: u64 = 1_796_000_000;

    fn ok(_: &Stored) -> io::Result<()> {
        Ok(())
    }
    fn full(_: &Stored) -> io::Result<()> {
        Err(io::Error::other("No space left on device"))
    }

    #[test]
    fn serial_arithmetic_follows_rfc_1982() {
        let table: &[(u32, u32, bool)] = &[
            (2, 1, true),
            (1, 2, false),
            (1, 1, false),
            (0, u32::MAX, true),
            (5, u32::MAX - 5, true),
            ((1 << 31) - 1, 0, true),
            (1 << 31, 0, false),
        ];
        for &(a, b, want) in table {
            assert_eq!(after(a, b), want, "after({a}, {b})");
        }
    }

    #[test]
    fn a_change_takes_the_clock_or_the_next_serial() {
        // (last, now, new)
        let table: &[(u32, u64, u32)] = &[
            (100, T, T as u32),                 // behind the clock: the clock
            (T as u32 - 1, T, T as u32),        // one behind
            (T as u32, T, T as u32 + 1),        // a second change in the same second
            (T as u32 + 5, T, T as u32 + 6),    // a burst ran ahead of the clock
            (3_000_000_000, T, 3_000_000_001),  // far ahead (old state): never back
            (u32::MAX, 1u64 << 32, 1),          // both wrap: 0 is skipped
            (T as u32, T - 3600, T as u32 + 1), // the clock stepped back an hour
        ];
        for &(last, now, want) in table {
            assert_eq!(for_change(last, now), want, "for_change({last}, {now})");
        }
    }

    #[test]
    fn a_peer_serial_is_followed_up_and_not_too_far() {
        let now = T;
        let t = T as u32;
        let table: &[(u32, u32, bool)] = &[
            (t, t + 1, true),
            (t, t, false),
            (t + 1, t, false), // never down
            (t, t + MAX_AHEAD, true),
            (t, t + MAX_AHEAD + 1, false), // too far past our clock
            (t, t.wrapping_add(1 << 31), false),
        ];
        for &(ours, theirs, want) in table {
            assert_eq!(adoptable(ours, theirs, now), want, "{ours} → {theirs}");
        }
    }

    fn keeper(serial: u32, content: Option<Fingerprint>) -> Keeper {
        Keeper::new(Stored { serial, content })
    }

    #[test]
    fn a_restart_on_the_same_content_keeps_the_serial() {
        let mut k = keeper(500, Some(F1));
        assert!(matches!(k.publish(F1, T, full), Outcome::Unchanged));
        assert_eq!(
            (k.serial(), k.claim()),
            (
                500,
                Some(Claim {
                    content: F1,
                    serial: 500
                })
            )
        );
    }

    #[test]
    fn a_fresh_or_old_state_takes_a_new_serial_for_any_content() {
        let mut k = keeper(T as u32 - 10, None);
        assert_eq!(k.claim(), None, "nothing served yet");
        assert!(matches!(k.publish(F1, T, ok), Outcome::Moved(s) if s == T as u32));
    }

    #[test]
    fn a_failed_store_keeps_the_stored_serial_and_a_retry_moves_it() {
        let mut k = keeper(500, Some(F1));
        assert!(matches!(k.publish(F2, T, full), Outcome::StoreFailed(_)));
        assert_eq!(k.serial(), 500, "never above what is stored");
        assert!(k.pending());
        assert_eq!(k.claim(), None, "a pending change is not claimed");
        assert!(matches!(k.retry(T + 1, full), Outcome::StoreFailed(_)));
        assert!(matches!(k.retry(T + 2, ok), Outcome::Moved(s) if s == T as u32 + 2));
        assert!(!k.pending());
        assert!(matches!(k.retry(T + 3, ok), Outcome::Unchanged));
    }

    #[test]
    fn back_to_the_stored_content_while_the_store_fails_needs_nothing() {
        let mut k = keeper(500, Some(F1));
        assert!(matches!(k.publish(F2, T, full), Outcome::StoreFailed(_)));
        assert!(matches!(k.publish(F1, T + 1, full), Outcome::Unchanged));
        assert!(!k.pending());
        assert_eq!(k.serial(), 500);
    }

    #[test]
    fn a_flap_moves_the_serial_each_time() {
        let mut k = keeper(T as u32, Some(F1));
        let mut seen = vec![k.serial()];
        for content in [F2, F1, F2, F1] {
            assert!(matches!(k.publish(content, T, ok), Outcome::Moved(_)));
            seen.push(k.serial());
        }
        let t = T as u32;
        assert_eq!(seen, [t, t + 1, t + 2, t + 3, t + 4]);
    }

    #[test]
    fn the_highest_fresh_claim_for_the_same_content_is_adopted() {
        let t = T as u32;
        let claim = |content, serial| Claim { content, serial };
        // (ours, claims, serial after)
        type Row = (u32, Vec<Claim>, u32);
        let table: Vec<Row> = vec![
            (t, vec![claim(F1, t + 1)], t + 1),
            (
                t,
                vec![claim(F1, t + 1), claim(F1, t + 3), claim(F1, t + 2)],
                t + 3,
            ),
            (t, vec![claim(F2, t + 5)], t),         // other content
            (t + 2, vec![claim(F1, t + 1)], t + 2), // never down
            (t, vec![claim(F1, t + MAX_AHEAD + 9)], t), // too far ahead
            (t, vec![], t),
        ];
        for (ours, claims, want) in table {
            let mut k = keeper(ours, Some(F1));
            k.publish(F1, T, ok);
            k.adopt(claims.clone(), T, ok);
            assert_eq!(k.serial(), want, "{ours} with {claims:?}");
        }
        // A claim is only followed once stored; before the first round there is nothing to
        // follow.
        let mut k = keeper(t, Some(F1));
        k.publish(F1, T, ok);
        assert!(matches!(
            k.adopt([claim(F1, t + 1)], T, full),
            Outcome::StoreFailed(_)
        ));
        assert_eq!(k.serial(), t);
        let mut fresh = keeper(t, Some(F1));
        assert!(matches!(
            fresh.adopt([claim(F1, t + 1)], T, ok),
            Outcome::Unchanged
        ));
    }

    #[test]
    fn adopting_also_stores_a_pending_change() {
        let t = T as u32;
        let mut k = keeper(t, Some(F1));
        assert!(matches!(k.publish(F2, T, full), Outcome::StoreFailed(_)));
        k.adopt(
            [Claim {
                content: F2,
                serial: t + 1,
            }],
            T,
            ok,
        );
        assert_eq!((k.serial(), k.pending()), (t + 1, false));
    }

    #[test]
    fn fingerprints_print_and_parse() {
        let f = Fingerprint([0xab; 16]);
        assert_eq!(Fingerprint::from_hex(&f.to_hex()), Some(f));
        assert_eq!(Fingerprint::from_hex("ab"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(32)), None);
        let json = serde_json::to_string(&Claim {
            content: f,
            serial: 3,
        })
        .unwrap();
        assert_eq!(
            json,
            format!("{{\"content\":\"{}\",\"serial\":3}}", f.to_hex())
        );
    }

    fn config(me: &str, listen: &str) -> crate::config::Config {
        crate::config::parse(
            std::path::Path::new("t.yaml"),
            &format!(
                "zone: ha.example.com\nself: {me}\ndns: {{ listen: [\"{listen}\"] }}\n\
                 nodes:\n  - {{ id: n1, address: 192.0.2.1, priority: 2 }}\n\
                 \x20 - {{ id: n2, addresses: [192.0.2.2, \"2001:db8::2\"], priority: 1 }}\n\
                 checks:\n  - {{ id: web, type: http, url: \"http://{{address}}/\" }}\n\
                 hostnames:\n  - {{ name: app, checks: [web] }}\n  - {{ name: a.b, checks: [web], mode: all }}\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn the_fingerprint_is_the_content_not_the_serial_nor_the_agent() {
        use crate::decide::{Decision, Reason};
        use crate::dns::zone::build;
        let on = |nodes: Vec<usize>| Decision {
            nodes,
            reason: Reason::Healthy,
        };
        let n1 = config("n1", "127.0.0.1:53");
        let n2 = config("n2", "127.0.0.2:5353");
        let primary = vec![on(vec![0]), on(vec![0, 1])];
        let failed_over = vec![on(vec![1]), on(vec![1])];
        let reordered = vec![on(vec![0]), on(vec![1, 0])];
        let f = |config, decisions: &[Decision], serial| {
            Fingerprint::of(&build(config, decisions, serial))
        };
        let base = f(&n1, &primary, 1);
        assert_eq!(f(&n1, &primary, 2), base, "the serial is not content");
        assert_eq!(f(&n2, &primary, 1), base, "nor which agent serves it");
        assert_eq!(f(&n1, &primary.clone(), 1), base, "deterministic");
        assert_ne!(f(&n1, &failed_over, 1), base);
        assert_ne!(
            f(&n1, &reordered, 1),
            base,
            "the order of answers is content"
        );
        assert_ne!(f(&n1, &[], 1), base);
    }

    fn stored(serial: u32, content: Option<Fingerprint>) -> Stored {
        Stored { serial, content }
    }

    #[test]
    fn serial_survives_reopen_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("sub")).unwrap();
        assert_eq!(state.load_serial(), Ok(None));
        let content = Some(Fingerprint([7; 16]));
        state.store_serial(&stored(41, content)).unwrap();
        assert_eq!(
            StateDir::open(&dir.path().join("sub"))
                .unwrap()
                .load_serial(),
            Ok(Some(stored(41, content)))
        );
        fs::write(dir.path().join("sub/serial"), "x").unwrap();
        assert!(state.load_serial().unwrap_err().contains("not a serial"));
        fs::write(dir.path().join("sub/serial"), "5\ncontent zz\n").unwrap();
        assert!(state.load_serial().unwrap_err().contains("fingerprint"));
    }

    #[test]
    fn a_file_of_an_older_version_has_no_content() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("serial"), "1796000000\n").unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.load_serial(), Ok(Some(stored(1_796_000_000, None))));
    }

    #[test]
    fn next_serial_wraps_past_zero() {
        assert_eq!(next_serial(1), 2);
        assert_eq!(next_serial(u32::MAX), 1);
    }
}
