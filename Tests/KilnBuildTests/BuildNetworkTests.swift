import Foundation
@testable import KilnBuild
import KilnSystem
import Testing

/// A host outside the build host, in a network namespace of the test's own, joined to the host by a veth
/// pair at 10.214.<n>.1 (host) / 10.214.<n>.2 (it), serving HTTP on port 8080 from `root`. A private address:
/// a build VM reaches it only when `build.allowNetworks` lists it.
struct OutsideHost {
    let index: Int
    var namespace: String { "kiln-t-out\(index)" }
    var address: String { "10.214.\(index).2" }
    var network: String { "10.214.\(index).0/30" }
    let server: OwnedChild
    var enter: [String] { [ProcessRunner.which("ip") ?? "/usr/sbin/ip", "netns", "exec", namespace] }

    static func start(index: Int, root: String) async throws -> OutsideHost {
        let ns = "kiln-t-out\(index)"
        _ = try? await ProcessRunner.run("ip", ["netns", "del", ns])
        _ = try? await ProcessRunner.run("ip", ["link", "del", "kto\(index)"])
        for args in [
            ["netns", "add", ns], ["link", "add", "kto\(index)", "type", "veth", "peer", "name", "eth0", "netns", ns],
            ["addr", "add", "10.214.\(index).1/30", "dev", "kto\(index)"], ["link", "set", "kto\(index)", "up"],
            ["-n", ns, "addr", "add", "10.214.\(index).2/30", "dev", "eth0"], ["-n", ns, "link", "set", "eth0", "up"],
            ["-n", ns, "link", "set", "lo", "up"], ["-n", ns, "route", "add", "default", "via", "10.214.\(index).1"]
        ] {
            let r = try await ProcessRunner.run("ip", args)
            try #require(r.status == 0, "ip \(args): \(r.combined)")
        }
        let server = try BackgroundProcess.spawnOwned(
            try #require(ProcessRunner.which("ip")),
            ["netns", "exec", ns, "python3", "-m", "http.server", "8080", "--bind", "10.214.\(index).2", "--directory", root],
            output: root + "/../server-\(index).log")
        let host = OutsideHost(index: index, server: server)
        // Up when it answers from its own namespace.
        for _ in 0..<100 {
            if await BuildNetworkTests.reach(host.enter, host.address, 8080) { return host }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the outside host's server did not start")
        return host
    }

    func stop() async {
        kill(server.pid, SIGKILL)
        _ = try? await ProcessRunner.run("ip", ["netns", "del", namespace])
        _ = try? await ProcessRunner.run("ip", ["link", "del", "kto\(index)"])
    }
}

@Suite(.enabled(if: IsolatedNetwork.unavailableReason == nil, "needs root, ip and nft"), .serialized)
struct BuildNetworkTests {
    /// Whether a TCP connection from inside a namespace (`enter`: the command prefix that runs a program there)
    /// to host:port is accepted within 3 s.
    static func reach(_ enter: [String], _ host: String, _ port: Int) async -> Bool {
        let r = try? await ProcessRunner.run(
            enter[0], Array(enter.dropFirst()) + ["timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/\(host)/\(port)"], timeout: .seconds(10))
        return r?.status == 0
    }

    /// The process is gone (exited and reaped).
    static func gone(_ pid: pid_t) async -> Bool {
        await eventually(.seconds(5)) { kill(pid, 0) != 0 } != nil
    }

