//! DNS messages (RFC 1035) for the client's `dns://SERVER/name` targets:
//! an A or AAAA query, and the addresses in the answer. Pure: the UDP
//! exchange lives in the client.
//!
//! The parser never panics and never loops: every read is bounds-checked,
//! a compression pointer must point before the name that uses it (so a
//! chain of pointers always ends), names are at most 255 bytes, and a
//! CNAME chain is followed at most [`MAX_CNAMES`] links.

use std::fmt;

/// Record types asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// IPv4 address (type 1).
    A,
    /// IPv6 address (type 28).
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
        }
    }
}

/// One address from an answer, as its bytes (the core names no sockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// The addresses of an answer and the smallest TTL among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) addresses: Vec<Address>,
    /// Seconds; `None` without addresses.
    pub(crate) ttl: Option<u32>,
}

/// Why a name cannot be asked for or an answer was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DnsError {
    /// The name to ask for is not a DNS name.
    BadName(String),
    /// The message is not an answer to our query (another id, not a
    /// response): ignore it and keep waiting.
    NotOurs(&'static str),
    /// The server answered with an error (RCODE; 3 is "no such name").
    Rcode(u8),
    /// The answer did not fit in UDP (TC set); TCP is not supported.
    Truncated,
    /// The message is malformed: what and at which byte.
    Malformed(&'static str, usize),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::BadName(why) => write!(f, "not a DNS name: {why}"),
            DnsError::NotOurs(why) => write!(f, "not an answer to the query: {why}"),
            DnsError::Rcode(3) => write!(f, "no such name (NXDOMAIN)"),
            DnsError::Rcode(2) => write!(f, "server failure (SERVFAIL)"),
            DnsError::Rcode(5) => write!(f, "query refused (REFUSED)"),
            DnsError::Rcode(c) => write!(f, "server answered with error code {c}"),
            DnsError::Truncated => write!(f, "answer truncated (too large for UDP)"),
            DnsError::Malformed(what, at) => write!(f, "malformed answer: {what} at byte {at}"),
        }
    }
}

/// Longest name (RFC 1035 §2.3.4), in wire bytes.
const MAX_NAME: usize = 255;
/// CNAME links followed from the name asked for.
pub(crate) const MAX_CNAMES: usize = 8;
const HEADER: usize = 12;
const CLASS_IN: u16 = 1;
const TYPE_CNAME: u16 = 5;
/// Flags of a query: a standard query asking for recursion (RD).
const FLAGS_QUERY: u16 = 0x0100;

/// A query for `name`'s records of type `qtype`, with id `id`.
///
/// # Errors
/// [`DnsError::BadName`] for an empty label, a label over 63 bytes or a
/// name over 255 bytes. A trailing dot is allowed.
pub(crate) fn encode_query(id: u16, name: &str, qtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(HEADER + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAGS_QUERY.to_be_bytes());
    // One question; no answer, authority or additional records.
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    encode_name(name, &mut out)?;
    out.extend_from_slice(&qtype.code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), DnsError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(DnsError::BadName("empty name".into()));
    }
    let start = out.len();
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(DnsError::BadName(format!("{name:?} has an empty label")));
        }
        if label.len() > 63 {
            return Err(DnsError::BadName(format!(
                "{name:?} has a label of {} bytes (at most 63)",
                label.len()
            )));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > MAX_NAME {
        return Err(DnsError::BadName(format!("{name:?} is over 255 bytes")));
    }
    Ok(())
}

/// The addresses of type `qtype` for `name` in `msg`, the answer to the
/// query with id `id`: records of the name itself or of the end of its
/// CNAME chain (followed within the answer). An answer without such
/// records is an empty [`Answer`], not an error.
///
/// # Errors
/// [`DnsError::NotOurs`] for a message to ignore (another id, a query);
/// [`DnsError::Rcode`], [`DnsError::Truncated`], [`DnsError::Malformed`].
pub(crate) fn parse_answer(
    msg: &[u8],
    id: u16,
    name: &str,
    qtype: RecordType,
) -> Result<Answer, DnsError> {
    if msg.len() < HEADER {
        return Err(DnsError::Malformed(
            "header shorter than 12 bytes",
            msg.len(),
        ));
    }
    if u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err(DnsError::NotOurs("another id"));
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotOurs("a query, not a response"));
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    let rcode = (flags & 0x000f) as u8;
    if rcode != 0 {
        return Err(DnsError::Rcode(rcode));
    }
    let count = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]) as usize;
    let (questions, answers) = (count(4), count(6));
    let mut pos = HEADER;
    for _ in 0..questions {
        pos = read_name(msg, pos, &mut Vec::new())?;
        pos = skip(msg, pos, 4, "question cut short")?;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        let (record, next) = read_record(msg, pos)?;
        records.push(record);
        pos = next;
    }
    Ok(select(&records, name, qtype))
}

