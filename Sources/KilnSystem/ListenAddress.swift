/// Where a server listens: `HOST:PORT`, `:PORT` (every address) or `[::]:PORT`, a port from 0 to 65535 (0: any
/// free one). The one parser for `server.listen`, `--listen` and what the server binds.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The host to bind; `0.0.0.0` when the text had none. IPv6 without its brackets.
    public let host: String
    public let port: Int
    /// As written.
    public let text: String

    public init(parsing text: String) throws(ListenAddressError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ListenAddressError(text: text)
        }
        var host = Substring(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.contains(where: { $0 == " " || $0 == "/" || $0 == "[" || $0 == "]" }) else { throw ListenAddressError(text: text) }
        self.host = host.isEmpty ? "0.0.0.0" : String(host)
        self.port = port
        self.text = text
    }

    public var description: String { text }
}

/// Not `HOST:PORT`. The description says how to write it.
public struct ListenAddressError: Error, Sendable, Hashable, CustomStringConvertible {
    public let text: String
    public init(text: String) { self.text = text }
    public var description: String { "'\(text)' is not a listen address: write it as HOST:PORT, like 0.0.0.0:8080" }
}
