import Foundation
import KilnSystem
import Synchronization

/// How a build VM reaches the network. A customizer runs arbitrary code: with plain QEMU user networking it
/// could reach every service on the build host's loopback (the controller's port, a database on 127.0.0.1)
/// through the gateway address 10.0.2.2.
public enum BuildNetworkPolicy: Sendable, Hashable {
    /// The VM's QEMU runs in a network namespace of its own, joined to the host by a veth pair and NATed out.
    /// The host itself (every address it has) and internal networks (loopback, private, link-local, CGNAT,
    /// unique-local) are unreachable from it, except the CIDR blocks in `allow` (a package mirror on the
    /// LAN, a named internal network). Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` and `nft`.
    case isolated(allow: [String])
    /// QEMU user networking in the host's namespace: the guest can reach the host's loopback services.
    case host

    /// Isolated when this process can set it up, else host networking (the build log says so).
    public static func automatic(allow: [String] = []) -> BuildNetworkPolicy {
        IsolatedNetwork.unavailableReason == nil ? .isolated(allow: allow) : .host
    }
}

/// One build VM's network namespace `kiln-b<N>`: the host side of the veth is `kb<N>` at 10.213.N.1/30, the
/// namespace side `eth0` at 10.213.N.2/30 with the default route through the host. QEMU's user networking runs
/// inside, so the guest's 10.0.2.2 is the namespace's own (empty) loopback, and its traffic leaves through the
/// host's forwarding, where the `inet kiln` nftables table drops what goes to the host or to internal networks.
public struct IsolatedNetwork: Sendable, Hashable {
    public let index: Int
    /// Tells this use of the number from a later one (numbers are reused at once): written to the owner file
    /// and shown in the build log.
    public let claim: String
    public var namespace: String { "kiln-b\(index)" }
    public var hostInterface: String { "kb\(index)" }
    /// The host's address on the veth (the namespace's gateway).
    public var hostAddress: String { "10.213.\(index).1" }
    /// The namespace's address: where QEMU forwards SSH, and what the host connects to.
    public var namespaceAddress: String { "10.213.\(index).2" }

    /// The command prefix that runs a program inside the namespace.
    public var exec: [String] { ["netns", "exec", namespace] }

    /// Why isolation cannot be set up here, or nil.
    public static var unavailableReason: String? {
        if geteuid() != 0 { return "not running as root (isolating build VMs needs network namespaces)" }
        for tool in ["ip", "nft"] where ProcessRunner.which(tool) == nil {
            return "\(tool) is not installed (run scripts/install-deps)"
        }
        return nil
    }

    /// Creates a namespace for one VM (reusing the number of one whose VM is gone) and makes sure the host's
    /// forwarding and firewall rules are in place.
    public static func create(allow: [String]) async throws -> IsolatedNetwork {
        if let reason = unavailableReason { throw BuildNetworkError(reason) }
        try await HostRules.ensure()
        for index in 1...250 {
            let n = IsolatedNetwork(index: index, claim: String(UUID().uuidString.prefix(8)).lowercased())
            // `ip netns add` fails when the name exists: that is the lock. A namespace left by a killed Kiln (no
            // process inside) is removed and its number reused.
            if (try? await ProcessRunner.run("ip", ["netns", "add", n.namespace], timeout: .seconds(10)))?.status != 0 {
                guard await n.isAbandoned else { continue }
                await n.remove()
                guard (try? await ProcessRunner.run("ip", ["netns", "add", n.namespace], timeout: .seconds(10)))?.status == 0 else { continue }
            }
            n.writeOwner()
            do {
                try await n.configure()
                try await HostRules.allow(allow, index: index)
                return n
            } catch {
                await n.remove()
                throw error
            }
        }
        throw BuildNetworkError("no free build network (kiln-b1 … kiln-b250 are all in use)")
    }