/// One resource record of the answer section.
struct Record {
    owner: Vec<u8>,
    rtype: u16,
    class: u16,
    ttl: u32,
    /// Address bytes (A, AAAA) or the decoded target name (CNAME).
    data: Vec<u8>,
}

fn read_record(msg: &[u8], at: usize) -> Result<(Record, usize), DnsError> {
    let mut owner = Vec::new();
    let pos = read_name(msg, at, &mut owner)?;
    let fixed = msg
        .get(pos..pos + 10)
        .ok_or(DnsError::Malformed("record header cut short", pos))?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    let start = pos + 10;
    let rdata = msg
        .get(start..start + len)
        .ok_or(DnsError::Malformed("record data cut short", start))?;
    let data = if rtype == TYPE_CNAME {
        let mut target = Vec::new();
        let end = read_name(msg, start, &mut target)?;
        if end != start + len {
            return Err(DnsError::Malformed("CNAME data length", start));
        }
        target
    } else {
        rdata.to_vec()
    };
    let record = Record {
        owner,
        rtype,
        class,
        ttl,
        data,
    };
    Ok((record, start + len))
}

/// Follows `name`'s CNAME chain and collects the addresses of its end.
fn select(records: &[Record], name: &str, qtype: RecordType) -> Answer {
    let mut wanted = Vec::new();
    // The name was encodable when the query was built; a name that is not
    // simply matches nothing.
    let _ = encode_name(name, &mut wanted);
    let mut wanted = lower_wire_name(&wanted);
    for _ in 0..MAX_CNAMES {
        let alias = records
            .iter()
            .find(|r| r.rtype == TYPE_CNAME && r.class == CLASS_IN && r.owner == wanted);
        match alias {
            Some(r) => wanted = r.data.clone(),
            None => break,
        }
    }
    let mut answer = Answer {
        addresses: Vec::new(),
        ttl: None,
    };
    for r in records {
        if r.class != CLASS_IN || r.rtype != qtype.code() || r.owner != wanted {
            continue;
        }
        let address = match (qtype, r.data.as_slice()) {
            (RecordType::A, &[a, b, c, d]) => Address::V4([a, b, c, d]),
            (RecordType::Aaaa, data) => match <[u8; 16]>::try_from(data) {
                Ok(bytes) => Address::V6(bytes),
                Err(_) => continue,
            },
            _ => continue,
        };
        answer.addresses.push(address);
        answer.ttl = Some(answer.ttl.map_or(r.ttl, |t| t.min(r.ttl)));
    }
    answer
}

/// A wire-format name with its ASCII letters lowered (names compare
/// without regard to case).
fn lower_wire_name(name: &[u8]) -> Vec<u8> {
    name.iter().map(u8::to_ascii_lowercase).collect()
}

