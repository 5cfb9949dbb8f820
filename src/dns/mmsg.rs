//! Batched UDP receive and send (`recvmmsg`/`sendmmsg`): one system call for up to `BATCH`
//! datagrams each way, as NSD, Knot and gdnsd do. The unsafe code is confined to this module;
//! callers see buffers, lengths and addresses.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest query read: bigger ones are cut and then fail to parse (FORMERR).
const RECV_SIZE: usize = 4096;

/// A peer address as the kernel gives it, reusable as a destination without conversion.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn empty() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
        Self {
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }

    /// The address as std sees it; `None` for families other than IPv4/IPv6.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET if self.len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in (family checked, length checked), and
                // sockaddr_storage is aligned for every sockaddr type.
                let a = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if self.len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let a = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// One iovec per buffer, covering the buffer's current length.
fn iovecs(bufs: &mut [Vec<u8>]) -> Vec<libc::iovec> {
    bufs.iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect()
}

/// One message header per (iovec, address); the address's `len` is what the kernel may use
/// (receiving: the whole storage; sending: the peer's address length).
fn headers(iov: &mut [libc::iovec], addrs: &mut [RawAddr]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .zip(addrs.iter_mut())
        .map(|(iov, addr)| {
            // SAFETY: msghdr is plain old data; the fields that matter are set below.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (&mut addr.storage as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = addr.len;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect()
}

/// Receive buffers for one batch.
pub struct Inbox {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<RawAddr>,
    lens: Vec<usize>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0u8; RECV_SIZE]).collect(),
            addrs: vec![RawAddr::empty(); BATCH],
            lens: vec![0; BATCH],
        }
    }
}

impl Inbox {
    /// Receives up to `BATCH` datagrams, waiting only for the first (`MSG_WAITFORONE`): on a
    /// blocking socket until one comes or the socket's read timeout passes (`WouldBlock`), on a
    /// non-blocking one not at all.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for addr in self.addrs.iter_mut() {
            addr.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        let mut iov = iovecs(&mut self.bufs);
        let mut msgs = headers(&mut iov, &mut self.addrs);
        // SAFETY: every mmsghdr points at a live buffer and address of `self`, sized as
        // declared, for the duration of the call; the kernel writes within those sizes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, m) in msgs.iter().take(n).enumerate() {
            self.lens[i] = m.msg_len as usize;
            self.addrs[i].len = m.msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// Datagram `i` of the last `recv` and who sent it.
    pub fn get(&self, i: usize) -> (&[u8], &RawAddr) {
        (&self.bufs[i][..self.lens[i]], &self.addrs[i])
    }
}

/// Responses waiting to be sent, with their destinations.
#[derive(Default)]
pub struct Outbox {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<RawAddr>,
    /// How many of `bufs` hold a response to send.
    len: usize,
    /// How many of those are already sent.
    sent: usize,
}

impl Outbox {
    /// A buffer for the next response to `to` (cleared); it is sent unless `cancel`led.
    pub fn next(&mut self, to: &RawAddr) -> &mut Vec<u8> {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(1232));
            self.addrs.push(RawAddr::empty());
        }
        self.addrs[self.len] = *to;
        self.len += 1;
        let buf = &mut self.bufs[self.len - 1];
        buf.clear();
        buf
    }

    /// Drops the response begun by the last `next` (nothing to send after all).
    pub fn cancel(&mut self) {
        self.len -= 1;
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.sent == self.len
    }

    /// Sends what is not sent yet. While the socket's send buffer is full, a blocking socket
    /// waits (up to its write timeout) and a non-blocking one returns; either way `WouldBlock`
    /// then means the rest is still unsent. Datagrams the kernel refuses outright (an
    /// unreachable destination…) are skipped: a DNS server does not retry answers.
    pub fn send(&mut self, fd: RawFd) -> io::Result<()> {
        while self.sent < self.len {
            let pending = self.sent..self.len;
            let mut iov = iovecs(&mut self.bufs[pending.clone()]);
            let mut msgs = headers(&mut iov, &mut self.addrs[pending]);
            // SAFETY: every mmsghdr points at a live buffer and address of `self` for the
            // duration of the call; the kernel only reads them.
            let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, 0) };
            if n < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::WouldBlock
                    || error.kind() == io::ErrorKind::Interrupted
                {
                    return Err(error);
                }
                // The first datagram cannot be sent at all: skip it, keep the rest.
                tracing::debug!(%error, "could not send a DNS response");
                self.sent += 1;
                continue;
            }
            self.sent += n as usize;
        }
        self.discard();
        Ok(())
    }

    /// Forgets every response not sent yet.
    pub fn discard(&mut self) {
        self.len = 0;
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn a_batch_in_and_the_answers_out_to_their_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut inbox = Inbox::default();
        assert_eq!(
            inbox.recv(server.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for (i, c) in clients.iter().enumerate() {
            c.send_to(
                format!("query {i}").as_bytes(),
                server.local_addr().unwrap(),
            )
            .unwrap();
        }
        let mut got = 0;
        let mut outbox = Outbox::default();
        for _ in 0..100 {
            match inbox.recv(server.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (data, from) = inbox.get(i);
                        let who = clients
                            .iter()
                            .position(|c| Some(c.local_addr().unwrap()) == from.socket_addr());
                        assert_eq!(
                            data,
                            format!("query {}", who.expect("a known sender")).as_bytes()
                        );
                        outbox.next(from).extend_from_slice(&[b'A', data[6]]);
                        got += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
            if got == 3 {
                break;
            }
        }
        assert_eq!(got, 3);
        outbox.send(server.as_raw_fd()).unwrap();
        assert!(outbox.is_empty());
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&[b'A', b'0' + i as u8][..], server.local_addr().unwrap())
            );
        }
    }
}
