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
    /// LAN, a named internal network). Needs CAP_NET_ADMIN (root has it), user namespaces, `ip` and `nft`.
    case isolated(allow: [String])
    /// QEMU user networking in the host's namespace: the guest can reach the host's loopback services.
    case host

    /// Isolated when this process can set it up, else host networking (the build log says so).
    public static func automatic(allow: [String] = []) -> BuildNetworkPolicy {
        IsolatedNetwork.unavailableReason == nil ? .isolated(allow: allow) : .host
    }
}

/// One build VM's network namespace, `kiln-b<N>` in logs: the host side of the veth is `kb<N>` at 10.213.N.1/30,
/// the namespace side `eth0` at 10.213.N.2/30 with the default route through the host. QEMU's user networking
/// runs inside, so the guest's 10.0.2.2 is the namespace's own (empty) loopback, and its traffic leaves through
/// the host's forwarding, where the `inet kiln` nftables table drops what goes to the host or to internal
/// networks.
///
/// The namespace belongs to a user namespace of Kiln's own user (`unshare --user --map-root-user`), held by a
/// small process (`holder`) bound to this process's lifetime. So building needs no root: only CAP_NET_ADMIN on
/// the host, for the veth, the sysctl and the nftables table. Nothing is named in `/run/netns`: the namespaces
/// end by themselves when the holder and the VM are gone, a Kiln killed outright included, and the veth goes
/// with them, which frees the number. A number is taken by creating `kb<N>` (the kernel refuses a name that
/// exists), so concurrent Kiln processes never share one.
public struct IsolatedNetwork: Sendable, Hashable {
    public let index: Int
    /// The namespaces' first process (`sleep` under `unshare`); they are entered through its pid.
    public let holder: OwnedChild
    /// Its resolv.conf (bind-mounted over /etc/resolv.conf inside) and its start marker.
    let directory: String

    public var namespace: String { "kiln-b\(index)" }
    public var hostInterface: String { "kb\(index)" }
    /// The host's address on the veth (the namespace's gateway).
    public var hostAddress: String { "10.213.\(index).1" }
    /// The namespace's address: where QEMU forwards SSH, and what the host connects to.
    public var namespaceAddress: String { "10.213.\(index).2" }

    /// The command prefix that runs a program inside (it execs the program: same pid). The user namespace is
    /// entered with this process's credentials (its groups, such as kvm, stay), as its root.
    public var enter: [String] {
        [Self.nsenter, "--target", String(holder.pid), "--user", "--net", "--mount", "--preserve-credentials", "--"]
    }

    /// Why isolation cannot be set up here, or nil.
    public static var unavailableReason: String? {
        if !hasNetworkAdministration {
            return "this process lacks CAP_NET_ADMIN (run as root, or give Kiln's user the capability: README, \"Running unprivileged\")"
        }
        for tool in ["ip", "nft", "unshare", "nsenter"] where ProcessRunner.which(tool) == nil {
            return "\(tool) is not installed (run scripts/install-deps)"
        }
        if !userNamespacesWork { return "user namespaces are disabled on this host (user.max_user_namespaces, or an LSM policy)" }
        return nil
    }

