// Test support: the user's side of a test (the git CLI, a shell), shared by every test target.
import Foundation
import Testing

/// The user's side: the git CLI (allowed in tests only).
public func git(_ args: String..., in dir: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    p.arguments = ["-C", dir, "-c", "user.name=Tester", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"] + args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice  // never read: a pipe could fill
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    try #require(p.terminationStatus == 0, "git \(args.joined(separator: " ")) failed")
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

public func scratch() throws -> String {
    let d = NSTemporaryDirectory() + "kiln-git-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// Runs a bash command line, output discarded; throws when it fails.
public func sh(_ command: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", command]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw NSError(domain: "sh", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: command]) }
}
