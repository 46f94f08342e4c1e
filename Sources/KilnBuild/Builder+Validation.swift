// In-VM validation: the validators run in a fresh VM booted from the captured (or the source) image.
import Foundation
import KilnStore
import KilnSystem
import KilnTemplates
import Logging

extension Builder {
    func validate() async throws {
        let t = request.template
        let vlog = BuildLog(path: (request.logDirectory as NSString).appendingPathComponent("validation.log"), echo: onLogLine)
        let fromSource = t.properties.validate.sourceValidationOnly
        let base = fromSource ? request.source.disk : request.capturedDisk
        vlog.marker("Validating \(fromSource ? "the source image" : "the captured image") in a fresh VM")
        let disk = (request.workDirectory as NSString).appendingPathComponent("validate-disk.qcow2")
        try await DiskTool.createOverlay(base: base, baseFormat: "qcow2", at: disk)
        let size = buildVMSize()
        let (vm, ssh) = try await boot(disk: disk, name: "validate", cpus: size.cpus, memoryMiB: size.memoryMiB, log: vlog)
        var keep = false
        defer {
            if !keep { Task { await vm.forceKill() } }
        }
        let list = t.properties.validate.inVMValidations
        for (i, v) in list.enumerated() {
            try Task.checkCancellation()
            let name: String
            do {
                switch v {
                case .shell(let s):
                    name = s.name ?? "shell-\(i + 1)"
                    vlog.marker("[\(i + 1)/\(list.count)] Shell '\(name)'")
                    try await runShell(s, index: 100 + i, name: name, ssh: ssh, log: vlog, kind: "Shell")
                case .powerShell(let p):
                    name = p.name ?? "powershell-\(i + 1)"
                    vlog.marker("[\(i + 1)/\(list.count)] PowerShell '\(name)'")
                    try await runPowerShell(
                        p, index: 100 + i, name: name, ssh: ssh, log: vlog,
                        failure: { code in
                            BuildError.validationFailed("PowerShell validator '\(name)' exited with \(code)", keptVM: nil)
                        })
                case .file(let f):
                    name = f.name ?? "file-\(i + 1)"
                    vlog.marker("[\(i + 1)/\(list.count)] File '\(name)'")
                    try await uploadFile(f, index: 100 + i, name: name, ssh: ssh, log: vlog)
                }
            } catch let e as BuildError {
                let what: String
                switch e {
                case .customizerFailed(_, let n, let type, let code, let tail, _):
                    what =
                        "\(type) validator '\(n)' exited with \(code)"
                        + (tail.isEmpty ? "" : "; last lines of validation.log:\n" + tail.joined(separator: "\n"))
                case .customizerUnsupported(_, let n, let reason): what = "validator '\(n)': \(reason)"
                default: what = e.description
                }
                if t.properties.errorHandling.onValidationError == .abort {
                    keep = true
                    await vm.release()
                    throw BuildError.validationFailed(
                        what,
                        keptVM:
                            "The validation VM was kept (errorHandling.onValidationError: abort). Get in with:\n  \(ssh.interactiveCommand)\nClean up later with:\n  kill $(cat \(vm.configuration.pidFile)) && rm -rf \(request.workDirectory)"
                    )
                }
                await vm.forceKill()
                throw BuildError.validationFailed(what, keptVM: nil)
            }
        }
        await vm.forceKill()
        vlog.marker("validation passed")
    }
}
