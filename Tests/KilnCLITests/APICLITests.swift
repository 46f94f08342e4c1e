import Foundation
import KilnTestSupport
import Testing

/// `kiln serve` over HTTPS driven by Azure's official Python SDK (azure-mgmt-imagebuilder 2.0.0, in a virtual
/// environment made once per cache directory): create, get, list, a real build, run outputs, patch, 100 concurrent PUTs
/// and 200 GETs while a slow build runs, its cancel, delete, and the SDK's exceptions for a validation error, a wrong
/// token and a reader writing (Tests/sdk/aib_sdk_e2e.py).
/// A suite of its own, so that its two builds overlap the serialized VM suite (KILN_MAX_VMS still bounds the VMs).
@Suite(.serialized) struct APICLITests {
    static let apiData = "/tmp/kiln-cli-api-tests"
    static let sdkVersion = "2.0.0"

    /// A Python with the SDK, made once per cache directory.
    static func sdkPython() async throws -> String {
        let cache = ProcessInfo.processInfo.environment["KILN_CACHE_DIR"] ?? (NSTemporaryDirectory() + "kiln-cache")
        let venv = "\(cache)/sdk-venv-azure-mgmt-imagebuilder-\(sdkVersion)"
        let python = venv + "/bin/python"
        if !FileManager.default.fileExists(atPath: venv + "/.complete") {
            try? FileManager.default.removeItem(atPath: venv)
            let made = try await spawnAndWait(["/usr/bin/python3", "-m", "venv", venv])
            try #require(made.status == 0, "python3 -m venv: \(made.stderr)")
            let pip = try await spawnAndWait([python, "-m", "pip", "install", "--quiet", "azure-mgmt-imagebuilder==\(sdkVersion)"])
            try #require(pip.status == 0, "pip install: \(pip.stderr)")
            _ = FileManager.default.createFile(atPath: venv + "/.complete", contents: Data())
        }
        return python
    }

    @Test func theAzureSDKDrivesKilnServe() async throws {
        try? FileManager.default.removeItem(atPath: Self.apiData)
        try FileManager.default.createDirectory(atPath: Self.apiData, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: Self.apiData) }
        let boot = try await TemplateCLITests.kilnAsync("images", "bootstrap", "debian-12", "--generation", "V1", "--data-dir", Self.apiData)
        try #require(boot.status == 0, "\(boot.stderr)")
        let python = try await Self.sdkPython()
        let sub = "11111111-2222-3333-4444-555555555555"
        let (contributor, reader) = ("c-\(UUID().uuidString)", "r-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: Self.apiData + "/c.token", contents: Data(contributor.utf8))
        _ = FileManager.default.createFile(atPath: Self.apiData + "/r.token", contents: Data(reader.utf8))
        // HTTPS with a certificate of its own, as a production server would have: the SDK checks it and needs no
        // enforce_https=False.
        let tls = try await spawnAndWait([
            "/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", Self.apiData + "/tls.key", "-out", Self.apiData + "/tls.crt"
        ])
        try #require(tls.status == 0, "openssl: \(tls.stderr)")
        let config = """
            server:
              api:
                listen: 127.0.0.1:\(try #require(MultiRepositoryCLITests.freePort()))
                tls: {certificate: \(Self.apiData)/tls.crt, key: \(Self.apiData)/tls.key}
                tokens:
                  - {name: ci, file: \(Self.apiData)/c.token, role: Contributor, scopes: [/subscriptions/\(sub)]}
                  - {name: viewer, file: \(Self.apiData)/r.token, role: Reader}
            """
        _ = FileManager.default.createFile(atPath: Self.apiData + "/kiln.yaml", contents: Data(config.utf8))
        let serve = [CLITests.binary, "serve", "--config", Self.apiData + "/kiln.yaml", "--data-dir", Self.apiData]
        let first = try Background(serve, log: Self.apiData + "/serve.log")
        defer { kill(first.pid, SIGKILL) }
        let port = await eventually(.seconds(30)) { first.apiPort != nil } != nil ? first.apiPort : nil
        let base = "https://127.0.0.1:\(try #require(port, "kiln serve did not start: \(first.output)"))"

        // While the real build runs, the script asks for the server to be killed (SIGKILL) and started again on the
        // same port; its poller must then see the run's operation end Succeeded.
        let script = CLITests.repoRoot.path + "/Tests/sdk/aib_sdk_e2e.py"
        let sdk = Task {
            let r = try await spawnAndWait([python, script, base, sub, contributor, reader, Self.apiData + "/tls.crt", Self.apiData])
            _ = FileManager.default.createFile(atPath: Self.apiData + "/sdk-done", contents: Data())
            return r
        }
        let asked = await eventually(.seconds(900)) {
            FileManager.default.fileExists(atPath: Self.apiData + "/kill-now") || FileManager.default.fileExists(atPath: Self.apiData + "/sdk-done")
        }
        #expect(asked != nil && FileManager.default.fileExists(atPath: Self.apiData + "/kill-now"), "the script never asked for the kill")
        #expect(await first.stop(SIGKILL) == 128 + SIGKILL)
        let server = try Background(serve, log: Self.apiData + "/serve.log")
        defer { kill(server.pid, SIGKILL) }
        let listening = await eventually(.seconds(30)) { server.output.components(separatedBy: "REST API on https://").count == 3 } != nil
        #expect(listening, "kiln serve did not start again: \(server.output)")
        _ = FileManager.default.createFile(atPath: Self.apiData + "/restarted", contents: Data())
        let r = try await sdk.value
        print("aib_sdk_e2e.py:\n\(r.stdout)\(r.stderr)")
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)\n--- kiln serve ---\n\(server.output)")
        for step in [
            "create", "get", "list", "kill -9", "run", "runOutputs", "patch", "concurrency", "cancel", "delete", "validation", "wrong token",
            "reader writes"
        ] {
            #expect(r.stdout.contains("ok \(step):"), "step \(step) did not pass")
        }
        // The canceled run's VM is gone.
        let runs =
            try TemplateCLITests.json(try await TemplateCLITests.kilnAsync("template", "runs", "sdk-slow", "--output", "json", "--data-dir", Self.apiData))[
                "value"] as? [[String: Any]]
        let canceled = try #require(runs?.first?["runId"] as? String, "sdk-slow has no run")
        #expect(runs?.first?["runState"] as? String == "Canceled")
        let vms = try await spawnAndWait(["/usr/bin/pgrep", "-f", "kiln-\(canceled)"])
        #expect(vms.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "a VM of the canceled run is still running: \(vms.stdout)")
        // No token reached the server's log.
        #expect(!server.output.contains(contributor) && !server.output.contains(reader))
        #expect(await server.stop(SIGTERM) == 0, "\(server.output)")
    }
}

extension Background {
    /// The port `kiln serve` or `kiln controller` printed the REST API listens on (`… AIB REST API on https://127.0.0.1:PORT …`).
    var apiPort: Int? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("REST API on http") && $0.contains("://127.0.0.1:") }) else {
            return nil
        }
        return Int(line.components(separatedBy: "127.0.0.1:")[1].prefix { $0.isNumber })
    }
}
