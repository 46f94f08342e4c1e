// The customizers of a build: Shell, File, PowerShell and WindowsRestart steps run in the build VM over SSH.
import Foundation
import KilnStore
import KilnSystem
import KilnTemplates
import Logging

extension Builder {
    func customize(vm: VirtualMachine, ssh: SSHClient, log: BuildLog) async throws {
        let list = request.template.properties.customize
        for (i, c) in list.enumerated() {
            try Task.checkCancellation()
            let name = c.name ?? "\(c.kind.rawValue.lowercased())-\(i + 1)"
            log.marker("[\(i + 1)/\(list.count)] \(c.kind.rawValue) '\(name)': start")
            let start = ContinuousClock.now
            switch c {
            case .shell(let s):
                try await runShell(s, index: i, name: name, ssh: ssh, log: log, kind: "Shell")
            case .file(let f):
                try await uploadFile(f, index: i, name: name, ssh: ssh, log: log)
            case .windowsRestart(let r):
                try await restart(r, index: i, name: name, vm: vm, ssh: ssh, log: log)
            case .powerShell(let p):
                try await runPowerShell(
                    p, index: i, name: name, ssh: ssh, log: log,
                    failure: { code in
                        BuildError.customizerFailed(index: i, name: name, type: "PowerShell", exitCode: code, logTail: log.tail(15), keptVM: nil)
                    })
            case .windowsUpdate:
                throw BuildError.customizerUnsupported(
                    index: i, name: name,
                    reason: "WindowsUpdate runs on Windows images only; the source \(request.source.reference) is \(request.source.osType.rawValue)")
            }
            log.marker("[\(i + 1)/\(list.count)] \(c.kind.rawValue) '\(name)': done in \(String(format: "%.1f", seconds(since: start))) s")
        }
    }

    /// The staged local copy of an artifact.
    func staged(_ reference: String) throws -> String {
        guard let path = request.artifacts[reference] else { throw BuildError.io("the artifact \(reference) was not staged") }
        return path
    }

    /// Copies a local file into the guest at `remote` (as the build user).
    func upload(_ local: String, to remote: String, ssh: SSHClient) async throws {
        guard let data = FileManager.default.contents(atPath: local) else { throw BuildError.io("cannot read \(local)") }
        let r = try await ssh.run("cat > '\(remote)'", timeout: .seconds(600), input: data)
        guard r.status == 0 else { throw BuildError.io("upload to \(remote) failed: \(r.combined)") }
    }

    /// Runs a guest command, streaming its output into the log; returns the exit status.
    func stream(_ command: String, ssh: SSHClient, log: BuildLog) async throws -> Int32 {
        let r = try await ssh.run(command, onOutputLine: { log.line("    \($0)") })
        return r.status
    }

    func scriptText(_ source: ScriptSource) throws -> Data {
        switch source {
        case .inline(let lines): return Data((lines.joined(separator: "\n") + "\n").utf8)
        case .uri(let u):
            let path = try staged(u)
            guard let d = FileManager.default.contents(atPath: path) else { throw BuildError.io("cannot read the staged \(u)") }
            return d
        }
    }

    func runShell(_ s: ShellScript, index i: Int, name: String, ssh: SSHClient, log: BuildLog, kind: String) async throws {
        let remote = "/tmp/kiln-script-\(i + 1).sh"
        let dir = (request.workDirectory as NSString).appendingPathComponent("scripts")
        try FileManager.default.ensureDirectory(dir)
        let local = (dir as NSString).appendingPathComponent("\(i + 1).sh")
        try scriptText(s.script).write(to: URL(fileURLWithPath: local))
        try await upload(local, to: remote, ssh: ssh)
        // Inline lines run as one script with `set -e` (Packer's `/bin/sh -e`); a scriptUri runs with its
        // own interpreter line, or /bin/sh without one.
        let command: String
        switch s.script {
        case .inline: command = "chmod +x \(remote) && /bin/sh -e \(remote)"
        case .uri: command = "chmod +x \(remote) && if head -c2 \(remote) | grep -q '#!'; then \(remote); else /bin/sh \(remote); fi"
        }
        let status = try await stream(command, ssh: ssh, log: log)
        guard status == 0 else {
            log.line("\(kind) '\(name)' exited with status \(status)")
            throw BuildError.customizerFailed(index: i, name: name, type: kind, exitCode: status, logTail: Array(log.tail(16).dropLast()), keptVM: nil)
        }
    }

