import Crypto
import Foundation
import KilnTestSupport
import Testing

/// `kiln template` end to end through the real binary: real QEMU VMs (TCG here), real SSH, real SQLite.
/// Serialized: each test boots VMs, and the machine has two cores.
@Suite(.serialized) struct TemplateCLITests {
    /// One data directory for the suite, with the Debian 12 Gen2 image bootstrapped once (from the cache
    /// that `scripts/test` points KILN_CACHE_DIR at).
    static let data = "/tmp/kiln-cli-template-tests"
    static let catalog = Task<Bool, Never> {
        try? FileManager.default.removeItem(atPath: data)
        let r = try? await kilnAsync("images", "bootstrap", "debian-12", "--generation", "V2", "--data-dir", data)
        if r?.status != 0 { print("bootstrap failed: \(r?.stderr ?? "")") }
        return r?.status == 0
    }

    /// Runs kiln without blocking a thread of the cooperative pool (runs take minutes).
    static func kilnAsync(_ args: String...) async throws -> CLITests.Result {
        try await kilnAsync(args)
    }

    static func kilnAsync(_ args: [String]) async throws -> CLITests.Result {
        try await spawnAndWait([CLITests.binary] + args)
    }

    static func k(_ args: String...) async throws -> CLITests.Result {
        try await kilnAsync(args + ["--data-dir", data])
    }