/// Reads the name at `at` into `out` (wire format, lowered, ending with
/// the root label) and returns where the record continues.
fn read_name(msg: &[u8], at: usize, out: &mut Vec<u8>) -> Result<usize, DnsError> {
    let mut pos = at;
    // Where the record continues: after the first pointer, if any.
    let mut end = None;
    // Pointers must go strictly backwards from here, so they cannot loop.
    let mut limit = at;
    loop {
        let len = *msg
            .get(pos)
            .ok_or(DnsError::Malformed("name cut short", pos))? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                out.push(0);
                if out.len() > MAX_NAME {
                    return Err(DnsError::Malformed("name over 255 bytes", at));
                }
                return Ok(end.unwrap_or(pos + 1));
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(DnsError::Malformed("label cut short", pos))?;
                out.push(len as u8);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                if out.len() > MAX_NAME {
                    return Err(DnsError::Malformed("name over 255 bytes", at));
                }
                pos += 1 + len;
            }
            0xc0 => {
                let low = *msg
                    .get(pos + 1)
                    .ok_or(DnsError::Malformed("pointer cut short", pos))?;
                let target = ((len & 0x3f) << 8) | low as usize;
                if target >= limit {
                    return Err(DnsError::Malformed("pointer does not point backwards", pos));
                }
                end.get_or_insert(pos + 2);
                limit = target;
                pos = target;
            }
            _ => return Err(DnsError::Malformed("unknown label type", pos)),
        }
    }
}

