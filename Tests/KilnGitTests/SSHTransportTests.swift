import Foundation
import KilnBuild
import KilnCore
import KilnGit
import KilnGitOps
import KilnStore
import KilnSystem
import KilnTestSupport
import Testing

/// The ssh:// transport against a real OpenSSH server on 127.0.0.1 (openssh-server, installed by
/// scripts/install-deps): key authentication from a file and from memory, and the known_hosts check.
@Suite(.serialized) struct SSHTransportTests {
    struct Server {
        let dir: String
        let port: Int
        let pid: Int32
        let userKey: String
        let hostKeyLine: String
    }

    /// `forcedCommand`: what the server runs for the user's key instead of the command asked for (which it
    /// finds in `SSH_ORIGINAL_COMMAND`).
    static func startServer(_ dir: String, forcedCommand: String? = nil) async throws -> Server {
        let user = dir + "/user_ecdsa", host = dir + "/host_ecdsa"
        _ = try git("--version", in: dir)  // git must be on the server side too
        try sh("ssh-keygen -q -t ecdsa -b 256 -m PEM -N '' -f \(user) && ssh-keygen -q -t ecdsa -b 256 -N '' -f \(host)")
        let publicKey = try String(contentsOfFile: user + ".pub", encoding: .utf8)
        try (forcedCommand.map { "command=\"\($0)\" " } ?? "").appending(publicKey).write(toFile: dir + "/authorized_keys", atomically: true, encoding: .utf8)
        let port = Int.random(in: 30000...40000)
        let config = """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(host)
            AuthorizedKeysFile \(dir)/authorized_keys
            PidFile \(dir)/sshd.pid
            StrictModes no
            UsePAM no
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            """
        try config.write(toFile: dir + "/sshd_config", atomically: true, encoding: .utf8)
        try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        let pid = try spawnGroup(["/usr/sbin/sshd", "-D", "-e", "-f", dir + "/sshd_config"])
        // Ready when the port accepts connections.
        for _ in 0..<100 {
            if (try? sh("exec 3<>/dev/tcp/127.0.0.1/\(port)")) != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let hostPub = try String(contentsOfFile: host + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        return Server(dir: dir, port: port, pid: pid, userKey: user, hostKeyLine: "[127.0.0.1]:\(port) \(hostPub)")
    }

    @Test func fetchAndPushOverSSHWithAKnownHostKey() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") else {
            Issue.record("openssh-server is not installed; scripts/install-deps installs it")
            return
        }
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try await Self.startServer(dir)
        defer { kill(-server.pid, SIGKILL) }

        let remote = dir + "/remote.git"
        _ = try git("init", "-q", "--bare", "-b", "main", remote, in: dir)
        _ = try git("clone", "-q", remote, dir + "/work", in: dir)
        try "hello\n".write(toFile: dir + "/work/a.txt", atomically: true, encoding: .utf8)
        _ = try git("add", ".", in: dir + "/work")
        _ = try git("commit", "-q", "-m", "one", in: dir + "/work")
        _ = try git("push", "-q", "origin", "HEAD:main", in: dir + "/work")
        let head = try git("rev-parse", "HEAD", in: dir + "/work")

        let user = NSUserName()
        let url = "ssh://\(user)@127.0.0.1:\(server.port)\(remote)"
        try (server.hostKeyLine + "\n").write(toFile: dir + "/known_hosts", atomically: true, encoding: .utf8)
        let known = try KnownHosts(path: dir + "/known_hosts")
        let mirror = try GitRepository.initBare(dir + "/mirror.git")

        // Key from a file: ls-remote, fetch, then a commit pushed back.
        let creds = GitCredentials.sshKeyFile(privateKeyPath: server.userKey, publicKeyPath: server.userKey + ".pub", passphrase: nil)
        let heads = try await mirror.remoteHeads(url, credentials: creds, knownHosts: known)
        #expect(heads.first { $0.name == "refs/heads/main" }?.id.hex == head)
        try await mirror.fetch(url, refspecs: ["+refs/heads/main:refs/heads/main"], credentials: creds, knownHosts: known)
        let me = GitSignature(name: "Kiln", email: "kiln@example.com")
        let pushed = try await mirror.commit(files: ["status/x.json": Data("{}\n".utf8)], on: "refs/heads/main", message: "status", author: me)
        try await mirror.push(url, refspecs: ["refs/heads/main:refs/heads/main"], credentials: creds, knownHosts: known)
        #expect(try git("rev-parse", "main", in: remote) == pushed.hex)

        // Key from memory.
        let pem = try String(contentsOfFile: server.userKey, encoding: .utf8)
        let inMemory = try await mirror.remoteHeads(url, credentials: .sshKeyMemory(privateKey: pem, passphrase: nil), knownHosts: known)
        #expect(inMemory.first { $0.name == "refs/heads/main" }?.id == pushed)

        // The reconciler over ssh://: desired state fetched, status and note pushed back.
        try "subscription: 11111111-2222-3333-4444-555555555555\nresourceGroup: rg-ssh\nlocation: westeurope\n"
            .write(toFile: dir + "/work/kiln.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/work/templates", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/work/scripts", withIntermediateDirectories: true)
        try "#!/bin/sh\necho one\n".write(toFile: dir + "/work/scripts/setup.sh", atomically: true, encoding: .utf8)
        try GitOpsFixture.template("over-ssh").write(toFile: dir + "/work/templates/over-ssh.json", atomically: true, encoding: .utf8)
        _ = try git("pull", "-q", "--rebase", "origin", "main", in: dir + "/work")
        _ = try git("add", ".", in: dir + "/work")
        _ = try git("commit", "-q", "-m", "a template", in: dir + "/work")
        _ = try git("push", "-q", "origin", "HEAD:main", in: dir + "/work")
        let paths = KilnPaths(dataDir: dir + "/data")
        let core = KilnCore(paths: paths, store: try KilnDatabase(path: paths.database))
        let source = GitSource(url: url, credentials: creds, knownHosts: known)
        let controller = Controller(core: core, mirror: try RepositoryMirror.open(dataDir: paths.dataDir, source: source), launchWorkers: {})
        let once = try await controller.reconcileOnce(executeRuns: false)
        #expect(once.report.outcomes.map(\.item.name) == ["over-ssh"] && once.report.failed.isEmpty, "\(once.report.outcomes.map(\.result))")
        #expect(try git("log", "-1", "--format=%s", "kiln/status", in: remote).hasPrefix("over-ssh: Accepted"))

        // A host key that is not in known_hosts is refused, with a message that says so.
        try
            "[127.0.0.1]:\(server.port) ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=\n"
            .write(toFile: dir + "/other_hosts", atomically: true, encoding: .utf8)
        await #expect {
            _ = try await mirror.remoteHeads(url, credentials: creds, knownHosts: try KnownHosts(path: dir + "/other_hosts"))
        } throws: { error in
            "\(error)".contains("is not in \(dir)/other_hosts")
        }
        // A key the server does not know: a bounded number of attempts, then a clear error.
        try sh("ssh-keygen -q -t ecdsa -b 256 -m PEM -N '' -f \(dir)/stranger")
        await #expect {
            _ = try await mirror.remoteHeads(
                url, credentials: .sshKeyFile(privateKeyPath: dir + "/stranger", publicKeyPath: dir + "/stranger.pub", passphrase: nil),
                knownHosts: known)
        } throws: { error in
            "\(error)".contains("authentication") || "\(error)".contains("Authentication")
        }
    }
}

