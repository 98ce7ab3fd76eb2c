//! The pod's TCP tables (`/proc/net/tcp`, `/proc/net/tcp6`; the kernel's
//! `net/ipv4/tcp_ipv4.c` prints them) and the `PassiveOpens` counter of
//! `/proc/net/snmp`, for the drain quiet period.

use std::net::{IpAddr, SocketAddr};

/// A TCP state number of the kernel's `include/net/tcp_states.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpState(pub u8);

impl TcpState {
    /// Connected.
    pub const ESTABLISHED: Self = Self(1);
    /// Closed by us first, lingering.
    pub const TIME_WAIT: Self = Self(6);
    /// A listening socket.
    pub const LISTEN: Self = Self(10);

    /// A connection that can still carry the app's data (SYN_RECV,
    /// NEW_SYN_RECV, ESTABLISHED).
    pub fn is_open(self) -> bool {
        matches!(self.0, 3 | 12 | 1)
    }

    /// A connection (open or closing), not a listening or unbound (CLOSE) socket.
    pub fn is_connection(self) -> bool {
        !matches!(self.0, 10 | 7)
    }
}

/// One socket of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Our side: for an accepted connection, the port the app listens on.
    pub local: SocketAddr,
    /// The peer's side (`0.0.0.0:0` for a listener).
    pub remote: SocketAddr,
    /// The TCP state.
    pub state: TcpState,
}

/// Parses `/proc/net/tcp` or `/proc/net/tcp6`, header first.
///
/// # Errors
/// One line naming the first malformed line.
pub fn parse(text: &[u8]) -> Result<Vec<Entry>, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("TCP table: not UTF-8: {e}"))?;
    let mut lines = text.lines().enumerate();
    if lines.next().and_then(|(_, h)| h.split_whitespace().next()) != Some("sl") {
        return Err("TCP table: no header (expected a line starting with \"sl\")".into());
    }
    let clip = |l: &str| l.chars().take(60).collect::<String>();
    let bad = |i: usize, l: &str| format!("TCP table line {}: malformed: {:?}", i + 1, clip(l));
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).ok_or_else(|| bad(i, l)))
        .collect()
}

/// `sl local_address rem_address st ...`; the later fields vary by kernel.
fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace().skip(1);
    let (local, remote) = (address(fields.next()?)?, address(fields.next()?)?);
    let state = TcpState(hex(fields.next()?.as_bytes(), 2)? as u8); // two hex digits
    (local.is_ipv4() == remote.is_ipv4()).then_some(Entry {
        local,
        remote,
        state,
    })
}

/// An address is its network-order bytes printed as 32-bit words in host
/// byte order, then `:` and the port.
fn address(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let words = ip
        .as_bytes()
        .chunks(8)
        .map(|w| hex(w, 8).map(u32::to_ne_bytes));
    let bytes = words.collect::<Option<Vec<_>>>()?.concat();
    let ip = match <[u8; 16]>::try_from(&bytes[..]) {
        Ok(v6) => IpAddr::from(v6),
        Err(_) => IpAddr::from(<[u8; 4]>::try_from(&bytes[..]).ok()?),
    };
    Some(SocketAddr::new(ip, hex(port.as_bytes(), 4)? as u16)) // four hex digits
}

/// `s` as exactly `digits` hex digits.
fn hex(s: &[u8], digits: usize) -> Option<u32> {
    let digit = |n: u32, b: &u8| Some(n << 4 | char::from(*b).to_digit(16)?);
    s.iter().try_fold(0, digit).filter(|_| s.len() == digits)
}

/// `PassiveOpens` of the `Tcp:` lines (names, then values) of `/proc/net/snmp`.
fn passive_opens(snmp: &str) -> Result<u64, String> {
    let mut tcp = snmp.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or(""), tcp.next().unwrap_or(""));
    let at = names.split_whitespace().position(|n| n == "PassiveOpens");
    at.and_then(|i| values.split_whitespace().nth(i))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no Tcp PassiveOpens counter in /proc/net/snmp".into())
}

