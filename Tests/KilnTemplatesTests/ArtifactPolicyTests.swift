import Foundation
import KilnTemplates
import Testing

/// The trust rules for artifact references, decided before anything is read: addresses, host files, paths
/// inside a repository, and the diagnostics a template gets (code, JSON path, line).
@Suite struct ArtifactPolicyTests {
    @Test(arguments: [
        ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"), ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
        ("10.0.2.2", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
        ("fd00::1", "unique-local"), ("fc00::1", "unique-local"),
        ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("100.64.0.1", "shared address space (carrier-grade NAT)"),
        ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("224.0.0.1", "multicast"),
        ("64:ff9b::7f00:1", "reserved"), ("2002:7f00:1::", "reserved"),
        ("172.32.0.1", "global"), ("8.8.8.8", "global"), ("2001:db8::1", "global"), ("151.101.2.132", "global")
    ])
    func addressScopes(address: String, scope: String) throws {
        let ip = try #require(IPAddress(address))
        #expect(ip.scope.rawValue == scope, "\(address)")
    }

    @Test func namesAreNotAddresses() {
        for s in ["localhost", "example.com", "1.2.3", "1.2.3.4.5", "", "::g"] { #expect(IPAddress(s) == nil, "\(s)") }
    }

    @Test(arguments: [
        ("10.20.0.0/16", "10.20.5.6", true), ("10.20.0.0/16", "10.21.0.1", false), ("127.0.0.1", "127.0.0.1", true),
        ("127.0.0.1", "127.0.0.2", false), ("fd00::/8", "fd12::1", true), ("fd00::/8", "fe80::1", false),
        ("127.0.0.0/8", "::ffff:127.0.0.5", true), ("0.0.0.0/0", "8.8.8.8", true), ("192.168.1.128/25", "192.168.1.127", false)
    ])
    func ranges(range: String, address: String, contained: Bool) throws {
        let r = try #require(AddressRange(range))
        #expect(r.contains(try #require(IPAddress(address))) == contained, "\(range) ∋ \(address)")
    }

    @Test func hostsAreJudgedBeforeAnyLookup() {
        let closed = ArtifactPolicy.untrusted
        #expect(closed.hostProblem("169.254.169.254")?.contains("(link-local)") == true)
        #expect(closed.hostProblem("127.0.0.1")?.contains("loopback") == true)
        #expect(closed.hostProblem("localhost") != nil)
        #expect(closed.hostProblem("example.com") == nil)
        let open = ArtifactPolicy(allowedNetworks: [AddressRange("127.0.0.1")!], allowedHostNames: ["*.corp.example", "mirror.internal"])
        #expect(open.hostProblem("127.0.0.1") == nil)
        #expect(open.hostProblem("127.0.0.2") != nil)
        #expect(open.admitsName("a.b.corp.example") && open.admitsName("MIRROR.internal"))
        #expect(!open.admitsName("corp.example.evil.test") && !open.admitsName("xcorp.example"))
    }

    @Test func hostFilesOnlyUnderAllowedRootsAfterSymlinks() throws {
        let dir = NSTemporaryDirectory() + "kiln-policy-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/allowed", withIntermediateDirectories: true)
        try "x".write(toFile: dir + "/allowed/ok.sh", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/allowed/shadow", withDestinationPath: "/etc/shadow")
        let policy = ArtifactPolicy(localFiles: .under([dir + "/allowed"]))
        #expect(policy.fileProblem(dir + "/allowed/ok.sh") == nil)
        #expect(policy.fileProblem(dir + "/allowed/../allowed/ok.sh") == nil)
        #expect(policy.fileProblem(dir + "/allowed/shadow")?.contains("resolves to /etc/shadow") == true)
        #expect(policy.fileProblem(dir + "/allowed/../../../etc/shadow") != nil)
        #expect(policy.fileProblem("/etc/shadow")?.contains("outside artifacts.allowedFileRoots") == true)
        #expect(ArtifactPolicy.untrusted.fileProblem("/etc/shadow")?.contains("allowedFileRoots is empty") == true)
        #expect(ArtifactPolicy.untrusted.trustingLocalFiles.fileProblem("/etc/shadow") == nil)
    }

    @Test(arguments: [
        ("../scripts/web.sh", "templates", ["scripts/web.sh"]),
        ("scripts/web.sh", "templates", ["templates/scripts/web.sh", "scripts/web.sh"]),
        ("./a.sh", "", ["a.sh"]),
        ("a/../b.sh", "templates/linux", ["templates/linux/b.sh", "b.sh"]),
        ("../../etc/passwd", "templates", []),
        ("../../../etc/passwd", "templates/linux", []),
        ("..", "templates", [])
    ])
    func repositoryPaths(reference: String, directory: String, expected: [String]) {
        #expect(RepositoryPath.candidates(reference, templateDirectory: directory) == expected)
    }

    @Test func linkTargetsStayInTheRepository() {
        #expect(RepositoryPath.linkTarget("scripts/common.sh", target: "../lib/common.sh") == "lib/common.sh")
        #expect(RepositoryPath.linkTarget("scripts/x", target: "/etc/shadow") == nil)
        #expect(RepositoryPath.linkTarget("scripts/x", target: "../../etc/shadow") == nil)
    }

    static func template(_ customize: String, distribute: String = #"[{"type": "VHD", "runOutputName": "vhd"}]"#) -> String {
        """
        {
          "type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01",
          "name": "web", "location": "westeurope", "identity": {"type": "None"},
          "properties": {
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
            "customize": \(customize),
            "distribute": \(distribute)
          }
        }
        """
    }

    static func load(_ text: String, policy: ArtifactPolicy? = .untrusted) -> LoadedFile {
        TemplateLoader.load(text: text, path: "templates/web.json", options: LoadOptions(artifactPolicy: policy, repositoryPath: "templates/web.json"))
    }

    @Test(arguments: [
        (#"{"type": "File", "name": "f", "sourceUri": "file:///etc/shadow", "destination": "/tmp/s"}"#, "sourceUri", "allowedFileRoots is empty"),
        (#"{"type": "File", "name": "f", "sourceUri": "file:///etc/%73hadow", "destination": "/tmp/s"}"#, "sourceUri", "allowedFileRoots is empty"),
        (#"{"type": "Shell", "name": "s", "scriptUri": "../../etc/passwd"}"#, "scriptUri", "climbs out of the repository"),
        (#"{"type": "Shell", "name": "s", "scriptUri": "https://169.254.169.254/metadata/x"}"#, "scriptUri", "address (link-local)"),
        (#"{"type": "Shell", "name": "s", "scriptUri": "https://[::ffff:169.254.169.254]/x"}"#, "scriptUri", "address (link-local)"),
        (
            #"{"type": "Shell", "name": "s", "scriptUri": "http://127.0.0.1:8080/x.sh", "sha256Checksum": "\#(String(repeating: "a", count: 64))"}"#,
            "scriptUri", "address (loopback)"
        ),
        (#"{"type": "Shell", "name": "s", "scriptUri": "http://example.com/x.sh"}"#, "scriptUri", "needs a sha256Checksum")
    ])
    func refusedReferencesNameTheirPathAndLine(step: String, property: String, message: String) throws {
        let f = Self.load(Self.template("[\n      \(step)\n    ]"))
        #expect(!f.isValid)
        let d = try #require(f.errors.first)
        #expect(d.path.description == "$.properties.customize[0].\(property)")
        #expect(d.line == 7, "\(d)")
        #expect(d.file == "templates/web.json")
        #expect(d.code == .invalidParameter || d.code == .badCustomizerType, "\(d.code)")
        #expect(d.message.contains(message), "\(d.message)")
    }

    @Test func acceptedReferences() {
        let sum = String(repeating: "a", count: 64)
        for step in [
            #"{"type": "Shell", "name": "s", "scriptUri": "../scripts/web.sh"}"#,
            #"{"type": "Shell", "name": "s", "scriptUri": "https://example.com/x.sh"}"#,
            #"{"type": "Shell", "name": "s", "scriptUri": "http://example.com/x.sh", "sha256Checksum": "\#(sum)"}"#
        ] {
            let f = Self.load(Self.template("[\(step)]"))
            #expect(f.isValid, "\(f.errors)")
        }
        // No policy: the syntax only (a stored template read back).
        let stored = Self.load(Self.template(#"[{"type": "File", "name": "f", "sourceUri": "file:///etc/hosts", "destination": "/tmp/h"}]"#), policy: nil)
        #expect(stored.isValid)
    }

    @Test func vhdTargetsOnlyUnderAllowedRoots() throws {
        let f = Self.load(Self.template("[]", distribute: #"[{"type": "VHD", "runOutputName": "vhd", "uri": "file:///etc/cron.d/x.vhd"}]"#))
        let d = try #require(f.errors.first)
        #expect(d.path.description == "$.properties.distribute[0].uri")
        #expect(d.message.contains("allowedVhdRoots is empty"), "\(d.message)")
        let allowed = Self.load(
            Self.template("[]", distribute: #"[{"type": "VHD", "runOutputName": "vhd", "uri": "/srv/vhds/web.vhd"}]"#),
            policy: ArtifactPolicy(vhdRoots: ["/srv/vhds"]))
        #expect(allowed.isValid, "\(allowed.errors)")
    }
}
