import Foundation
import KilnBuild
@testable import KilnCore
import KilnStore
import KilnSystem
import KilnTemplates
import Testing

/// A scratch data directory and a core over a real SQLite database in it.
struct Scratch {
    let dir: String
    let core: KilnCore

    /// The default policy trusts the test's own files and the loopback artifact server; trust-boundary tests
    /// pass `.untrusted`.
    init(
        identities: IdentityConfig = IdentityConfig(),
        policy: ArtifactPolicy = ArtifactPolicy(localFiles: .anyReadable, allowedNetworks: [AddressRange("127.0.0.1")!])
    ) throws {
        dir = NSTemporaryDirectory() + "kiln-core-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let paths = KilnPaths(dataDir: dir + "/data")
        core = KilnCore(paths: paths, store: try KilnDatabase(path: paths.database), identities: identities, artifactPolicy: policy)
    }

    /// Writes a file under the scratch directory; returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let path = (dir as NSString).appendingPathComponent(name)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }
}

/// A valid template with the given customizers (JSON text of the array).
func templateJSON(name: String = "t1", customize: String = "[]", validate: String = "{}", distribute: String? = nil, extra: String = "") -> String {
    """
    {
      "type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01",
      "name": "\(name)", "location": "westeurope", "tags": {"team": "a"},
      "identity": {"type": "None"},
      "properties": {
        \(extra)
        "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
        "customize": \(customize),
        "validate": \(validate),
        "distribute": \(distribute ?? #"[{"type": "VHD", "runOutputName": "vhd"}]"#)
      }
    }
    """
}

func load(_ text: String, path: String = "t.json") throws -> LoadedTemplate {
    let f = TemplateLoader.load(text: text, path: path)
    try #require(f.isValid, "\(f.errors)")
    return try #require(f.templates.first)
}

func sha(_ s: String) -> String { ArtifactFetcher.sha256(Data(s.utf8)) }

@Suite struct TemplateResourceTests {
    @Test func createStagesArtifactsAndASecondCreateIsAConflict() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        try s.write("repo/scripts/a.sh", "echo a\n")
        let abs = try s.write("elsewhere/b.txt", "bee\n")
        let t = try load(
            templateJSON(
                customize: """
                    [{"type": "Shell", "name": "a", "scriptUri": "scripts/a.sh", "sha256Checksum": "\(sha("echo a\n"))"},
                     {"type": "File", "name": "b", "sourceUri": "file://\(abs)", "destination": "/tmp/b"},
                     {"type": "Shell", "name": "again", "scriptUri": "scripts/a.sh"}]
                    """))
        let origin = TemplateOrigin(file: "repo/t.json", relativeArtifacts: DirectoryArtifactSource(templateFile: s.dir + "/repo/t.json", repositoryRoot: nil))
        let r = try await s.core.create(t, origin: origin)
        #expect(r.record.provisioningState == .succeeded)
        #expect(r.record.stagingDirectory.contains("/staging/IT_kiln_t1_"))
        #expect(r.record.stagingResourceGroup.hasPrefix("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/IT_kiln_t1_"))
        // The same reference twice is staged once.
        #expect(r.record.artifacts.count == 2)
        for a in r.record.artifacts {
            #expect(FileManager.default.contents(atPath: a.path) != nil)
            #expect(a.path.hasPrefix(r.record.stagingDirectory + "/artifacts/"))
        }
        #expect(r.record.artifacts.first { $0.reference == "scripts/a.sh" }?.sha256 == sha("echo a\n"))

        await #expect(throws: CoreError.self) { try await s.core.create(t, origin: origin) }
        do {
            try await s.core.create(t, origin: origin)
        } catch {
            #expect(error.code == "Conflict")
            #expect(error.description.contains("Update/Upgrade of image templates is currently not supported"))
        }
        // The stored template reads back equal to what was created.
        let back = try await s.core.template("t1")
        #expect(back.template == t.template)

