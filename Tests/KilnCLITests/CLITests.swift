import Foundation
import KilnGit
import Testing

/// Runs the real `kiln` binary, as a user and a CI script would.
@Suite struct CLITests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `kiln` built next to this test bundle (`swift build` puts both in the same directory).
    static let binary: String = {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = runner.deletingLastPathComponent()
        // The runner may be inside Foo.xctest/Contents/MacOS on other platforms.
        while dir.path.contains(".xctest") { dir = dir.deletingLastPathComponent() }
        let candidate = dir.appendingPathComponent("kiln").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return repoRoot.appendingPathComponent(".build/debug/kiln").path
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func kiln(_ args: String..., cwd: URL = repoRoot) throws -> Result {
        try kiln(args, cwd: cwd)
    }

    static func kiln(_ args: [String], cwd: URL = repoRoot) throws -> Result {
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build the kiln binary first (swift build): \(binary)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.currentDirectoryURL = cwd
        // Files, not pipes: reading two pipes one after the other deadlocks once the child fills the second
        // (64 KiB of progress on stderr), and a process the command leaves behind cannot hold a file open
        // against us the way it holds a pipe.
        let base = NSTemporaryDirectory() + "kiln-cli-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        p.standardOutput = out
        p.standardError = err
        try p.run()
        try? out.close()
        try? err.close()
        p.waitUntilExit()
        let o = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let e = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    @Test func versionShowsLibgit2AndItsFeatures() throws {
        let r = try Self.kiln("version")
        #expect(r.status == 0)
        #expect(r.stdout.contains("kiln "))
        let v = LibGit2.version
        #expect(v.major == 1 && v.minor == 5, "Debian 12's libgit2 is 1.5.x, found \(v)")
        #expect(r.stdout.contains("libgit2 \(v)"))
        for feature in ["threads", "https", "ssh"] { #expect(r.stdout.contains(feature), "\(feature) missing: \(r.stdout)") }
        let json = try Self.kiln("version", "--output", "json")
        let obj = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(obj?["libgit2"] as? String == v.description)
    }

    @Test func examplesAreValid() throws {
        let r = try Self.kiln("validate", "examples/")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains("all valid"))
    }

    @Test func negativeCorpusFailsWithOneLinePerProblem() throws {
        let r = try Self.kiln("validate", "Tests/KilnTemplatesTests/Fixtures/invalid")
        #expect(r.status == 1)
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count >= 82)
        // FILE:LINE: $.json.path: CODE: message
        let pattern = #/^[^:]+\.(json|yaml):\d+: \$[^ ]*: [A-Za-z]+: .+$/#
        for line in lines { #expect(line.wholeMatch(of: pattern) != nil, "bad line: \(line)") }
        #expect(r.stdout.contains("01-missing-location.json:1: $.location: InvalidParameter: the property 'location' is required"))
    }

    @Test func jsonOutputIsMachineReadable() throws {
        let r = try Self.kiln(
            "validate", "--output", "json", "Tests/KilnTemplatesTests/Fixtures/invalid/70-many-problems.json", "examples/templates/debian-12-base.json")
        #expect(r.status == 1)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(obj["valid"] as? Bool == false)
        #expect(obj["errors"] as? Int == 6)
        let files = try #require(obj["files"] as? [[String: Any]])
        #expect(files.count == 2)
        let diags = try #require(files[0]["diagnostics"] as? [[String: Any]])
        #expect(diags.contains { $0["code"] as? String == "BadCustomizerType" && $0["path"] as? String == "$.properties.customize[0].sha256Checksum" })
        let templates = try #require(files[1]["templates"] as? [[String: Any]])
        #expect((templates.first?["contentHash"] as? String)?.hasPrefix("sha256:") == true)
        // kiln.yaml in examples/ supplies the subscription and group.
        #expect(
            templates.first?["id"] as? String
                == "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/kiln-images/providers/Microsoft.VirtualMachineImages/imageTemplates/debian-12-base"
        )
    }

    @Test func usageErrorsExitTwo() throws {
        #expect(try Self.kiln("validate").status == 2)
        #expect(try Self.kiln("validate", "/no/such/path").status == 2)
        #expect(try Self.kiln("validate", "--output", "xml", "examples").status == 2)
        #expect(try Self.kiln("validate", "--parameter", "novalue", "examples").status == 2)
    }

    @Test func parametersFromTheCommandLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tmpl = try String(contentsOf: Self.repoRoot.appendingPathComponent("examples/templates/debian-12-web.json"), encoding: .utf8)
        try tmpl.write(to: dir.appendingPathComponent("web.json"), atomically: true, encoding: .utf8)
        // No parameters file: the required parameters are missing...
        let missing = try Self.kiln("validate", dir.path)
        #expect(missing.status == 1)
        #expect(missing.stdout.contains("no value for parameter 'imageTemplateName'"))
        // ...and given on the command line they are not.
        let given = try Self.kiln("validate", "--verbose", "-p", "imageTemplateName=web", "-p", "galleryName=g", "-p", "imageDefinition=d", dir.path)
        #expect(given.status == 0, "\(given.stdout)\(given.stderr)")
        #expect(given.stdout.contains("ok: web sha256:"))
    }
}
