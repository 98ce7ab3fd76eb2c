//! The kernel's TCP socket tables, `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! The sidecar shares the pod's network namespace with the app, so these
//! two files list every connection the app has: the drain quiet period
//! (`-drain-quiet-period`) reads them to see when the load balancer has
//! stopped opening new connections to the target port.
//!
//! The format (`net/ipv4/tcp_ipv4.c`, `get_tcp4_sock`): a header line, then
//! one line per socket, fields separated by spaces:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!    5: 0100007F:8193 0100007F:B9B2 01 00000000:00000000 00:00000000 00000000     0        0 210049 1 ...
//! ```
//!
//! An address is the raw network-order bytes printed as 32-bit words in
//! the host's byte order (one word for IPv4, four for IPv6), a colon, and
//! the port in hex. `st` is the state number of `include/net/tcp_states.h`.
//! Only the fields up to the inode are read; later ones vary by kernel.
//!
//! [`parse`] is pure (bytes in, entries or a one-line error out) and
//! fuzzed; [`read`] is the thin IO shell.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A TCP state, as numbered in the kernel's `tcp_states.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// 1: connected.
    Established,
    /// 2: connecting (outgoing).
    SynSent,
    /// 3: a handshake in progress (incoming).
    SynRecv,
    /// 4: closed by us, waiting for the peer's ACK.
    FinWait1,
    /// 5: closed by us, waiting for the peer's FIN.
    FinWait2,
    /// 6: closed, lingering so late segments are not misread.
    TimeWait,
    /// 7: closed (unbound sockets).
    Close,
    /// 8: closed by the peer, not yet by us.
    CloseWait,
    /// 9: closed by both, waiting for the last ACK.
    LastAck,
    /// 10 (`0A`): a listening socket.
    Listen,
    /// 11: both closed at once.
    Closing,
    /// 12: a request socket in the handshake.
    NewSynRecv,
    /// Any other number (a future kernel's).
    Other(u8),
}

impl TcpState {
    /// The state of a kernel state number.
    pub fn from_number(n: u8) -> Self {
        match n {
            1 => Self::Established,
            2 => Self::SynSent,
            3 => Self::SynRecv,
            4 => Self::FinWait1,
            5 => Self::FinWait2,
            6 => Self::TimeWait,
            7 => Self::Close,
            8 => Self::CloseWait,
            9 => Self::LastAck,
            10 => Self::Listen,
            11 => Self::Closing,
            12 => Self::NewSynRecv,
            n => Self::Other(n),
        }
    }

    /// A connection that can still carry the app's data: in its handshake
    /// or established.
    pub fn is_open(self) -> bool {
        matches!(self, Self::SynRecv | Self::NewSynRecv | Self::Established)
    }

    /// A connection (open or closing), as opposed to a listening or
    /// unbound socket.
    pub fn is_connection(self) -> bool {
        !matches!(self, Self::Listen | Self::Close)
    }
}

/// One socket of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Our side: for a connection the app accepted, the port it listens on.
    pub local: SocketAddr,
    /// The peer's side (`0.0.0.0:0` for a listener).
    pub remote: SocketAddr,
    /// The TCP state.
    pub state: TcpState,
    /// The socket's inode; 0 when no process holds it (not yet accepted,
    /// or closed and lingering).
    pub inode: u64,
}

/// Why a table could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    /// Line number, from 1 (0: the whole input).
    pub line: usize,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "TCP table: {}", self.what)
        } else {
            write!(f, "TCP table line {}: {}", self.line, self.what)
        }
    }
}