    /// CAP_NET_ADMIN (bit 12) in this process's effective set.
    static var hasNetworkAdministration: Bool {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let bits = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return false }
        return bits & (1 << 12) != 0
    }

    /// Whether this user can make a user namespace (probed once).
    static let userNamespacesWork: Bool = {
        guard let unshare = ProcessRunner.which("unshare") else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: unshare)
        p.arguments = ["--user", "--map-root-user", "--net", "--mount", "true"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    static var nsenter: String { ProcessRunner.which("nsenter") ?? "/usr/bin/nsenter" }

    /// Creates the namespaces for one VM and makes sure the host's forwarding and firewall rules are in place.
    public static func create(allow: [String]) async throws -> IsolatedNetwork {
        if let reason = unavailableReason { throw BuildNetworkError(reason) }
        try await HostRules.ensure()
        let (holder, directory) = try await startHolder()
        for index in 1...250 {
            let n = IsolatedNetwork(index: index, holder: holder, directory: directory)
            let made = try await ProcessRunner.run(
                "ip", ["link", "add", n.hostInterface, "type", "veth", "peer", "name", "eth0", "netns", String(holder.pid)], timeout: .seconds(10))
            if made.status != 0 {
                if made.combined.contains("File exists") { continue }  // another VM's number
                await n.remove()
                throw BuildNetworkError("ip link add \(n.hostInterface): \(made.combined.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            do {
                try await n.configure()
                try await HostRules.allow(allow, index: index)
                return n
            } catch {
                await n.remove()
                throw error
            }
        }
        await IsolatedNetwork(index: 0, holder: holder, directory: directory).remove()
        throw BuildNetworkError("no free build network (kb1 … kb250 are all in use)")
    }

    /// Starts the holder: new user, network and mount namespaces, with the host's upstream DNS servers as
    /// /etc/resolv.conf inside (QEMU's DNS forwarder reads it; a loopback resolver such as systemd-resolved's
    /// 127.0.0.53 would be the namespace's own). It is ready when its marker exists.
    static func startHolder() async throws -> (OwnedChild, String) {
        let directory = NSTemporaryDirectory() + "kiln-netns-\(UUID().uuidString.prefix(8).lowercased())"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try Resolvers.upstream.map { "nameserver \($0)\n" }.joined().write(toFile: directory + "/resolv.conf", atomically: true, encoding: .utf8)
        } catch {
            throw BuildNetworkError("cannot prepare \(directory): \(error)")
        }
        let script = #"mount --bind "$1/resolv.conf" /etc/resolv.conf && touch "$1/ready" && exec sleep infinity"#
        let holder: OwnedChild
        do {
            holder = try BackgroundProcess.spawnOwned(
                ProcessRunner.which("unshare") ?? "/usr/bin/unshare",
                ["--user", "--map-root-user", "--net", "--mount", "--", "/bin/sh", "-c", script, "kiln-netns", directory],
                output: directory + "/holder.out")
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw BuildNetworkError("unshare: \(error)")
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if FileManager.default.fileExists(atPath: directory + "/ready") { return (holder, directory) }
            if kill(holder.pid, 0) != 0 { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let out = (try? String(contentsOfFile: directory + "/holder.out", encoding: .utf8)) ?? ""
        kill(holder.pid, SIGKILL)
        try? FileManager.default.removeItem(atPath: directory)
        throw BuildNetworkError("the namespace did not start: \(out.isEmpty ? "no message" : out.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    func configure() async throws {
        let steps: [[String]] = [
            ["ip", "addr", "add", "\(hostAddress)/30", "dev", hostInterface],
            ["ip", "link", "set", hostInterface, "up"],
            enter + ["ip", "addr", "add", "\(namespaceAddress)/30", "dev", "eth0"],
            enter + ["ip", "link", "set", "eth0", "up"],
            enter + ["ip", "link", "set", "lo", "up"],
            enter + ["ip", "route", "add", "default", "via", hostAddress]
        ]
        for argv in steps {
            let r = try await ProcessRunner.run(argv[0], Array(argv.dropFirst()), timeout: .seconds(10))
            guard r.status == 0 else {
                throw BuildNetworkError(
                    "\(argv.suffix(from: argv.firstIndex(of: "ip") ?? 0).joined(separator: " ")): \(r.combined.trimmingCharacters(in: .whitespacesAndNewlines))"
                )
            }
        }
    }

    /// Ends the namespaces once the VM is gone (a VM kept running keeps them: it is a process inside). Best
    /// effort.
    public func remove() async {
        if index > 0 { await HostRules.forget(index: index) }
        kill(holder.pid, SIGKILL)
        if index > 0 { _ = try? await ProcessRunner.run("ip", ["link", "del", hostInterface], timeout: .seconds(10)) }
        try? FileManager.default.removeItem(atPath: directory)
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
