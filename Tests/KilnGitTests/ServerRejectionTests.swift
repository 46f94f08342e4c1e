import Foundation
import KilnGit
import KilnTestSupport
import Testing

/// A server-side per-reference rejection (a pre-receive hook, as branch protection is) is a success for
/// libgit2's push call; Kiln must read the reference's status and report it.
@Suite struct ServerRejectionTests {
    let me = GitSignature(name: "Kiln", email: "kiln@example.com")

    @Test func aHookThatRefusesTheStatusBranchIsARejection() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let remote = dir + "/remote.git"
        _ = try git("init", "-q", "--bare", remote, in: dir)
        let hook = remote + "/hooks/pre-receive"
        try "#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in refs/heads/protected) echo \"protected branch\" >&2; exit 1;; esac\ndone\nexit 0\n"
            .write(toFile: hook, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: hook)
        // git daemon serves the remote over git://, with receive-pack, so the server runs its hooks.
        let port = Int.random(in: 20000...60000)
        let daemon = try spawnGroup([
            "/usr/bin/git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--base-path=\(dir)",
            "--listen=127.0.0.1", "--port=\(port)", dir
        ])
        defer { stopGroup(daemon) }
        let url = "git://127.0.0.1:\(port)/remote.git"
        let mirror = try GitRepository.initBare(dir + "/mirror.git")
        try await mirror.commit(files: ["a": Data("1".utf8)], on: "refs/heads/protected", message: "m", author: me)
        try await mirror.commit(files: ["a": Data("1".utf8)], on: "refs/heads/open", message: "m", author: me)
        var ready = false
        for _ in 0..<50 {
            if (try? await mirror.remoteHeads(url)) != nil { ready = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try #require(ready, "git daemon did not start")
        try await mirror.push(url, refspecs: ["refs/heads/open:refs/heads/open"])
        do {
            try await mirror.push(url, refspecs: ["refs/heads/protected:refs/heads/protected"])
            Issue.record("the hook's rejection was reported as a success")
        } catch {
            guard case .rejected(let ref, _) = error else {
                Issue.record("expected a per-reference rejection, got \(error)")
                return
            }
            #expect(ref == "refs/heads/protected")
            #expect(error.isRejection)
        }
        #expect(try git("--git-dir", remote, "branch", "--list", in: dir).contains("open"))
        #expect(!(try git("--git-dir", remote, "branch", "--list", in: dir).contains("protected")))
    }
}

/// Starts a server in its own process group (git daemon forks per connection), outside Foundation's Process.
func spawnGroup(_ argv: [String]) throws -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP) | Int16(POSIX_SPAWN_SETSIGMASK))
    posix_spawnattr_setpgroup(&attr, 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    // Only 0-2 reach the daemon: it must not hold another test's pipe open (glibc's addclosefrom_np).
    if let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
        typealias Fn = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        _ = unsafeBitCast(sym, to: Fn.self)(&actions, 3)
    }
    let cargs = argv.map { strdup($0) } + [nil]
    defer { for a in cargs { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attr, cargs, environ)
    try #require(rc == 0)
    return pid
}

func stopGroup(_ pid: pid_t) {
    kill(-pid, SIGKILL)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
}
