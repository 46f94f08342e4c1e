import Crypto
import Foundation
import KilnTestSupport
import Testing

/// The golden-image loop on the examples repository, with real builds: the controller builds the chain
/// (base, then the images built on it) without a manual step; a patched base script rebuilds base, then app
/// and web from base's new version, in one `reconcile --once`, and leaves tools alone. An extension of the
/// serialized VM suite, so VMs never overlap; a data directory of its own, since the examples' names are
/// used by other tests of the suite.
extension TemplateCLITests {
    static let goldenData = "/tmp/kiln-cli-golden-tests"
    static let gallery =
        "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/kiln-images/providers/Microsoft.Compute/galleries/kilnGallery/images"

    static func g(_ args: String...) async throws -> CLITests.Result {
        try await kilnAsync(args + ["--data-dir", goldenData])
    }

    /// The newest run of a template, as `kiln template runs --output json` prints it.
    static func newestRun(_ name: String) async throws -> [String: Any] {
        let runs = try json(try await g("template", "runs", name, "--output", "json"))["value"] as? [[String: Any]]
        return try #require(runs?.first, "\(name) has no run")
    }

    /// Status subjects oldest first, and the position of the first one of `name` with `prefix`.
    static func first(_ log: [String], _ name: String, _ prefix: String) -> Int? {
        log.firstIndex { $0.hasPrefix("\(name): \(prefix)") }
    }

    @Test func aPatchedBaseRebuildsTheImagesBuiltOnIt() async throws {
        #expect(await Self.catalog.value)
        try? FileManager.default.removeItem(atPath: Self.goldenData)
        defer { try? FileManager.default.removeItem(atPath: Self.goldenData) }
        for generation in ["V2", "V1"] {  // debian-12-tools builds from the Gen1 SKU
            let r = try await Self.g("images", "bootstrap", "debian-12", "--generation", generation)
            try #require(r.status == 0, "\(r.stderr)")
        }
        let repo = try GitRemote("golden")
        defer { try? FileManager.default.removeItem(atPath: repo.dir) }
        try repo.run("cp", "-r", CLITests.repoRoot.path + "/examples/.", repo.work)
        let c1 = try repo.push("the examples")

        // The controller builds base first, then app and web from its first version, with no manual step.
        let controller = try Background(
            [CLITests.binary, "controller", "--repo", repo.remote, "--interval", "2s", "--data-dir", Self.goldenData], log: repo.dir + "/controller.log")
        defer { kill(controller.pid, SIGKILL) }
        let chain = ["debian-12-base", "debian-12-app", "debian-12-web", "debian-12-tools"]
        let built = await eventually(.seconds(1200)) {
            let log = repo.statusLog()
            return chain.allSatisfy { name in log.contains { $0.hasPrefix("\(name): Succeeded") || $0.hasPrefix("\(name): Failed") } }
        }
        #expect(built != nil, "\(repo.statusLog())\n\(controller.output)")
        #expect(await controller.stop(SIGTERM) == 0)
        let log1 = Array(repo.statusLog().reversed())
        for name in chain { #expect(log1.contains("\(name): Succeeded (\(c1.prefix(7)))"), "\(name): \(log1)") }
        let baseDone = try #require(Self.first(log1, "debian-12-base", "Succeeded"))
        for name in ["debian-12-app", "debian-12-web"] {
            let started = try #require(Self.first(log1, name, "Running"), "\(log1)")
            #expect(baseDone < started, "\(name) started before debian-12-base was built: \(log1)")
            #expect(try await Self.newestRun(name)["source"] as? String == "\(Self.gallery)/debian-12-base/versions/1.0.0")
        }
        let toolsRun = try #require(try await Self.newestRun("debian-12-tools")["runId"] as? String)

        // A security fix in the base's hardening script (and its checksum).
        let harden = repo.work + "/scripts/harden.sh"
        let script = try String(contentsOfFile: harden, encoding: .utf8) + "echo 'kiln: patched' | sudo tee /etc/kiln-patched\n"
        try repo.write("scripts/harden.sh", script)
        let oldSum = "bdf2394ce792c61d32345df9b1689126e028081acb029d003301892dca27fccd"
        let newSum = SHA256.hash(data: Data(script.utf8)).map { String(format: "%02x", $0) }.joined()
        let baseFile = repo.work + "/templates/debian-12-base.json"
        let baseText = try String(contentsOfFile: baseFile, encoding: .utf8)
        try #require(baseText.contains(oldSum))
        try repo.write("templates/debian-12-base.json", baseText.replacingOccurrences(of: oldSum, with: newSum))
        let c2 = try repo.push("harden: patched")

        let plan = try await Self.g("plan", "--repo", repo.remote)
        #expect(
            plan.stdout.contains("recreate debian-12-base [templates/debian-12-base.json] (templates/debian-12-base.json, scripts/harden.sh changed)"),
            "\(plan.stdout)")
        #expect(plan.stdout.contains("rebuild debian-12-app [templates/debian-12-app.json] (its source is rebuilt first: debian-12-base)"), "\(plan.stdout)")
        #expect(plan.stdout.contains("rebuild debian-12-web"), "\(plan.stdout)")
        #expect(!plan.stdout.contains("debian-12-tools"), "\(plan.stdout)")

        // One reconcile: base, then app and web from base's new version; tools untouched.
        let r = try await Self.g("reconcile", "--repo", repo.remote, "--once")
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stderr.contains("its source is now debian-12-base 1.0.1; last built from debian-12-base 1.0.0"), "\(r.stderr)")
        let base = try await Self.newestRun("debian-12-base")
        #expect(base["runState"] as? String == "Succeeded")
        for name in ["debian-12-app", "debian-12-web"] {
            let run = try await Self.newestRun(name)
            #expect(run["runState"] as? String == "Succeeded", "\(name): \(run["message"] ?? "")")
            #expect(run["source"] as? String == "\(Self.gallery)/debian-12-base/versions/1.0.1", "\(name)")
            #expect(run["sourceExactVersion"] as? String == "1.0.1")
        }
        #expect(try await Self.newestRun("debian-12-tools")["runId"] as? String == toolsRun)
        let log2 = Array(repo.statusLog().reversed().dropFirst(log1.count))
        let baseRebuilt = try #require(Self.first(log2, "debian-12-base", "Succeeded (\(c2.prefix(7)))"), "\(log2)")
        for name in ["debian-12-app", "debian-12-web"] {
            let started = try #require(Self.first(log2, name, "Running"), "\(log2)")
            #expect(baseRebuilt < started, "\(name) started before the new base: \(log2)")
        }
        #expect(!log2.contains { $0.hasPrefix("debian-12-tools") }, "\(log2)")
        // The app image is built on the patched base.
        let appVersion = "\(Self.goldenData)/regions/westeurope/galleries/kilnGallery/images/debian-12-app/versions/1.0.1/disk.qcow2"
        #expect(FileManager.default.fileExists(atPath: appVersion))