        try await s.core.delete("t1")
        #expect(!FileManager.default.fileExists(atPath: r.record.stagingDirectory))
        await #expect(throws: CoreError.self) { try await s.core.template("t1") }
    }

    @Test func checksumMismatchFailsTheCreateBeforeAnyVM() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let script = try s.write("x.sh", "echo x\n")
        let wrong = String(repeating: "ab", count: 32)
        let t = try load(
            templateJSON(
                customize: """
                    [{"type": "Shell", "name": "ok", "inline": ["true"]},
                     {"type": "Shell", "name": "x", "scriptUri": "file://\(script)", "sha256Checksum": "\(wrong)"}]
                    """))
        let r = try await s.core.create(t)
        #expect(r.record.provisioningState == .failed)
        #expect(r.record.provisioningErrorCode == "NoCustomizerScript")
        let m = try #require(r.record.provisioningErrorMessage)
        #expect(m.contains("$.properties.customize[1].sha256Checksum") || m.contains("$.properties.customize[1].scriptUri"), "\(m)")
        #expect(m.contains(wrong) && m.contains(sha("echo x\n")), "\(m)")
        // A failed template cannot run, so no VM ever starts for it.
        do {
            _ = try await s.core.queueRun("t1")
            Issue.record("a Failed template ran")
        } catch {
            #expect(error.code == "OperationNotAllowed")
        }
        #expect(!FileManager.default.fileExists(atPath: s.core.paths.vms))
        #expect(try await s.core.store.runs(templateId: r.record.id).isEmpty)
    }

    @Test func validatorArtifactsFailWithNoValidatorScript() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let t = try load(templateJSON(validate: #"{"inVMValidations": [{"type": "Shell", "name": "v", "scriptUri": "file:///nonexistent/v.sh"}]}"#))
        let r = try await s.core.create(t)
        #expect(r.record.provisioningErrorCode == "NoValidatorScript")
        #expect(r.record.provisioningErrorMessage?.contains("$.properties.validate.inVMValidations[0].scriptUri") == true)
        #expect(r.record.provisioningErrorMessage?.contains("/nonexistent/v.sh does not exist") == true)
    }

    @Test func referencesAreValidatedAtTheEdge() {
        // Whether a relative path stays in the repository is decided where it resolves (RepositoryPath).
        for bad in ["/etc/passwd", "ftp://host/x", "file://relative/x", "https://"] {
            guard case .failure = ArtifactFetcher.parse(bad) else {
                Issue.record("\(bad) was accepted")
                continue
            }
        }
        for good in ["scripts/a.sh", "./a.sh", "a/../b.sh", "file:///tmp/x", "https://example.com/x.sh", "http://127.0.0.1:8080/x"] {
            guard case .success = ArtifactFetcher.parse(good) else {
                Issue.record("\(good) was refused")
                continue
            }
        }
    }

    @Test func patchChangesOnlyWhatAIBAllows() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let t = try load(templateJSON(customize: #"[{"type": "Shell", "name": "a", "inline": ["true"]}]"#))
        let created = try await s.core.create(t)
        var tagged = t.template
        tagged.tags["owner"] = "me"
        tagged.properties.vmProfile.osDiskSizeGB = 10
        tagged.properties.distribute.append(.vhd(VHDDistributor(runOutputName: "second")))
        let patched = try await s.core.patch("t1", to: tagged)
        #expect(patched.template.tags["owner"] == "me")
        #expect(patched.record.contentHash != created.record.contentHash)
        #expect(try await s.core.template("t1").template.properties.distribute.count == 2)

        var changed = tagged
        changed.properties.customize = []
        do {
            try await s.core.patch("t1", to: changed)
            Issue.record("a customize change was patched")
        } catch {
            #expect(error.code == "InvalidParameter")
            #expect(error.description.contains("$.properties.customize"))
        }
        var removed = tagged
        removed.properties.distribute.removeLast()
        do {
            try await s.core.patch("t1", to: removed)
            Issue.record("a distribute target was removed")
        } catch {
            #expect(error.description.contains("removing a distribute target is not supported"))
        }
    }

    @Test func autoRunQueuesARunOnCreate() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let t = try load(templateJSON(extra: #""autoRun": {"state": "Enabled"},"#))
        let r = try await s.core.create(t)
        let run = try #require(try await s.core.store.latestRun(templateId: r.record.id))
        #expect(run.runState == .running && run.runSubState == .queued)
        #expect(run.lastRunStatus.runSubState == .queued)
    }
}

@Suite struct RunStateTests {
    func created(_ s: Scratch, name: String = "t1") async throws -> TemplateResource {
        try await s.core.create(try load(templateJSON(name: name)))
    }

    @Test func deleteAndRunAreRefusedWhileARunIsActive() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let t = try await created(s)
        let run = try await s.core.queueRun(t)
        let claimed = try #require(try await s.core.claimQueuedRun(owner: .current, parallelism: 1))
        #expect(claimed.id == run.id)
        do {
            try await s.core.delete("t1")
            Issue.record("deleted while running")
        } catch {
            #expect(error.code == "OperationNotAllowed")
            #expect(error.description.contains("is still Running"))
            #expect(error.remedy == .cancelOrWait(template: "t1"), "the remedy is data; no command line in the message")
            #expect(!error.description.contains("kiln "))
        }
        do {
            _ = try await s.core.queueRun("t1")
            Issue.record("a second run was queued")
        } catch {
            #expect(error.code == "OperationNotAllowed")
        }
        // The delete attempt left the template as it was.
        #expect(try await s.core.template("t1").record.provisioningState == .succeeded)
    }

    @Test func cancelOfAQueuedRunIsImmediate() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let t = try await created(s)
        _ = try await s.core.queueRun(t)
        let r = try await s.core.cancel("t1")
        #expect(r.runState == .canceled)
        #expect(r.endTime != nil)
        do {
            try await s.core.cancel("t1")
            Issue.record("canceled twice")
        } catch {
            #expect(error.code == "OperationNotAllowed")
        }
    }

    @Test func claimsRespectParallelismAcrossProcesses() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        _ = try await s.core.queueRun(try await created(s, name: "a"))
        _ = try await s.core.queueRun(try await created(s, name: "b"))
        let other = RunOwner(pid: 1, startTicks: 1, bootId: RunOwner.current.bootId)
        #expect(try await s.core.claimQueuedRun(owner: other, parallelism: 1) != nil)
        #expect(try await s.core.claimQueuedRun(owner: .current, parallelism: 1) == nil)
        #expect(try await s.core.claimQueuedRun(owner: .current, parallelism: 2) != nil)
        #expect(try await s.core.claimQueuedRun(owner: .current, parallelism: 3) == nil)
    }

    /// A run whose owner died: its leftover "VM" (a real process whose command line names the run, found by
    /// the pid file) is killed and the run marked Failed with a message saying why.
    @Test func recoveryStopsLeftoversAndFailsTheRun() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let t = try await created(s)
        let run = try await s.core.queueRun(t)
        let dead = RunOwner(pid: 999_999, startTicks: 1, bootId: RunOwner.current.bootId)
        #expect(!dead.isAlive)
        #expect(RunOwner.current.isAlive)
        _ = try await s.core.claimQueuedRun(owner: dead, parallelism: 1)
        try await s.core.store.updateRun(id: run.id) { $0.runSubState = .customizing }
        // A stand-in for QEMU: a process whose command line carries kiln-<runId>, as the VM's -name does.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", "exec -a qemu-kiln-\(run.id)-x sleep 300"]
        try p.run()
        let vmDir = run.workDirectory + "/vm"
        try FileManager.default.createDirectory(atPath: vmDir, withIntermediateDirectories: true)
        try "\(p.processIdentifier)\n".write(toFile: vmDir + "/qemu.pid", atomically: true, encoding: .utf8)
        try await Task.sleep(for: .milliseconds(200))

        let recovered = await s.core.recoverAbandonedRuns()
        #expect(recovered.map(\.id) == [run.id])
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)
        let after = try await s.core.run(id: run.id)
        #expect(after.runState == .failed)
        #expect(after.message?.contains("stopped while the run was Customizing") == true, "\(after.message ?? "")")
        #expect(after.message?.contains("QEMU process \(p.processIdentifier)") == true)
        #expect(!FileManager.default.fileExists(atPath: run.workDirectory))
        // Idempotent.
        #expect(await s.core.recoverAbandonedRuns().isEmpty)
    }

    @Test func aLiveOwnersRunIsLeftAlone() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let run = try await s.core.queueRun(try await created(s))
        _ = try await s.core.claimQueuedRun(owner: .current, parallelism: 1)
        #expect(await s.core.recoverAbandonedRuns().isEmpty)
        #expect(try await s.core.run(id: run.id).runState == .running)
    }

    @Test func lastRunStatusHasAIBsShape() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let t = try await created(s)
        let run = try await s.core.queueRun(t)
        let document = ImageTemplateResourceDocument(try await s.core.template("t1"), lastRun: run)
        let json = try #require(try JSONSerialization.jsonObject(with: KilnJSON.encoder().encode(document)) as? [String: Any])
        let props = try #require(json["properties"] as? [String: Any])
        let status = try #require(props["lastRunStatus"] as? [String: Any])
        #expect(Set(status.keys) == ["runState", "runSubState", "message", "startTime"])
        #expect(status["runState"] as? String == "Running")
        #expect(status["runSubState"] as? String == "Queued")
        #expect(props["provisioningState"] as? String == "Succeeded")
        #expect((props["exactStagingResourceGroup"] as? String)?.contains("/resourceGroups/IT_kiln_t1_") == true)
        #expect(json["type"] as? String == "Microsoft.VirtualMachineImages/imageTemplates")
    }
}

@Suite struct StoredTemplateTests {
    /// Every example template survives the store: what is read back is what was created.
    @Test func examplesRoundTrip() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let files = try TemplateScanner().scan([root.appendingPathComponent("examples/templates").path])
        var n = 0
        for f in files {
            for t in f.templates {
                let stored = KilnCore.document(t.template)
                let back = TemplateLoader.load(
                    text: stored, path: "stored.json",
                    options: LoadOptions(
                        scope: DeploymentScope(subscriptionId: t.resourceId.subscription, resourceGroup: t.resourceId.resourceGroup, location: "x")))
                #expect(back.isValid, "\(t.template.name): \(back.errors)")
                // Equal in meaning: the canonical form is the same (a deprecated replicationRegions spelling is
                // stored as targetRegions).
                let b = try #require(back.templates.first)
                #expect(b.template.name == t.template.name)
                #expect(ContentHash.canonicalJSON(b.template) == ContentHash.canonicalJSON(t.template), "\(t.template.name)")
                #expect(back.templates.first?.contentHash == t.contentHash)
                n += 1
            }
        }
        #expect(n >= 5)
    }
}