fn skip(msg: &[u8], at: usize, n: usize, what: &'static str) -> Result<usize, DnsError> {
    if msg.len() < at + n {
        return Err(DnsError::Malformed(what, at));
    }
    Ok(at + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u16 = 0xbeef;

    /// `svc.test` in wire format.
    const SVC: &[u8] = b"\x03svc\x04test\x00";

    fn query_bytes(qtype: u8) -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(SVC);
        q.extend_from_slice(&[0, qtype, 0, 1]);
        q
    }

    /// A response header with `answers` records, echoing the question.
    fn response(flags: [u8; 2], answers: u8) -> Vec<u8> {
        let mut r = query_bytes(1);
        r[2] = flags[0];
        r[3] = flags[1];
        r[7] = answers;
        r
    }

    /// An A record owned by the question's name (pointer to byte 12).
    fn a_record(r: &mut Vec<u8>, ttl: u8, ip: [u8; 4]) {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, ttl, 0, 4]);
        r.extend_from_slice(&ip);
    }

    #[test]
    fn a_query_is_byte_exact() {
        assert_eq!(
            encode_query(ID, "svc.test", RecordType::A).unwrap(),
            query_bytes(1)
        );
        assert_eq!(
            encode_query(ID, "svc.test.", RecordType::Aaaa).unwrap(),
            query_bytes(28)
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", ".", "a..b", &"x".repeat(64), &["abc"; 70].join(".")] {
            let err = encode_query(ID, name, RecordType::A).unwrap_err();
            assert!(matches!(err, DnsError::BadName(_)), "{name:?}: {err:?}");
        }
        // 63 bytes is the largest label.
        encode_query(ID, &"x".repeat(63), RecordType::A).unwrap();
    }

    #[test]
    fn addresses_behind_compression_pointers() {
        let mut r = response([0x81, 0x80], 2);
        a_record(&mut r, 30, [127, 0, 0, 2]);
        a_record(&mut r, 20, [127, 0, 0, 3]);
        let answer = parse_answer(&r, ID, "svc.test", RecordType::A).unwrap();
        assert_eq!(
            answer.addresses,
            [Address::V4([127, 0, 0, 2]), Address::V4([127, 0, 0, 3])]
        );
        assert_eq!(answer.ttl, Some(20));
        // Names compare without regard to case.
        let answer = parse_answer(&r, ID, "SVC.Test", RecordType::A).unwrap();
        assert_eq!(answer.addresses.len(), 2);
    }

    #[test]
    fn aaaa_records() {
        let mut r = response([0x81, 0x80], 1);
        r[HEADER + SVC.len() + 1] = 28;
        r.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 1, 0, 0, 16]);
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        r.extend_from_slice(&v6);
        let answer = parse_answer(&r, ID, "svc.test", RecordType::Aaaa).unwrap();
        assert_eq!(answer.addresses, [Address::V6(v6)]);
        assert_eq!(answer.ttl, Some(256));
    }

    #[test]
    fn cname_then_a() {
        let mut r = response([0x81, 0x80], 3);
        // svc.test CNAME pod.svc.test (label "pod" + pointer to svc.test).
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6]);
        let pod = r.len();
        r.extend_from_slice(b"\x03pod\xc0\x0c");
        // pod.svc.test A 10.0.0.1 (pointer to the CNAME's data).
        r.extend_from_slice(&[0xc0, pod as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&[10, 0, 0, 1]);
        // An A record of another name is not ours.
        r.extend_from_slice(&[0xc0, 16, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&[10, 0, 0, 9]);
        let answer = parse_answer(&r, ID, "svc.test", RecordType::A).unwrap();
        assert_eq!(answer.addresses, [Address::V4([10, 0, 0, 1])]);
    }

    #[test]
    fn a_cname_loop_ends() {
        let mut r = response([0x81, 0x80], 1);
        // svc.test CNAME svc.test.
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        let answer = parse_answer(&r, ID, "svc.test", RecordType::A).unwrap();
        assert!(answer.addresses.is_empty());
    }

    #[test]
    fn empty_answer_is_not_an_error() {
        let r = response([0x81, 0x80], 0);
        let answer = parse_answer(&r, ID, "svc.test", RecordType::A).unwrap();
        assert_eq!(
            answer,
            Answer {
                addresses: vec![],
                ttl: None
            }
        );
    }

    #[test]
    fn other_ids_and_queries_are_ignored() {
        let mut r = response([0x81, 0x80], 0);
        r[1] = 0xee;
        assert!(matches!(
            parse_answer(&r, ID, "svc.test", RecordType::A),
            Err(DnsError::NotOurs(_))
        ));
        let q = query_bytes(1);
        assert!(matches!(
            parse_answer(&q, ID, "svc.test", RecordType::A),
            Err(DnsError::NotOurs(_))
        ));
    }

    #[test]
    fn errors_and_truncation() {
        let nx = response([0x81, 0x83], 0);
        let err = parse_answer(&nx, ID, "svc.test", RecordType::A).unwrap_err();
        assert_eq!(err, DnsError::Rcode(3));
        assert_eq!(err.to_string(), "no such name (NXDOMAIN)");
        let tc = response([0x83, 0x80], 0);
        assert_eq!(
            parse_answer(&tc, ID, "svc.test", RecordType::A),
            Err(DnsError::Truncated)
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut r = response([0x81, 0x80], 2);
        a_record(&mut r, 30, [127, 0, 0, 2]);
        a_record(&mut r, 30, [127, 0, 0, 3]);
        for len in 0..r.len() {
            let err = parse_answer(&r[..len], ID, "svc.test", RecordType::A).unwrap_err();
            assert!(matches!(err, DnsError::Malformed(..)), "{len}: {err:?}");
        }
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        // The answer's owner points at itself.
        let mut r = response([0x81, 0x80], 1);
        let at = r.len();
        r.extend_from_slice(&[0xc0, at as u8, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        assert_eq!(
            parse_answer(&r, ID, "svc.test", RecordType::A),
            Err(DnsError::Malformed("pointer does not point backwards", at))
        );
        // Two pointers pointing at each other.
        let mut r = response([0x81, 0x80], 1);
        let at = r.len();
        r.extend_from_slice(&[0xc0, at as u8 + 2, 0xc0, at as u8]);
        assert!(matches!(
            parse_answer(&r, ID, "svc.test", RecordType::A),
            Err(DnsError::Malformed(..))
        ));
    }

    #[test]
    fn reserved_label_types_and_long_names_are_refused() {
        let mut r = response([0x81, 0x80], 1);
        r.extend_from_slice(&[0x40, 0]);
        assert!(matches!(
            parse_answer(&r, ID, "svc.test", RecordType::A),
            Err(DnsError::Malformed("unknown label type", _))
        ));
        // 5 labels of 63 bytes: 320 bytes of name.
        let mut r = response([0x81, 0x80], 1);
        for _ in 0..5 {
            r.push(63);
            r.extend_from_slice(&[b'x'; 63]);
        }
        r.push(0);
        assert!(matches!(
            parse_answer(&r, ID, "svc.test", RecordType::A),
            Err(DnsError::Malformed("name over 255 bytes", _))
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator over many lengths and contents.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for round in 0..20_000 {
            let len = (round % 80) + HEADER;
            let mut msg: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            msg[0] = 0xbe;
            msg[1] = 0xef;
            msg[2] = 0x81;
            msg[3] = 0x80;
            msg[4] = 0;
            let _ = parse_answer(&msg, ID, "svc.test", RecordType::A);
        }
    }
}
