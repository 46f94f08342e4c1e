import Foundation

/// The few QEMU Machine Protocol commands Kiln sends, one connection per command.
///
/// Each command waits for its own `return` (or `error`), skipping the asynchronous events QEMU interleaves
/// (`STOP`, `RESET`, …): closing the socket before QEMU has read and run a command can drop it, which is how a
/// `cont` after a reset was lost under load. The socket is polled without blocking, so a slow QEMU main loop never
/// holds one of the few cooperative threads.
enum QMP {
    /// What became of a command.
    enum Outcome: Sendable, Equatable {
        /// QEMU ran it; the `return` member as JSON.
        case returned(String)
        /// QEMU refused it: its `error.desc`.
        case refused(String)
        /// No connection, or no reply in time.
        case unreachable(String)
    }

    /// Sends one command (after the capabilities handshake), best effort, and waits for its reply.
    @discardableResult
    static func send(socket path: String, command: String, timeout: Duration = .seconds(10)) async -> Outcome {
        let fd = Foundation.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .unreachable("socket: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return .unreachable("socket path too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { return .unreachable("connect \(path): errno \(errno)") }
        var reader = LineReader(fd: fd, deadline: ContinuousClock.now + timeout)
        // The greeting, then the handshake's reply, then the command's.
        guard await reader.next(where: { $0["QMP"] != nil }) != nil else { return .unreachable("no QMP greeting") }
        guard write(fd, "{\"execute\":\"qmp_capabilities\"}\n"),
            await reader.next(where: isReply) != nil
        else { return .unreachable("no reply to qmp_capabilities") }
        guard write(fd, "{\"execute\":\"\(command)\"}\n"), let reply = await reader.next(where: isReply) else {
            return .unreachable("no reply to \(command)")
        }
        if let error = reply["error"] as? [String: Any] { return .refused(error["desc"] as? String ?? "\(error)") }
        let value = reply["return"] ?? [String: Any]()
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])) ?? Data()
        return .returned(String(decoding: data, as: UTF8.self))
    }

    /// Whether the guest's CPUs run (`query-status`), or nil when QEMU does not answer.
    static func isRunning(socket path: String) async -> Bool? {
        guard case .returned(let json) = await send(socket: path, command: "query-status"),
            let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        else { return nil }
        return object["running"] as? Bool
    }

    private static func isReply(_ message: [String: Any]) -> Bool { message["return"] != nil || message["error"] != nil }

    private static func write(_ fd: Int32, _ line: String) -> Bool {
        line.withCString { Foundation.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } == strlen(line)
    }

    /// Newline-delimited JSON messages from a non-blocking read loop with one deadline.
    private struct LineReader {
        let fd: Int32
        let deadline: ContinuousClock.Instant
        var buffer: [UInt8] = []

        mutating func next(where accept: ([String: Any]) -> Bool) async -> [String: Any]? {
            while true {
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Data(buffer[..<newline])
                    buffer.removeSubrange(...newline)
                    if let message = try? JSONSerialization.jsonObject(with: line) as? [String: Any], accept(message) {
                        return message
                    }
                }
                guard ContinuousClock.now < deadline else { return nil }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 0) > 0 {
                    var chunk = [UInt8](repeating: 0, count: 4096)
                    let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
                    if n == 0 { return nil }  // QEMU closed the connection
                    if n < 0 && errno != EAGAIN && errno != EINTR { return nil }
                    if n > 0 { buffer += chunk[..<n] }
                    continue
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }
}
