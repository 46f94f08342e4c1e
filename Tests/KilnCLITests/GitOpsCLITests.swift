import Crypto
import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import KilnTestSupport
import Testing

/// A bare remote and a clone the "user" pushes to with the git CLI.
struct GitRemote {
    let dir: String
    let remote: String
    let work: String

    init(_ name: String) throws {
        dir = NSTemporaryDirectory() + "kiln-gitops-\(name)-\(UUID().uuidString.prefix(6))"
        remote = dir + "/remote.git"
        work = dir + "/work"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try run("git", "init", "-q", "--bare", "-b", "main", remote)
        try run("git", "clone", "-q", remote, work)
    }

    func write(_ path: String, _ text: String) throws {
        let full = work + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }

    @discardableResult
    func push(_ message: String) throws -> String {
        try run("git", "-C", work, "add", "-A")
        try run("git", "-C", work, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", message)
        try run("git", "-C", work, "push", "-q", "origin", "HEAD:main")
        return try run("git", "-C", work, "rev-parse", "HEAD")
    }

    /// Subjects on the remote's status branch, newest first.
    func statusLog() -> [String] {
        ((try? run("git", "-C", remote, "log", "--format=%s", "kiln/status", check: false)) ?? "").split(separator: "\n").map(String.init)
    }

    @discardableResult
    func run(_ args: String..., check: Bool = true) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if check { try #require(p.terminationStatus == 0, "\(args.joined(separator: " ")) failed") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static let kilnYAML = "subscription: 11111111-2222-3333-4444-555555555555\nresourceGroup: rg-gitops-e2e\nlocation: westeurope\n"

    static func template(_ name: String, customize: String, tags: String = "") -> String {
        """
        {
          "type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01",
          "name": "\(name)", "location": "westeurope", "identity": {"type": "None"}, "tags": {\(tags)},
          "properties": {
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"},
            "customize": \(customize),
            "distribute": [{"type": "VHD", "runOutputName": "\(name)-vhd"}]
          }
        }
        """
    }
}

/// A process left running (the controller), started like `spawnAndWait` does, with output to a file.
struct Background {
    let pid: pid_t
    let log: String

    init(_ argv: [String], log: String) throws {
        self.log = log
        let pid = try posixSpawn(argv, stdout: log, stderr: log, append: true)
        self.pid = pid
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// The port a controller printed it serves on (`kiln controller: serving 127.0.0.1:PORT (…)`).
    var servedPort: Int? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("serving 127.0.0.1:") }) else { return nil }
        return Int(line.components(separatedBy: "127.0.0.1:")[1].prefix { $0.isNumber })
    }

    /// The port of the separate metrics listener (`kiln controller: serving metrics on 127.0.0.1:PORT (…)`).
    var metricsPort: Int? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("serving metrics on 127.0.0.1:") }) else { return nil }
        return Int(line.components(separatedBy: "127.0.0.1:")[1].prefix { $0.isNumber })
    }

    /// Sends `sig` and waits up to `timeout` for the exit; the exit code, or nil if it did not exit.
    func stop(_ sig: Int32, timeout: Duration = .seconds(20)) async -> Int32? {
        kill(pid, sig)
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while ContinuousClock.now < deadline {
            if waitpid(pid, &status, WNOHANG) == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }
}

