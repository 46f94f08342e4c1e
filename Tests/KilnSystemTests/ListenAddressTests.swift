import KilnSystem
import Testing

/// The one HOST:PORT syntax of `server.listen`, `--listen` and what the server binds.
@Suite struct ListenAddressTests {
    @Test(arguments: [
        ("0.0.0.0:8080", "0.0.0.0", 8080), ("127.0.0.1:0", "127.0.0.1", 0), (":9090", "0.0.0.0", 9090), ("[::]:8080", "::", 8080),
        ("[::1]:65535", "::1", 65535), ("kiln.internal:443", "kiln.internal", 443)
    ])
    func parses(_ text: String, _ host: String, _ port: Int) throws {
        let a = try ListenAddress(parsing: text)
        #expect(a.host == host && a.port == port && a.text == text, "\(text)")
    }

    @Test(arguments: ["8080", "0.0.0.0", "0.0.0.0:", "0.0.0.0:http", "0.0.0.0:65536", "0.0.0.0:-1", "a b:80", "[::1:80", "http://x:80"])
    func refuses(_ text: String) {
        #expect(throws: ListenAddressError(text: text)) { try ListenAddress(parsing: text) }
        #expect("\(ListenAddressError(text: text))".contains("write it as HOST:PORT"))
    }
}