impl std::error::Error for TableError {}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6` (either; each
/// address's width says which). The first line must be the header.
///
/// # Errors
/// [`TableError`] naming the first malformed line.
pub fn parse(text: &[u8]) -> Result<Vec<Entry>, TableError> {
    let text = std::str::from_utf8(text).map_err(|e| TableError {
        line: 0,
        what: format!("not UTF-8: {e}"),
    })?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.split_whitespace().next() == Some("sl") => {}
        Some(_) => {
            return Err(TableError {
                line: 1,
                what: "no header (expected a line starting with \"sl\")".into(),
            })
        }
        None => {
            return Err(TableError {
                line: 0,
                what: "empty".into(),
            })
        }
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).map_err(|what| TableError { line: i + 1, what }))
        .collect()
}

fn parse_line(line: &str) -> Result<Entry, String> {
    let mut fields = line.split_whitespace();
    let mut next = |name: &str| fields.next().ok_or_else(|| format!("no {name} field"));
    let sl = next("sl")?;
    if sl
        .strip_suffix(':')
        .is_none_or(|n| n.parse::<u64>().is_err())
    {
        return Err(format!("bad slot {:?}", clip(sl)));
    }
    let local = address(next("local_address")?)?;
    let remote = address(next("rem_address")?)?;
    if local.is_ipv4() != remote.is_ipv4() {
        return Err("local and remote addresses of different families".into());
    }
    let st = next("st")?;
    let state = u8::from_str_radix(st, 16)
        .ok()
        .filter(|_| st.len() == 2)
        .ok_or_else(|| format!("bad state {:?}", clip(st)))?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout: not used.
    for name in ["tx_queue", "tr", "retrnsmt", "uid", "timeout"] {
        next(name)?;
    }
    let inode = next("inode")?;
    let inode = inode
        .parse::<u64>()
        .map_err(|_| format!("bad inode {:?}", clip(inode)))?;
    Ok(Entry {
        local,
        remote,
        state: TcpState::from_number(state),
        inode,
    })
}

/// `HEX:PORT`, the address as 32-bit words in host byte order.
fn address(field: &str) -> Result<SocketAddr, String> {
    let bad = || format!("bad address {:?}", clip(field));
    let (ip, port) = field.split_once(':').ok_or_else(bad)?;
    if port.len() != 4 || !is_hex(port) || !is_hex(ip) {
        return Err(bad());
    }
    let port = u16::from_str_radix(port, 16).map_err(|_| bad())?;
    let words = |n: usize| -> Result<Vec<[u8; 4]>, String> {
        (0..n)
            .map(|i| {
                u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                    .map(u32::to_ne_bytes)
                    .map_err(|_| bad())
            })
            .collect()
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(words(1)?[0])),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, w) in words(4)?.into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return Err(bad()),
    };
    Ok(SocketAddr::new(ip, port))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// At most 40 characters of a bad field, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Reads and parses `/proc/net/tcp` and `/proc/net/tcp6` of this
/// process's network namespace (the pod's). A missing `tcp6` (IPv6 off)
/// is an empty table.
///
/// # Errors
/// A one-line message naming the file.
pub fn read() -> Result<Vec<Entry>, String> {
    let mut all = Vec::new();
    for (path, required) in [("/proc/net/tcp", true), ("/proc/net/tcp6", false)] {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {path}: {e}")),
        };
        all.extend(parse(&text).map_err(|e| format!("{path}: {e}"))?);
    }
    Ok(all)
}

/// The namespace's count of accepted TCP connections: `PassiveOpens` of
/// the `Tcp:` lines of `/proc/net/snmp` (a line of names, then a line of
/// values). It counts the connections too short-lived for any sample of
/// the tables to show.
///
/// # Errors
/// A one-line message when the text has no such counter.
pub fn passive_opens(snmp: &str) -> Result<u64, String> {
    let mut tcp = snmp.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or(""), tcp.next().unwrap_or(""));
    let at = names.split_whitespace().position(|n| n == "PassiveOpens");
    at.and_then(|i| values.split_whitespace().nth(i))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no Tcp PassiveOpens counter in /proc/net/snmp".into())
}

/// Reads [`passive_opens`] of this process's network namespace.
///
/// # Errors
/// A one-line message naming the file.
pub fn read_passive_opens() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/net/snmp")
        .map_err(|e| format!("cannot read /proc/net/snmp: {e}"))?;
    passive_opens(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = include_str!("../tests/data/proc_net_tcp.txt");
    const TCP6: &str = include_str!("../tests/data/proc_net_tcp6.txt");

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_a_real_ipv4_table() {
        let t = parse(TCP.as_bytes()).unwrap();
        assert_eq!(t.len(), 10);
        // The listener on 127.0.0.1:33171 (0x8193), one connection in its backlog.
        assert_eq!(
            t[2],
            Entry {
                local: sa("127.0.0.1:33171"),
                remote: sa("0.0.0.0:0"),
                state: TcpState::Listen,
                inode: 210046,
            }
        );
        // An accepted connection, and the client's side of it.
        assert_eq!(t[4].local, sa("127.0.0.1:33171"));
        assert_eq!(t[4].remote, sa("127.0.0.1:47538"));
        assert_eq!(t[4].state, TcpState::Established);
        assert_eq!(t[4].inode, 210049);
        assert_eq!(t[5].local, sa("127.0.0.1:47538"));
        assert_eq!(t[3].state, TcpState::TimeWait);
        assert_eq!(t[3].inode, 0);
        // Never accepted, closed by the client: no inode.
        assert_eq!(t[9].state, TcpState::CloseWait);
        assert_eq!(t[9].inode, 0);
        let states: Vec<_> = t.iter().map(|e| e.state).collect();
        assert!(states.contains(&TcpState::FinWait2));
    }

    #[test]
    fn parses_a_real_ipv6_table() {
        let t = parse(TCP6.as_bytes()).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t[0].local, sa("[::1]:55587"));
        assert_eq!(t[0].state, TcpState::Listen);
        assert_eq!(t[1].local, sa("[::]:33151"));
        // IPv4 on a dual-stack listener: a v4-mapped address.
        assert_eq!(t[2].local, sa("[::ffff:127.0.0.1]:33151"));
        assert_eq!(t[2].remote, sa("[::ffff:127.0.0.1]:47636"));
        assert_eq!(t[2].state, TcpState::Established);
        assert_eq!(t[3].remote, sa("[::1]:38674"));
        assert_eq!(t[3].inode, 210052);
    }

    #[test]
    fn header_only_is_empty_and_blank_lines_are_skipped() {
        let header = TCP.lines().next().unwrap();
        assert_eq!(parse(header.as_bytes()).unwrap(), vec![]);
        let text = format!("{header}\n\n{}\n\n", TCP.lines().nth(1).unwrap());
        assert_eq!(parse(text.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let header = TCP.lines().next().unwrap();
        let line = TCP.lines().nth(4).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "TCP table: empty"),
            ("hello".into(), "TCP table line 1: no header"),
            (
                format!("{header}\n   0: 0100007F:9503"),
                "line 2: no rem_address field",
            ),
            (
                format!("{header}\n{}", line.replace("0100007F:A315", "0100007F:A3")),
                "bad address \"0100007F:A3\"",
            ),
            (
                format!(
                    "{header}\n{}",
                    line.replace("0100007F:A315", "010Z007F:A315")
                ),
                "bad address",
            ),
            (
                format!(
                    "{header}\n{}",
                    line.replace("0100007F:A315", "0100007:A315")
                ),
                "bad address",
            ),
            (
                format!(
                    "{header}\n{}",
                    line.replace("0100007F:A315", "+100007F:A315")
                ),
                "bad address",
            ),
            (
                format!(
                    "{header}\n{}",
                    line.replace("0100007F:A315", &format!("{}:A315", "0".repeat(32)))
                ),
                "different families",
            ),
            (
                format!("{header}\n{}", line.replace(" 06 ", " 6 ")),
                "bad state \"6\"",
            ),
            (
                format!("{header}\n{}", line.replace("   4:", "   x:")),
                "bad slot",
            ),
            (
                format!("{header}\n{}", line.replace(" 0 3 ", " -1 3 ")),
                "bad inode \"-1\"",
            ),
            (
                format!("{header}\n{}", &line[..line.find(" 0 3 ").unwrap()]),
                "no inode field",
            ),
        ];
        for (input, want) in cases {
            let e = parse(input.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
        let e = parse(b"sl\n\xff\xfe").unwrap_err().to_string();
        assert!(e.starts_with("TCP table: not UTF-8"), "{e}");
        // A long bad field is clipped in the message.
        let long = format!("{header}\n   0: {}:0000 0 0", "9".repeat(5000));
        assert!(parse(long.as_bytes()).unwrap_err().to_string().len() < 120);
    }

    #[test]
    fn states() {
        assert_eq!(TcpState::from_number(0x0A), TcpState::Listen);
        assert_eq!(TcpState::from_number(99), TcpState::Other(99));
        assert!(TcpState::Established.is_open() && TcpState::SynRecv.is_open());
        assert!(!TcpState::TimeWait.is_open() && TcpState::TimeWait.is_connection());
        assert!(!TcpState::Listen.is_connection());
    }

    #[test]
    fn reads_this_machines_tables() {
        // Whatever is open here, the real files parse.
        if std::path::Path::new("/proc/net/tcp").exists() {
            read().unwrap();
            read_passive_opens().unwrap();
        }
    }

    #[test]
    fn passive_opens_of_a_real_snmp_file() {
        let snmp = include_str!("../tests/data/proc_net_snmp.txt");
        assert_eq!(passive_opens(snmp), Ok(57238));
        let bad = "no Tcp PassiveOpens counter in /proc/net/snmp";
        for text in [
            "",
            "Tcp: RtoAlgorithm PassiveOpens\n",
            "Tcp: RtoAlgorithm PassiveOpens\nTcp: 1\n",
            "Tcp: RtoAlgorithm PassiveOpens\nTcp: 1 -3\n",
            "Udp: PassiveOpens\nUdp: 5\n",
        ] {
            assert_eq!(passive_opens(text).unwrap_err(), bad, "{text:?}");
        }
    }
}
