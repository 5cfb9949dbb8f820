//! The answer to one question, read from a `Zone`: pure, no I/O, no allocation.
//!
//! | question                                  | rcode    | answer      | authority | additional |
//! |-------------------------------------------|----------|-------------|-----------|------------|
//! | class other than IN (or ANY)              | REFUSED  |             |           |            |
//! | name outside the zone                     | REFUSED  |             |           |            |
//! | AXFR / IXFR                               | REFUSED  |             |           |            |
//! | apex SOA                                  | NOERROR  | SOA         |           |            |
//! | apex NS                                   | NOERROR  | NS          |           | glue       |
//! | apex ANY (RFC 8482: one RRset)            | NOERROR  | SOA         |           |            |
//! | hostname with no answer yet: A, AAAA, ANY | SERVFAIL |             |           |            |
//! | existing name, type it has (A, AAAA)      | NOERROR  | RRset       |           |            |
//! | existing name with addresses, ANY         | NOERROR  | HINFO "RFC8482" |       |            |
//! | existing name, other type (NODATA)        | NOERROR  |             | SOA       |            |
//! | name that does not exist                  | NXDOMAIN |             | SOA       |            |
//!
//! Before the first round of checks only hostnames can lack an answer: the apex, the
//! nameservers' addresses and the set of names come from the configuration and are answered
//! from the start (see `Zone::not_ready`).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};

use super::zone::Zone;

/// What to send back: borrowed slices of the zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response<'z> {
    pub rcode: ResponseCode,
    /// Set for every answer from inside the zone.
    pub authoritative: bool,
    pub answers: &'z [Record],
    pub authority: &'z [Record],
    pub additional: &'z [Record],
}

impl Response<'_> {
    fn code(rcode: ResponseCode, authoritative: bool) -> Self {
        Response {
            rcode,
            authoritative,
            answers: &[],
            authority: &[],
            additional: &[],
        }
    }
}

/// Answers one question from the zone.
pub fn respond<'z>(
    zone: &'z Zone,
    name: &LowerName,
    qtype: RecordType,
    qclass: DNSClass,
) -> Response<'z> {
    if !matches!(qclass, DNSClass::IN | DNSClass::ANY) || !zone.origin.zone_of(name) {
        return Response::code(ResponseCode::Refused, false);
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Response::code(ResponseCode::Refused, false);
    }
    let positive = |answers: &'z [Record], additional: &'z [Record]| Response {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        authority: &[],
        additional,
    };
    let negative = |rcode| Response {
        rcode,
        authoritative: true,
        answers: &[],
        authority: &zone.soa,
        additional: &[],
    };

    if *name == zone.origin {
        return match qtype {
            RecordType::SOA => positive(&zone.soa, &[]),
            RecordType::NS => positive(&zone.ns, &zone.glue),
            RecordType::ANY => positive(&zone.soa, &[]),
            _ => negative(ResponseCode::NoError),
        };
    }
    let Some(records) = zone.names.get(name) else {
        return negative(ResponseCode::NXDomain);
    };
    if records.pending && matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) {
        return Response::code(ResponseCode::ServFail, false);
    }
    let rrset = match qtype {
        RecordType::A => &records.a,
        RecordType::AAAA => &records.aaaa,
        RecordType::ANY => &records.any,
        _ => return negative(ResponseCode::NoError),
    };
    if rrset.is_empty() {
        negative(ResponseCode::NoError)
    } else {
        positive(rrset, &[])
    }
}
