//! TCP probes (`tcp`, alias `telnet`): connect, optionally send a line and expect a banner.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::io_words;
use crate::config::TcpCheck;

/// How much of the banner is read looking for `expect`.
const BANNER_LIMIT: usize = 4096;

#[derive(Debug)]
pub struct TcpProbe {
    addr: SocketAddr,
    send: Option<String>,
    expect: Option<String>,
}

impl TcpProbe {
    pub fn new(addr: SocketAddr, check: &TcpCheck) -> Self {
        Self {
            addr,
            send: check.send.clone(),
            expect: check.expect.clone(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn run(&self) -> Result<(), String> {
        let words = |e: std::io::Error| {
            io_words(&e)
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
        };
        let mut stream = TcpStream::connect(self.addr).await.map_err(words)?;
        if let Some(line) = &self.send {
            stream
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .map_err(|e| format!("sending: {}", words(e)))?;
        }
        let Some(expect) = &self.expect else {
            return Ok(());
        };
        let mut banner = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        while banner.len() < BANNER_LIMIT {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading: {}", words(e)))?;
            if n == 0 {
                break;
            }
            banner.extend_from_slice(&buf[..n]);
            if banner
                .windows(expect.len().max(1))
                .any(|w| w == expect.as_bytes())
            {
                return Ok(());
            }
        }
        let seen = String::from_utf8_lossy(&banner[..banner.len().min(80)])
            .trim()
            .to_string();
        Err(if seen.is_empty() {
            format!("no banner (expected {expect:?})")
        } else {
            format!("banner did not contain {expect:?} (got {seen:?})")
        })
    }
}