extension SSHTransportTests {
    /// The git timeout is about progress, not duration: a fetch whose pack arrives slowly — a single 300 KB object,
    /// 8 KiB every 0.25 s, nearly 10 s in all — is never cut by a 2 s timeout, while the same server gone silent is.
    @Test func aSlowButMovingFetchIsNotCut() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") else {
            Issue.record("openssh-server is not installed; scripts/install-deps installs it")
            return
        }
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The git command the client asked for, its output trickled; or, once `silent` exists, nothing at all.
        try """
        #!/bin/sh
        if [ -e \(dir)/silent ]; then exec sleep 30; fi
        eval "$SSH_ORIGINAL_COMMAND" | python3 -u -c '
        import sys, time
        while True:
            chunk = sys.stdin.buffer.read1(8192)
            if not chunk: break
            sys.stdout.buffer.write(chunk); sys.stdout.buffer.flush(); time.sleep(0.25)
        '
        """.write(toFile: dir + "/trickle.sh", atomically: true, encoding: .utf8)
        chmod(dir + "/trickle.sh", 0o755)
        let server = try await Self.startServer(dir, forcedCommand: dir + "/trickle.sh")
        defer { kill(-server.pid, SIGKILL) }

        let remote = dir + "/remote.git"
        _ = try git("init", "-q", "--bare", "-b", "main", remote, in: dir)
        _ = try git("clone", "-q", remote, dir + "/work", in: dir)
        let noise = (0..<300_000).map { _ in UInt8.random(in: 0...255) }
        try Data(noise).write(to: URL(fileURLWithPath: dir + "/work/blob"))
        _ = try git("add", ".", in: dir + "/work")
        _ = try git("commit", "-q", "-m", "one big object", in: dir + "/work")
        _ = try git("push", "-q", "origin", "HEAD:main", in: dir + "/work")

        let url = "ssh://\(NSUserName())@127.0.0.1:\(server.port)\(remote)"
        try (server.hostKeyLine + "\n").write(toFile: dir + "/known_hosts", atomically: true, encoding: .utf8)
        let known = try KnownHosts(path: dir + "/known_hosts")
        let creds = GitCredentials.sshKeyFile(privateKeyPath: server.userKey, publicKeyPath: server.userKey + ".pub", passphrase: nil)
        let mirror = try GitRepository.initBare(dir + "/mirror.git")

        let start = ContinuousClock.now
        try await mirror.fetch(url, refspecs: ["+refs/heads/main:refs/heads/main"], credentials: creds, knownHosts: known, timeout: .seconds(2))
        let took = ContinuousClock.now - start
        #expect(took > .seconds(4), "the trickle should have made the fetch slower than the timeout: \(took)")
        #expect(try await mirror.resolve("refs/heads/main")?.hex == (try git("rev-parse", "HEAD", in: dir + "/work")))

        // The same server, silent after authentication: cut after the timeout.
        _ = FileManager.default.createFile(atPath: dir + "/silent", contents: nil)
        let silentStart = ContinuousClock.now
        await #expect {
            try await mirror.fetch(url, refspecs: ["+refs/heads/main:refs/heads/other"], credentials: creds, knownHosts: known, timeout: .seconds(2))
        } throws: { ($0 as? GitError).map { $0.timedOut && !$0.description.contains("trickle") } == true }
        #expect(ContinuousClock.now - silentStart < .seconds(120), "cut, not left hanging (loose: the test process can be starved for seconds in CI)")
    }
}