    @Test func aBuildNamespaceReachesAllowedNetworksButNotTheHost() async throws {
        let root = try scratchDirectory("netns")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let outside = try await OutsideHost.start(index: 1, root: root)
        // A service of the build host on every address, like a controller listening on 0.0.0.0.
        let port = try #require(SSHClient.freeLoopbackPort())
        let service = try BackgroundProcess.spawnOwned(
            "/usr/bin/python3", ["-m", "http.server", String(port), "--bind", "0.0.0.0", "--directory", root],
            output: root + "/service.log")
        defer { kill(service.pid, SIGKILL) }
        #expect(await waitForPort(port), "the host service did not start")

        let allowed = try await IsolatedNetwork.create(allow: [outside.network])
        let closed = try await IsolatedNetwork.create(allow: [])
        #expect(allowed.index != closed.index)
        // The host, by every address it has, and its loopback (which inside is the namespace's own).
        var hostAddresses = [allowed.hostAddress, "127.0.0.1", "10.214.1.1"]
        if let out = try? await ProcessRunner.run("hostname", ["-I"]) {
            hostAddresses += out.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { $0.contains(".") }
        }
        for address in hostAddresses {
            #expect(!(await Self.reach(allowed.enter, address, port)), "the build namespace reached the host at \(address):\(port)")
        }
        #expect(await Self.reach(allowed.enter, outside.address, 8080), "the allowed network was not reachable")
        #expect(!(await Self.reach(closed.enter, outside.address, 8080)), "a private network was reachable without an allowance")
        #expect(!(await Self.reach(closed.enter, "169.254.169.254", 80)))
        // The host reaches into the namespace (how Kiln's SSH gets to the guest).
        let inside = try BackgroundProcess.spawnOwned(
            allowed.enter[0],
            Array(allowed.enter.dropFirst()) + ["python3", "-m", "http.server", "2222", "--bind", allowed.namespaceAddress, "--directory", root],
            output: root + "/inside.log")
        defer { kill(inside.pid, SIGKILL) }
        let intoNamespace = await eventually(.seconds(10)) {
            (try? await ProcessRunner.run("bash", ["-c", "exec 3<>/dev/tcp/\(allowed.namespaceAddress)/2222"]))?.status == 0
        }
        #expect(intoNamespace != nil)

        kill(inside.pid, SIGKILL)
        await allowed.remove()
        await closed.remove()
        await outside.stop()
        // The namespaces end with their holders; the veth goes with them.
        for n in [allowed, closed] { #expect(await Self.gone(n.holder.pid), "\(n.namespace)'s holder \(n.holder.pid) is still running") }
    }
}

extension BuildNetworkTests {
    /// Issue 15's acceptance from inside a build: the customizer cannot open the build host's service port (by
    /// the gateway 10.0.2.2 or any host address) and still installs a Debian package from a mirror on an
    /// allowed network.
    @Test func aCustomizerCannotReachTheHostButInstallsFromTheMirror() async throws {
        let www = try scratchDirectory("mirror")
        defer { try? FileManager.default.removeItem(atPath: (www as NSString).deletingLastPathComponent) }
        let pkg = (www as NSString).deletingLastPathComponent + "/pkg"
        try FileManager.default.createDirectory(atPath: pkg + "/DEBIAN", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: pkg + "/usr/share/kiln-probe", withIntermediateDirectories: true)
        try "Package: kiln-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: Kiln <kiln@localhost>\nDescription: probe\n"
            .write(toFile: pkg + "/DEBIAN/control", atomically: true, encoding: .utf8)
        try "installed from the mirror\n".write(toFile: pkg + "/usr/share/kiln-probe/ok", atomically: true, encoding: .utf8)
        #expect(try await ProcessRunner.run("dpkg-deb", ["--root-owner-group", "--build", pkg, www + "/kiln-probe_1.0_all.deb"]).status == 0)
        #expect(try await ProcessRunner.run("bash", ["-c", "cd \(www) && dpkg-scanpackages . > Packages"]).status == 0)
        let outside = try await OutsideHost.start(index: 2, root: www)
        defer { Task { await outside.stop() } }
        let port = try #require(SSHClient.freeLoopbackPort())
        let service = try BackgroundProcess.spawnOwned(
            "/usr/bin/python3", ["-m", "http.server", String(port), "--bind", "0.0.0.0", "--directory", www],
            output: www + "/../service.log")
        defer { kill(service.pid, SIGKILL) }
        #expect(await waitForPort(port))
        let hostAddresses = ((try? await ProcessRunner.run("hostname", ["-I"]))?.stdout ?? "").split(separator: " ")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { $0.contains(".") }
        let probes = (["10.0.2.2", "10.214.2.1"] + hostAddresses).map {
            "! timeout 5 bash -c 'exec 3<>/dev/tcp/\($0)/\(port)' && echo \"host \($0):\(port) unreachable\""
        }
        let lines =
            probes + [
                "echo 'deb [trusted=yes] http://\(outside.address):8080/ ./' | sudo tee /etc/apt/sources.list.d/probe.list",
                "sudo apt-get update -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/probe.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0",
                "sudo apt-get install -y kiln-probe",
                "cat /usr/share/kiln-probe/ok"
            ]
        let json = try String(data: JSONEncoder().encode(lines), encoding: .utf8)!
        let t = try BuilderIntegrationTests.template(
            """
            {"name": "net", "location": "westeurope", "identity": {"type": "None"},
             "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
               "customize": [{"type": "Shell", "name": "probe", "inline": \(json)}],
               "distribute": [{"type": "VHD", "runOutputName": "vhd"}]}}
            """)
        var req = try await BuilderIntegrationTests.request(t)
        req.network = .isolated(allow: [outside.network])
        _ = try await Builder(request: req).run()
        let log = try String(contentsOfFile: req.logDirectory + "/customization.log", encoding: .utf8)
        #expect(log.contains("network: namespace kiln-b"), "\(log)")
        #expect(log.contains("host 10.0.2.2:\(port) unreachable") && log.contains("host 10.214.2.1:\(port) unreachable"), "\(log)")
        for a in hostAddresses { #expect(log.contains("host \(a):\(port) unreachable"), "\(log)") }
        #expect(log.contains("installed from the mirror"), "\(log)")
        // The namespace went with the VM: its holder is gone.
        let holder = try #require(log.firstMatch(of: /network: namespace kiln-b\d+ \(pid (\d+)\)/)).output.1
        #expect(await Self.gone(try #require(pid_t(holder))), "the build's namespace holder \(holder) is still running")
    }
}

func scratchDirectory(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "kiln-\(name)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir + "/www", withIntermediateDirectories: true)
    return dir + "/www"
}

/// A TCP listener answers on the host's loopback port.
func waitForPort(_ port: Int) async -> Bool {
    await eventually(.seconds(10)) { (try? await ProcessRunner.run("bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port)"]))?.status == 0 } != nil
}

func eventually(_ timeout: Duration, _ condition: () async -> Bool) async -> Duration? {
    let start = ContinuousClock.now
    while ContinuousClock.now - start < timeout {
        if await condition() { return ContinuousClock.now - start }
        try? await Task.sleep(for: .milliseconds(200))
    }
    return nil
}
