// Test support: a GitOps repository (bare remote + clone) and a Kiln data directory, for reconciler tests.
import Foundation
import KilnCore
import KilnGit
import KilnGitOps
import KilnStore
import KilnSystem

/// A bare "remote" and a clone pushed with the git CLI (the user's side), plus a Kiln data directory.
public struct GitOpsFixture {
    public let dir: String
    public let remote: String
    public let work: String
    public let core: KilnCore

    public init() throws {
        dir = try scratch()
        remote = dir + "/remote.git"
        work = dir + "/work"
        _ = try git("init", "-q", "--bare", "-b", "main", remote, in: dir)
        _ = try git("clone", "-q", remote, work, in: dir)
        let paths = KilnPaths(dataDir: dir + "/data")
        core = KilnCore(paths: paths, store: try KilnDatabase(path: paths.database))
    }

    public func write(_ path: String, _ text: String) throws {
        let full = work + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }

    @discardableResult
    public func push(_ message: String) throws -> String {
        _ = try git("add", "-A", in: work)
        _ = try git("commit", "-q", "-m", message, in: work)
        _ = try git("push", "-q", "origin", "HEAD:main", in: work)
        return try git("rev-parse", "HEAD", in: work)
    }

    public func controller(_ source: GitSource? = nil) throws -> Controller {
        let mirror = try RepositoryMirror.open(dataDir: core.paths.dataDir, source: source ?? GitSource(url: remote))
        return Controller(core: core, mirror: mirror, launchWorkers: {})
    }

    /// `git show kiln/status:<path>` on the remote, or nil.
    public func statusFile(_ path: String, branch: String = "kiln/status") -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", remote, "show", "\(branch):\(path)"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice  // never read: a pipe could fill
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }

    public func statusLog(branch: String = "kiln/status") -> [String] {
        ((try? git("log", "--format=%s", branch, in: remote)) ?? "").split(separator: "\n").map(String.init)
    }

    public static func template(_ name: String, script: String = "scripts/setup.sh", manual: Bool = true, output: String? = nil) -> String {
        """
        {
          "type": "Microsoft.VirtualMachineImages/imageTemplates",
          "apiVersion": "2025-10-01",
          "name": "\(name)",
          "location": "westeurope",
          "tags": { \(manual ? "\"kiln.run\": \"manual\"" : "") },
          "identity": { "type": "None" },
          "properties": {
            "source": { "type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest" },
            "customize": [ { "type": "Shell", "name": "setup", "scriptUri": "\(script)" } ],
            "distribute": [ { "type": "VHD", "runOutputName": "\(output ?? name)-vhd" } ]
          }
        }
        """
    }

    public static let kilnYAML = "subscription: 11111111-2222-3333-4444-555555555555\nresourceGroup: rg-gitops\nlocation: westeurope\n"
}