    func runPowerShell(
        _ p: PowerShellScript, index i: Int, name: String, ssh: SSHClient, log: BuildLog,
        failure: (Int32) -> BuildError
    ) async throws {
        let which = try await ssh.run("command -v pwsh", timeout: .seconds(60))
        guard which.status == 0 else {
            throw BuildError.customizerUnsupported(
                index: i, name: name,
                reason:
                    "PowerShell needs pwsh in the image, and \(request.source.reference) has none; install it in an earlier Shell step or use a Shell customizer"
            )
        }
        let remote = "/tmp/kiln-script-\(i + 1).ps1"
        let local = (request.workDirectory as NSString).appendingPathComponent("script-\(i + 1).ps1")
        try scriptText(p.script).write(to: URL(fileURLWithPath: local))
        try await upload(local, to: remote, ssh: ssh)
        let sudo = p.runElevated ? "sudo " : ""
        let status = try await stream("\(sudo)pwsh -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \(remote)", ssh: ssh, log: log)
        guard p.validExitCodes.contains(Int(status)) else {
            log.line("PowerShell '\(name)' exited with \(status), not one of validExitCodes \(p.validExitCodes)")
            throw failure(status)
        }
    }

    func uploadFile(_ f: FileCopy, index i: Int, name: String, ssh: SSHClient, log: BuildLog) async throws {
        let local = try staged(f.sourceUri)
        let tmp = "/tmp/kiln-file-\(i + 1)"
        try await upload(local, to: tmp, ssh: ssh)
        let expected = try f.sha256Checksum ?? DiskTool.sha256(of: local)
        let dest = f.destination.replacingOccurrences(of: "'", with: "'\\''")
        let cmd = "sudo mkdir -p \"$(dirname '\(dest)')\" && sudo mv \(tmp) '\(dest)' && sudo sha256sum '\(dest)' | cut -d' ' -f1"
        let r = try await ssh.run(cmd, timeout: .seconds(300))
        let actual = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard r.status == 0 else {
            log.line(r.combined)
            throw BuildError.customizerFailed(index: i, name: name, type: "File", exitCode: r.status, logTail: log.tail(8), keptVM: nil)
        }
        guard actual == expected.lowercased() else {
            log.line("checksum mismatch for \(f.destination): expected \(expected), found \(actual)")
            throw BuildError.customizerFailed(index: i, name: name, type: "File", exitCode: 1, logTail: log.tail(4), keptVM: nil)
        }
        log.line("uploaded \(f.sourceUri) to \(f.destination) (sha256 \(actual))")
    }

    /// WindowsRestart on Linux: run the restart command (AIB's Windows default becomes `sudo reboot`), wait
    /// for the guest to come back with a new boot id, then poll the check command until it succeeds.
    func restart(_ r: WindowsRestart, index i: Int, name: String, vm: VirtualMachine, ssh: SSHClient, log: BuildLog) async throws {
        let command = r.restartCommand == WindowsRestart.defaultRestartCommand ? "sudo reboot" : r.restartCommand
        let timeout = Duration.seconds(TemplateDuration.seconds(r.restartTimeout) ?? 300)
        let before = try await ssh.run("cat /proc/sys/kernel/random/boot_id", timeout: .seconds(60)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        log.line("restarting with: \(command)")
        // The command usually drops the connection; its exit status is not meaningful.
        _ = try? await ssh.run("nohup sh -c '\(command.replacingOccurrences(of: "'", with: "'\\''"))' >/dev/null 2>&1 &", timeout: .seconds(30))
        let deadline = ContinuousClock.now + timeout
        var rebooted = false
        var lastState = SSHReadiness.ready
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            guard await vm.isRunning else { throw BuildError.vm(.exited(console: await vm.consoleTail())) }
            // The cheap banner check first: while the guest shuts down and boots, a full ssh attempt would
            // sit in its connect timeout.
            let state = await ssh.check()
            if state != lastState {
                log.line("  ssh: \(state)")
                lastState = state
            }
            guard state == .ready else {
                try await Task.sleep(for: .milliseconds(500))
                continue
            }
            if let id = try? await ssh.run("cat /proc/sys/kernel/random/boot_id", timeout: .seconds(20)), id.status == 0,
                id.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != before
            {
                rebooted = true
                break
            }
            try await Task.sleep(for: .seconds(2))
        }
        guard rebooted else {
            log.line("the VM did not come back with a new boot id within restartTimeout \(r.restartTimeout)")
            throw BuildError.customizerFailed(index: i, name: name, type: "WindowsRestart", exitCode: -1, logTail: log.tail(6), keptVM: nil)
        }
        log.line("the VM restarted (boot id \(before.prefix(8)) → new)")
        guard !r.restartCheckCommand.isEmpty else { return }
        var last: Int32 = -1
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            last = try await stream(r.restartCheckCommand, ssh: ssh, log: log)
            if last == 0 { return }
            try await Task.sleep(for: .seconds(5))
        }
        throw BuildError.customizerFailed(index: i, name: name, type: "WindowsRestart", exitCode: last, logTail: log.tail(8), keptVM: nil)
    }
}
