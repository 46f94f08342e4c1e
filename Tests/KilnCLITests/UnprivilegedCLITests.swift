import Crypto
import Foundation
import KilnTestSupport
import Testing

/// Issue 15, item 5: Kiln as deploy/systemd/kiln-controller.service runs it — a user of its own, only the
/// capabilities the unit grants (read from the unit: AmbientCapabilities=, CapabilityBoundingSet=), no new
/// privileges. Bootstrapping, which needs root, is refused with a clear error; importing a disk and building
/// work, and the build VM is isolated (it cannot reach the host's service port), which is what CAP_NET_ADMIN
/// is for. An extension of the serialized VM suite, so VMs never overlap.
extension TemplateCLITests {
    /// The values of `key=` lines in the unit, split at spaces.
    static func unitSetting(_ unit: String, _ key: String) -> [String] {
        unit.split(separator: "\n").filter { $0.hasPrefix(key + "=") }
            .flatMap { $0.dropFirst(key.count + 1).split(separator: " ").map(String.init) }
    }

    /// Runs kiln as `user` with exactly `capabilities` (ambient, inheritable and bounding), as systemd would.
    /// The host-wide VM limit of the tests (`KILN_MAX_VMS`, slots in a directory of root's) is kept: the command
    /// runs while holding slot 0 there (`flock`), with a slot directory of the user's own.
    static func kilnAs(_ user: String, capabilities: [String], slots: String, _ args: [String]) async throws -> CLITests.Result {
        let caps = (["-all"] + capabilities.map { "+" + $0.lowercased().replacingOccurrences(of: "cap_", with: "") }).joined(separator: ",")
        let env = ProcessInfo.processInfo.environment
        let hold = env["KILN_MAX_VMS"] != nil ? env["KILN_VM_SLOTS_DIR"].map { ["/usr/bin/flock", $0 + "/slot-0"] } ?? [] : []
        return try await spawnAndWait(
            hold + [
                "/usr/bin/setpriv", "--reuid", user, "--regid", user, "--init-groups", "--inh-caps", caps, "--ambient-caps", caps,
                "--bounding-set", caps, "--no-new-privs", "--", "/usr/bin/env", "KILN_VM_SLOTS_DIR=\(slots)", CLITests.binary
            ] + args)
    }

    @Test(.enabled(if: geteuid() == 0, "switches to an unprivileged user"))
    func theServiceUsersPrivilegesBuildInAnIsolatedNetwork() async throws {
        #expect(await Self.catalog.value)
        let unit = try String(contentsOf: CLITests.repoRoot.appendingPathComponent("deploy/systemd/kiln-controller.service"), encoding: .utf8)
        let capabilities = Self.unitSetting(unit, "AmbientCapabilities")
        #expect(capabilities == Self.unitSetting(unit, "CapabilityBoundingSet"), "the unit grants what it bounds")
        #expect(Self.unitSetting(unit, "User") == ["kiln"] && !capabilities.isEmpty, "\(capabilities)")
        let user = "kiln-ci"
        if try await spawnAndWait(["/usr/bin/id", "-u", user]).status != 0 {
            let made = try await spawnAndWait(["/usr/sbin/useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", user])
            try #require(made.status == 0, "useradd: \(made.stderr)")
        }
        if try await spawnAndWait(["/usr/bin/getent", "group", "kvm"]).status == 0 {
            _ = try await spawnAndWait(["/usr/sbin/usermod", "-aG", "kvm", user])
        }
        let dir = "/tmp/kiln-unprivileged-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/project", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = dir + "/data"

        // The catalog's disk, copied where the user can read it.
        let listed = try #require(
            try JSONSerialization.jsonObject(with: Data(try await Self.k("images", "list", "--output", "json").stdout.utf8)) as? [[String: Any]])
        let image = try #require(listed.first { $0["sku"] as? String == "12-gen2" })
        let disk = Self.data + "/" + (try #require(image["path"] as? String))
        try FileManager.default.copyItem(atPath: disk, toPath: dir + "/debian.qcow2")

        // A service of the host on every address (like the controller's port), which the build must not reach.
        let port = try #require(MultiRepositoryCLITests.freePort())
        let service = try Background(
            ["/usr/bin/python3", "-m", "http.server", String(port), "--bind", "0.0.0.0", "--directory", dir + "/project"], log: dir + "/service.log")
        defer { kill(service.pid, SIGKILL) }
        let probe = "! timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/\(port)' && echo host-service-unreachable"
        try Self.template("unpriv", customize: #"[{"type": "Shell", "name": "probe", "inline": ["\#(probe)"]}]"#)
            .write(toFile: dir + "/project/unpriv.json", atomically: true, encoding: .utf8)
        let chown = try await spawnAndWait(["/bin/chown", "-R", "\(user):\(user)", dir])
        try #require(chown.status == 0, "\(chown.stderr)")

        let bootstrap = try await Self.kilnAs(user, capabilities: capabilities, slots: dir + "/slots", ["images", "bootstrap", "debian-12", "--data-dir", data])
        #expect(bootstrap.status != 0 && bootstrap.stderr.contains("bootstrapping needs root"), "\(bootstrap.stdout)\(bootstrap.stderr)")
        let imported = try await Self.kilnAs(
            user, capabilities: capabilities, slots: dir + "/slots",
            [
                "images", "import", dir + "/debian.qcow2", "--publisher", "Debian", "--offer", "debian-12", "--sku", "12-gen2", "--version", "1.0.0",
                "--generation", "V2", "--data-dir", data
            ])
        #expect(imported.status == 0, "\(imported.stdout)\(imported.stderr)")
        let created = try await Self.kilnAs(
            user, capabilities: capabilities, slots: dir + "/slots", ["template", "create", dir + "/project/unpriv.json", "--data-dir", data])
        #expect(created.status == 0, "\(created.stdout)\(created.stderr)")
        let run = try await Self.kilnAs(
            user, capabilities: capabilities, slots: dir + "/slots", ["template", "run", "unpriv", "--wait", "--output", "json", "--data-dir", data])
        let result = try Self.json(run)
        #expect(run.status == 0, "\(result["message"] ?? "")\n\(run.stderr)")
        #expect(result["runState"] as? String == "Succeeded", "\(result)")
        let log = try await Self.kilnAs(user, capabilities: capabilities, slots: dir + "/slots", ["template", "logs", "unpriv", "--data-dir", data]).stdout
        #expect(log.contains("network: namespace kiln-b"), "\(log)")
        #expect(log.contains("host-service-unreachable"), "\(log)")
        // Everything it wrote is its own.
        let foreign = try await spawnAndWait(["/usr/bin/find", data, "!", "-user", user])
        #expect(foreign.stdout.isEmpty, "not owned by \(user): \(foreign.stdout)")
    }
}