    static func json(_ r: CLITests.Result) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "not JSON: \(r.stdout)\n\(r.stderr)")
    }

    /// A directory holding a template and its files.
    static func project(_ name: String, files: [String: String] = [:], template: (String) -> String) throws -> String {
        let dir = NSTemporaryDirectory() + "kiln-project-\(name)-\(UUID().uuidString.prefix(6))"
        for (path, text) in files {
            let full = (dir as NSString).appendingPathComponent(path)
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = (dir as NSString).appendingPathComponent("\(name).json")
        try template(dir).write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    static func template(
        _ name: String, customize: String, validate: String = "{}", properties: String = "", type: String = "Microsoft.VirtualMachineImages/imageTemplates"
    ) -> String {
        """
        {
          "type": "\(type)", "apiVersion": "2025-10-01",
          "name": "\(name)", "location": "westeurope", "identity": {"type": "None"},
          "properties": {
            \(properties)
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"},
            "customize": \(customize),
            "validate": \(validate),
            "distribute": [{"type": "VHD", "runOutputName": "vhd"}]
          }
        }
        """
    }

    /// QEMU processes whose command line names the run (the VM's -name carries kiln-<runId>).
    static func qemuProcesses(run: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let s = String(decoding: cmd, as: UTF8.self)
            return s.contains("qemu-system") && s.contains(run)
        }
    }

    static func lastRun(_ name: String) async throws -> [String: Any] {
        let show = try await k("template", "show", name, "--output", "json")
        let kiln = try #require(try json(show)["kiln"] as? [String: Any])
        return try #require(kiln["lastRun"] as? [String: Any])
    }

    /// Polls until the template's last run reaches `subState` (or ends); returns the run.
    static func waitFor(_ name: String, subState: String, timeout: Duration = .seconds(300)) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let run = try await lastRun(name)
            if run["runSubState"] as? String == subState || (run["runState"] as? String).map({ !["Running", "Canceling"].contains($0) }) == true {
                return run
            }
            try await Task.sleep(for: .seconds(1))
        }
        Issue.record("\(name) never reached \(subState)")
        return try await lastRun(name)
    }

    @Test func checksumMismatchFailsAtCreate() async throws {
        #expect(await Self.catalog.value)
        let file = try Self.project("sum", files: ["s.sh": "echo s\n"]) { _ in
            Self.template(
                "sum", customize: #"[{"type": "Shell", "name": "s", "scriptUri": "s.sh", "sha256Checksum": "\#(String(repeating: "0", count: 64))"}]"#)
        }
        let r = try await Self.k("template", "create", file)
        #expect(r.status == 1)
        #expect(r.stdout.contains("Failed") && r.stdout.contains("NoCustomizerScript") && r.stdout.contains("does not match"), "\(r.stdout)")
        let run = try await Self.k("template", "run", "sum", "--wait")
        #expect(run.status == 1)
        #expect(run.stderr.contains("OperationNotAllowed"), "\(run.stderr)")
        #expect(try await Self.k("template", "delete", "sum").status == 0)
    }

    /// The acceptance build: inline Shell, a file:// Shell with its sha256, a File, a restart with a Linux
    /// command and a check, a step after the restart, an in-VM validation; then the captured image boots and
    /// shows every effect.
    @Test func endToEndBuildThenBootTheCapturedImage() async throws {
        #expect(await Self.catalog.value)
        let setup = "#!/bin/sh\nset -e\nsudo mkdir -p /var/lib/kiln-e2e\necho from-script | sudo tee /var/lib/kiln-e2e/from-script\n"
        let file = try Self.project("e2e", files: ["scripts/setup.sh": setup, "files/hello.txt": "hello from kiln\n"]) { dir in
            Self.template(
                "e2e",
                customize: """
                    [
                      {"type": "Shell", "name": "inline", "inline": ["echo inline-ran | sudo tee /var/lib/kiln-e2e-inline"]},
                      {"type": "Shell", "name": "setup", "scriptUri": "file://\(dir)/scripts/setup.sh", "sha256Checksum": "\(sha256(setup))"},
                      {"type": "File", "name": "hello", "sourceUri": "files/hello.txt", "destination": "/etc/kiln/hello.txt", "sha256Checksum": "\(sha256("hello from kiln\n"))"},
                      {"type": "WindowsRestart", "name": "reboot", "restartCommand": "sudo reboot", "restartCheckCommand": "test -f /var/lib/kiln-e2e/from-script", "restartTimeout": "5m"},
                      {"type": "Shell", "name": "after-reboot", "inline": ["uptime | sudo tee /var/lib/kiln-e2e/after-reboot"]}
                    ]
                    """,
                validate: """
                    {"inVMValidations": [{"type": "Shell", "name": "check", "inline": ["grep -q 'hello from kiln' /etc/kiln/hello.txt", "test -f /var/lib/kiln-e2e/from-script"]}]}
                    """,
                // AIB's quickstart form (written for `az resource create --is-full-object`): it builds like any other.
                type: "Microsoft.VirtualMachineImages")
        }
        // A file:// script outside any allowed root: refused before anything is read, unless the user who
        // wrote the template says it may read their files.
        let refused = try await Self.k("template", "create", file)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("$.properties.customize[1].scriptUri") && refused.stderr.contains("allowedFileRoots is empty"), "\(refused.stderr)")
        let created = try await Self.k("template", "create", file, "--trust-local-files")
        #expect(created.status == 0, "\(created.stdout)\(created.stderr)")
        #expect(created.stdout.contains("2 artifacts staged"))
        #expect(created.stderr.contains("is the short form of AIB's quickstarts"), "\(created.stderr)")

        let run = try await Self.k("template", "run", "e2e", "--wait", "--output", "json")
        let r = try Self.json(run)
        #expect(run.status == 0, "\(r["message"] ?? "")\n\(run.stderr)")
        #expect(r["runState"] as? String == "Succeeded")
        #expect(r["runSubState"] as? String == "Distributing")
        let phases = try #require(r["phaseSeconds"] as? [String: Double])
        for p in ["Building", "Customizing", "Validating", "Distributing"] { #expect(phases[p] != nil, "no \(p) in \(phases)") }
        let artifact = try #require(r["artifactPath"] as? String)
        #expect(FileManager.default.fileExists(atPath: artifact))
        let runId = try #require(r["runId"] as? String)
        #expect(Self.qemuProcesses(run: runId).isEmpty)

        // Step markers and output in the log, the AIB shape in show, the output.
        let logs = try await Self.k("template", "logs", "e2e")
        for marker in [
            "[1/5] Shell 'inline'", "[2/5] Shell 'setup'", "[3/5] File 'hello'", "[4/5] WindowsRestart 'reboot'", "[5/5] Shell 'after-reboot'",
            "validation passed"
        ] {
            #expect(logs.stdout.contains(marker), "no \(marker) in the logs")
        }
        #expect(logs.stdout.contains("from-script"))
        let show = try Self.json(try await Self.k("template", "show", "e2e", "--output", "json"))
        let status = try #require((show["properties"] as? [String: Any])?["lastRunStatus"] as? [String: Any])
        #expect(status["runState"] as? String == "Succeeded")
        #expect(status["endTime"] != nil && status["startTime"] != nil)
        let output = try Self.json(try await Self.k("template", "output", "e2e", "vhd", "--output", "json"))
        let vhdURI = try #require((output["properties"] as? [String: Any])?["artifactUri"] as? String)
        #expect(vhdURI.hasSuffix("/\(runId)/vhd.vhd") && FileManager.default.fileExists(atPath: URL(string: vhdURI)?.path ?? "-"), "\(vhdURI)")

        // The captured image boots and carries every customization.
        let boot = try await Self.k(
            "images", "boot", "--disk", artifact, "--generation", "V2",
            "--command",
            "cat /etc/kiln/hello.txt /var/lib/kiln-e2e/from-script /var/lib/kiln-e2e-inline && test -s /var/lib/kiln-e2e/after-reboot && echo after-reboot-ok")
        #expect(boot.status == 0, "\(boot.stderr)")
        for s in ["hello from kiln", "from-script", "inline-ran", "after-reboot-ok"] { #expect(boot.stdout.contains(s), "\(s) missing: \(boot.stdout)") }
        // Deprovisioned: the build user is gone.
        let user = try await Self.k("images", "boot", "--disk", artifact, "--generation", "V2", "--command", "id packer || echo no-build-user")
        #expect(user.stdout.contains("no-build-user"), "\(user.stdout)")

        #expect(try await Self.k("template", "delete", "e2e").status == 0)
        #expect(!FileManager.default.fileExists(atPath: artifact))
    }

    /// Issue 5's acceptance: the examples' Debian template yields a gallery version in two regions and a fixed
    /// VHD; a VM boots from the second region's replica; the derived template builds from the gallery at
    /// `latest`, and one failing target among three makes it PartiallySucceeded with the other outputs there.
    @Test func examplesBuildToTheGalleryAndTheDerivedTemplateBuildsFromLatest() async throws {
        #expect(await Self.catalog.value)
        let repo = CLITests.repoRoot.path
        for g in ["debian-12-base", "debian-12-app"] {
            let r = try await Self.k("gallery", "create-definition", "--file", "\(repo)/examples/galleries/\(g).yaml")
            #expect(r.status == 0, "\(r.stderr)")
        }
        #expect(try await Self.k("template", "create", "\(repo)/examples/templates/debian-12-base.json").status == 0)
        let base = try Self.json(try await Self.k("template", "run", "debian-12-base", "--wait", "--output", "json"))
        #expect(base["runState"] as? String == "Succeeded", "\(base["message"] ?? "")")
        let outputs = try #require(base["runOutputs"] as? [[String: Any]])
        let props = outputs.map { $0["properties"] as? [String: Any] ?? [:] }
        let def =
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/kiln-images/providers/Microsoft.Compute/galleries/kilnGallery/images/debian-12-base"
        #expect(props[0]["artifactId"] as? String == "\(def)/versions/1.0.0")
        let vhdURI = try #require(props[1]["artifactUri"] as? String)
        let vhd = try #require(URL(string: vhdURI)?.path)

        // The VHD: vpc, fixed (disk type 2 in the footer), a whole number of MiB.
        let info = try await spawnAndWait(["/usr/bin/qemu-img", "info", "-f", "vpc", "--output", "json", vhd])
        let infoJSON = try Self.json(info)
        #expect(infoJSON["format"] as? String == "vpc")
        let vsize = try #require((infoJSON["virtual-size"] as? NSNumber)?.int64Value)
        #expect(vsize % (1 << 20) == 0)
        let h = try #require(FileHandle(forReadingAtPath: vhd))
        let end = try h.seekToEnd()
        #expect(end == UInt64(vsize) + 512)
        try h.seek(toOffset: end - 512)
        let footer = try #require(try h.read(upToCount: 512))
        #expect(footer.prefix(8) == Data("conectix".utf8) && footer[footer.startIndex + 63] == 2)

        // Two regions, two copies; the second region's replica boots.
        let versions = try Self.json(try await Self.k("gallery", "versions", def, "--output", "json"))
        let v = try #require((versions["value"] as? [[String: Any]])?.first)
        let regions = try #require(((v["properties"] as? [String: Any])?["publishingProfile"] as? [String: Any])?["targetRegions"] as? [[String: Any]])
        #expect(Set(regions.compactMap { $0["name"] as? String }) == ["westeurope", "northeurope"])
        let second = "\(Self.data)/regions/northeurope/galleries/kilnGallery/images/debian-12-base/versions/1.0.0/disk.qcow2"
        #expect(FileManager.default.fileExists(atPath: second.replacingOccurrences(of: "disk.qcow2", with: "replica-2.qcow2")))
        let boot = try await Self.k("images", "boot", "--disk", second, "--generation", "V2", "--command", "cat /etc/motd.d/kiln")
        #expect(boot.status == 0, "\(boot.stderr)")
        #expect(!boot.stdout.isEmpty)

        // The derived template, from the gallery at latest, with one target that cannot be written.
        let dir = NSTemporaryDirectory() + "kiln-derived-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir + "/templates", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/scripts", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(repo)/examples/kiln.yaml", toPath: dir + "/kiln.yaml")
        try FileManager.default.copyItem(atPath: "\(repo)/examples/scripts/app.sh", toPath: dir + "/scripts/app.sh")
        var text = try String(contentsOfFile: "\(repo)/examples/templates/debian-12-app.json", encoding: .utf8)
        text = text.replacingOccurrences(
            of: #""versioning": { "scheme": "Source" }\#n      }"#,
            with:
                #""versioning": { "scheme": "Source" }\#n      },\#n      { "type": "VHD", "runOutputName": "unwritable", "uri": "/dev/null/no/such/dir.vhd" },\#n      { "type": "VHD", "runOutputName": "app-vhd" }"#
        )
        try text.write(toFile: dir + "/templates/debian-12-app.json", atomically: true, encoding: .utf8)
        #expect(text.contains("unwritable"))
        // A VHD target on the host: this user's own template may write where they can (--trust-local-files).
        let created = try await Self.k("template", "create", dir + "/templates/debian-12-app.json", "--trust-local-files")
        #expect(created.status == 0, "\(created.stdout)\(created.stderr)")
        let app = try Self.json(try await Self.k("template", "run", "debian-12-app", "--wait", "--output", "json"))
        #expect(app["runState"] as? String == "PartiallySucceeded", "\(app["message"] ?? "")")
        #expect(app["sourceExactVersion"] as? String == "1.0.0")
        let appOutputs = try #require(app["runOutputs"] as? [[String: Any]])
        let states = appOutputs.map { ($0["name"] as? String ?? "", ($0["properties"] as? [String: Any])?["provisioningState"] as? String ?? "") }
        #expect(states.map(\.0) == ["debian-12-app-gallery", "unwritable", "app-vhd"])
        #expect(states.map(\.1) == ["Succeeded", "Failed", "Succeeded"])
        #expect(
            (appOutputs[0]["properties"] as? [String: Any])?["artifactId"] as? String
                == "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/kiln-images/providers/Microsoft.Compute/galleries/kilnGallery/images/debian-12-app/versions/1.0.0"
        )
        #expect((app["message"] as? String)?.contains("unwritable") == true)
        let show = try Self.json(try await Self.k("template", "show", "debian-12-app", "--output", "json"))
        let source = ((show["properties"] as? [String: Any])?["source"] as? [String: Any])
        #expect(source?["exactVersion"] as? String == "1.0.0")
    }

    @Test func failingCustomizerWithAbortKeepsAVMYouCanSSHInto() async throws {
        #expect(await Self.catalog.value)
        let file = try Self.project("broken") { _ in
            Self.template(
                "broken",
                customize: """
                    [{"type": "Shell", "name": "fine", "inline": ["echo fine"]},
                     {"type": "Shell", "name": "breaks", "inline": ["echo about to fail", "echo detail-line-XYZ", "exit 7"]}]
                    """, properties: #""errorHandling": {"onCustomizerError": "abort"},"#)
        }
        #expect(try await Self.k("template", "create", file).status == 0)
        let run = try await Self.k("template", "run", "broken", "--wait", "--output", "json")
        #expect(run.status == 1)
        let r = try Self.json(run)
        #expect(r["runState"] as? String == "Failed")
        let message = try #require(r["message"] as? String)
        #expect(message.contains("'breaks'") && message.contains("exit code 7") && message.contains("detail-line-XYZ"), "\(message)")
        let runId = try #require(r["runId"] as? String)
        #expect(!Self.qemuProcesses(run: runId).isEmpty, "abort should keep the VM")

        // The printed command gets in.
        let lines = message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let sshLine = try #require(lines.first { $0.hasPrefix("ssh ") }, "no ssh command in: \(message)")
        let ssh = try await spawnAndWait(["/bin/sh", "-c", sshLine + " -o BatchMode=yes -o ConnectTimeout=20 'echo inside-$(hostname)'"])
        let out = ssh.stdout
        #expect(ssh.status == 0 && out.contains("inside-"), "\(sshLine): \(out) \(ssh.stderr)")
        #expect(lines.contains { $0.hasPrefix("kill $(cat ") }, "no clean-up command in: \(message)")

        // Deleting the template stops the kept VM.
        #expect(try await Self.k("template", "delete", "broken").status == 0)
        #expect(Self.qemuProcesses(run: runId).isEmpty)
    }

    static func sleepy(_ name: String, _ properties: String) throws -> String {
        try project(name) { _ in
            template(name, customize: #"[{"type": "Shell", "name": "nap", "inline": ["echo napping", "sleep 900"]}]"#, properties: properties)
        }
    }

    @Test func cancelMidCustomizationEndsCanceledWithinTenSeconds() async throws {
        #expect(await Self.catalog.value)
        #expect(try await Self.k("template", "create", try Self.sleepy("sleepy", "")).status == 0)
        let queued = try Self.json(try await Self.k("template", "run", "sleepy", "--output", "json"))
        let runId = try #require(queued["runId"] as? String)
        let running = try await Self.waitFor("sleepy", subState: "Customizing")
        #expect(running["runSubState"] as? String == "Customizing")
        try await Task.sleep(for: .seconds(3))
        #expect(!Self.qemuProcesses(run: runId).isEmpty)

        let start = ContinuousClock.now
        let cancel = try await Self.k("template", "cancel", "sleepy", "--output", "json")
        let took = ContinuousClock.now - start
        #expect(cancel.status == 0, "\(cancel.stderr)")
        #expect(try Self.json(cancel)["runState"] as? String == "Canceled")
        #expect(took < .seconds(10), "cancel took \(took)")
        #expect(Self.qemuProcesses(run: runId).isEmpty)
        let run = try await Self.lastRun("sleepy")
        #expect(run["runState"] as? String == "Canceled")
        #expect(!FileManager.default.fileExists(atPath: "\(Self.data)/vms/\(runId)"), "the overlay was not removed")
    }

    @Test func oneMinuteTimeoutFailsTheRun() async throws {
        #expect(await Self.catalog.value)
        #expect(try await Self.k("template", "create", try Self.sleepy("slow", #""buildTimeoutInMinutes": 1,"#)).status == 0)
        let start = ContinuousClock.now
        let run = try await Self.k("template", "run", "slow", "--wait", "--output", "json")
        let took = ContinuousClock.now - start
        #expect(run.status == 1)
        let r = try Self.json(run)
        #expect(r["runState"] as? String == "Failed")
        let message = r["message"] as? String ?? ""
        // While customizing, or still building when the host is busy (a VM slot, a slow TCG boot): either way on time.
        #expect(message.contains("timed out after 1 minute (buildTimeoutInMinutes: 1) while "), "\(message)")
        #expect(took < .seconds(90), "took \(took)")
        #expect(Self.qemuProcesses(run: r["runId"] as? String ?? "-").isEmpty)
    }

    @Test func sigtermOfTheOwnerCancelsItsRunAndStopsTheVM() async throws {
        #expect(await Self.catalog.value)
        #expect(try await Self.k("template", "create", try Self.sleepy("termy", "")).status == 0)
        let log = NSTemporaryDirectory() + "kiln-termy-\(UUID().uuidString.prefix(6)).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let owner = try Background([CLITests.binary, "template", "run", "termy", "--wait", "--data-dir", Self.data], log: log)
        let queued = await eventually(.seconds(60)) {
            let show = try? Self.json(try await Self.k("template", "show", "termy", "--output", "json"))
            return (show?["kiln"] as? [String: Any])?["lastRun"] != nil
        }
        try #require(queued != nil, "the run was never queued: \(owner.output)")
        let running = try await Self.waitFor("termy", subState: "Customizing")
        let runId = try #require(running["runId"] as? String)
        #expect(running["ownerPid"] as? Int == Int(owner.pid))
        #expect(!Self.qemuProcesses(run: runId).isEmpty)

        let status = await owner.stop(SIGTERM, timeout: .seconds(60))
        #expect(status == 1, "a canceled run ends the command with status 1: \(owner.output)")
        #expect(Self.qemuProcesses(run: runId).isEmpty, "the build VM outlived the process that owned it")
        #expect(owner.output.contains("SIGTERM: canceling run \(runId)"), "\(owner.output)")
        let run = try await Self.lastRun("termy")
        #expect(run["runState"] as? String == "Canceled")
        #expect((run["message"] as? String)?.contains("received SIGTERM; the run was canceled and its build VM stopped") == true, "\(run)")
        #expect(!FileManager.default.fileExists(atPath: "\(Self.data)/vms/\(runId)"))
        _ = try await Self.k("template", "delete", "termy")
    }

    @Test func killDashNineThenRestartFailsTheRunAndLeavesNoVM() async throws {
        #expect(await Self.catalog.value)
        #expect(try await Self.k("template", "create", try Self.sleepy("crashy", "")).status == 0)
        let queued = try Self.json(try await Self.k("template", "run", "crashy", "--output", "json"))
        let runId = try #require(queued["runId"] as? String)
        let running = try await Self.waitFor("crashy", subState: "Customizing")
        let owner = try #require(running["ownerPid"] as? Int)
        #expect(!Self.qemuProcesses(run: runId).isEmpty)
        kill(Int32(owner), SIGKILL)

        // The VM dies with its owner, before any other kiln command runs.
        let gone = await eventually(.seconds(10)) { Self.qemuProcesses(run: runId).isEmpty }
        #expect(gone != nil, "the build VM outlived the process that owned it")

        // The next kiln process recovers: the run is Failed with an explanation.
        let list = try await Self.k("template", "list")
        #expect(list.stderr.contains("left unfinished by a process that is gone"), "\(list.stderr)")
        let run = try await Self.lastRun("crashy")
        #expect(run["runState"] as? String == "Failed")
        let message = run["message"] as? String ?? ""
        #expect(message.contains("(process \(owner)) stopped while the run was Customizing") && message.contains("its build VM stopped with it"), "\(message)")
        #expect(Self.qemuProcesses(run: runId).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(Self.data)/vms/\(runId)"))
    }
}

func sha256(_ s: String) -> String {
    SHA256.hash(data: Data(s.utf8)).map { String(format: "%02x", $0) }.joined()
}

/// Closes every inherited descriptor above 2 in the child (glibc's addclosefrom_np, looked up): a child that
/// outlives a test must not hold another test's pipe open.
func closeFrom3(_ actions: inout posix_spawn_file_actions_t) {
    typealias Fn = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return }
    _ = unsafeBitCast(sym, to: Fn.self)(&actions, 3)
}

/// Starts `argv` with stdin from /dev/null, output to files, and a clean signal mask (posix_spawn).
func posixSpawn(_ argv: [String], stdout: String, stderr: String, append: Bool) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    let mode = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, mode, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, mode, 0o644)
    closeFrom3(&actions)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
    let cargs = argv.map { strdup($0) } + [nil]
    defer { for a in cargs { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attr, cargs, environ)
    try #require(rc == 0, "cannot start \(argv[0]): \(rc)")
    return pid
}

/// Runs a command to its end without Foundation's Process (whose exit notification was seen to get lost
/// when the child leaves a grandchild running) and without blocking a thread: posix_spawn, output to files,
/// and a polling waitpid.
func spawnAndWait(_ argv: [String]) async throws -> CLITests.Result {
    let tmp = NSTemporaryDirectory() + "kiln-cli-\(UUID().uuidString)"
    defer {
        try? FileManager.default.removeItem(atPath: tmp + ".out")
        try? FileManager.default.removeItem(atPath: tmp + ".err")
    }
    let pid = try posixSpawn(argv, stdout: tmp + ".out", stderr: tmp + ".err", append: false)
    var status: Int32 = 0
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { break }
        if r < 0 && errno != EINTR { break }
        try await Task.sleep(for: .milliseconds(100))
    }
    // WIFEXITED / WEXITSTATUS by hand (macros are not imported).
    let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let out = FileManager.default.contents(atPath: tmp + ".out") ?? Data()
    let err = FileManager.default.contents(atPath: tmp + ".err") ?? Data()
    return CLITests.Result(status: code, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
}