/// The controller's webhook, without VMs (templates tagged `kiln.run: manual`).
@Suite struct WebhookCLITests {
    @Test func aSignedWebhookReconcilesWithinASecondAndABadOneGets401() async throws {
        let repo = try GitRemote("webhook")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        let data = repo.dir + "/data"
        try repo.write("kiln.yaml", GitRemote.kilnYAML)
        try repo.write(
            "templates/first.json", GitRemote.template("first", customize: #"[{"type": "Shell", "inline": ["true"]}]"#, tags: #""kiln.run": "manual""#))
        try repo.push("first")
        let secret = repo.dir + "/secret"
        try "a-long-shared-secret\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let controller = try Background(
            [
                CLITests.binary, "controller", "--data-dir", data, "--repo", repo.remote, "--interval", "1h",
                "--webhook-listen", "127.0.0.1:0", "--webhook-secret-file", secret
            ], log: repo.dir + "/controller.log")
        defer { kill(controller.pid, SIGKILL) }  // if an expectation below throws
        // Started: the first reconcile wrote the first status, and the webhook port is known.
        let started = await eventually(.seconds(30)) {
            repo.statusLog().first?.hasPrefix("first: Accepted") == true && controller.output.contains("/hooks/git)")
        }
        #expect(started != nil, "\(controller.output)")
        let port = try #require(controller.servedPort)

        try repo.write(
            "templates/second.json", GitRemote.template("second", customize: #"[{"type": "Shell", "inline": ["true"]}]"#, tags: #""kiln.run": "manual""#))
        try repo.push("second")
        let body = Array(#"{"ref": "refs/heads/main"}"#.utf8)
        func post(_ headers: [String: String]) async throws -> Int {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/hooks/git")!)
            request.httpMethod = "POST"
            request.httpBody = Data(body)
            for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
            let (_, response) = try await URLSession.shared.data(for: request)
            return (response as? HTTPURLResponse)?.statusCode ?? 0
        }
        // A bad signature: 401, and nothing happens (the poll interval is an hour).
        #expect(try await post(["X-Hub-Signature-256": "sha256=" + String(repeating: "0", count: 64), "X-GitHub-Event": "push"]) == 401)
        #expect(try await post(["X-Gitlab-Token": "wrong"]) == 401)
        #expect(try await post([:]) == 401)
        try await Task.sleep(for: .seconds(1.5))
        #expect(repo.statusLog().count == 1, "\(repo.statusLog())")

        // A genuine GitHub delivery: reconciled, status committed, within a second. Three deliveries (a new
        // template each) and the fastest counts, so a moment of CPU contention from parallel suites does not
        // decide; without the webhook every one would wait for the hour-long poll.
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data("a-long-shared-secret".utf8)))
        let signature = "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
        var times: [Duration] = []
        for n in 0..<3 {
            let name = n == 0 ? "second" : "more\(n)"
            if n > 0 {
                try repo.write(
                    "templates/\(name).json", GitRemote.template(name, customize: #"[{"type": "Shell", "inline": ["true"]}]"#, tags: #""kiln.run": "manual""#))
                try repo.push(name)
            }
            let sent = ContinuousClock.now
            #expect(try await post(["X-Hub-Signature-256": signature, "X-GitHub-Event": "push"]) == 202)
            let took = await eventually(.seconds(5)) { repo.statusLog().first?.hasPrefix("\(name): Accepted") == true }
            #expect(took != nil, "\(name) was never reconciled; \(controller.output)")
            times.append(ContinuousClock.now - sent)
        }
        let fastest = times.min()!
        print("webhook → status commit on kiln/status: fastest \(fastest) of \(times)")
        #expect(fastest < .seconds(1), "\(times); \(controller.output)")

        // One controller per data directory.
        let second = try await spawnAndWait([CLITests.binary, "controller", "--data-dir", data, "--repo", repo.remote])
        #expect(second.status == 1 && second.stderr.contains("one per data directory"), "\(second.stderr)")

        // SIGTERM: a clean stop.
        #expect(await controller.stop(SIGTERM) == 0, "\(controller.output)")
    }
}

/// Several repositories in one controller, and its HTTP endpoints, without VMs.
@Suite struct MultiRepositoryCLITests {
    /// A TCP port that accepts connections (the kernel completes the handshake) and never says a word: an SSH
    /// remote whose server hangs. libgit2 waits for its banner with no timeout.
    final class SilentListener {
        let fd: Int32
        let port: Int

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &len) == 0 }
            }
            try #require(bound, "cannot listen on 127.0.0.1")
            port = Int(UInt16(bigEndian: addr.sin_port))
        }

        deinit { close(fd) }
    }

    /// A loopback port nobody listens on now.
    static func freePort() -> Int? {
        guard let l = try? SilentListener() else { return nil }
        return l.port
    }

