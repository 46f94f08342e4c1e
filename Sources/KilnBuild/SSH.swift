import Foundation
import KilnSystem

/// A fresh SSH key pair (ed25519) for one run.
public struct SSHKeyPair: Sendable, Hashable {
    public var privateKeyPath: String
    public var publicKey: String

    public static func generate(at path: String, comment: String) async throws(CommandError) -> SSHKeyPair {
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".pub")
        try await ProcessRunner.check("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
        let pub = (try? String(contentsOfFile: path + ".pub", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return SSHKeyPair(privateKeyPath: path, publicKey: pub)
    }
}

/// Why SSH is not ready yet; the last one seen is what a timeout reports.
public enum SSHReadiness: Sendable, Hashable, CustomStringConvertible {
    case ready
    /// Nothing listens on the forwarded port: the VM is not running.
    case connectionRefused
    /// QEMU accepted the connection but the guest closed it: the guest's network or sshd is not up yet.
    case noBanner
    /// sshd answered but the key exchange failed.
    case handshakeFailed(String)
    /// sshd answered and rejected the key: the first-boot step has not installed it (yet).
    case authenticationFailed(String)

    public var description: String {
        switch self {
        case .ready: return "ready"
        case .connectionRefused: return "TCP connection refused (the VM is not listening on its forwarded port)"
        case .noBanner: return "TCP connected but the guest sent no SSH banner (guest network or sshd not up)"
        case .handshakeFailed(let m): return "SSH handshake failed: \(m)"
        case .authenticationFailed(let m): return "SSH authentication failed: \(m)"
        }
    }
}

/// An SSH connection target and the OpenSSH client invocations Kiln makes against it.
public struct SSHClient: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var user: String
    public var keyPath: String

    public init(host: String = "127.0.0.1", port: Int, user: String, keyPath: String) {
        self.host = host
        self.port = port
        self.user = user
        self.keyPath = keyPath
    }

    /// Options for a throwaway build VM: its host key is new every run, so it is not recorded.
    public var options: [String] {
        [
            "-i", keyPath, "-p", String(port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6"
        ]
    }

    /// The command a person types to get in.
    public var interactiveCommand: String {
        "ssh -i \(keyPath) -p \(port) -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \(user)@\(host)"
    }

    /// Runs a command in the guest.
    public func run(
        _ command: String, timeout: Duration? = nil, input: Data? = nil,
        onOutputLine: (@Sendable (String) -> Void)? = nil
    ) async throws(CommandError) -> CommandOutput {
        try await ProcessRunner.run("ssh", options + ["\(user)@\(host)", command], input: input, timeout: timeout, onOutputLine: onOutputLine)
    }

    /// One readiness check: TCP and banner first (cheap, and tells the failure kinds apart), then a real login.
    public func check() async -> SSHReadiness {
        switch Self.readBanner(host: host, port: port, timeout: 3) {
        case .refused: return .connectionRefused
        case .closed: return .noBanner
        case .banner:
            break
        }
        // Short: a guest that is shutting down accepts the connection and then never answers.
        guard let r = try? await run("true", timeout: .seconds(8)) else { return .handshakeFailed("ssh did not finish within 8 s") }
        if r.status == 0 { return .ready }
        let msg = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        if msg.contains("Permission denied") { return .authenticationFailed(msg) }
        return .handshakeFailed(msg.isEmpty ? "ssh exited \(r.status)" : msg)
    }

    enum BannerResult { case refused, closed, banner }

    /// Connects and waits for `SSH-` from the server.
    static func readBanner(host: String, port: Int, timeout: Double) -> BannerResult {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .refused }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { return .refused }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(timeout * 1000)) > 0 else { return .closed }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buf, buf.count, 0)
        guard n >= 4 else { return .closed }
        return buf.starts(with: Array("SSH-".utf8)) ? .banner : .closed
    }

    /// A free TCP port on the loopback interface (the build VM's SSH forward binds only there).
    public static func freeLoopbackPort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { return nil }
        var out = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &out) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: out.sin_port))
    }
}