/// Every connection this network namespace accepted (`PassiveOpens`, even
/// those too short-lived for a table to show), then its tables (no `tcp6`
/// when IPv6 is off).
///
/// # Errors
/// A one-line message naming the file.
pub fn sample() -> Result<(u64, Vec<Entry>), String> {
    let snmp = std::fs::read_to_string("/proc/net/snmp")
        .map_err(|e| format!("cannot read /proc/net/snmp: {e}"))?;
    let mut all = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if path.ends_with('6') && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {path}: {e}")),
        };
        all.extend(parse(&text).map_err(|e| format!("{path}: {e}"))?);
    }
    Ok((passive_opens(&snmp)?, all))
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
                state: TcpState::LISTEN,
            }
        );
        // An accepted connection, and the client's side of it.
        assert_eq!(t[4].local, sa("127.0.0.1:33171"));
        assert_eq!(t[4].remote, sa("127.0.0.1:47538"));
        assert_eq!(t[4].state, TcpState::ESTABLISHED);
        assert_eq!(t[5].local, sa("127.0.0.1:47538"));
        assert_eq!(t[3].state, TcpState::TIME_WAIT);
        // Never accepted, closed by the client.
        assert_eq!(t[9].state, TcpState(8));
        let states: Vec<_> = t.iter().map(|e| e.state).collect();
        assert!(states.contains(&TcpState(5)));
    }

    #[test]
    fn parses_a_real_ipv6_table() {
        let t = parse(TCP6.as_bytes()).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t[0].local, sa("[::1]:55587"));
        assert_eq!(t[0].state, TcpState::LISTEN);
        assert_eq!(t[1].local, sa("[::]:33151"));
        // IPv4 on a dual-stack listener: a v4-mapped address.
        assert_eq!(t[2].local, sa("[::ffff:127.0.0.1]:33151"));
        assert_eq!(t[2].remote, sa("[::ffff:127.0.0.1]:47636"));
        assert_eq!(t[2].state, TcpState::ESTABLISHED);
        assert_eq!(t[3].remote, sa("[::1]:38674"));
    }

    #[test]
    fn header_only_is_empty_and_blank_lines_are_skipped() {
        let header = TCP.lines().next().unwrap();
        assert_eq!(parse(header.as_bytes()).unwrap(), vec![]);
        let text = format!("{header}\n\n{}\n\n", TCP.lines().nth(1).unwrap());
        assert_eq!(parse(text.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn garbage_is_a_clear_error_naming_the_line() {
        let header = TCP.lines().next().unwrap();
        let line = TCP.lines().nth(4).unwrap();
        for input in ["", "hello"] {
            let e = parse(input.as_bytes()).unwrap_err();
            assert!(e.starts_with("TCP table: no header"), "{input:?}: {e}");
        }
        let short = "   0: 0100007F:9503";
        let e = parse(format!("{header}\n{short}").as_bytes()).unwrap_err();
        assert_eq!(e, format!("TCP table line 2: malformed: {short:?}"));
        let v6 = format!("{}:A315", "0".repeat(32));
        for (from, to) in [
            ("0100007F:A315", "0100007F:A3"),   // a short port
            ("0100007F:A315", "010Z007F:A315"), // not hex
            ("0100007F:A315", "0100007:A315"),  // a short word
            ("0100007F:A315", "+100007F:A315"), // a sign
            ("0100007F:A315", "0100007F:+315"), // a sign in the port
            ("0100007F:A315", "0100007FA315"),  // no colon
            ("0100007F:A315", &v6),             // an IPv6 local, IPv4 remote
            (" 06 ", " 6 "),                    // a one-digit state
        ] {
            let input = format!("{header}\n{}", line.replace(from, to));
            let e = parse(input.as_bytes()).unwrap_err();
            assert!(e.starts_with("TCP table line 2: malformed: "), "{to}: {e}");
        }
        let e = parse(b"sl\n\xff\xfe").unwrap_err();
        assert!(e.starts_with("TCP table: not UTF-8"), "{e}");
        // A long bad line is clipped in the message.
        let long = format!("{header}\n   0: {}:0000 0 0", "9".repeat(5000));
        assert!(parse(long.as_bytes()).unwrap_err().len() < 120);
    }

    #[test]
    fn states() {
        assert!(TcpState::ESTABLISHED.is_open() && TcpState(3).is_open());
        assert!(TcpState(12).is_open() && !TcpState(7).is_connection());
        assert!(!TcpState::TIME_WAIT.is_open() && TcpState::TIME_WAIT.is_connection());
        assert!(!TcpState::LISTEN.is_connection());
    }

    #[test]
    fn reads_this_machines_tables() {
        // Whatever is open here, the real files parse.
        if std::path::Path::new("/proc/net/tcp").exists() {
            sample().unwrap();
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