        // Nothing left to do.
        let again = try await Self.g("reconcile", "--repo", repo.remote, "--once")
        #expect(again.status == 0 && again.stderr.contains("nothing to do"), "\(again.stderr)")

        // The skip path, with a qemu-system-x86_64 on PATH that counts VM starts: a rerun of the same inputs,
        // then a tags-only edit (recreated, then run), each Succeeded from an earlier image without a VM.
        let shim = try QEMUCounter(in: repo.dir)
        let start = ContinuousClock.now
        let rerun = try Self.json(try await shim.kiln(["template", "run", "debian-12-base", "--wait", "--output", "json", "--data-dir", Self.goldenData]))
        let rerunTime = ContinuousClock.now - start
        #expect(rerun["runState"] as? String == "Succeeded", "\(rerun["message"] ?? "")")
        #expect((rerun["message"] as? String)?.contains("reused the image of run") == true, "\(rerun["message"] ?? "")")
        #expect(shim.vmStarts == 0, "\(shim.invocations)")
        let webFile = repo.work + "/templates/debian-12-web.json"
        let webText = try String(contentsOfFile: webFile, encoding: .utf8)
        try #require(webText.contains(#""tags": { "imagebuilderTemplate": "debian-12-web" }"#))
        try repo.write(
            "templates/debian-12-web.json",
            webText.replacingOccurrences(
                of: #""tags": { "imagebuilderTemplate": "debian-12-web" }"#, with: #""tags": { "imagebuilderTemplate": "debian-12-web", "owner": "web-team" }"#)
        )
        try repo.push("web: a tag")
        let retagStart = ContinuousClock.now
        let retag = try await shim.kiln(["reconcile", "--repo", repo.remote, "--once", "--data-dir", Self.goldenData])
        let retagTime = ContinuousClock.now - retagStart
        #expect(retag.status == 0, "\(retag.stdout)\n\(retag.stderr)")
        #expect(retag.stderr.contains("recreate debian-12-web"), "\(retag.stderr)")
        for name in ["debian-12-app", "debian-12-web"] {
            let run = try await Self.newestRun(name)
            #expect(run["runState"] as? String == "Succeeded", "\(name): \(run["message"] ?? "")")
            #expect((run["message"] as? String)?.contains("reused the image of run") == true, "\(name): \(run["message"] ?? "")")
        }
        #expect(shim.vmStarts == 0, "\(shim.invocations)")
        print("golden loop: rerun of the same inputs \(rerunTime), tags-only edit with its consumers \(retagTime), no VM started")

        // Retention: three more reruns of base (each reuses): five runs, and two run images on disk (keep 2).
        for _ in 0..<3 { #expect(try await Self.g("template", "run", "debian-12-base", "--wait").status == 0) }
        let baseRuns = try #require(try Self.json(try await Self.g("template", "runs", "debian-12-base", "--output", "json"))["value"] as? [[String: Any]])
        #expect(baseRuns.count == 5)
        let onDisk = baseRuns.compactMap { $0["runId"] as? String }.filter {
            FileManager.default.fileExists(atPath: "\(Self.goldenData)/run-images/\($0)/osdisk.qcow2")
        }
        #expect(onDisk.count == 2, "\(onDisk)")
        // kiln gc: the dry run lists exactly what is then removed; latest, and what sources resolve to, stay.
        let dry = try await Self.g("gc", "--dry-run", "--keep-versions", "1", "--output", "json")
        let done = try await Self.g("gc", "--keep-versions", "1", "--output", "json")
        let planned = try #require(try Self.json(dry)["value"] as? [[String: Any]]).compactMap { $0["id"] as? String }
        let removed = try #require(try Self.json(done)["value"] as? [[String: Any]]).compactMap { $0["id"] as? String }
        #expect(planned == removed && !removed.isEmpty, "\(planned) vs \(removed)")
        #expect(removed.contains("\(Self.gallery)/debian-12-base/versions/1.0.0"), "\(removed)")
        let latest = try await Self.g("images", "lineage", "\(Self.gallery)/debian-12-base/versions/latest")
        #expect(latest.status == 0 && latest.stdout.hasPrefix("debian-12-base 1.0."), "\(latest.stdout)\(latest.stderr)")
        let web = try await Self.g("images", "lineage", "debian-12-web")
        // web's version was built on a base version retention has since removed: the chain says so.
        #expect(web.status == 0 && web.stdout.hasPrefix("debian-12-web 1.0.") && web.stdout.contains(" ← debian-12-base 1.0."), "\(web.stdout)\(web.stderr)")
        #expect(try await Self.g("gc", "--keep-versions", "1").stdout.contains("nothing to remove"))
    }
}

/// A `qemu-system-x86_64` first on PATH that records each invocation and runs the real one: how a test
/// knows whether a VM was started (`--version`, the accelerator probe's question, is not a VM).
struct QEMUCounter {
    let dir: String
    var log: String { dir + "/qemu-invocations.log" }

    init(in parent: String) throws {
        dir = parent + "/qemu-shim"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let script = "#!/bin/sh\necho \"$*\" >> '\(dir)/qemu-invocations.log'\nexec /usr/bin/qemu-system-x86_64 \"$@\"\n"
        try script.write(toFile: dir + "/qemu-system-x86_64", atomically: true, encoding: .utf8)
        chmod(dir + "/qemu-system-x86_64", 0o755)
    }

    var invocations: [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
    var vmStarts: Int { invocations.filter { !$0.hasPrefix("--version") }.count }

    func kiln(_ args: [String]) async throws -> CLITests.Result {
        let path = dir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        return try await spawnAndWait(["/usr/bin/env", "PATH=\(path)", CLITests.binary] + args)
    }
}