    static func get(_ port: Int, _ path: String) async throws -> (Int, String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// The value of one series in Prometheus text (`name{labels} value`), or nil when absent.
    static func sample(_ metrics: String, _ series: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    /// A repository with `kiln.yaml` and one manual template, `first`, pushed.
    static func oneTemplateRepository(_ name: String) throws -> GitRemote {
        let repo = try GitRemote(name)
        try repo.write("kiln.yaml", GitRemote.kilnYAML)
        try repo.write(
            "templates/first.json", GitRemote.template("first", customize: #"[{"type": "Shell", "inline": ["true"]}]"#, tags: #""kiln.run": "manual""#))
        try repo.push("first")
        return repo
    }

    /// `server.api` in the controller's configuration: the same process answers the REST API, and the templates
    /// its repository manages are read-only there (409 naming the repository and file), while GETs work.
    @Test func theControllerServesTheRESTAPIAndItsTemplatesAreReadOnlyThere() async throws {
        let repo = try Self.oneTemplateRepository("controller-api")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        try "api-token-\(UUID().uuidString)".write(toFile: repo.dir + "/api.token", atomically: true, encoding: .utf8)
        let config = "server:\n  api:\n    listen: 127.0.0.1:0\n    tokens: [{name: ci, file: \(repo.dir)/api.token, role: Contributor}]\n"
        try config.write(toFile: repo.dir + "/controller.yaml", atomically: true, encoding: .utf8)
        let controller = try Background(
            [
                CLITests.binary, "controller", "--config", repo.dir + "/controller.yaml", "--data-dir", repo.dir + "/data", "--repo", repo.remote, "--interval",
                "1h"
            ],
            log: repo.dir + "/controller.log")
        defer { kill(controller.pid, SIGKILL) }
        let up = await eventually(.seconds(30)) { controller.apiPort != nil && repo.statusLog().first?.hasPrefix("first: Accepted") == true }
        #expect(up != nil, "\(controller.output)")
        let port = try #require(controller.apiPort)
        let token = try String(contentsOfFile: repo.dir + "/api.token", encoding: .utf8)
        let path =
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-gitops-e2e/providers/Microsoft.VirtualMachineImages/imageTemplates/first?api-version=2025-10-01"
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (got, gotResponse) = try await URLSession.shared.data(for: request)
        #expect((gotResponse as? HTTPURLResponse)?.statusCode == 200, "\(String(decoding: got, as: UTF8.self))")
        request.httpMethod = "DELETE"
        let (refused, refusedResponse) = try await URLSession.shared.data(for: request)
        let message = String(decoding: refused, as: UTF8.self)
        #expect((refusedResponse as? HTTPURLResponse)?.statusCode == 409, "\(message)")
        #expect(message.contains("managed by the git repository") && message.contains("templates/first.json"), "\(message)")
        #expect(!controller.output.contains(token))
        #expect(await controller.stop(SIGTERM) == 0, "\(controller.output)")
    }

    /// `--metrics-listen`: readiness and metrics on a port of their own, off the webhook port.
    @Test func metricsOnAPortOfTheirOwn() async throws {
        let repo = try Self.oneTemplateRepository("metrics-port")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        try "a-long-shared-secret\n".write(toFile: repo.dir + "/secret", atomically: true, encoding: .utf8)
        let controller = try Background(
            [
                CLITests.binary, "controller", "--data-dir", repo.dir + "/data", "--repo", repo.remote, "--interval", "1h",
                "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--webhook-secret-file", repo.dir + "/secret"
            ],
            log: repo.dir + "/controller.log")
        defer { kill(controller.pid, SIGKILL) }
        let up = await eventually(.seconds(30)) {
            controller.servedPort != nil && controller.metricsPort != nil && repo.statusLog().first?.hasPrefix("first: Accepted") == true
        }
        #expect(up != nil, "\(controller.output)")
        let hooks = try #require(controller.servedPort), inner = try #require(controller.metricsPort)
        #expect(hooks != inner)
        #expect(controller.output.contains("(/healthz /hooks/git)") && controller.output.contains("(/healthz /readyz /metrics)"), "\(controller.output)")

        // The webhook port: health and webhooks only.
        #expect(try await Self.get(hooks, "/healthz").0 == 200)
        #expect(try await Self.get(hooks, "/metrics").0 == 404)
        #expect(try await Self.get(hooks, "/readyz").0 == 404)
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(hooks)/hooks/git")!)
        request.httpMethod = "POST"
        request.httpBody = Data("{}".utf8)
        #expect((try await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode == 401, "unsigned, but routed")

        // The metrics port: health, readiness, metrics; no webhooks.
        let (readyCode, ready) = try await Self.get(inner, "/readyz")
        #expect(readyCode == 200 && ready.contains("\"ready\":true"), "\(ready)")
        let (metricsCode, metrics) = try await Self.get(inner, "/metrics")
        #expect(metricsCode == 200 && metrics.contains("kiln_reconciles_total"), "\(metrics)")
        request.url = URL(string: "http://127.0.0.1:\(inner)/hooks/git")!
        #expect((try await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode == 404)
        #expect(await controller.stop(SIGTERM) == 0, "\(controller.output)")
    }

    @Test func aBrokenAndAHangingRepositoryLeaveTheOtherReconciling() async throws {
        let good = try GitRemote("multi")
        defer { try? FileManager.default.removeItem(atPath: good.dir) }
        try good.write("kiln.yaml", GitRemote.kilnYAML)
        try good.write(
            "templates/first.json", GitRemote.template("first", customize: #"[{"type": "Shell", "inline": ["true"]}]"#, tags: #""kiln.run": "manual""#))
        try good.push("first")
        let silent = try SilentListener()
        try "".write(toFile: good.dir + "/known_hosts", atomically: true, encoding: .utf8)
        try "a-long-shared-secret\n".write(toFile: good.dir + "/secret", atomically: true, encoding: .utf8)
        let config = """
            dataDir: \(good.dir)/data
            repositories:
              - name: broken
                url: file://\(good.dir)/no-such-remote.git
                interval: 1s
              - name: hanging
                url: ssh://git@127.0.0.1:\(silent.port)/images.git
                interval: 1s
                timeout: 2s
                credentials:
                  knownHosts: \(good.dir)/known_hosts
              - name: stuck
                url: ssh://git@127.0.0.1:\(silent.port)/stuck.git
                interval: 1s
                timeout: 1h
                credentials:
                  knownHosts: \(good.dir)/known_hosts
              - name: good
                url: \(good.remote)
                interval: 1h
                webhookSecretFile: \(good.dir)/secret
            server:
              listen: 127.0.0.1:0
            """
        try config.write(toFile: good.dir + "/kiln.yaml", atomically: true, encoding: .utf8)
        let controller = try Background(
            [CLITests.binary, "controller", "--config", good.dir + "/kiln.yaml", "--stop-grace", "3s"],
            log: good.dir + "/controller.log")
        defer { kill(controller.pid, SIGKILL) }

        // The good repository reconciles although the others never answer (one fails at once, one hangs and is
        // given up after its 2 s timeout, again and again, one hangs for an hour).
        let first = await eventually(.seconds(30)) { good.statusLog().first?.hasPrefix("first: Accepted") == true && controller.servedPort != nil }
        #expect(first != nil, "\(controller.output)")
        let port = try #require(controller.servedPort)

        // Readiness names the repositories never fetched; health is fine.
        #expect(try await Self.get(port, "/healthz").0 == 200)
        let (readyCode, ready) = try await Self.get(port, "/readyz")
        #expect(readyCode == 503, "\(ready)")
        let readyJSON = try #require(try JSONSerialization.jsonObject(with: Data(ready.utf8)) as? [String: Any])
        let repos = try #require(readyJSON["repositories"] as? [[String: Any]])
        #expect(Set(repos.filter { $0["synced"] as? Bool == true }.compactMap { $0["name"] as? String }) == ["good"], "\(ready)")
        #expect(repos.first { $0["name"] as? String == "broken" }?["lastError"] as? String != nil, "\(ready)")

        // A push to the good repository and its webhook: reconciled now, while the others still fail or hang.
        try good.write(
            "templates/second.json", GitRemote.template("second", customize: #"[{"type": "Shell", "inline": ["true"]}]"#, tags: #""kiln.run": "manual""#))
        try good.push("second")
        let body = Array(#"{"ref": "refs/heads/main"}"#.utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data("a-long-shared-secret".utf8)))
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/hooks/git/good")!)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        request.setValue("sha256=" + mac.map { String(format: "%02x", $0) }.joined(), forHTTPHeaderField: "X-Hub-Signature-256")
        let (_, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 202)
        let second = await eventually(.seconds(10)) { good.statusLog().first?.hasPrefix("second: Accepted") == true }
        #expect(second != nil, "\(controller.output)")
        request.url = URL(string: "http://127.0.0.1:\(port)/hooks/git/nope")!
        #expect((try await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode == 404)
        request.url = URL(string: "http://127.0.0.1:\(port)/hooks/git/broken")!
        #expect((try await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode == 404, "broken has no webhook secret")

        // Metrics: per-repository sync time, reconcile results, fetch errors of the broken one (it keeps being
        // polled, once a second), webhooks.
        var metrics = ""
        let polled = try await eventually(.seconds(15)) {
            let (code, text) = try await Self.get(port, "/metrics")
            metrics = text
            return code == 200 && (Self.sample(text, #"kiln_git_errors_total{repository="broken",operation="fetch"}"#) ?? 0) >= 3
        }
        #expect(polled != nil, "\(metrics)")
        let synced = try #require(Self.sample(metrics, #"kiln_repository_last_sync_timestamp_seconds{repository="good"}"#), "\(metrics)")
        #expect(abs(synced - Date().timeIntervalSince1970) < 60)
        #expect(Self.sample(metrics, #"kiln_repository_last_sync_timestamp_seconds{repository="broken"}"#) == 0)
        #expect((Self.sample(metrics, #"kiln_reconciles_total{repository="good",result="success"}"#) ?? 0) >= 2, "\(metrics)")
        #expect(Self.sample(metrics, #"kiln_git_errors_total{repository="stuck",operation="fetch"}"#) == 0, "it never returned")
        let timedOut = try await eventually(.seconds(15)) {
            let (_, text) = try await Self.get(port, "/readyz")
            let repos = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["repositories"] as? [[String: Any]]
            return (repos?.first { $0["name"] as? String == "hanging" }?["lastError"] as? String)?.contains("timed out: no progress for 2.0 seconds") == true
        }
        let readyNow = try await Self.get(port, "/readyz").1
        #expect(timedOut != nil, "the hanging repository is given up after its timeout: \(readyNow)")
        let metricsNow = try await Self.get(port, "/metrics").1
        #expect((Self.sample(metricsNow, #"kiln_git_errors_total{repository="hanging",operation="fetch"}"#) ?? 0) >= 1, "\(metricsNow)")
        #expect(Self.sample(metrics, #"kiln_webhook_requests_total{repository="good",result="accepted"}"#) == 1, "\(metrics)")
        #expect(Self.sample(metrics, #"kiln_webhook_requests_total{repository="-",result="unknown"}"#) == 1, "\(metrics)")
        #expect(Self.sample(metrics, #"kiln_templates{state="Succeeded"}"#) == 2, "\(metrics)")
        #expect(Self.sample(metrics, "kiln_run_queue_depth") == 0, "\(metrics)")
        #expect(metrics.contains(#"kiln_reconcile_duration_seconds_bucket{repository="good",le="+Inf"}"#), "\(metrics)")

        // SIGTERM: the stuck repository's git call (an hour's timeout) is not interrupted; the process still exits after the grace.
        #expect(await controller.stop(SIGTERM, timeout: .seconds(15)) == 0, "\(controller.output)")
        #expect(controller.output.contains("not stopped within"), "\(controller.output)")
    }
}

/// GitOps end to end with real builds. An extension of the serialized VM suite, so VMs never overlap.
extension TemplateCLITests {
    @Test func gitOpsPushBuildsEditRebuildsAndStatusIsInGit() async throws {
        #expect(await Self.catalog.value)
        let repo = try GitRemote("e2e")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        try repo.write("kiln.yaml", GitRemote.kilnYAML)
        try repo.write("scripts/hello.sh", "#!/bin/sh\necho \"hello-from-git v1\" | sudo tee /etc/kiln-gitops\n")
        try repo.write(
            "templates/gitops-e2e.json",
            GitRemote.template(
                "gitops-e2e",
                customize: #"[{"type": "Shell", "name": "hello", "scriptUri": "scripts/hello.sh"}]"#))
        let c1 = try repo.push("add gitops-e2e")

        // Push → created and built; status commits per transition; a note on the source commit.
        let r1 = try await Self.k("reconcile", "--repo", repo.remote, "--once")
        #expect(r1.status == 0, "\(r1.stdout)\n\(r1.stderr)")
        #expect(r1.stdout.contains("gitops-e2e: run ") && r1.stdout.contains("Succeeded"), "\(r1.stdout)")
        let log1 = repo.statusLog()
        #expect(log1.first == "gitops-e2e: Succeeded (\(c1.prefix(7)))", "\(log1)")
        #expect(log1.contains("gitops-e2e: Running/Customizing (\(c1.prefix(7)))"), "\(log1)")
        #expect(log1.count >= 4, "accepted/queued, building, customizing, …, succeeded: \(log1)")
        let note = try repo.run("git", "-C", repo.remote, "notes", "--ref=kiln", "show", c1)
        #expect(note.contains("gitops-e2e: Succeeded"), "\(note)")
        let doc = try repo.run("git", "-C", repo.remote, "show", "kiln/status:status/rg-gitops-e2e/gitops-e2e.json")
        let status = try #require(try JSONSerialization.jsonObject(with: Data(doc.utf8)) as? [String: Any])
        #expect(status["sourceCommit"] as? String == c1)
        #expect((status["lastRunStatus"] as? [String: Any])?["runState"] as? String == "Succeeded")
        #expect((status["phases"] as? [String: Any])?["Customizing"] != nil)
        #expect((status["runOutputs"] as? [[String: Any]])?.first?["provisioningState"] as? String == "Succeeded")
        let run1 = try #require(status["runId"] as? String)

        // The same commit again: no run, no commit.
        let again = try await Self.k("reconcile", "--repo", repo.remote, "--once")
        #expect(again.status == 0 && again.stderr.contains("nothing to do"), "\(again.stderr)")
        #expect(repo.statusLog().count == log1.count)

        // Edit only the script → the plan says recreate and why; reconcile rebuilds with the new script.
        try repo.write("scripts/hello.sh", "#!/bin/sh\necho \"hello-from-git v2\" | sudo tee /etc/kiln-gitops\n")
        let c2 = try repo.push("edit the script only")
        let plan = try await Self.k("plan", "--repo", repo.remote, "--exit-code")
        #expect(plan.status == 2, "\(plan.stdout)\n\(plan.stderr)")
        #expect(plan.stdout.contains("recreate gitops-e2e [templates/gitops-e2e.json] (scripts/hello.sh changed)"), "\(plan.stdout)")
        let r2 = try await Self.k("reconcile", "--repo", repo.remote, "--once", "--output", "json")
        #expect(r2.status == 0, "\(r2.stderr)")
        let runs = try #require(try Self.json(r2)["runs"] as? [[String: Any]])
        let run2 = try #require(runs.first?["runId"] as? String)
        #expect(run2 != run1 && runs.first?["runState"] as? String == "Succeeded")
        let log = try String(contentsOfFile: try #require(runs.first?["logDirectory"] as? String) + "/customization.log", encoding: .utf8)
        #expect(log.contains("hello-from-git v2"))
        #expect(repo.statusLog().first == "gitops-e2e: Succeeded (\(c2.prefix(7)))")

        // Read back through the CLI.
        let st = try await Self.k("status", "--repo", repo.remote, "gitops-e2e", "--output", "json")
        #expect(try Self.json(st)["runId"] as? String == run2)
        // One type behind all three: the status file, `kiln status --output json` and `kiln template show`'s kiln.status.
        let fileNow = try repo.run("git", "-C", repo.remote, "show", "kiln/status:status/rg-gitops-e2e/gitops-e2e.json")
        let fromFile = NSDictionary(dictionary: try #require(try JSONSerialization.jsonObject(with: Data(fileNow.utf8)) as? [String: Any]))
        let fromStatus = NSDictionary(dictionary: try Self.json(st))
        let shown = try Self.json(try await Self.k("template", "show", "gitops-e2e", "--output", "json"))
        let fromShow = NSDictionary(dictionary: try #require((shown["kiln"] as? [String: Any])?["status"] as? [String: Any]))
        #expect(fromFile == fromStatus, "\(fromFile) vs \(fromStatus)")
        #expect(fromShow == fromFile, "\(fromShow) vs \(fromFile)")
        #expect((shown["properties"] as? [String: Any])?["provisioningState"] as? String == fromFile["provisioningState"] as? String)
        let history = try await Self.k("history", "--repo", repo.remote, "gitops-e2e")
        #expect(
            history.stdout.contains("gitops-e2e: Succeeded (\(c2.prefix(7)))") && history.stdout.contains("gitops-e2e: Succeeded (\(c1.prefix(7)))"),
            "\(history.stdout)")

        // Delete the file → pruned, staging removed, status file removed.
        let staging =
            try #require(try Self.json(try await Self.k("template", "show", "gitops-e2e", "--output", "json"))["kiln"] as? [String: Any])["stagingDirectory"]
            as? String
        try repo.run("git", "-C", repo.work, "rm", "-q", "templates/gitops-e2e.json")
        try repo.push("remove it")
        let r3 = try await Self.k("reconcile", "--repo", repo.remote, "--once")
        #expect(r3.status == 0 && r3.stderr.contains("delete gitops-e2e"), "\(r3.stderr)")
        #expect(staging.map { !FileManager.default.fileExists(atPath: $0) } == true)
        #expect(repo.statusLog().first == "gitops-e2e: Deleted")
    }

    /// Kiln as a service: the controller from a configuration file builds a template whose script is a
    /// token-protected artifact; /metrics then shows the run's phases and the repository's sync time, and the
    /// token is nowhere: not in the data directory, the status branch and its notes, or the logs (JSON, debug).
    @Test func serviceBuildWithAPrivateArtifactHasMetricsAndLeaksNoToken() async throws {
        #expect(await Self.catalog.value)
        let repo = try GitRemote("service")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        let token = "tok-" + UUID().uuidString.lowercased()
        let port = try #require(MultiRepositoryCLITests.freePort())
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = [
            "-c",
            """
            import http.server
            class H(http.server.BaseHTTPRequestHandler):
                def log_message(self, *a): pass
                def do_GET(self):
                    if self.path != "/private/setup.sh":
                        self.send_response(404); self.end_headers(); return
                    if self.headers.get("Authorization") != "Bearer \(token)":
                        self.send_response(401); self.end_headers(); return
                    body = b"#!/bin/sh\\necho private-artifact-ran\\n"
                    self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            http.server.HTTPServer(("127.0.0.1", \(port)), H).serve_forever()
            """
        ]
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        try "\(token)\n".write(toFile: repo.dir + "/artifact.token", atomically: true, encoding: .utf8)
        let privateScript = "#!/bin/sh\necho private-artifact-ran\n"

        try repo.write("kiln.yaml", GitRemote.kilnYAML)
        let identity =
            #""identity": {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/0/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/builder": {}}}"#
        try repo.write(
            "templates/svc.json",
            GitRemote.template(
                "svc-e2e",
                customize:
                    #"[{"type": "Shell", "name": "private", "scriptUri": "http://127.0.0.1:\#(port)/private/setup.sh", "sha256Checksum": "\#(sha256(privateScript))"}]"#
            )
            .replacingOccurrences(of: #""identity": {"type": "None"}"#, with: identity))
        let commit = try repo.push("a template with a private script")
        // The repository is private: served over HTTP to a client with the git token only.
        let gitToken = "git-" + UUID().uuidString.lowercased()
        try "\(gitToken)\n".write(toFile: repo.dir + "/git.token", atomically: true, encoding: .utf8)
        try repo.run("git", "-C", repo.remote, "config", "http.receivepack", "true")
        let gitServer = try await PrivateGitServer.start(root: repo.dir, token: gitToken)
        defer { gitServer.stop() }
        let config = """
            dataDir: \(Self.data)
            logging:
              format: json
              level: debug
            identities:
              - name: builder
                credentials:
                  - urlPrefix: http://127.0.0.1:\(port)/private/
                    tokenFile: \(repo.dir)/artifact.token
            repositories:
              - name: svc
                url: \(gitServer.url("remote.git"))
                credentials: { tokenFile: \(repo.dir)/git.token }
                interval: 2s
            server:
              listen: 127.0.0.1:0
            artifacts:
              allowedHosts: [127.0.0.1]
            """
        try config.write(toFile: repo.dir + "/kiln-service.yaml", atomically: true, encoding: .utf8)
        let workerLog = Self.data + "/logs/worker.log"
        let workerLogStart = (try? FileManager.default.attributesOfItem(atPath: workerLog)[.size] as? Int) ?? 0
        let controller = try Background([CLITests.binary, "controller", "--config", repo.dir + "/kiln-service.yaml"], log: repo.dir + "/controller.log")
        defer { kill(controller.pid, SIGKILL) }
        let built = await eventually(.seconds(400)) {
            repo.statusLog().first?.hasPrefix("svc-e2e: ") == true && repo.statusLog().first?.hasPrefix("svc-e2e: Running") == false
                && repo.statusLog().first?.hasPrefix("svc-e2e: Accepted") == false
        }
        #expect(built != nil, "\(controller.output)\n\(repo.statusLog())")
        #expect(repo.statusLog().first == "svc-e2e: Succeeded (\(commit.prefix(7)))", "\(repo.statusLog())\n\(controller.output)")
        let port2 = try #require(controller.servedPort, "\(controller.output)")

        // The private script ran in the VM.
        let runs = try #require(try Self.json(try await Self.k("template", "runs", "svc-e2e", "--output", "json"))["value"] as? [[String: Any]])
        let logDir = try #require(runs.first?["logDirectory"] as? String)
        #expect(((try? String(contentsOfFile: logDir + "/customization.log", encoding: .utf8)) ?? "").contains("private-artifact-ran"))

        // /metrics after the build: the run's phases as histograms, the repository's last sync.
        let (code, metrics) = try await MultiRepositoryCLITests.get(port2, "/metrics")
        #expect(code == 200)
        for phase in ["Building", "Customizing", "Distributing"] {
            #expect((MultiRepositoryCLITests.sample(metrics, "kiln_run_phase_duration_seconds_count{phase=\"\(phase)\"}") ?? 0) >= 1, "\(phase): \(metrics)")
        }
        #expect(metrics.contains(#"kiln_run_phase_duration_seconds_bucket{phase="Customizing",le="+Inf"}"#), "\(metrics)")
        #expect(MultiRepositoryCLITests.sample(metrics, #"kiln_run_duration_seconds_count{state="Succeeded"}"#) == 1, "\(metrics)")
        let synced = try #require(MultiRepositoryCLITests.sample(metrics, #"kiln_repository_last_sync_timestamp_seconds{repository="svc"}"#))
        #expect(abs(synced - Date().timeIntervalSince1970) < 30, "\(metrics)")
        #expect(try await MultiRepositoryCLITests.get(port2, "/readyz").0 == 200)
        print(metrics.split(separator: "\n").filter { $0.contains("phase_duration_seconds_count") || $0.contains("last_sync") }.joined(separator: "\n"))

        #expect(await controller.stop(SIGTERM) == 0, "\(controller.output)")
        // Logs are JSON lines that name the template and the run.
        let logs = controller.output + String(decoding: (FileManager.default.contents(atPath: workerLog) ?? Data()).dropFirst(workerLogStart), as: UTF8.self)
        let runId = try #require(runs.first?["runId"] as? String)
        #expect(
            logs.split(separator: "\n").contains { $0.hasPrefix("{") && $0.contains("\"run phase\"") && $0.contains(runId) && $0.contains("svc-e2e") },
            "\(logs.suffix(3000))")

        // No token anywhere: the data directory, everything reachable in the remote (status branch, notes), the logs.
        let gitText =
            try repo.run("git", "-C", repo.remote, "log", "-p", "--all", "--format=%H %s%n%b")
            + (try repo.run("git", "-C", repo.remote, "notes", "--ref=kiln", "show", commit))
        #expect(gitText.contains("svc-e2e: Succeeded"))
        #expect(gitServer.requests.contains { $0.hasPrefix("POST /remote.git/git-receive-pack") && $0.hasSuffix(" 200") }, "\(gitServer.requests)")
        for secret in [token, gitToken] {
            #expect(!gitText.contains(secret), "a token is in the remote's history")
            #expect(!logs.contains(secret), "a token is in the logs")
            let grep = try await spawnAndWait(["/bin/grep", "-r", "-a", "-F", "-l", secret, Self.data])
            #expect(grep.status == 1, "a token is in the data directory: \(grep.stdout)")
        }
        // Nor in the captured image: the fixed VHD is the disk byte for byte, deleted blocks included.
        let output = try Self.json(try await Self.k("template", "output", "svc-e2e", "svc-e2e-vhd", "--output", "json"))
        let vhdURI = try #require((output["properties"] as? [String: Any])?["artifactUri"] as? String)
        let vhd = try #require(URL(string: vhdURI)?.path)
        for secret in [token, gitToken] {
            let inImage = try await spawnAndWait(["/bin/grep", "-c", "-a", "-F", secret, vhd])
            #expect(inImage.status == 1, "a token is in the captured image \(vhd): \(inImage.stdout)")
        }
        // Nothing Kiln wrote for this build can be read by other users.
        let exposed = Self.worldReadable(under: Self.data).filter { !$0.hasPrefix("images/") }  // the catalog's public OS images
        #expect(exposed.isEmpty, "world-readable: \(exposed.prefix(20))")
        #expect(try await Self.k("template", "delete", "svc-e2e").status == 0)
    }

    /// Files and directories under `root` whose mode lets other users read them (directories: enter them).
    static func worldReadable(under root: String) -> [String] {
        var out: [String] = []
        guard let e = FileManager.default.enumerator(atPath: root) else { return [root] }
        for case let rel as String in e {
            let path = root + "/" + rel
            guard let a = try? FileManager.default.attributesOfItem(atPath: path), let mode = a[.posixPermissions] as? Int,
                a[.type] as? FileAttributeType != .typeSymbolicLink
            else { continue }
            if mode & 0o004 != 0 || (a[.type] as? FileAttributeType == .typeDirectory && mode & 0o001 != 0) { out.append("\(rel) \(String(mode, radix: 8))") }
        }
        return out
    }

    @Test func controllerKilledMidBuildRestartsWithoutADuplicateRun() async throws {
        #expect(await Self.catalog.value)
        let repo = try GitRemote("crash")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        try repo.write("kiln.yaml", GitRemote.kilnYAML)
        try repo.write(
            "templates/gitops-crash.json",
            GitRemote.template(
                "gitops-crash",
                customize: #"[{"type": "Shell", "name": "slow", "inline": ["sleep 15", "echo slept"]}]"#))
        try repo.push("add gitops-crash")
        let args = [CLITests.binary, "controller", "--data-dir", Self.data, "--repo", repo.remote, "--interval", "2s"]
        let first = try Background(args, log: repo.dir + "/controller-1.log")
        defer { kill(first.pid, SIGKILL) }
        let customizing = await eventually(.seconds(240)) { repo.statusLog().first?.hasPrefix("gitops-crash: Running/Customizing") == true }
        #expect(customizing != nil, "\(first.output)\n\(repo.statusLog())")
        #expect(await first.stop(SIGKILL) == 128 + SIGKILL)

        // Restarted: the build went on in its worker; the new controller reports it and starts nothing new.
        let second = try Background(args, log: repo.dir + "/controller-2.log")
        defer { kill(second.pid, SIGKILL) }
        let ended = await eventually(.seconds(240)) { repo.statusLog().first?.hasPrefix("gitops-crash: Succeeded") == true }
        #expect(ended != nil, "\(second.output)\n\(repo.statusLog())")
        try await Task.sleep(for: .seconds(5))  // a couple more polls
        #expect(await second.stop(SIGTERM) == 0, "\(second.output)")
        let runs = try #require(try Self.json(try await Self.k("template", "runs", "gitops-crash", "--output", "json"))["value"] as? [[String: Any]])
        #expect(runs.count == 1, "one run for one content hash: \(runs.map { $0["runId"] ?? "?" })")
        #expect(repo.statusLog().filter { $0.hasPrefix("gitops-crash: Succeeded") }.count == 1)
        #expect(try await Self.k("template", "delete", "gitops-crash").status == 0)
    }
}

/// The configuration file through the binary.
@Suite struct ConfigCLITests {
    @Test func configCheckPrintsEffectiveSettingsAndProblemsWithLines() async throws {
        let example = CLITests.repoRoot.appendingPathComponent("deploy/kiln.yaml").path
        let ok = try await spawnAndWait([CLITests.binary, "config", "check", "--config", example])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("dataDir: /var/lib/kiln") && ok.stdout.contains("tokenFile: /etc/kiln/git.token"), "\(ok.stdout)")

        let dir = NSTemporaryDirectory() + "kiln-config-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "identities:\n  - name: b\n    credentials:\n      - urlPrefix: https://a.example.com/\n        token: top-secret-value\nparalelism: 2\n"
            .write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try await spawnAndWait([CLITests.binary, "config", "check", "--config", dir + "/bad.yaml"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("\(dir)/bad.yaml:6: $.paralelism: unknown key; did you mean 'parallelism'?"), "\(bad.stderr)")
        #expect(!bad.stderr.contains("top-secret-value") && !bad.stdout.contains("top-secret-value"))

        try "identities:\n  - name: b\n    credentials:\n      - urlPrefix: https://a.example.com/\n        token: top-secret-value\n"
            .write(toFile: dir + "/secret.yaml", atomically: true, encoding: .utf8)
        let masked = try await spawnAndWait([CLITests.binary, "config", "check", "--config", dir + "/secret.yaml", "--output", "json"])
        #expect(masked.status == 0 && masked.stdout.contains("****") && !masked.stdout.contains("top-secret-value"), "\(masked.stdout)")
    }

    @Test func aConfiguredRepositoryByNameAndTheDataDirFromTheFile() async throws {
        let repo = try GitRemote("config")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        try repo.write("kiln.yaml", GitRemote.kilnYAML)
        try repo.write("images/one.json", GitRemote.template("one", customize: #"[{"type": "Shell", "inline": ["true"]}]"#, tags: #""kiln.run": "manual""#))
        try repo.push("one template under images/")
        let config = """
            dataDir: \(repo.dir)/data-from-config
            author: Image Bot <images@example.com>
            repositories:
              - name: local
                url: \(repo.remote)
                path: images
                statusBranch: build-status
            """
        try config.write(toFile: repo.dir + "/kiln-config.yaml", atomically: true, encoding: .utf8)
        let r = try await spawnAndWait([CLITests.binary, "reconcile", "--config", repo.dir + "/kiln-config.yaml", "--repo", "local", "--once"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stderr.contains("create one [images/one.json]"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: repo.dir + "/data-from-config/kiln.db"))
        let author = try repo.run("git", "-C", repo.remote, "log", "-1", "--format=%an <%ae>", "build-status")
        #expect(author == "Image Bot <images@example.com>")
        // A flag wins over the file.
        let other = try await spawnAndWait([
            CLITests.binary, "status", "--config", repo.dir + "/kiln-config.yaml", "--repo", "local",
            "--data-dir", repo.dir + "/other-data", "--output", "json"
        ])
        #expect(other.status == 0 && other.stdout.contains("\"name\" : \"one\""), "\(other.stdout)\n\(other.stderr)")
        #expect(FileManager.default.fileExists(atPath: repo.dir + "/other-data/git"))
    }
}
