//! A lab host of its own: a network namespace joined to this one by a veth pair, a relay so its
//! processes reach the lab's loopback-only PostgreSQL, and a real partition made with
//! iptables inside the namespace. Needs root and iproute2/iptables; removed on drop.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
};

/// Runs a command without a shell; its stderr is the error.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{program}` cannot run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why a namespace cannot be made here, or None when it can (root and `ip`/`iptables`).
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("network namespaces need root".into());
    }
    for tool in ["ip", "iptables"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("`{tool}` is not installed (iproute2, iptables)"));
        }
    }
    None
}

/// The namespace, its veth pair, and the relay into it.
pub struct NetnsHost {
    pub name: String,
    /// This side's address on the pair: what processes in the namespace connect to.
    pub host_ip: Ipv4Addr,
    /// The namespace's address: where its processes listen.
    pub ns_ip: Ipv4Addr,
    relays: Vec<super::relay::Relay>,
}

impl NetnsHost {
    /// Creates `autonomy-<tag>-<pid>` with a /30 between it and this namespace.
    pub fn create(tag: &str) -> Result<Self, String> {
        if let Some(reason) = unavailable() {
            return Err(reason);
        }
        let pid = std::process::id();
        let name = format!("autonomy-{tag}-{pid}");
        // Interface names are at most 15 bytes; the pid keeps concurrent runs apart.
        let (host_if, ns_if) = (format!("avh{}", pid % 1_000_000), format!("avn{}", pid % 1_000_000));
        // Processes creating hosts at once must not pick the same /30: choose under a
        // machine-wide file lock, skipping the subnets an interface already has.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("autonomy-netns.lock"))
            .map_err(|e| format!("open the netns lock: {e}"))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(|e| format!("take the netns lock: {e}"))?;
        let in_use = run("ip", &["-o", "-4", "addr", "show"])?;
        let subnet = (0..250u32)
            .map(|n| ((pid + n) % 250) as u8)
            .find(|s| !in_use.contains(&format!("10.213.{s}.")))
            .ok_or("every 10.213.x.0/30 lab subnet is in use")?;
        let host_ip = Ipv4Addr::new(10, 213, subnet, 1);
        let ns_ip = Ipv4Addr::new(10, 213, subnet, 2);
        run("ip", &["netns", "add", &name])?;
        // From here on, drop removes the namespace (and the pair with it).
        let host = Self {
            name,
            host_ip,
            ns_ip,
            relays: Vec::new(),
        };
        let ns = host.name.as_str();
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", ns,
            ],
        )?;
        run("ip", &["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        run("ip", &["link", "set", &host_if, "up"])?;
        run("ip", &["-n", ns, "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if])?;
        run("ip", &["-n", ns, "link", "set", &ns_if, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        drop(lock); // the address is on an interface now: the next process sees it
        Ok(host)
    }

    /// Listens on `host_ip` and forwards every connection to 127.0.0.1:`target_port`; returns
    /// the port to give the namespace's processes.
    pub fn relay_to(&mut self, target_port: u16) -> Result<u16, String> {
        let relay = super::relay::Relay::start(SocketAddr::from((self.host_ip, 0)), target_port)?;
        let port = relay.addr.port();
        self.relays.push(relay);
        Ok(port)
    }

    /// Cuts the namespace off from `host_ip`:`port` in both directions: packets are dropped,
    /// not refused, as a failed link or switch would (no RST, connections just hang).
    pub fn cut(&self, port: u16) -> Result<(), String> {
        self.iptables("-I", port)
    }

    /// Removes the rules `cut` inserted.
    pub fn heal(&self, port: u16) -> Result<(), String> {
        self.iptables("-D", port)
    }

    fn iptables(&self, action: &str, port: u16) -> Result<(), String> {
        let (ip, port) = (self.host_ip.to_string(), port.to_string());
        for (chain, address, port_match) in [("OUTPUT", "-d", "--dport"), ("INPUT", "-s", "--sport")] {
            run(
                "ip",
                &[
                    "netns", "exec", &self.name, "iptables", action, chain, "-p", "tcp", address, &ip, port_match,
                    &port, "-j", "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.name.clone()]
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        self.relays.clear();
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}