    func configure() async throws {
        // QEMU's DNS forwarder reads resolv.conf; inside the namespace a loopback resolver (systemd-resolved's
        // 127.0.0.53) is the namespace's own, so it gets the upstream servers (`ip netns exec` mounts this file).
        let dir = "/etc/netns/\(namespace)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let servers = Resolvers.upstream
        try? (servers.map { "nameserver \($0)\n" }.joined()).write(toFile: dir + "/resolv.conf", atomically: true, encoding: .utf8)
        let steps: [[String]] = [
            ["link", "add", hostInterface, "type", "veth", "peer", "name", "eth0", "netns", namespace],
            ["addr", "add", "\(hostAddress)/30", "dev", hostInterface],
            ["link", "set", hostInterface, "up"],
            ["-n", namespace, "addr", "add", "\(namespaceAddress)/30", "dev", "eth0"],
            ["-n", namespace, "link", "set", "eth0", "up"],
            ["-n", namespace, "link", "set", "lo", "up"],
            ["-n", namespace, "route", "add", "default", "via", hostAddress]
        ]
        for args in steps {
            let r = try await ProcessRunner.run("ip", args, timeout: .seconds(10))
            guard r.status == 0 else {
                throw BuildNetworkError("ip \(args.joined(separator: " ")): \(r.combined.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
    }

    /// Who made it: `/run/kiln-netns/<namespace>.owner` holds the pid and the claim.
    var ownerFile: String { "/run/kiln-netns/\(namespace).owner" }

    func writeOwner() {
        try? FileManager.default.createDirectory(atPath: "/run/kiln-netns", withIntermediateDirectories: true)
        try? "\(getpid()) \(claim)\n".write(toFile: ownerFile, atomically: true, encoding: .utf8)
    }

    /// The process that made it is gone and no process runs inside (a VM kept for debugging keeps its
    /// namespace after its owner exits).
    var isAbandoned: Bool {
        get async {
            if let text = try? String(contentsOfFile: ownerFile, encoding: .utf8),
                let first = text.split(whereSeparator: \.isWhitespace).first, let pid = pid_t(first), kill(pid, 0) == 0
            {
                return false
            }
            guard let r = try? await ProcessRunner.run("ip", ["netns", "pids", namespace], timeout: .seconds(10)), r.status == 0 else { return false }
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
    }

    /// Removes the namespace (its veth goes with it). Best effort.
    public func remove() async {
        await HostRules.forget(index: index)
        _ = try? await ProcessRunner.run("ip", ["netns", "del", namespace], timeout: .seconds(10))
        try? FileManager.default.removeItem(atPath: "/etc/netns/\(namespace)")
        try? FileManager.default.removeItem(atPath: ownerFile)
        _ = try? await ProcessRunner.run("ip", ["link", "del", hostInterface], timeout: .seconds(10))
    }
}

/// The host's side: IPv4 forwarding on, and the `inet kiln` table, shared by every build namespace and every
/// Kiln process. Traffic from a build namespace (`kb*` interfaces) may not enter the host (input: only replies
/// to connections the host opened, such as SSH to the guest), may be forwarded to the host's DNS servers, to
/// the networks its own namespace allows (chain `b<N>`, reached through the `nets` verdict map) and to
/// addresses that are not internal, and is masqueraded on its way out. Each namespace's allowances live in its
/// own chain, so processes with different configurations do not overwrite each other's.
enum HostRules {
    static let internalNetworks = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3"
    ]

    static func table(nameservers: [String]) -> String {
        let servers = nameservers.joined(separator: ", ")
        let dns =
            nameservers.isEmpty
            ? ""
            : """
                    iifname "kb*" ip daddr { \(servers) } udp dport 53 accept
                    iifname "kb*" ip daddr { \(servers) } tcp dport 53 accept

            """
        return """
            table inet kiln {
                map nets { type ifname : verdict; }
                chain input {
                    type filter hook input priority filter; policy accept;
                    iifname "kb*" ct state established,related accept
                    iifname "kb*" drop
                }
                chain forward {
                    type filter hook forward priority filter; policy accept;
                    oifname "kb*" ct state established,related accept
                    oifname "kb*" drop
                    iifname "kb*" meta nfproto ipv6 drop
                    iifname vmap @nets
            \(dns)        iifname "kb*" ip daddr { \(internalNetworks.joined(separator: ", ")) } drop
                    iifname "kb*" accept
                }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    ip saddr 10.213.0.0/16 oifname != "kb*" masquerade
                }
            }

            """
    }

    /// Creates the table unless it exists (it outlives processes; other Kiln processes use it too).
    static func ensure() async throws {
        if created.withLock({ $0 }) { return }
        _ = try? await ProcessRunner.run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"], timeout: .seconds(10))
        if (try? await ProcessRunner.run("nft", ["list", "table", "inet", "kiln"], timeout: .seconds(10)))?.status != 0 {
            try await nft(table(nameservers: Resolvers.upstream.filter { $0.contains(".") }))
        }
        created.withLock { $0 = true }
    }

    /// Gives namespace `index` its allowances (replacing any a previous owner of the number left).
    static func allow(_ networks: [String], index: Int) async throws {
        var script = "add chain inet kiln b\(index)\nflush chain inet kiln b\(index)\n"
        if !networks.isEmpty { script += "add rule inet kiln b\(index) ip daddr { \(networks.joined(separator: ", ")) } accept\n" }
        try await nft(script)
        _ = try? await ProcessRunner.run("nft", ["delete", "element", "inet", "kiln", "nets", "{ \"kb\(index)\" }"], timeout: .seconds(10))
        try await nft("add element inet kiln nets { \"kb\(index)\" : jump b\(index) }\n")
    }

    /// Drops namespace `index`'s allowances. Best effort.
    static func forget(index: Int) async {
        _ = try? await ProcessRunner.run("nft", ["delete", "element", "inet", "kiln", "nets", "{ \"kb\(index)\" }"], timeout: .seconds(10))
        _ = try? await ProcessRunner.run("nft", ["delete", "chain", "inet", "kiln", "b\(index)"], timeout: .seconds(10))
    }

    static func nft(_ script: String) async throws {
        let r = try await ProcessRunner.run("nft", ["-f", "-"], input: Data(script.utf8), timeout: .seconds(10))
        guard r.status == 0 else { throw BuildNetworkError("nft: \(r.combined.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    static let created = Mutex(false)
}

/// The host's DNS servers, without loopback ones (systemd-resolved's upstream list when it runs).
enum Resolvers {
    static var upstream: [String] {
        for file in ["/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            let servers = text.split(separator: "\n").compactMap { line -> String? in
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard parts.count >= 2, parts[0] == "nameserver" else { return nil }
                let s = String(parts[1])
                return s.hasPrefix("127.") || s == "::1" ? nil : s
            }
            if !servers.isEmpty { return servers }
        }
        return []
    }
}

public struct BuildNetworkError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = "build network: \(d)" }
}
